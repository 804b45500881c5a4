"""The exported model's description (``model.json``): every field the runtime reads, checked.

``plc export`` writes ``model.json`` beside the three ONNX graphs. A description that is
missing a field, has one of the wrong type or out of range (``subframe: 0`` used to raise
ZeroDivisionError inside a call), or whose ``onnx_sha256`` does not match the graphs is refused
with one line saying which field and why (:class:`ModelDescriptionError`), so that the
concealer falls back to the classic one and says so instead of failing.

Lengths are bounded by :data:`MAX_AUDIO_SAMPLES` (one second): the concealer keeps as much
history as the model asks for, so a description cannot make it allocate without bound.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

from .features import FeatureConfig

#: The runtime's audio: 16 kHz, 10 ms frames.
SAMPLE_RATE = 16000
FRAME_SAMPLES = 160
#: Most audio (samples) any length in the description may ask for.
MAX_AUDIO_SAMPLES = SAMPLE_RATE
#: Most units of any hidden layer.
MAX_UNITS = 4096
#: Most frames of log-mel context (the concealer keeps ``context_frames + 2`` frames: 1 s).
MAX_CONTEXT_FRAMES = MAX_AUDIO_SAMPLES // FRAME_SAMPLES - 2
#: The graphs, in the order their bytes are hashed into ``onnx_sha256`` (``plc export``).
GRAPH_FILES = ("start.onnx", "cond.onnx", "generate.onnx")

_MISSING = object()


class ModelDescriptionError(ValueError):
    """``model.json`` is not a description this runtime can use (one line: the field and why)."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _get(section: dict, path: str, key: str) -> Any:
    value = section.get(key, _MISSING)
    if value is _MISSING:
        raise ModelDescriptionError(f"model.json: {path}{key} is missing")
    return value


def _int(section: dict, path: str, key: str, lo: int, hi: int) -> int:
    value = _get(section, path, key)
    if not (_is_int(value) and lo <= value <= hi):
        raise ModelDescriptionError(f"model.json: {path}{key} must be an integer from {lo} to {hi}, got {value!r}")
    return value


def _number(section: dict, path: str, key: str, lo: float, hi: float, lo_open: bool = False) -> float:
    value = _get(section, path, key)
    if not (_is_number(value) and (lo < value if lo_open else lo <= value) and value <= hi):
        bound = f"above {lo:g}" if lo_open else f"at least {lo:g}"
        raise ModelDescriptionError(f"model.json: {path}{key} must be a number {bound} and at most {hi:g}, "
                                    f"got {value!r}")
    return float(value)


def _section(info: dict, key: str, optional: bool = False) -> dict:
    value = info.get(key, _MISSING)
    if optional and value in (_MISSING, None):
        return {}
    if not isinstance(value, dict):
        raise ModelDescriptionError(f"model.json: {key} must be an object, got {'nothing' if value is _MISSING else repr(value)}")
    return value


def _equal(value: Any, want: Any, path: str) -> None:
    if not (_is_int(value) and value == want):
        raise ModelDescriptionError(f"model.json: {path} must be {want} (the runtime's), got {value!r}")


def check_features(features: dict) -> FeatureConfig:
    """The feature settings as a :class:`FeatureConfig`; raises :class:`ModelDescriptionError`."""
    p = "features."
    names = {f.name for f in fields(FeatureConfig)}
    extra = sorted(set(features) - names)
    if extra:
        raise ModelDescriptionError(f"model.json: features has unknown field(s) {', '.join(extra)}")
    _equal(_get(features, p, "sample_rate"), SAMPLE_RATE, p + "sample_rate")
    _equal(_get(features, p, "hop_samples"), FRAME_SAMPLES, p + "hop_samples")
    win = _int(features, p, "win_samples", FRAME_SAMPLES, MAX_AUDIO_SAMPLES)
    _int(features, p, "n_fft", win, 2 * MAX_AUDIO_SAMPLES)
    _int(features, p, "n_mels", 1, 256)
    fmin = _number(features, p, "fmin_hz", 0.0, SAMPLE_RATE / 2)
    _number(features, p, "fmax_hz", fmin, SAMPLE_RATE / 2, lo_open=True)
    _number(features, p, "log_floor", 0.0, 1.0, lo_open=True)
    lo = _int(features, p, "pitch_min_lag", 1, MAX_AUDIO_SAMPLES)
    hi = _int(features, p, "pitch_max_lag", lo + 1, MAX_AUDIO_SAMPLES)
    _int(features, p, "pitch_window", 1, MAX_AUDIO_SAMPLES - hi)
    _int(features, p, "gain_window", 1, MAX_AUDIO_SAMPLES)
    _number(features, p, "gain_floor", 0.0, 1.0, lo_open=True)
    return FeatureConfig(**features)


def check_model_description(info: Any) -> None:
    """Raise :class:`ModelDescriptionError` unless ``info`` (a parsed ``model.json`` of the
    supported format) has every field the runtime reads, of the right type and in range."""
    if not isinstance(info, dict):
        raise ModelDescriptionError(f"model.json must hold an object, got {type(info).__name__}")
    _equal(_get(info, "", "sample_rate"), SAMPLE_RATE, "sample_rate")
    features = check_features(_section(info, "features"))
    model, p = _section(info, "model"), "model."
    _equal(_get(model, p, "n_mels"), features.n_mels, "model.n_mels (features.n_mels)")
    for key in ("cond_hidden", "cond_dim", "ar_hidden", "fc_hidden"):
        _int(model, p, key, 1, MAX_UNITS)
    _equal(_get(model, p, "frame_samples"), FRAME_SAMPLES, "model.frame_samples")
    subframe = _int(model, p, "subframe", 1, FRAME_SAMPLES)
    if FRAME_SAMPLES % subframe:
        raise ModelDescriptionError(f"model.json: model.subframe must divide the {FRAME_SAMPLES}-sample frame, "
                                    f"got {subframe}")
    _int(model, p, "lag_context", 0, FRAME_SAMPLES)
    _int(model, p, "history_samples", FRAME_SAMPLES, MAX_AUDIO_SAMPLES)
    _number(model, p, "output_limit", 0.0, 1e6, lo_open=True)
    _int(info, "", "start_history_samples", 1, MAX_AUDIO_SAMPLES)
    data, p = _section(info, "data", optional=True), "data."
    if "context_frames" in data:
        _int(data, p, "context_frames", 1, MAX_CONTEXT_FRAMES)
    if "warmup_frames" in data:
        _int(data, p, "warmup_frames", 0, data.get("context_frames", 24))
    files = _get(info, "", "files")
    if not (isinstance(files, list) and sorted(files) == sorted(GRAPH_FILES)):
        raise ModelDescriptionError(f"model.json: files must list {', '.join(GRAPH_FILES)}, got {files!r}")
    digest = _get(info, "", "onnx_sha256")
    if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise ModelDescriptionError(f"model.json: onnx_sha256 must be 64 lowercase hex digits, got {digest!r}")
    for key in ("params", "model_bytes"):
        _int(info, "", key, 0, 1 << 40)
    for key, kind in (("architecture", str), ("train_data_sha256", str), ("torch", str), ("train_clips", int),
                      ("step", int)):
        value = info.get(key)
        if value is not None and not (isinstance(value, kind) and not isinstance(value, bool)):
            raise ModelDescriptionError(f"model.json: {key} must be a {kind.__name__} or absent, got {value!r}")


def audio_needed(info: dict) -> int:
    """The most past audio (samples) a checked description makes the runtime read at once."""
    f, m = info["features"], info["model"]
    return max(info["start_history_samples"], m["history_samples"], f["pitch_window"] + f["pitch_max_lag"],
               f["gain_window"], f["win_samples"])


def read_graphs(model_dir: Path, info: dict) -> dict[str, bytes]:
    """The graphs' bytes, after checking them against ``onnx_sha256`` (raises
    :class:`ModelDescriptionError` on a mismatch: a corrupt, truncated or modified file)."""
    blobs = {name: (Path(model_dir) / name).read_bytes() for name in info["files"]}
    digest = hashlib.sha256()
    for name in info["files"]:
        digest.update(blobs[name])
    if digest.hexdigest() != info["onnx_sha256"]:
        raise ModelDescriptionError(f"the ONNX graphs do not match model.json's onnx_sha256 "
                                    f"({digest.hexdigest()[:12]}... against {info['onnx_sha256'][:12]}...): "
                                    "corrupt or modified files (re-export with plc export)")
    return blobs

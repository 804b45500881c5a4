"""Reading, writing and resampling audio files, with clear errors for bad input."""

from __future__ import annotations

import os
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from .outputs import StagedOutputs


class AudioError(ValueError):
    """The audio file is missing, empty, corrupt or not audio. The message is one line for users."""


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``(samples, channels)`` and its sample rate in Hz.

    Any format libsndfile reads (WAV, FLAC, OGG/Vorbis, ...). Raises
    :class:`AudioError` for a missing, empty, unreadable or non-finite file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty")
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({_one_line(exc)})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return data, int(sample_rate)


def audio_subtype(path: str | os.PathLike) -> str | None:
    """The sample format of an audio file (e.g. ``PCM_16``), or None if unknown."""
    try:
        return sf.info(str(path)).subtype
    except (sf.LibsndfileError, RuntimeError):
        return None


def write_audio(path: str | os.PathLike, data: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write audio atomically (:class:`plc.outputs.StagedOutputs`): a temporary file in the same folder,
    renamed at the end.

    An existing file at ``path`` is only replaced once the new one is complete.
    ``subtype`` (e.g. ``PCM_16``) is used when the output format supports it.
    """
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    major = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "aiff": "AIFF", "aif": "AIFF"}.get(ext)
    if major is None:
        raise AudioError(f"{path}: unsupported output extension (use .wav, .flac or .ogg)")
    if subtype is None or not sf.check_format(major, subtype):
        subtype = sf.default_subtype(major)
    data = np.clip(np.asarray(data, dtype=np.float32), -1.0, 1.0)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise AudioError(f"{path}: output folder does not exist")
    with StagedOutputs() as staged:
        sf.write(str(staged.path(path)), data, sample_rate, format=major, subtype=subtype)


OUTPUT_SUFFIXES = (".wav", ".flac", ".ogg")


def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it names an audio format we write, else :class:`AudioError`.

    Checked before any work is done, so that a long run does not fail at the end; whether the
    file can be written there is :func:`plc.outputs.check_outputs`' job.
    """
    output = Path(path)
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise AudioError(f"{output}: output must end in {', '.join(OUTPUT_SUFFIXES[:-1])} or {OUTPUT_SUFFIXES[-1]}")
    return output


def resample(x: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling along the first axis (float32 out). Identity when rates match."""
    if orig_rate == target_rate:
        return np.asarray(x, dtype=np.float32)
    g = gcd(int(orig_rate), int(target_rate))
    y = resample_poly(np.asarray(x, dtype=np.float64), target_rate // g, orig_rate // g, axis=0)
    return y.astype(np.float32)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

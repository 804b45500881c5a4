"""A model that loads is not yet a model that works: the neural concealer's guards.

Corrupted copies of the shipped model (poisoned weights, a wrong hash, bad ``model.json``
fields) are refused at load with the reason, or their frames fall back to the classic
concealer and are counted; a call (the jitter buffer, ``enable_concealment``) never fails on
them. Memory stays bounded however long a call runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from plc.concealers import make_concealer
from plc.concealers.neural import (
    DEFAULT_MODEL_DIR, FRAME_TIMES_KEPT, MAX_LEVEL_RATIO, NeuralConcealer, check_model_dir,
)

from .conftest import harmonic
from .jitterbuffer.conftest import pcm_packets
from .jitterbuffer.conftest import play as play_jitter_buffer

FRAME = 160


def run(concealer, x, lost):
    return np.concatenate([concealer.process(None if l else x[i * FRAME:(i + 1) * FRAME]) for i, l in enumerate(lost)])


def losses(n_frames: int, every: int = 25, length: int = 4) -> np.ndarray:
    lost = np.zeros(n_frames, dtype=bool)
    for s in range(30, n_frames - length - 1, every):
        lost[s:s + length] = True
    return lost


def copy_model(tmp_path, name: str = "model"):
    d = tmp_path / name
    shutil.copytree(DEFAULT_MODEL_DIR, d)
    return d


def rewrite(d, **changes):
    info = json.loads((d / "model.json").read_text())
    for path, value in changes.items():
        *parents, key = path.split("__")
        node = info
        for p in parents:
            node = node[p]
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
    (d / "model.json").write_text(json.dumps(info))
    return d


DELETE = object()


def rehash(d):
    info = json.loads((d / "model.json").read_text())
    digest = hashlib.sha256()
    for f in info["files"]:
        digest.update((d / f).read_bytes())
    return rewrite(d, onnx_sha256=digest.hexdigest())


def poison(d, transform):
    """Apply ``transform`` to every float weight tensor of every graph, and make the hash match."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    for name in ("start.onnx", "cond.onnx", "generate.onnx"):
        graph = onnx.load(str(d / name))
        for init in graph.graph.initializer:
            w = numpy_helper.to_array(init)
            if w.dtype == np.float32 and w.size > 1:
                init.CopyFrom(numpy_helper.from_array(transform(w.copy()).astype(np.float32), init.name))
        onnx.save(graph, str(d / name))
    return rehash(d)


def first_nan(w):
    w.flat[0] = np.nan
    return w


def first_inf(w):
    w.flat[0] = -np.inf
    return w


def assert_falls_back_cleanly(c: NeuralConcealer, reason_has: str) -> None:
    """Every lost frame is the classic concealer's (counted, with the reason): never silent,
    never louder than the audio around it."""
    x = harmonic(seconds=1.0)
    lost = losses(len(x) // FRAME)
    out = run(c, x, lost)
    assert c.stats.fallback_frames == lost.sum()
    assert reason_has in c.fallback_reason
    concealed = out.reshape(-1, FRAME)[lost]
    assert np.all(np.isfinite(out))
    assert np.all(np.abs(concealed).max(axis=1) > 0)  # the first 4 frames of each loss are never silent
    assert np.sqrt(np.mean(concealed ** 2)) <= 1.5 * np.sqrt(np.mean(x ** 2))


@pytest.mark.parametrize("transform, why", [
    (lambda w: w * np.nan, "non-finite"), (first_nan, "non-finite"), (first_inf, "non-finite"),
    (lambda w: w * 1e30, "louder"), (lambda w: w * 1e3, "louder"), (lambda w: w * 10, "louder"),
    (lambda w: w * 0, "below"),
])
def test_poisoned_weights_are_refused_at_load_with_the_reason(tmp_path, transform, why):
    """NaN or inf weights used to play silence, weights scaled by 1e30 a constant loud tone, and
    the fallback count stayed 0."""
    d = poison(copy_model(tmp_path), transform)
    c = NeuralConcealer(model_dir=d)
    assert c.model is None and "self-test" in c.load_error and why in c.load_error
    assert_falls_back_cleanly(c, why)
    with pytest.raises(ValueError, match=why):
        check_model_dir(d)


class Rogue:
    """Wraps a graph; from ``after`` calls on, its first output is replaced by ``bad(frame)``."""

    def __init__(self, graph, bad, after: int = 0):
        self.graph, self.bad, self.after, self.calls = graph, bad, after, 0

    def run(self, names, feeds):
        out = self.graph.run(names, feeds)
        self.calls += 1
        if self.calls > self.after:
            out = [self.bad(out[0])] + list(out[1:])
        return out


@pytest.mark.parametrize("graph", ["start", "generate"])
@pytest.mark.parametrize("bad, why", [(lambda f: f * np.nan, "non-finite"), (lambda f: f * 50.0, "louder"),
                                      (lambda f: np.full_like(f, np.inf), "non-finite")])
def test_a_bad_frame_mid_call_goes_to_the_classic_concealer_and_is_counted(graph, bad, why):
    """A model that passes its self-test but makes a bad frame on the call's audio."""
    x = harmonic(seconds=1.0)
    lost = losses(len(x) // FRAME)
    c = NeuralConcealer(deadline_ms=None)
    setattr(c.model, graph, Rogue(getattr(c.model, graph), bad))
    out = run(c, x, lost)
    assert c.stats.fallback_frames > 0 and why in c.fallback_reason
    assert np.all(np.isfinite(out))
    concealed = out.reshape(-1, FRAME)[lost]
    assert np.all(np.abs(concealed).max(axis=1) > 0)
    loudest = np.sqrt(np.max(np.mean(x.reshape(-1, FRAME) ** 2, axis=1)))
    assert np.sqrt(np.mean(concealed ** 2, axis=1)).max() <= MAX_LEVEL_RATIO * loudest


def test_the_frame_check_never_fires_on_real_speech(speech_16k):
    """The shipped model on real speech, long bursty losses: not one frame falls back."""
    c = NeuralConcealer(deadline_ms=None)
    lost = losses(len(speech_16k) // FRAME, every=13, length=6)
    run(c, speech_16k[:len(lost) * FRAME], lost)
    assert c.stats.concealed_frames == lost.sum() and c.stats.fallback_frames == 0 and c.fallback_reason is None


@pytest.mark.parametrize("change, field", [
    ({"model__subframe": 0}, "model.subframe"),
    ({"model__subframe": -40}, "model.subframe"),
    ({"model__subframe": 33}, "model.subframe"),
    ({"model__subframe": "40"}, "model.subframe"),
    ({"model__subframe": 40.0}, "model.subframe"),
    ({"model__subframe": True}, "model.subframe"),
    ({"model__subframe": DELETE}, "model.subframe is missing"),
    ({"model__frame_samples": 320}, "model.frame_samples"),
    ({"model__n_mels": 40}, "model.n_mels"),
    ({"model__history_samples": 10 ** 12}, "model.history_samples"),
    ({"model__ar_hidden": None}, "model.ar_hidden"),
    ({"model__output_limit": float("nan")}, "model.output_limit"),
    ({"features__hop_samples": 0}, "features.hop_samples"),
    ({"features__pitch_max_lag": 10}, "features.pitch_max_lag"),
    ({"features__gain_floor": -1.0}, "features.gain_floor"),
    ({"features__surprise": 1}, "unknown field"),
    ({"features__n_mels": DELETE}, "features.n_mels is missing"),
    ({"data__context_frames": 10 ** 9}, "data.context_frames"),
    ({"data__warmup_frames": -1}, "data.warmup_frames"),
    ({"start_history_samples": 0}, "start_history_samples"),
    ({"sample_rate": 8000}, "sample_rate"),
    ({"files": ["start.onnx"]}, "files"),
    ({"onnx_sha256": "0" * 64}, "onnx_sha256"),
    ({"onnx_sha256": "not a hash"}, "onnx_sha256"),
    ({"params": "many"}, "params"),
    ({"model": [1, 2]}, "model must be an object"),
])
def test_a_bad_model_description_is_refused_with_the_field(tmp_path, change, field):
    """``subframe: 0`` used to raise ZeroDivisionError out of the concealer's constructor."""
    d = rewrite(copy_model(tmp_path), **change)
    c = NeuralConcealer(model_dir=d)
    assert c.model is None and field in c.load_error
    assert_falls_back_cleanly(c, field)


def test_graphs_that_do_not_match_their_hash_are_refused(tmp_path):
    d = copy_model(tmp_path)
    data = bytearray((d / "cond.onnx").read_bytes())
    data[-100] ^= 0x01  # one bit of one weight
    (d / "cond.onnx").write_bytes(bytes(data))
    c = NeuralConcealer(model_dir=d)
    assert c.model is None and "onnx_sha256" in c.load_error
    (d / "model.json").write_text("[]")
    assert "must hold an object" in NeuralConcealer(model_dir=d).load_error


def test_a_bad_model_never_stops_the_jitter_buffer_or_a_call(tmp_path):
    """``enable_concealment(..., concealer_options={"model_dir": BAD})`` used to raise
    ZeroDivisionError; now the call runs on the classic concealer and its stats say why."""
    aiortc = pytest.importorskip("aiortc")
    import asyncio

    from jitterbuffer.payload import DEFAULT_PAYLOAD_TYPES, PCM_PAYLOAD_TYPE
    from plc.webrtc import enable_concealment

    bad = rewrite(copy_model(tmp_path), model__subframe=0)

    async def scenario():
        pc = aiortc.RTCPeerConnection()
        pc.addTransceiver("audio")
        handle = enable_concealment(pc, method="neural", concealer_options={"model_dir": str(bad)}, threaded=False)
        assert "model.subframe" in handle.stats["fallbackReason"] and handle.stats["fallbackFrames"] == 0
        jb = handle.receivers[0].jitter_buffer
        jb.payload_types[PCM_PAYLOAD_TYPE] = DEFAULT_PAYLOAD_TYPES[PCM_PAYLOAD_TYPE]
        x = harmonic(seconds=1.0)
        arrivals = [(20.0 * k + 40, p) for k, p in enumerate(pcm_packets(x)) if k % 10 != 5]
        y = play_jitter_buffer(jb, arrivals, 120)
        stats = handle.stats
        assert stats["fallbackFrames"] > 0 and "model.subframe" in stats["fallbackReason"]
        assert stats["concealedSamples"] > 0 and np.all(np.isfinite(y)) and np.sqrt(np.mean(y[-4000:] ** 2)) > 0.1
        handle.disable()
        await pc.close()

    asyncio.run(scenario())


def test_memory_stays_bounded_over_a_long_call():
    """``frame_times_ms`` grew by one entry per concealed frame forever, even across reset()."""
    c = NeuralConcealer(deadline_ms=None)
    x = harmonic(seconds=1.0)
    pattern = losses(len(x) // FRAME, every=7, length=3)

    def sizes() -> dict:
        out = {}
        for name, value in vars(c).items():
            if isinstance(value, (list, dict, set, str, bytes)) or hasattr(value, "__len__"):
                out[name] = len(value)
            elif isinstance(value, np.ndarray):
                out[name] = value.size
        return out

    long_loss = np.ones(FRAME_TIMES_KEPT + 200, dtype=bool)
    run(c, np.zeros(len(long_loss) * FRAME, np.float32), long_loss)
    assert len(c.frame_times_ms) == FRAME_TIMES_KEPT
    for _ in range(3):
        run(c, x, pattern)
    during = sizes()
    c.reset()
    after_reset = sizes()
    for _ in range(6):
        run(c, x, pattern)
    assert sizes() == during
    c.reset()
    assert sizes() == after_reset
    assert len(c.frame_times_ms) == FRAME_TIMES_KEPT


def test_make_concealer_with_a_bad_model_does_not_raise(tmp_path):
    d = rewrite(copy_model(tmp_path), model__subframe=0)
    c = make_concealer("neural", model_dir=d)
    assert c.load_error and c.process(None).shape == (FRAME,)

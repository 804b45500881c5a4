"""The offline pipeline: pass-through, zero-filled inputs, rates, channels, Opus."""

import numpy as np
import pytest

from plc.audio_io import resample
from plc.offline import conceal_audio, lost_sample_mask, packets_in

from .conftest import harmonic


def bursty_trace(n, seed=0):
    rng = np.random.default_rng(seed)
    lost = np.zeros(n, dtype=bool)
    for start in rng.choice(np.arange(5, n - 6), size=max(1, n // 12), replace=False):
        lost[start:start + rng.integers(1, 5)] = True
    return lost


@pytest.mark.parametrize("method", ["zero", "g711", "neteq"])
def test_zero_filled_and_clean_inputs_give_identical_output(method):
    x = harmonic(seconds=1.0)
    lost = bursty_trace(packets_in(len(x), 16000, 20))
    mask = lost_sample_mask(len(x), 16000, lost, 20)
    garbage = np.where(mask, np.random.default_rng(1).uniform(-1, 1, len(x)), x).astype(np.float32)
    zeroed = np.where(mask, 0, x).astype(np.float32)
    a = conceal_audio(x, 16000, lost, method).audio
    b = conceal_audio(zeroed, 16000, lost, method).audio
    c = conceal_audio(garbage, 16000, lost, method).audio
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_received_samples_pass_through_except_after_a_loss():
    x = harmonic(seconds=1.0)
    lost = bursty_trace(packets_in(len(x), 16000, 20))
    out = conceal_audio(x, 16000, lost, "neteq").audio
    assert out.shape == x.shape
    lost_frames = np.repeat(lost, 2)
    resume = np.concatenate([[False], lost_frames[:-1]]) & ~lost_frames
    untouched = lost_sample_mask(len(x), 16000, ~lost_frames & ~resume, 10)
    assert np.array_equal(out[untouched], x[untouched])


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_rates_keep_received_samples_and_length(rate):
    x = resample(harmonic(seconds=1.0), 16000, rate)
    n_packets = packets_in(len(x), rate, 20)
    lost = np.zeros(n_packets, dtype=bool)
    lost[20:23] = True
    out = conceal_audio(x, rate, lost, "neteq").audio
    assert out.shape == x.shape
    far = np.ones(len(x), dtype=bool)
    far[int(0.39 * rate):int(0.5 * rate)] = False  # the loss, the cross-fade back and the 1 ms splices
    assert np.array_equal(out[far], x[far])
    hole = slice(int(0.41 * rate), int(0.45 * rate))
    assert np.sqrt(np.mean(out[hole] ** 2)) > 0.2 * np.sqrt(np.mean(x ** 2))


def test_stereo_in_stereo_out():
    x = harmonic(seconds=0.6)
    st = np.stack([x, 0.5 * x], axis=1)
    lost = np.zeros(packets_in(len(x), 16000, 20), dtype=bool)
    lost[10:12] = True
    res = conceal_audio(st, 16000, lost, "g711")
    assert res.audio.shape == st.shape
    assert res.stats["concealment_events"] == 2  # one per channel


def test_trace_too_short_is_an_error():
    x = harmonic(seconds=0.5)
    with pytest.raises(ValueError, match="loss trace has 3 packets"):
        conceal_audio(x, 16000, np.zeros(3, bool), "zero")


def test_opus_method_needs_opus_codec():
    with pytest.raises(ValueError, match="--codec opus"):
        conceal_audio(harmonic(seconds=0.2), 16000, np.zeros(10, bool), "opus")


@pytest.mark.parametrize("method", ["opus", "neteq", "zero"])
def test_opus_pipeline_is_aligned_and_concealed(speech_16k, method):
    x = speech_16k
    n = packets_in(len(x), 16000, 20)
    energy = [np.sum(x[(i - 3) * 320:(i + 3) * 320] ** 2) for i in range(10, n - 4)]
    p = 10 + int(np.argmax(energy))  # lose 60 ms inside loud speech
    lost = np.zeros(n, dtype=bool)
    lost[p:p + 3] = True
    y = conceal_audio(x, 16000, lost, method, codec="opus").audio
    assert y.shape == x.shape
    ok = slice(0, p * 320 - 320)  # before the loss: the coded signal is aligned with the input
    assert np.corrcoef(x[ok], y[ok])[0, 1] > 0.9
    hole = y[p * 320:(p + 3) * 320 - 104]  # decoder time lags by the encoder's lookahead
    if method == "zero":
        assert np.abs(hole).max() < 1e-3
    else:
        assert np.sqrt(np.mean(hole ** 2)) > 1e-3

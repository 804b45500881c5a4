"""LPC-shaped noise continuation: it keeps the spectrum and level of what was played, joins it
without a step, and degrades gracefully on silence and short histories."""

import numpy as np
from scipy.signal import lfilter, welch

from plc.concealers.noise_continuation import NoiseContinuation


def coloured_noise(seconds: float = 0.5, seed: int = 0, level: float = 0.1) -> np.ndarray:
    """Low-pass (one-pole at 0.9) noise: most energy below ~1 kHz."""
    white = np.random.default_rng(seed).standard_normal(int(16000 * seconds))
    x = lfilter([1.0], [1.0, -0.9], white)
    return (level * x / np.std(x)).astype(np.float32)


def continuation(history: np.ndarray, frames: int, seed: int = 1) -> np.ndarray:
    nc = NoiseContinuation(history, np.random.default_rng(seed))
    return np.concatenate([nc.next_frame() for _ in range(frames)])


def test_continues_the_spectrum_and_level_of_the_history():
    x = coloured_noise()
    y = continuation(x, 6)   # 60 ms
    f, px = welch(x, 16000, nperseg=256)
    _, py = welch(y, 16000, nperseg=256)
    low, high = f < 1000, f > 4000
    ratio_x = px[low].sum() / px[high].sum()
    ratio_y = py[low].sum() / py[high].sum()
    assert ratio_y > 10 and abs(np.log10(ratio_y / ratio_x)) < 0.5   # the same tilt, within ~5 dB
    level_db = 20 * np.log10(np.std(y[:160]) / np.std(x[-320:]))
    assert -6 < level_db < 3
    # it is noise, not a loop of the history: no strong correlation with the last 20 ms
    assert abs(np.corrcoef(y[:320], x[-320:])[0, 1]) < 0.3


def test_attenuates_slowly_frame_by_frame():
    x = coloured_noise(seed=3)
    nc = NoiseContinuation(x, np.random.default_rng(0))
    scales = []
    for _ in range(12):
        nc.next_frame()
        scales.append(nc._scale)
    assert np.all(np.diff(scales) < 0)
    np.testing.assert_allclose(scales[1], 0.99, rtol=1e-9)          # 20 ms: SILK's first factor
    np.testing.assert_allclose(scales[3], 0.99 * 0.90, rtol=1e-9)   # 40 ms


def test_joins_the_played_audio_without_a_step():
    x = coloured_noise(seed=5)
    y = continuation(x, 1)
    # the synthesis filter starts from the played samples: the first output sample is of the
    # order of the signal's own sample-to-sample change, not a jump
    assert abs(y[0] - x[-1]) < 4 * np.std(np.diff(x))


def test_silence_and_short_histories_are_handled():
    assert not np.any(continuation(np.zeros(1000, np.float32), 3))
    y = continuation(coloured_noise(seconds=0.01), 3)   # 160 samples: zeros assumed before
    assert y.dtype == np.float32 and np.all(np.isfinite(y)) and np.any(y)
    y = continuation(np.ones(2000, np.float32) * 0.5, 3)  # DC: an ill-conditioned fit stays bounded
    assert np.all(np.isfinite(y)) and np.abs(y).max() < 2.0


def test_deterministic_for_a_seed():
    x = coloured_noise(seed=9)
    assert np.array_equal(continuation(x, 4, seed=2), continuation(x, 4, seed=2))
    assert not np.array_equal(continuation(x, 4, seed=2), continuation(x, 4, seed=3))


def test_comfort_noise_has_the_level_and_tilt_of_the_background():
    """Estimated on received audio (quiet background noise with a loud stretch in it), the comfort
    noise has about the background's level (NetEQ's estimate follows the quietest frames, some dB
    under the mean, which COMFORT_NOISE_GAIN makes up for) and its low-frequency tilt, not the loud
    stretch's level; before any quiet stretch has been seen it is silent."""
    from plc.concealers.noise_continuation import ComfortNoise

    cn = ComfortNoise()
    assert not cn.available and not np.any(cn.next_frame(np.random.default_rng(0)))
    background = coloured_noise(seconds=2.0, seed=7, level=0.003)
    x = background.copy()
    x[8000:16000] += coloured_noise(seconds=0.5, seed=8, level=0.2)
    for end in range(160, len(x) + 1, 160):
        cn.update(x[:end])
    assert cn.available
    rng = np.random.default_rng(1)
    cn.start()
    y = np.concatenate([cn.next_frame(rng) for _ in range(30)])
    assert y.dtype == np.float32 and y.shape == (4800,)
    level_db = 20 * np.log10(np.std(y) / np.std(background))
    assert -4 < level_db < 4
    f, py = welch(y, 16000, nperseg=256)
    assert py[f < 1000].sum() / py[f > 4000].sum() > 2
    cn.reset()
    assert not cn.available

"""Tests of the NetEQ Expand/Merge port (plc/concealers/neteq/)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from plc.concealers import make_concealer
from plc.concealers.neteq import NetEqConcealer
from plc.concealers.neteq.dsp_helper import min_distortion, peak_detection
from plc.concealers.neteq.random_vector import RANDOM_TABLE
from plc.dsp import levinson_durbin

FS = 16000
N = 160  # 10 ms
DATA = Path(__file__).parents[1] / ".." / "shared" / "data"


# ------------------------------------------------------------------ helpers
def vowel(f0: float, n: int, noise: float = 0.0, phase: float = 0.0, seed: int = 0) -> np.ndarray:
    """Harmonic 'vowel' (9 harmonics, 1/k roll-off) plus an optional white noise floor."""
    t = np.arange(n) / FS
    x = sum((0.25 / k) * np.sin(2 * np.pi * f0 * k * t + phase * k + 0.4 * k * k) for k in range(1, 10))
    if noise:
        x = x + noise * np.random.default_rng(seed).standard_normal(n)
    return x.astype(np.float32)


def white(n: int, level: float = 0.1, seed: int = 1) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def run(x: np.ndarray, lost: set[int], concealer: NetEqConcealer | None = None, **kw) -> np.ndarray:
    c = concealer if concealer is not None else NetEqConcealer(**kw)
    frames = x[: len(x) // c.frame_samples * c.frame_samples].reshape(-1, c.frame_samples)
    return np.concatenate([c.process(None if i in lost else f) for i, f in enumerate(frames)])


def frame_db(y: np.ndarray, k: int, ref_power: float) -> float:
    seg = y[k * N:(k + 1) * N].astype(np.float64)
    return 10 * np.log10(np.mean(seg ** 2) / ref_power + 1e-30)


# ------------------------------------------------------------- interface
def test_registered_and_constructible():
    c = make_concealer("neteq")
    assert isinstance(c, NetEqConcealer)
    assert c.name == "neteq"
    assert c.frame_samples == 160
    c2 = make_concealer("neteq", frame_ms=10, sample_rate=16000)
    assert c2.expand.overlap_length == 10 and c2.expand.fs_mult == 2
    with pytest.raises(ValueError):
        NetEqConcealer(sample_rate=22050)


def test_received_frames_pass_through_bit_exact():
    x = vowel(150, FS, noise=0.002)
    lost = {20, 21, 22, 50, 70, 71}
    y = run(x, lost)
    merged = {23, 51, 72}
    for k in range(len(x) // N):
        if k in lost or k in merged:
            continue
        np.testing.assert_array_equal(y[k * N:(k + 1) * N], x[k * N:(k + 1) * N])


@pytest.mark.parametrize("signal", ["vowel", "noise", "silence", "loud", "dc"])
def test_output_finite_bounded_float32(signal):
    n = FS
    x = {
        "vowel": vowel(180, n, noise=0.01),
        "noise": white(n, 0.3),
        "silence": np.zeros(n, dtype=np.float32),
        "loud": np.clip(4 * vowel(130, n), -1, 1).astype(np.float32),
        "dc": np.full(n, 0.5, dtype=np.float32),
    }[signal]
    c = NetEqConcealer()
    rng = np.random.default_rng(5)
    frames = x.reshape(-1, N)
    for i, f in enumerate(frames):
        out = c.process(None if (i == 0 or rng.random() < 0.3) else f)  # also loses the very first frame
        assert out.dtype == np.float32 and out.shape == (N,)
        assert np.all(np.isfinite(out))
        assert np.max(np.abs(out)) <= 1.0


def test_deterministic_repeat_runs_and_reset():
    x = vowel(140, FS, noise=0.01) + white(FS, 0.02)
    lost = set(range(10, 25)) | {40, 41, 60}
    y1 = run(x, lost)
    y2 = run(x, lost)
    np.testing.assert_array_equal(y1, y2)
    c = NetEqConcealer()
    y3 = run(x, lost, concealer=c)
    c.reset()
    y4 = run(x, lost, concealer=c)
    np.testing.assert_array_equal(y3, y4)
    np.testing.assert_array_equal(y1, y3)


# ------------------------------------------------------------ NetEQ pieces
def test_random_vector_follows_neteq_table_stepping():
    c = NetEqConcealer()
    c.random_vector.seed_increment = 1  # as after InitializeForAnExpandPeriod
    v = c.expand.generate_random_vector(2, 5)
    # seed 777, increment becomes 3: positions (777 + 3k) & 255.
    expected = RANDOM_TABLE[[(777 + 3 * k) & 255 for k in range(1, 6)]]
    np.testing.assert_array_equal(v, expected)
    assert c.random_vector.seed == 777 + 15


def test_helpers_min_distortion_and_levinson():
    period = 107
    x = vowel(FS / period, 1024)
    lag, dist = min_distortion(x.astype(np.float64), 1024 - 40, 95, 115, 40)
    assert lag == period and dist < 1e-3
    # AR(2) process: Levinson recovers its coefficients.
    rng = np.random.default_rng(0)
    e = rng.standard_normal(20000)
    from scipy.signal import lfilter
    s = lfilter([1.0], [1.0, -1.2, 0.5], e)
    r = np.array([np.dot(s[k:], s[:len(s) - k]) for k in range(3)])
    a = levinson_durbin(r, 2)
    np.testing.assert_allclose(a, [1.0, -1.2, 0.5], atol=0.03)
    assert levinson_durbin(np.array([1.0, 1.0, 1.0]), 2) is None  # unstable


def test_peak_detection_parabolic_fit_lands_between_4khz_samples():
    # A parabola peaking at 4 kHz index 20.25 -> full-rate index ~ 20.25 * 4 = 81.
    i = np.arange(54, dtype=np.float64)
    data = 1000.0 - 10.0 * (i - 20.25) ** 2
    idx, _ = peak_detection(data.copy(), 51, 1, 2)
    assert abs(idx[0] - 81) <= 1


@pytest.mark.parametrize("f0", [120.0, 150.0, 200.0])
def test_analysis_finds_pitch_and_voicing(f0):
    c = NetEqConcealer()
    x = vowel(f0, 30 * N, noise=0.001)
    run(x[:29 * N], set(), concealer=c)
    c.process(None)
    period = FS / f0
    lag0 = c.expand.expand_lags[0]
    # The lag is the period or, for high pitch, possibly two periods.
    assert min(abs(lag0 - period), abs(lag0 - 2 * period)) <= 1.5
    assert c.expand.voice_mix_factor > 0.9 * 16384
    c2 = NetEqConcealer()
    run(white(30 * N), {29}, concealer=c2)
    assert c2.expand.voice_mix_factor == 0
    assert c2.expand.mute_slope >= 5243 // 2  # unvoiced: at least 0.005 / fs_mult in Q20


# ------------------------------------------------------------ behaviour
@pytest.mark.parametrize("f0", [120.0, 150.0, 175.0, 200.0])
def test_pure_harmonic_continued_with_right_pitch(f0):
    x = vowel(f0, 40 * N)
    y = run(x, {30})
    seg, true = y[30 * N:31 * N], x[30 * N:31 * N]
    assert np.corrcoef(seg, true)[0, 1] > 0.9


@pytest.mark.parametrize("f0,noise", [(120.0, 0.002), (150.0, 0.0), (175.0, 0.005), (200.0, 0.002)])
def test_continuity_at_start_of_loss(f0, noise):
    x = vowel(f0, 40 * N, noise=noise, seed=3)
    natural = float(np.max(np.abs(np.diff(x))))
    for start in (20, 23, 27):
        y = run(x, set(range(start, start + 3)))
        e = start * N
        assert abs(float(y[e]) - float(y[e - 1])) <= 1.5 * natural
        # and nothing inside the concealment is jumpier than the signal itself
        assert np.max(np.abs(np.diff(y[e - 1:e + 3 * N]))) <= 1.5 * natural


@pytest.mark.parametrize("f0,phase", [(120.0, 0.0), (150.0, np.pi / 2), (175.0, np.pi), (200.0, 2.0)])
def test_continuity_at_resume_and_exact_tail(f0, phase):
    # The audio after the loss may be out of phase with the expansion.
    a = vowel(f0, 40 * N)
    b = vowel(f0, 40 * N, phase=phase)
    x = np.concatenate([a[:25 * N], b[25 * N:]])
    natural = max(float(np.max(np.abs(np.diff(a)))), float(np.max(np.abs(np.diff(b)))))
    c = NetEqConcealer()
    y = run(x, {21, 22, 23, 24}, concealer=c)
    e = 25 * N
    assert abs(float(y[e]) - float(y[e - 1])) <= 1.5 * natural
    assert np.max(np.abs(np.diff(y[e - 1:e + N + 1]))) <= 1.5 * natural
    tail = c.merge_tail
    assert tail >= 32
    np.testing.assert_array_equal(y[e + N - tail:e + N], x[e + N - tail:e + N])
    np.testing.assert_array_equal(y[e + N:], x[e + N:])


def test_merge_after_long_loss_fades_real_audio_in():
    x = vowel(150, 100 * N, noise=0.001)
    c = NetEqConcealer()
    y = run(x, set(range(10, 80)), concealer=c)  # 700 ms: expansion fully muted
    assert not np.any(y[79 * N:80 * N])
    merge = y[80 * N:81 * N]
    assert np.max(np.abs(merge[:5])) < 0.02  # starts from (near) silence
    ramp_env = [np.max(np.abs(merge[i:i + 32])) for i in range(0, 128, 32)]
    assert all(b >= a - 1e-6 for a, b in zip(ramp_env, ramp_env[1:]))  # ramps up
    np.testing.assert_array_equal(merge[-c.merge_tail:], x[81 * N - c.merge_tail:81 * N])


def test_muting_schedule_voiced_vs_noise():
    # Voiced: NetEQ does not mute the first periods (slope 0), then mutes at the
    # slopes bumped at consecutive expands 3 and 7 (0.001 and 0.002 / fs_mult per
    # sample). 10 ms frames of a 6.7 ms period fluctuate by < 1 dB.
    xv = vowel(150, 80 * N, noise=0.002)
    pv = float(np.mean(xv.astype(np.float64) ** 2))
    cv = NetEqConcealer()
    yv = run(xv, set(range(20, 80)), concealer=cv)
    lv = [frame_db(yv, k, pv) for k in range(20, 80)]
    assert lv[0] > -1.0  # first 10 ms barely muted
    assert all(b <= a + 1.0 for a, b in zip(lv, lv[1:]))  # never gets louder
    assert lv[10] < lv[2] - 3.0  # clearly decaying by 100 ms
    assert lv[34] < -40.0  # < -40 dB by 350 ms (NetEQ: ~300 ms for a steady vowel)
    assert lv[59] < -150.0  # mute factor hit zero: silence by 600 ms
    assert cv.stats.silent_concealed_samples > 0

    # Unvoiced (white noise): voice-mix 0 and a steep slope.
    xn = white(80 * N, 0.1)
    pn = float(np.mean(xn.astype(np.float64) ** 2))
    yn = run(xn, set(range(20, 80)))
    ln = [frame_db(yn, k, pn) for k in range(20, 80)]
    assert all(b <= a + 1.0 for a, b in zip(ln, ln[1:]))
    assert ln[11] < -40.0  # < -40 dB by 120 ms
    assert max(ln[30:]) < -100.0
    # Voiced mutes slower than noise.
    for k in (2, 5, 8, 12):
        assert lv[k] > ln[k] + 6.0


def test_onset_first_period_not_muted():
    # Energy jumping 8x within the last pitch period -> NetEQ's onset path
    # (amplitude ratio between the two expand vectors > 1.5).
    t = np.arange(30 * N) / FS
    env = np.where(t < (29 * N - 130) / FS, 0.05, 0.4)
    x = (env * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    c = NetEqConcealer()
    y = run(x, {29}, concealer=c)
    assert c.expand.onset and c.expand.mute_slope > 0
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    # The first period is played at full level (no muting on an onset).
    lag = c.expand.expand_lags[1]
    assert np.max(np.abs(y[29 * N + 10:29 * N + lag])) > 0.3


def test_background_noise_option_fades_to_comfort_noise():
    # Noise floor only before the loss: the BGN model is estimated and the
    # loss fades into comfort noise at about the floor level (old kBgnOn).
    floor = 0.003
    x = white(100 * N, floor, seed=7)
    y = run(x, set(range(50, 100)), background_noise=True)
    p = floor ** 2
    late = [frame_db(y, k, p) for k in range(80, 100)]
    assert all(-6.0 < v < 3.0 for v in late)
    # Default (current NetEQ): silence.
    y0 = run(x, set(range(50, 100)))
    assert not np.any(y0[80 * N:])
    np.testing.assert_array_equal(y, run(x, set(range(50, 100)), background_noise=True))


@pytest.mark.parametrize("fs,frame_ms", [(8000, 10), (16000, 20), (32000, 10), (48000, 10)])
def test_other_rates_and_frame_lengths(fs, frame_ms):
    c = NetEqConcealer(sample_rate=fs, frame_ms=frame_ms)
    n = c.frame_samples
    t = np.arange(40 * n) / fs
    x = (0.3 * np.sin(2 * np.pi * 160 * t) + 0.1 * np.sin(2 * np.pi * 480 * t + 1)).astype(np.float32)
    frames = x.reshape(-1, n)
    lost = {10, 11, 12, 25}
    y = np.concatenate([c.process(None if i in lost else f) for i, f in enumerate(frames)])
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    assert np.corrcoef(y[10 * n:10 * n + n // 2], x[10 * n:10 * n + n // 2])[0, 1] > 0.9
    np.testing.assert_array_equal(y[14 * n:25 * n], x[14 * n:25 * n])


def test_runs_well_inside_real_time():
    """A sanity bound (half the 10 ms frame, on a loaded machine), not a speed claim: the
    benchmark is ``plc bench --method neteq``."""
    x = vowel(130, 300 * N, noise=0.01)
    rng = np.random.default_rng(2)
    lost = {i for i in range(300) if rng.random() < 0.3}
    c = NetEqConcealer()
    t0 = time.perf_counter()
    run(x, lost, concealer=c)
    per_frame = (time.perf_counter() - t0) / 300
    assert per_frame < 5e-3


# ------------------------------------------------------------ real speech
def _ljspeech_clip():
    files = sorted((DATA / "dev" / "ljspeech").glob("*.flac")) if DATA.exists() else []
    if not files:
        pytest.skip("shared LJSpeech data not available")
    sf = pytest.importorskip("soundfile")
    from scipy.signal import resample_poly
    a, sr = sf.read(str(files[0]), dtype="float64")
    if a.ndim > 1:
        a = a.mean(axis=1)
    return resample_poly(a, FS, sr).astype(np.float32)


def test_real_speech_loss_edges():
    x = _ljspeech_clip()
    n_frames = len(x) // N
    starts = list(range(20, n_frames - 10, 23))
    lost = set()
    for s in starts:
        lost |= set(range(s, s + 1 + s % 3))
    c = NetEqConcealer()
    y = run(x, lost, concealer=c)
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    dx = np.abs(np.diff(x[:len(y)]))
    for s in starts:
        e = s * N
        local = float(np.max(dx[e - 320:e + 320])) + 1e-4
        assert abs(float(y[e]) - float(y[e - 1])) <= 1.5 * local
        r = (s + 1 + s % 3) * N  # resume frame
        own = float(np.max(np.abs(np.diff(y[r - N:r])))) + 1e-4  # the concealed signal's own steps
        assert abs(float(y[r]) - float(y[r - 1])) <= 1.5 * max(local, own)
        np.testing.assert_array_equal(y[r + N - c.merge_tail:r + N], x[r + N - c.merge_tail:r + N])
    assert c.stats.merged_frames == len(starts)

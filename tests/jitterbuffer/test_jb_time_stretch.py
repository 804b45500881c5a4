"""Accelerate and preemptive expand by whole pitch periods (jitterbuffer/time_stretch.py)."""

from __future__ import annotations

import numpy as np
import pytest

from jitterbuffer.time_stretch import NoiseFloorTracker, accelerate, preemptive_expand

SR = 16000


def periodic(period: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cycle = np.convolve(rng.standard_normal(period), np.hanning(9), mode="same")
    x = np.tile(cycle, n // period + 2)[:n]
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def max_step(x: np.ndarray) -> float:
    return float(np.max(np.abs(np.diff(x.astype(np.float64)))))


@pytest.mark.parametrize("period", [45, 80, 133, 200])
def test_accelerate_removes_one_whole_period_without_a_step(period):
    x = periodic(period, 600)
    r = accelerate(x[100:580], SR)  # 30 ms of future, the 100 samples before already played
    assert r.change == period and r.period == period and r.correlation > 0.99
    assert len(r.audio) == 480 - period
    np.testing.assert_allclose(r.audio[-(480 - 2 * period):], x[100 + 2 * period:580])  # tail untouched
    joined = np.concatenate([x[:100], r.audio])
    assert max_step(joined) <= 1.05 * max_step(x)


def test_fast_accelerate_removes_several_periods_up_to_15_ms():
    x = periodic(60, 600)
    r = accelerate(x[:480], SR, fast=True)
    assert r.change == 240 and r.change % 60 == 0  # 4 periods = 15 ms
    assert max_step(r.audio) <= 1.05 * max_step(x)


@pytest.mark.parametrize("period", [50, 100, 150])
def test_preemptive_expand_inserts_one_period_without_a_step(period):
    x = periodic(period, 1000, seed=3)
    hist, fut = x[:480], x[480:800]
    r = preemptive_expand(hist, fut, SR)
    assert r.change == period and len(r.audio) == 320 + period
    np.testing.assert_allclose(r.audio[period:], fut)  # the new samples follow the inserted period
    assert max_step(np.concatenate([hist, r.audio])) <= 1.05 * max_step(x)


def test_noise_is_not_stretched_but_silence_is():
    rng = np.random.default_rng(0)
    noise = (0.3 * rng.standard_normal(480)).astype(np.float32)
    assert accelerate(noise, SR).change == 0
    assert preemptive_expand(noise, noise[:320], SR).change == 0
    quiet = (1e-4 * rng.standard_normal(480)).astype(np.float32)
    assert accelerate(quiet, SR, passive_power=1e-6).change > 0
    assert preemptive_expand(quiet, quiet[:320], SR, passive_power=1e-6).change > 0


def test_too_little_audio_is_left_alone():
    x = periodic(100, 120)
    assert accelerate(x[:60], SR).change == 0
    assert preemptive_expand(x[:30], x[30:60], SR).change == 0


def test_background_noise_tracker():
    bn = NoiseFloorTracker()
    assert bn.passive_threshold() == bn.floor_power
    bn.update(np.full(160, 0.01, np.float32))
    assert bn.power == pytest.approx(1e-4, rel=1e-3)
    for _ in range(100):  # one second of loud audio: rises by at most 1 dB
        bn.update(np.full(160, 0.5, np.float32))
    assert bn.power <= 1e-4 * 10 ** 0.11
    bn.update(np.zeros(160, np.float32))
    assert bn.power < 1e-10

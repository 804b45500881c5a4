"""Accelerate and preemptive expand: time-stretching by whole pitch periods (WSOLA-like).

Follows NetEQ's ``time_stretch.cc``, ``accelerate.cc`` and
``preemptive_expand.cc``:

1. The pitch period is found by autocorrelation on the signal decimated to
   4 kHz (lags 2.5..15 ms), then refined at the full rate by maximising the
   normalised correlation of the two segments that will be cross-faded.
2. If that correlation is at least ``threshold`` (0.9, NetEQ's
   ``kCorrelationThreshold``), or the segment is not active speech (its power
   is below 8 times the background noise, NetEQ's simple VAD), the signal is
   stretched; otherwise it is left alone (``change == 0``).
3. **Accelerate** removes one period ``P`` (``fast``: as many whole periods
   as fit in 15 ms, NetEQ's fast accelerate): the first ``P`` samples are
   cross-faded into the ``P`` samples that follow them. **Preemptive expand**
   inserts one period: the first ``P`` new samples are cross-faded into the
   last ``P`` samples already played, after which the new samples follow again.

Both work on the *future* samples only (what has not been played yet), and
both start with the very sample that would have been played next and end on
the sample that follows the cut, with raised-cosine cross-fades in between,
so the output has no step at either boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from plc.dsp import COARSE_DECIMATION, coarse_lags, raised_cosine_fade

MIN_PITCH_MS = 2.5
MAX_PITCH_MS = 15.0
#: NetEQ's ``kCorrelationThreshold`` (14746 in Q14).
CORRELATION_THRESHOLD = 0.9
#: Most audio one fast accelerate removes, ms (NetEQ: 15 ms out of 30).
MAX_FAST_REMOVAL_MS = 15.0


@dataclass
class TimeStretchConfig:
    """Settings of the jitter buffer's time stretching (``JitterBufferConfig.stretch``)."""

    #: Least correlation of the cross-faded pitch periods for an ordinary stretch (NetEQ's).
    correlation: float = CORRELATION_THRESHOLD
    #: The same for a fast accelerate, far above the target.
    fast_correlation: float = 0.7
#: Lags whose correlation is this close to the best count as equally good.
_PERIOD_TIE = 0.02


@dataclass
class StretchResult:
    """Outcome of one time-stretch call.

    Attributes
    ----------
    audio : np.ndarray
        The new future samples (float32) that replace the input ones.
    source_index : np.ndarray
        For each output sample, the index of the input future sample it mostly
        comes from (to carry timestamps and arrival times along).
    change : int
        Samples removed (accelerate) or inserted (preemptive expand); 0 when
        the signal was left alone.
    period : int
        Pitch period found, samples (0 if none was searched).
    correlation : float
        Normalised correlation of the cross-faded segments.
    active : bool
        Whether the segment was judged active speech.
    """

    audio: np.ndarray
    source_index: np.ndarray
    change: int
    period: int
    correlation: float
    active: bool


class NoiseFloorTracker:
    """The noise floor's power, for the time-stretch VAD (not NetEQ's LPC noise model, which is
    :class:`plc.concealers.neteq.background_noise.BackgroundNoise`).

    Follows the quietest received frames: drops to a quieter frame at once and
    rises by at most ``rise_db_per_s`` otherwise.

    Parameters
    ----------
    frame_ms : float
        Duration of the frames given to :meth:`update`, ms.
    rise_db_per_s : float
        Fastest rise of the estimate, dB per second.
    floor_power : float
        Power (mean square, full scale 1.0) below which a segment is always passive.
    """

    def __init__(self, frame_ms: float = 10.0, rise_db_per_s: float = 1.0, floor_power: float = 1e-6) -> None:
        self._rise = 10 ** (rise_db_per_s * frame_ms / 1000.0 / 10.0)
        self.floor_power = float(floor_power)
        self.power: Optional[float] = None

    def update(self, frame: np.ndarray) -> None:
        f = np.asarray(frame, dtype=np.float32)
        p = float(np.dot(f, f)) / max(1, len(f)) + 1e-12
        if self.power is None or p < self.power:
            self.power = p
        else:
            self.power = min(p, self.power * self._rise)

    def passive_threshold(self) -> float:
        """Mean-square power at or below which a segment is not active speech."""
        if self.power is None:
            return self.floor_power
        return max(8.0 * self.power, self.floor_power)

    def reset(self) -> None:
        self.power = None


def _corr64(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two float64 vectors of equal length."""
    den = (a @ a) * (b @ b)
    return float(a @ b / np.sqrt(den)) if den > 1e-40 else 0.0


def _pitch_limits(sample_rate: int) -> tuple[int, int]:
    return int(round(MIN_PITCH_MS * sample_rate / 1000)), int(round(MAX_PITCH_MS * sample_rate / 1000))


def _refine(score, candidates: list[int], lo: int, hi: int, radius: int) -> tuple[int, float]:
    """Best full-rate lag within ``radius`` of any coarse candidate; of lags scoring within
    ``_PERIOD_TIE`` of the best, the shortest (the period itself rather than a multiple)."""
    scores: dict[int, float] = {}
    # the period may hide behind a multiple of it in the decimated search: try the fractions too
    centres = [(p0, radius) for p0 in candidates]
    centres += [(int(round(p0 / k)), 2) for p0 in candidates for k in (2, 3, 4) if p0 / k >= lo]
    for p0, r in centres:
        for p in range(max(lo, p0 - r), min(hi, p0 + r) + 1):
            if p not in scores:
                scores[p] = score(p)
    if not scores:
        return -1, -2.0
    best_c = max(scores.values())
    best_p = min(p for p, c in scores.items() if c >= best_c - _PERIOD_TIE)
    return best_p, scores[best_p]


def _crossfade(fade_out: np.ndarray, fade_in: np.ndarray) -> np.ndarray:
    w = raised_cosine_fade(len(fade_out))
    return (fade_out * (1.0 - w) + fade_in * w).astype(np.float32)


def _no_stretch(future: np.ndarray, period: int = 0, corr: float = 0.0, active: bool = True) -> StretchResult:
    return StretchResult(np.asarray(future, dtype=np.float32), np.arange(len(future)), 0, period, corr, active)


def accelerate(future: np.ndarray, sample_rate: int = 16000, fast: bool = False,
               passive_power: float = 0.0, threshold: float = CORRELATION_THRESHOLD,
               max_removal: Optional[int] = None) -> StretchResult:
    """Remove whole pitch periods from the start of ``future`` (unplayed samples).

    Parameters
    ----------
    future : np.ndarray
        Samples not yet played; 30 ms (480 at 16 kHz) lets every period be found.
    sample_rate : int
        Hz.
    fast : bool
        Remove as many whole periods as fit in 15 ms instead of one.
    passive_power : float
        Mean-square power at or below which the segment is not active speech
        (stretched whatever its correlation); see :class:`NoiseFloorTracker`.
    threshold : float
        Least normalised correlation for active speech.
    max_removal : int, optional
        Cap on the samples removed.
    """
    future = np.asarray(future, dtype=np.float32)
    n = len(future)
    pmin, pmax = _pitch_limits(sample_rate)
    pmax = min(pmax, n // 2)
    if pmax < pmin:
        return _no_stretch(future)
    cands = coarse_lags(future, pmin, pmax)
    if not cands:
        return _no_stretch(future)
    f64 = future.astype(np.float64)
    period, corr = _refine(lambda p: _corr64(f64[:p], f64[p:2 * p]), cands, pmin, pmax, COARSE_DECIMATION)
    power = float(np.mean(np.square(future[:2 * period], dtype=np.float64)))
    active = power > passive_power
    if active and corr < threshold:
        return _no_stretch(future, period, corr, active)
    removal = period
    if fast:
        limit = int(MAX_FAST_REMOVAL_MS * sample_rate / 1000)
        k = max(1, min(limit // period, n // (2 * period)))
        removal = k * period
    if max_removal is not None and removal > max_removal:
        removal = (max_removal // period) * period
        if removal == 0:
            return _no_stretch(future, period, corr, active)
    out = np.concatenate([_crossfade(future[:removal], future[removal:2 * removal]), future[2 * removal:]])
    return StretchResult(out, np.arange(removal, n), removal, period, corr, active)


def preemptive_expand(history: np.ndarray, future: np.ndarray, sample_rate: int = 16000,
                      passive_power: float = 0.0, threshold: float = CORRELATION_THRESHOLD) -> StretchResult:
    """Insert one pitch period before ``future``, cross-faded against the played ``history``.

    Parameters
    ----------
    history : np.ndarray
        The most recently played samples (30 ms at 16 kHz is enough); never changed.
    future : np.ndarray
        Samples not yet played (at least one pitch period).
    """
    future = np.asarray(future, dtype=np.float32)
    history = np.asarray(history, dtype=np.float32)
    n, L = len(future), len(history)
    pmin, pmax = _pitch_limits(sample_rate)
    pmax = min(pmax, n, L)
    if pmax < pmin:
        return _no_stretch(future)
    cands = coarse_lags(history[::-1], pmin, pmax)
    if not cands:
        return _no_stretch(future)
    h64, f64 = history.astype(np.float64), future.astype(np.float64)
    period, corr = _refine(lambda p: _corr64(h64[L - p:], f64[:p]), cands, pmin, pmax, COARSE_DECIMATION)
    seg = np.concatenate([history[L - period:], future[:period]])
    power = float(np.mean(np.square(seg, dtype=np.float64)))
    active = power > passive_power
    if active and corr < threshold:
        return _no_stretch(future, period, corr, active)
    out = np.concatenate([_crossfade(future[:period], history[L - period:]), future])
    index = np.concatenate([np.arange(period), np.arange(n)])
    return StretchResult(out, index, period, period, corr, active)

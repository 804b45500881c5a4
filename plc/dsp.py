"""Signal processing shared by the concealers, the jitter buffer and the aiortc integration.

Only what more than one of them uses lives here (numpy / scipy, no state beyond a filter's):

* :func:`raised_cosine_fade`: the fade every cross-fade of the project uses;
* :func:`levinson_durbin`: LPC from an autocorrelation (WebRTC's ``WebRtcSpl_LevinsonDurbin``);
* :func:`sanitize_frame`: exactly one frame of finite samples in [-1, 1], whatever a concealer made;
* :func:`align_and_crossfade`: a continuation cross-faded into a received frame at the best lag;
* :func:`coarse_lags`: pitch-lag candidates by normalised correlation at a quarter of the rate;
* :class:`StreamUpsampler`: integer-factor upsampling of a stream, chunk by chunk.

The algorithms of one method stay with it (NetEQ's ``DspHelper`` in
:mod:`plc.concealers.neteq.dsp_helper`, G.711's pitch search in :mod:`plc.concealers.g711`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: Decimation of :func:`coarse_lags` (a 16 kHz signal is searched at 4 kHz).
COARSE_DECIMATION = 4
#: Correlation window of :func:`coarse_lags`, ms of the decimated signal.
_COARSE_WINDOW_MS = 12.5


def raised_cosine_fade(n: int) -> np.ndarray:
    """Fade-in window of ``n`` samples rising from ~0 to ~1 (its mirror fades out).

    Sums to one with its time-reverse, so ``a * (1 - w) + b * w`` keeps the level.
    """
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)


def levinson_durbin(r: np.ndarray, order: int) -> np.ndarray | None:
    """Levinson-Durbin recursion; ``A(z) = 1 + a1 z^-1 + ...`` or None if unstable.

    Mirrors ``WebRtcSpl_LevinsonDurbin``, which reports instability when a
    reflection coefficient reaches 32750 / 32768 in magnitude.
    """
    a = np.zeros(order + 1)
    a[0] = 1.0
    err = float(r[0])
    if err <= 0.0:
        return None
    for i in range(1, order + 1):
        acc = float(r[i] + np.dot(a[1:i], r[i - 1:0:-1]))
        k = -acc / err
        if abs(k) > 32750.0 / 32768.0:
            return None
        a[1:i] = a[1:i] + k * a[i - 1:0:-1]
        a[i] = k
        err *= 1.0 - k * k
        if err <= 0.0:
            return None
    return a


#: Default lag search and cross-fade length (samples) of :func:`align_and_crossfade` (2.5 ms at 16 kHz).
DEFAULT_MAX_ALIGN_LAG = 48
DEFAULT_MERGE_SAMPLES = 40


def align_and_crossfade(continuation: np.ndarray, frame: np.ndarray, max_align_lag: int = DEFAULT_MAX_ALIGN_LAG,
                        merge_samples: int = DEFAULT_MERGE_SAMPLES) -> np.ndarray:
    """``frame`` (received after a loss) with its first ``merge_samples`` cross-faded from
    ``continuation`` (what would have played next: at least ``max_align_lag + merge_samples``
    samples), at the lag in 0..``max_align_lag`` (even lags) where the continuation best
    correlates with the frame; the continuation moves to that lag over its first samples, so
    the output starts from the sample that continues what was played."""
    n = merge_samples
    target = frame[:n]
    best_lag, best = 0, -np.inf
    tn = np.sqrt(np.dot(target, target)) + 1e-9
    for lag in range(0, max_align_lag + 1, 2):
        seg = continuation[lag:lag + n]
        score = np.dot(seg, target) / (tn * (np.sqrt(np.dot(seg, seg)) + 1e-9))
        if score > best:
            best_lag, best = lag, score
    seg = continuation[best_lag:best_lag + n]
    if best_lag:
        ramp = raised_cosine_fade(min(n, 32))
        seg = seg.copy()
        seg[:len(ramp)] = continuation[:len(ramp)] * (1 - ramp) + seg[:len(ramp)] * ramp
    w = raised_cosine_fade(n)
    out = frame.copy()
    out[:n] = seg * (1 - w) + target * w
    return out


def sanitize_frame(samples: np.ndarray, n: int) -> np.ndarray:
    """Exactly ``n`` finite float32 samples clipped to [-1, 1]; ``RuntimeError`` if there are not ``n``."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if len(samples) != n:
        raise RuntimeError(f"concealer produced {len(samples)} samples instead of {n}")
    if not np.all(np.isfinite(samples)):
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(samples, -1.0, 1.0)


def coarse_lags(seg: np.ndarray, min_lag: int, max_lag: int, count: int = 3) -> list[int]:
    """The ``count`` best local maxima (full-rate lags) of the normalised correlation of
    ``seg[0:W]`` and ``seg[lag:lag+W]``, searched on ``seg`` decimated to a quarter of its rate."""
    n4 = len(seg) // COARSE_DECIMATION
    if n4 < 4:
        return []
    s4 = seg[: n4 * COARSE_DECIMATION].astype(np.float64).reshape(n4, COARSE_DECIMATION).mean(axis=1)
    lo = max(1, int(np.ceil(min_lag / COARSE_DECIMATION)))
    hi = int(max_lag // COARSE_DECIMATION)
    window = min(int(round(_COARSE_WINDOW_MS * 4)), n4 - hi)
    if hi < lo or window < 4:
        return []
    rows = sliding_window_view(s4, window)[lo:hi + 1]
    ref = s4[:window]
    num = rows @ ref
    c = num / (np.sqrt(np.einsum("ij,ij->i", rows, rows) * np.dot(ref, ref)) + 1e-20)
    padded = np.concatenate([[-np.inf], c, [-np.inf]])
    peaks = np.flatnonzero((padded[1:-1] >= padded[:-2]) & (padded[1:-1] >= padded[2:]))
    if len(peaks) == 0:
        peaks = np.array([int(np.argmax(c))])
    best = peaks[np.argsort(c[peaks])[::-1][:count]]
    return [(lo + int(i)) * COARSE_DECIMATION for i in best]


def coarse_lag(seg: np.ndarray, min_lag: int, max_lag: int) -> Optional[int]:
    """The best lag of :func:`coarse_lags`, or None if ``seg`` is too short to search."""
    lags = coarse_lags(seg, min_lag, max_lag, count=1)
    return lags[0] if lags else None


class StreamUpsampler:
    """Integer-factor upsampling of a stream in chunks, filter state kept across chunks.

    A windowed-sinc low-pass FIR (Kaiser window) applied to the zero-stuffed
    input with ``scipy.signal.lfilter`` and its state, so consecutive chunks
    join seamlessly and every chunk of ``n`` samples gives exactly
    ``n * factor`` samples. Delay: ``(taps - 1) / 2`` output samples.
    """

    def __init__(self, factor: int, taps_per_phase: int = 48, cutoff: float = 0.92) -> None:
        from scipy.signal import firwin

        self.factor = int(factor)
        if self.factor < 1:
            raise ValueError("factor must be at least 1")
        n = self.factor * int(taps_per_phase) + 1
        self._h = (firwin(n, cutoff / self.factor, window=("kaiser", 8.0)) * self.factor) if self.factor > 1 else None
        self._zi = np.zeros(n - 1) if self._h is not None else None

    @property
    def delay_samples(self) -> int:
        """Group delay in output samples."""
        return 0 if self._h is None else (len(self._h) - 1) // 2

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from scipy.signal import lfilter

        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if self._h is None:
            return x.astype(np.float32)
        up = np.zeros(len(x) * self.factor)
        up[:: self.factor] = x
        y, self._zi = lfilter(self._h, 1.0, up, zi=self._zi)
        return y.astype(np.float32)

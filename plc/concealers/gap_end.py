"""The end of a gap on its way into the next packet, where a jitter buffer already holds it.

When a burst's last lost packet is due, the packet after the burst has usually arrived (a
jitter buffer plays 40 ms or more behind the network), or with in-band FEC the packet carrying
a copy of the burst's last packet. Its audio (or the copy's), decoded ahead on a copy of
the decoder's state (:meth:`~plc.codecs.payload.PayloadDecoder.decode_ahead`), is extended
backwards in time by repeating its first pitch period, and the last :data:`GAP_END_MS` of the
codec's concealment are cross-faded into that extension: the gap ends on the way into the
audio that follows instead of on a concealment that has decayed. Only the played audio
changes; the decoder's state, and so every packet after the gap, stays as it was.

Measured with ``eval.steering_probe`` (``interp=320:min_burst=2``) on the dev tuning split
(MODEL.md): from a loss's second packet on (:data:`GAP_END_AFTER_MS`) it adds +0.014 / +0.025
PLCMOS under bursts of 3 / 6 and +0.02 to +0.05 PESQ; on a loss of one packet (where the
model's steered packet is the whole gap) it adds nothing, so it is not done there. With in-band
FEC (aiortc's stream, ``eval.opus_mode_probe --sender aiortc --fec --lookahead``) +0.026 / +0.008
under bursts of 6 / 3; in the browser-like hybrid stream without FEC +0.033 under bursts of 6.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..dsp import raised_cosine_fade

#: The last this many ms of a gap are cross-faded into the next packet's backward extension.
GAP_END_MS = 20
#: A gap is ended this way only once it has run this long (from a loss's second 20 ms packet on).
GAP_END_AFTER_MS = 20
#: Pitch periods searched in the next packet's audio, ms (400 Hz down to 67 Hz).
MIN_PERIOD_MS = 2.5
MAX_PERIOD_MS = 15.0
#: Samples of the next packet's audio the period search needs beyond the longest period.
_MIN_OVERLAP_MS = 5.0


def pitch_period(audio: np.ndarray, sample_rate: int) -> int:
    """The lag (samples) at which ``audio`` best matches itself (normalised autocorrelation),
    between :data:`MIN_PERIOD_MS` and :data:`MAX_PERIOD_MS` (the longest the audio allows)."""
    return periodicity(audio, sample_rate)[0]


def periodicity(audio: np.ndarray, sample_rate: int) -> tuple[int, float]:
    """:func:`pitch_period` and the normalised autocorrelation at that lag (1: periodic)."""
    a = np.asarray(audio, dtype=np.float64)
    n = len(a)
    lo = max(1, int(MIN_PERIOD_MS * sample_rate / 1000))
    hi = min(int(MAX_PERIOD_MS * sample_rate / 1000), n - int(_MIN_OVERLAP_MS * sample_rate / 1000))
    if hi < lo:
        return max(1, n), 0.0
    lags = np.arange(lo, hi + 1)
    products = np.correlate(a, a, mode="full")[n - 1 + lags]   # sum a[i] a[i + lag]
    energy = np.concatenate(([0.0], np.cumsum(a * a)))
    head = energy[n - lags]                                    # sum of a[:n - lag] squared
    tail = energy[n] - energy[lags]                            # sum of a[lag:] squared
    score = products / (np.sqrt(head * tail) + 1e-12)
    best = int(np.argmax(score))
    return int(lags[best]), float(score[best])


def backward_extension(ahead: np.ndarray, n_samples: int, sample_rate: int) -> np.ndarray:
    """``n_samples`` that lead into ``ahead``: its first pitch period repeated backwards in time
    (the last sample returned is the one before ``ahead[0]``)."""
    ahead = np.asarray(ahead, dtype=np.float32)
    period = min(pitch_period(ahead, sample_rate), len(ahead))
    return ahead[(np.arange(n_samples) - n_samples) % period]


def end_gap(gap: np.ndarray, ahead: Optional[np.ndarray], sample_rate: int) -> Optional[np.ndarray]:
    """``gap`` (the concealment that ends where ``ahead`` begins) with its last :data:`GAP_END_MS`
    cross-faded into ``ahead``'s backward extension; None (play ``gap`` as it is) if ``ahead``
    is missing, shorter than the period search needs (20 ms) or not finite, or ``gap`` is empty."""
    if ahead is None or len(gap) == 0:
        return None
    gap = np.asarray(gap, dtype=np.float32)
    ahead = np.asarray(ahead, dtype=np.float32)
    if len(ahead) < int((MAX_PERIOD_MS + _MIN_OVERLAP_MS) * sample_rate / 1000) or not np.all(np.isfinite(ahead)):
        return None
    n = min(len(gap), int(GAP_END_MS * sample_rate / 1000))
    w = raised_cosine_fade(n)
    out = gap.copy()
    out[-n:] = (1 - w) * gap[-n:] + w * backward_extension(ahead, n, sample_rate)
    return out

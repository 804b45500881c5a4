"""The signal side of expand and merge: the pluggable concealer, guarded.

The jitter buffer hands every 10 ms frame (decoded, or ``None`` when it
expands) to a :class:`plc.concealers.Concealer`; the concealer makes the
expand frames and its first received frame after a loss is the merge
(cross-fade back). :class:`GuardedConcealer` wraps it so that a call never
goes silent or crashes:

* if the concealer raises (or returns something that is not one finite
  frame), that frame comes from a plain classic concealer instead
  (:class:`ClassicFallback`: pitch-period repetition with a G.711-style
  fade, and a cross-fade back into received audio), and
  ``fallback_frames`` counts it; the rest of that loss run and its merge stay
  with the fallback, and the concealer's history is kept in step;
* at the boundaries of expand and merge a step larger than the signal's own
  slope (a concealer that drops straight to silence, say) is smoothed away
  over ``declick_ms`` (:func:`declick`), so the output stays continuous
  whatever concealer is plugged in.
"""

from __future__ import annotations

from collections import deque
from typing import Optional

import numpy as np

from plc.concealers.base import Concealer
from plc.dsp import coarse_lag, raised_cosine_fade


def declick(frame: np.ndarray, previous: np.ndarray, ramp: int) -> tuple[np.ndarray, bool]:
    """Remove a step between ``previous`` (played samples) and ``frame``.

    The step is the jump from the last played sample to the first new one,
    less what the previous slope predicts. If it exceeds three times the
    largest sample-to-sample change of ``previous`` (and 1/1000 of full scale),
    the offset is added to the start of ``frame`` and faded out over ``ramp``
    samples. Returns the frame and whether it was changed.
    """
    if len(previous) < 2 or len(frame) == 0:
        return frame, False
    prev = previous.astype(np.float64)
    slope = prev[-1] - prev[-2]
    expected = prev[-1] + slope
    step = float(frame[0]) - expected
    limit = max(3.0 * float(np.max(np.abs(np.diff(prev)))), 1e-3)
    if abs(step) <= limit:
        return frame, False
    n = min(ramp, len(frame))
    out = frame.astype(np.float32, copy=True)
    out[:n] -= (step * (1.0 - raised_cosine_fade(n))).astype(np.float32)
    return np.clip(out, -1.0, 1.0), True


class ClassicFallback:
    """Pitch-period repetition, the plain concealer used when the real one fails.

    Repeats the last pitch period of the played signal (found by
    autocorrelation), full level for 10 ms then fading linearly to silence
    over 50 ms (G.711 Appendix I's schedule), and cross-fades back into
    received audio over ``merge_ms``.
    """

    def __init__(self, sample_rate: int = 16000, frame_samples: int = 160, merge_ms: float = 5.0) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self.merge_samples = int(merge_ms * sample_rate / 1000)
        self.reset()

    def reset(self) -> None:
        self._cycle: Optional[np.ndarray] = None
        self._phase = 0
        self._lost = 0

    @property
    def active(self) -> bool:
        """True while in a loss run."""
        return self._cycle is not None

    def _continuation(self, n: int, start: int) -> np.ndarray:
        assert self._cycle is not None
        idx = (self._phase + np.arange(n)) % len(self._cycle)
        # gain: 1 for the first 10 ms, then -20 % per 10 ms, silent after 60 ms
        t = (start + np.arange(n)) / self.sample_rate
        gain = np.clip(1.0 - (t - 0.010) / 0.050, 0.0, 1.0)
        return (self._cycle[idx] * gain).astype(np.float32)

    def conceal(self, history: np.ndarray) -> np.ndarray:
        """One lost frame, continuing ``history`` (the played samples)."""
        if self._cycle is None:
            pmin, pmax = int(0.0025 * self.sample_rate), int(0.015 * self.sample_rate)
            lag = coarse_lag(history[::-1], pmin, pmax) if len(history) >= 2 * pmax else None
            period = lag if lag else self.frame_samples
            self._cycle = history[-period:].astype(np.float32).copy()
            self._phase = 0
            self._lost = 0
        out = self._continuation(self.frame_samples, self._lost * self.frame_samples)
        self._phase = (self._phase + self.frame_samples) % len(self._cycle)
        self._lost += 1
        return out

    def merge(self, frame: np.ndarray) -> np.ndarray:
        """The first received frame after a loss run: cross-fade into it."""
        if self._cycle is None:
            return frame
        n = min(self.merge_samples, len(frame))
        cont = self._continuation(n, self._lost * self.frame_samples)
        w = raised_cosine_fade(n)
        out = frame.astype(np.float32, copy=True)
        out[:n] = cont * (1.0 - w) + out[:n] * w
        self.reset()
        return out


class GuardedConcealer:
    """A concealer that never fails: fallback on error, de-click at expand/merge boundaries.

    Parameters
    ----------
    concealer : Concealer
        The real concealer (its ``frame_samples`` sets the frame size).
    declick_ms : float
        Length of the de-click ramp, ms.

    Attributes
    ----------
    fallback_frames : int
        Frames that came from the fallback because the concealer failed.
    declicked_frames : int
        Frames whose start was smoothed.
    """

    def __init__(self, concealer: Concealer, declick_ms: float = 2.0, history_ms: float = 40.0) -> None:
        self.concealer = concealer
        self.sample_rate = concealer.sample_rate
        self.frame_samples = concealer.frame_samples
        self._ramp = max(1, int(declick_ms * self.sample_rate / 1000))
        self._history = deque(maxlen=max(2, int(history_ms * self.sample_rate / 1000 // self.frame_samples) + 1))
        self.fallback = ClassicFallback(self.sample_rate, self.frame_samples)
        self.fallback_frames = 0
        self.declicked_frames = 0
        self.errors: deque[str] = deque(maxlen=5)
        self._in_loss = False

    def history(self) -> np.ndarray:
        """The last ``history_ms`` of concealer output."""
        if not self._history:
            return np.zeros(self.frame_samples, dtype=np.float32)
        return np.concatenate(list(self._history))

    def process(self, frame: Optional[np.ndarray]) -> np.ndarray:
        """One frame out for one frame (or ``None``) in; see the class docstring."""
        # the start of an expand, or a merge
        boundary = (frame is None) != self._in_loss
        out: Optional[np.ndarray] = None
        if not self.fallback.active:
            try:
                out = self._check(self.concealer.process(frame))
            except Exception as exc:  # noqa: BLE001 - any concealer failure falls back
                self.errors.append(f"{type(exc).__name__}: {exc}")
                out = None
        if out is None:
            self.fallback_frames += 1
            hist = self.history()
            out = self.fallback.conceal(hist) if frame is None else self.fallback.merge(
                np.asarray(frame, dtype=np.float32))
            self._resync(out, frame is None)
        if boundary and self._history:
            out, changed = declick(out, self._history[-1], self._ramp)
            self.declicked_frames += int(changed)
        self._in_loss = frame is None
        self._history.append(out)
        return out

    def _check(self, out: np.ndarray) -> Optional[np.ndarray]:
        out = np.asarray(out, dtype=np.float32).reshape(-1)
        peak = float(np.abs(out).max()) if out.shape == (self.frame_samples,) else float("nan")
        if peak <= 1.0:
            return out
        if not np.isfinite(peak):
            self.errors.append(f"bad concealer output (shape {out.shape}, not finite or wrong length)")
            return None
        return np.clip(out, -1.0, 1.0)

    def _resync(self, out: np.ndarray, lost: bool) -> None:
        """Keep the real concealer's history in step with what was played by the fallback."""
        if lost:
            return
        try:
            self.concealer.process(out)
        except Exception:  # noqa: BLE001 - it is broken already; the fallback covers it
            pass

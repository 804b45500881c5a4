"""The one fallback: a concealer that owns a primary, a classic concealer and the deadline.

A call must never go silent or crash because a concealer failed or ran late. Every such
decision is made here, in one place, for any concealer:

* the primary cannot conceal at all (:attr:`~plc.concealers.base.Concealer.unavailable_reason`:
  a model that did not load): the classic conceals every loss;
* the primary raises (a :class:`~plc.concealers.base.ConcealmentError` with its reason, such as
  a frame it refuses to play, or anything else), or returns something that is not one finite
  frame: the classic conceals the rest of that loss and merges back into the received audio;
* the primary has a real-time ``deadline_ms`` and its recent frames took longer (a decaying
  maximum of their times): the classic conceals the rest of that loss, and the primary is
  tried again later. Frames where the primary plays the codec's own concealment as fed
  (:attr:`~plc.concealers.base.Concealer.plays_codec_concealment`) cost it nothing: they are
  neither timed nor held to the deadline.

Each frame the classic makes in the primary's place is counted in ``stats.fallback_frames`` and
``fallback_reason`` says why the last one was made; the primary's frames that played the codec's
concealment or noise are counted as the primary counts them (``stats.codec_concealed_frames``,
``stats.noise_concealed_frames``). Both concealers hear every frame: the
classic takes the primary's concealment as its history (:meth:`~plc.concealers.base.Concealer.observe`),
so it continues from what was played, and the primary is kept in step with the classic's
frames (:meth:`~plc.concealers.base.Concealer.follow`). If the classic fails too, the frame is
silent and still counted.
"""

from __future__ import annotations

from collections import deque
from time import perf_counter
from typing import Optional

import numpy as np

from .base import Concealer, ConcealmentError

#: Per-frame timings kept in :attr:`FallbackConcealer.frame_times_ms` (the deadline uses a decaying maximum).
FRAME_TIMES_KEPT = 1000


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, ConcealmentError) else f"{type(exc).__name__}: {exc}"


class FallbackConcealer(Concealer):
    """``primary`` concealing, ``classic`` taking over where it fails or would run late.

    Parameters
    ----------
    primary : Concealer
        The concealer asked first (its ``sample_rate`` and ``frame_ms`` are the wrapper's).
    classic : Concealer
        The concealer that takes over (same rate and frame).
    deadline_ms : float or None
        Per-frame budget of the primary; ``None``: none (offline, where a busy machine must not
        change the output).

    Attributes
    ----------
    fallback_reason : str or None
        Why the classic last made a frame (or why the primary is unavailable), else None.
    frame_times_ms : deque of float
        How long the primary took for each of its last :data:`FRAME_TIMES_KEPT` lost frames, ms.
    """

    def __init__(self, primary: Concealer, classic: Concealer, deadline_ms: Optional[float] = None) -> None:
        if (classic.sample_rate, classic.frame_samples) != (primary.sample_rate, primary.frame_samples):
            raise ValueError("the classic concealer must run at the primary's rate and frame length")
        self.primary = primary
        self.classic = classic
        self.deadline_ms = deadline_ms
        self.name = primary.name
        self.uses_codec_concealment = primary.uses_codec_concealment
        self.steer_codec = primary.steer_codec
        self.ends_gaps_ahead = primary.ends_gaps_ahead
        self.frame_times_ms: deque[float] = deque(maxlen=FRAME_TIMES_KEPT)
        self.fallback_reason: Optional[str] = primary.unavailable_reason
        super().__init__(primary.sample_rate, primary.frame_ms, history_ms=primary.frame_ms)

    def reset(self) -> None:
        super().reset()
        self.primary.reset()
        self.classic.reset()
        self._classic_plays = False  # the classic conceals the rest of this loss
        self._recent_ms = 0.0        # decaying maximum of the primary's frame times

    @property
    def unavailable_reason(self) -> Optional[str]:
        return None  # the classic is always there

    @property
    def plays_codec_concealment(self) -> bool:
        return not self._classic_plays and self.primary.plays_codec_concealment

    def feed_codec_concealment(self, samples: np.ndarray, mode: Optional[str] = None) -> None:
        self.primary.feed_codec_concealment(samples, mode)

    def propose_continuation(self, n_samples: int, mode: Optional[str]) -> Optional[np.ndarray]:
        """The primary's proposal, held to the deadline like its frames (timed, and not asked
        while it is late); None if it is unavailable, late, raises or proposes no finite
        ``n_samples``: the codec's own concealment then plays."""
        if self.lost_frames > 0:
            return None
        reason = self._late()   # a late primary is asked again later (the decaying maximum halves)
        if reason is not None:
            self.fallback_reason = reason
            return None
        start = perf_counter()
        try:
            out = self.primary.propose_continuation(n_samples, mode)
        except Exception as exc:  # noqa: BLE001 - the codec's own concealment covers it
            self.fallback_reason = _reason(exc)
            return None
        if out is None:
            return None
        self._record_time(start)
        out = np.asarray(out, dtype=np.float32).reshape(-1)
        if out.shape != (n_samples,) or not np.all(np.isfinite(out)):
            self.fallback_reason = f"bad continuation proposed (shape {out.shape}, not finite or wrong length)"
            return None
        return out

    # ----------------------------------------------------------------- frames
    def _on_received(self, frame: np.ndarray) -> None:
        self._run_primary(frame)  # a received frame plays as it is, whatever the primary says
        self._run_classic(frame)

    def _conceal(self) -> np.ndarray:
        if self.lost_frames == 0:
            self._classic_plays = False
        if not self._classic_plays:
            reason = self._late()
            if reason is None:
                start = perf_counter()
                made = self.primary.stats
                sources = made.codec_concealed_frames, made.noise_concealed_frames
                out = self._run_primary(None)
                if out is not None:
                    # where the primary's frame came from, in the stats of the frames played
                    self.stats.codec_concealed_frames += made.codec_concealed_frames - sources[0]
                    self.stats.noise_concealed_frames += made.noise_concealed_frames - sources[1]
                    if not self.primary.plays_codec_concealment:  # the codec's frames cost it nothing
                        self._record_time(start)
                    self.classic.observe(out)  # the classic continues from what was played
                    return out
            else:
                self.fallback_reason = reason
            self._classic_plays = True  # the rest of this loss
        return self._classic_frame(None)

    def _resume(self, frame: np.ndarray) -> np.ndarray:
        if self._classic_plays:  # the classic's loss: its merge, not counted as a fallback frame
            out = self._run_classic(frame)
            self._follow(out, lost=False)
            return out
        out = self._run_primary(frame)
        classic = self._run_classic(frame)  # the classic hears the received frame either way
        if out is None:
            self.stats.fallback_frames += 1
            self._follow(classic, lost=False)
            return classic
        return out

    # ----------------------------------------------------------------- helpers
    def _late(self) -> Optional[str]:
        """Why the primary must not make this frame (unavailable, or would miss the deadline), or None."""
        if self.primary.plays_codec_concealment:  # the codec's frames: no model, no cost
            return None
        unavailable = self.primary.unavailable_reason
        if unavailable:
            return unavailable
        if self.deadline_ms is not None and self._recent_ms > self.deadline_ms:
            reason = (f"recent frames took up to {self._recent_ms:.2f} ms, over the "
                      f"{self.deadline_ms:g} ms deadline")
            self._recent_ms *= 0.5  # try the primary again later
            return reason
        return None

    def _record_time(self, start: float) -> None:
        """The primary's work since ``start`` (``perf_counter``), kept and held to the deadline."""
        elapsed = (perf_counter() - start) * 1000.0
        self.frame_times_ms.append(elapsed)
        self._recent_ms = max(elapsed, 0.9 * self._recent_ms)

    def _run_primary(self, frame: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """The primary's frame, or None (the reason recorded, the primary resynchronised by the
        caller) if it raised or made something that is not one finite frame."""
        try:
            out = np.asarray(self.primary.process(frame), dtype=np.float32).reshape(-1)
        except Exception as exc:  # noqa: BLE001 - any failure of the primary falls back
            self.fallback_reason = _reason(exc)
        else:
            if out.shape == (self.frame_samples,) and np.all(np.isfinite(out)):
                return out
            self.fallback_reason = f"bad concealer output (shape {out.shape}, not finite or wrong length)"
        if frame is not None and self.lost_frames == 0:  # a received frame: counted, and the primary resynchronised
            self.stats.fallback_frames += 1
            self._follow(frame, lost=False)
        return None

    def _run_classic(self, frame: Optional[np.ndarray]) -> np.ndarray:
        try:
            return np.asarray(self.classic.process(frame), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - the last resort is silence (a received frame as it is)
            self.fallback_reason = f"the classic concealer failed too: {_reason(exc)}"
            return np.zeros(self.frame_samples, np.float32) if frame is None else frame

    def _classic_frame(self, frame: Optional[np.ndarray]) -> np.ndarray:
        out = self._run_classic(frame)
        self.stats.fallback_frames += 1
        self._follow(out, lost=frame is None)
        return out

    def _follow(self, played: np.ndarray, lost: bool) -> None:
        try:
            self.primary.follow(played, lost)
        except Exception:  # noqa: BLE001 - it is broken already; the classic covers it
            pass

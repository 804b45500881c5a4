"""De-clicking at the boundaries of expand and merge, whatever concealer is plugged in.

The jitter buffer hands every 10 ms frame (decoded, or ``None`` when it expands) to its
concealer (behind :class:`plc.concealers.FallbackConcealer`, which covers a concealer that
fails or runs late). At the start of an expand and at a merge, a step larger than the signal's
own slope (a concealer that drops straight to silence, say) is smoothed away over
``declick_ms`` (:func:`declick`), so the output stays continuous.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from plc.dsp import raised_cosine_fade


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


class Declicker:
    """:func:`declick` at each boundary between received and concealed frames.

    Attributes
    ----------
    declicked_frames : int
        Frames whose start was smoothed.
    """

    def __init__(self, sample_rate: int = 16000, declick_ms: float = 2.0) -> None:
        self._ramp = max(1, int(declick_ms * sample_rate / 1000))
        self._previous: Optional[np.ndarray] = None
        self._in_loss = False
        self.declicked_frames = 0

    def process(self, out: np.ndarray, lost: bool) -> np.ndarray:
        """``out`` (the frame the concealer played; ``lost``: for a lost frame), de-clicked if it
        starts an expand or is a merge."""
        if lost != self._in_loss and self._previous is not None:  # the start of an expand, or a merge
            out, changed = declick(out, self._previous, self._ramp)
            self.declicked_frames += int(changed)
        self._in_loss = lost
        self._previous = out
        return out

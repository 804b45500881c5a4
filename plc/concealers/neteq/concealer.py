"""``NetEqConcealer``: Expand and Merge behind the streaming :class:`~plc.concealers.base.Concealer`.

The parts of ``neteq_impl.cc`` that drive the operations on one frame at a time:
``DoExpand`` (periods are appended until at least one frame plus ``overlap_length``
samples are pending; the frame is played from the front and the rest stays pending, so the
next period can cross-fade into it exactly as NetEQ's sync buffer allows), ``DoMerge`` (the
first received frame after a loss) and, on other received frames, the background-noise update.
"""

from __future__ import annotations

import numpy as np

from ..base import Concealer
from .background_noise import INT16_SCALE, VEC_LEN, BackgroundNoise
from .expand import Expand
from .merge import Merge
from .random_vector import RandomVector

#: NetEQ's sample rates, Hz.
SAMPLE_RATES = (8000, 16000, 32000, 48000)


class NetEqConcealer(Concealer):
    """WebRTC NetEQ's Expand + Merge (:mod:`plc.concealers.neteq`: the port and its adaptations).

    Parameters
    ----------
    sample_rate : int
        8000, 16000, 32000 or 48000 Hz (NetEQ's rates).
    frame_ms : int
        Frame length in milliseconds (NetEQ's decision interval is 10 ms).
    history_ms : int
        Played history kept; the analysis needs 32 ms.
    background_noise : bool
        Fade into an estimated background noise as NetEQ's old ``kBgnOn`` mode
        did, instead of into silence as current NetEQ does (default False).
    merge_tail_ms : float
        The last part of the first received frame after a loss that is always
        played unchanged.

    Attributes
    ----------
    expand : Expand
        The expand operation and its state (reset at the start of every loss).
    merge : Merge
    random_vector : RandomVector
    background_noise : BackgroundNoise
    """

    name = "neteq"

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 10, history_ms: int = 200,
                 background_noise: bool = False, merge_tail_ms: float = 2.0) -> None:
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(f"neteq runs at 8, 16, 32 or 48 kHz, not {sample_rate} Hz")
        self.background_noise_enabled = bool(background_noise)
        self.merge_tail = min(int(round(merge_tail_ms * sample_rate / 1000)), sample_rate * frame_ms // 1000)
        super().__init__(sample_rate, frame_ms, max(int(history_ms), 40))

    def reset(self) -> None:
        super().reset()
        self.random_vector = RandomVector()
        self.background_noise = BackgroundNoise()
        self.expand = Expand(self.sample_rate, self.random_vector, self.background_noise,
                             self.background_noise_enabled)
        self.merge = Merge(self.expand, self.sample_rate, self.merge_tail)

    def _on_received(self, frame: np.ndarray) -> None:
        if self.background_noise_enabled:
            keep = max(VEC_LEN - len(frame), 0)
            buf = np.concatenate([self.history[len(self.history) - keep:], frame])
            self.background_noise.update(buf.astype(np.float64) * INT16_SCALE)

    def _conceal(self) -> np.ndarray:
        """``NetEqImpl::DoExpand``: keep at least ``overlap_length`` samples pending."""
        n = self.frame_samples
        expand = self.expand
        if self.lost_frames == 0:
            expand.reset()
        while len(expand.pending) - expand.overlap_length < n:
            expand.pending = np.concatenate([expand.pending, expand.process(self.history)])
        out = expand.pending[:n]
        expand.pending = expand.pending[n:].copy()
        return out

    def _resume(self, frame: np.ndarray) -> np.ndarray:
        """``NetEqImpl::DoMerge``."""
        return self.merge.process(frame)

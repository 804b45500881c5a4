"""``opus``: the codec's own concealment (libopus' PLC) behind the concealer interface."""

from __future__ import annotations

import numpy as np

from .base import Concealer


class CodecPlcConcealer(Concealer):
    """The codec's own concealment as a concealer: plays what it was fed (:attr:`uses_codec_concealment`).

    The jitter buffer (and the offline Opus path) feeds it the decoder's PLC output (libopus)
    before asking for a lost frame; the first received frame after a loss resumes as the codec
    does (:meth:`~plc.concealers.base.Concealer._codec_resume`). A lost frame with nothing fed is
    silent.
    """

    name = "codec-plc"
    uses_codec_concealment = True

    @property
    def plays_codec_concealment(self) -> bool:
        return True

    def _conceal(self) -> np.ndarray:
        if self.codec_concealment is None:
            return np.zeros(self.frame_samples, np.float32)
        return self.codec_concealment

    def _resume(self, frame: np.ndarray) -> np.ndarray:
        return self._codec_resume(frame)

"""``opus``: the codec's own concealment (libopus' PLC) behind the concealer interface, and
:func:`codec_concealment`, the one place a decoder's concealment of a lost packet is made."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from .base import Concealer
from .gap_end import GAP_END_AFTER_MS, end_gap

if TYPE_CHECKING:
    from ..codecs.payload import PayloadDecoder


def codec_concealment(decoder: "PayloadDecoder", concealer: Concealer, n_samples: int,
                      next_audio: Optional[Callable[[], Optional[np.ndarray]]] = None) -> Optional[np.ndarray]:
    """The decoder's concealment of the next lost ``n_samples`` (None if it has none): its own
    PLC, or, at the start of a loss where the decoder can be steered and the concealer proposes
    a continuation (:meth:`~plc.concealers.base.Concealer.propose_continuation`), that
    continuation coded into the decoder (decoder in step). The caller feeds the result to the
    concealer (:meth:`~plc.concealers.base.Concealer.feed_codec_concealment`) as before.

    ``next_audio``: where the caller already holds the packet that begins where this concealment
    ends (a jitter buffer), a function returning its audio decoded ahead, the decoder left as it
    was (:meth:`~plc.codecs.payload.PayloadDecoder.decode_ahead`), or None. For a concealer that
    :attr:`ends_gaps_ahead` and plays the codec's concealment, from a loss's second packet on
    (with in-band FEC too: the audio ahead may be the next lost packet's copy), the concealment's
    end is then cross-faded into that audio (:mod:`plc.concealers.gap_end`); the function is
    called only then.

    Counted in the concealer's stats: ``steered_losses``, ``losses_left_to_fec`` where a
    concealer that steers was not asked as the stream carries in-band FEC, and ``gaps_ended_ahead``."""
    continuation = None
    if concealer.uses_codec_concealment and concealer.lost_frames == 0:
        want = decoder.continuation_samples(n_samples)
        if want is not None:
            continuation = concealer.propose_continuation(want, decoder.mode)
        elif concealer.steer_codec and decoder.leaves_loss_to_fec:
            concealer.stats.losses_left_to_fec += 1
    out = decoder.conceal(n_samples, continuation)
    if continuation is not None and decoder.steered:
        concealer.stats.steered_losses += 1
    if (out is not None and next_audio is not None and concealer.ends_gaps_ahead
            and concealer.lost_frames * concealer.frame_samples * 1000 >= GAP_END_AFTER_MS * concealer.sample_rate
            and concealer.plays_codec_concealment):
        ended = end_gap(out, next_audio(), concealer.sample_rate)
        if ended is not None:
            concealer.stats.gaps_ended_ahead += 1
            out = ended
    return out


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
        self.stats.codec_concealed_frames += 1
        return self.codec_concealment

    def _resume(self, frame: np.ndarray) -> np.ndarray:
        return self._codec_resume(frame)

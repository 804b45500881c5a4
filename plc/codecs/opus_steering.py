"""Decoder-in-step concealment for Opus: a concealer's continuation, coded into the decoder.

libopus' decoder keeps state across packets (SILK's LPC, pitch and gain history, its resampler).
When a lost packet is concealed by something other than libopus' own PLC, the decoder's state no
longer follows what was played, and the first packet after the loss decodes from the wrong past.
Here the concealer's continuation is instead *Opus-encoded at the receiver* by an encoder warmed
up on the decoder's own recent output, and that packet is decoded in place of ``decode(None)``:
what is played is the continuation as the codec renders it, and the decoder's state follows it,
so the next real packet continues from there as after any packet.

The encoder makes SILK packets at the audio bandwidth of the call's last packet and is fed the
history advanced by its lookahead, so packet *k* of its output decodes to the samples of packet
*k* of the timeline. It steers in SILK mode and in hybrid mode (browsers' 48 kHz Opus at
32 kbit/s: a 16 kHz receiver-side encoder cannot make hybrid packets, so the decoder switches to
SILK for the steered packet and back to hybrid at the next real one, as when a sender switches;
the SILK layer, which carries the speech below 8 kHz, stays in step); not in CELT mode, where
the model conceals on its own. Measured (MODEL.md, "decoder in step"): re-encoding the concealment
costs less than splicing it in against the decoder's state (on training clips, the model's first
20 ms in SILK calls went from −0.34 PLCMOS behind libopus' PLC spliced in, to level re-encoded).

It does not steer while the stream carries in-band FEC (a packet with an LBRR copy heard within
the last :data:`FEC_MEMORY_MS`): there the copies mend what the steered packet would, the
steering measured no gain (MODEL.md, "with in-band FEC") and live calls lost a little, so the
codec's own PLC and FEC decide (a concealer may still end a burst's PLC into the copy that
follows it: :mod:`plc.concealers.gap_end`).
"""

from __future__ import annotations

from typing import Collection, Optional

import numpy as np

from .opus import OPUS_SET_BANDWIDTH_REQUEST, OpusDecoder, OpusEncoder
from .opus_fec import has_lbrr

#: Packets of the decoder's own output the receiver-side encoder is warmed up on before the
#: continuation (chosen on training clips: 2, 5 and 15 were within 0.01 PLCMOS).
WARM_PACKETS = 5
#: The receiver-side encoder's bitrate, bit/s (SILK wideband's usual rate in calls).
STEERING_BITRATE_BPS = 24000
OPUS_SET_FORCE_MODE_REQUEST = 11002   # opus_private.h
OPUS_MODE_SILK_ONLY = 1000
#: Audio bandwidth (OPUS_BANDWIDTH_*) of SILK-only TOC configurations 0-11 (RFC 6716 3.1); a
#: hybrid packet's SILK layer is wideband (the last entry).
_SILK_BANDWIDTH = (1101, 1101, 1101, 1101, 1102, 1102, 1102, 1102, 1103, 1103, 1103, 1103)
#: Coding modes of the call in which the decoder is steered (chosen on training clips: hybrid
#: +0.055 / +0.018 / +0.023 PLCMOS against libopus' PLC under bernoulli:0.1 / gilbert:0.1,3 /
#: gilbert:0.2,6, as in SILK mode; MODEL.md).
STEERABLE_MODES = ("silk", "hybrid")
#: How long after the last packet that carried an in-band FEC copy (LBRR) the stream counts as
#: one with FEC, in which the decoder is not steered (senders code LBRR only in active speech, and
#: libwebrtc turns FEC on and off with the loss it sees).
FEC_MEMORY_MS = 1000


class OpusSteering:
    """Keeps an Opus decoder in step with a concealment that is not libopus' own.

    Call :meth:`observe` with every block the decoder outputs (decoded or concealed), and
    :meth:`samples_needed` before a loss to know how much continuation :meth:`decode` takes.
    """

    def __init__(self, sample_rate: int, frame_samples: int, modes: Collection[str] = STEERABLE_MODES,
                 bitrate_bps: int = STEERING_BITRATE_BPS, warm_packets: int = WARM_PACKETS,
                 with_fec: bool = False) -> None:
        if warm_packets < 1:
            raise ValueError(f"the encoder needs at least one packet to warm up on, got {warm_packets}")
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self.bitrate_bps = bitrate_bps
        self.warm_packets = warm_packets
        #: The coding modes of the call in which it steers (module docstring).
        self.modes = frozenset(modes)
        #: Steer in a stream that carries in-band FEC too (False: leave it to the codec; module docstring).
        self.with_fec = with_fec
        self._encoder: Optional[OpusEncoder] = None
        self._recent = np.zeros(0, np.float32)   # the decoder's latest output, warm_packets packets
        self._toc_config: Optional[int] = None     # of the last packet decoded
        self._since_fec: Optional[int] = None      # samples output since the last LBRR copy heard

    def _ensure_encoder(self) -> OpusEncoder:
        if self._encoder is None:
            self._encoder = OpusEncoder(self.sample_rate, bitrate_bps=self.bitrate_bps,
                                        frame_ms=self.frame_samples * 1000 // self.sample_rate)
            self._encoder.ctl(OPUS_SET_FORCE_MODE_REQUEST, OPUS_MODE_SILK_ONLY)
        return self._encoder

    @property
    def lookahead(self) -> int:
        """Samples of continuation needed beyond the lost packet (the encoder's delay)."""
        return self._ensure_encoder().lookahead

    def observe(self, samples: np.ndarray, payload: Optional[bytes] = None, fec_copy: bool = False) -> None:
        """The decoder output ``samples``: decoded from ``payload``, decoded from an in-band FEC
        copy (``fec_copy``), or concealed (neither)."""
        samples = np.asarray(samples, np.float32)
        keep = self.warm_packets * self.frame_samples
        self._recent = np.concatenate([self._recent, samples])[-keep:]
        if self._since_fec is not None:
            self._since_fec += len(samples)
        if payload:
            self._toc_config = payload[0] >> 3
        if fec_copy or (payload and has_lbrr(payload)):
            self._since_fec = 0

    def forget(self) -> None:
        """A new stream: no history to warm up on, no FEC heard."""
        self._recent = self._recent[:0]
        self._toc_config = None
        self._since_fec = None

    @property
    def stream_has_fec(self) -> bool:
        """Whether an in-band FEC copy was heard within the last :data:`FEC_MEMORY_MS`."""
        return self._since_fec is not None and self._since_fec < FEC_MEMORY_MS * self.sample_rate // 1000

    def leaves_to_fec(self, mode: Optional[str]) -> bool:
        """Whether the next lost packet, in coding ``mode``, is not steered because the stream
        carries in-band FEC (and only because of that, history permitting)."""
        return mode in self.modes and self.stream_has_fec and not self.with_fec

    def samples_needed(self, mode: Optional[str]) -> Optional[int]:
        """Continuation samples :meth:`decode` takes for the next lost packet in coding ``mode``,
        or None where it does not steer (another mode, a stream with in-band FEC, or too little
        history yet)."""
        if (mode not in self.modes or self._toc_config is None or self.leaves_to_fec(mode)
                or len(self._recent) < self.warm_packets * self.frame_samples):
            return None
        return self.frame_samples + self.lookahead

    def decode(self, decoder: OpusDecoder, continuation: np.ndarray) -> np.ndarray:
        """Encode ``continuation`` (:meth:`samples_needed` samples that continue the decoder's
        output) into one packet and decode it with ``decoder``; returns the decoded packet."""
        continuation = np.nan_to_num(np.asarray(continuation, np.float32).reshape(-1))
        need = self.frame_samples + self.lookahead
        if continuation.shape != (need,):
            raise ValueError(f"a steered packet needs {need} continuation samples, got {continuation.shape}")
        assert self._toc_config is not None
        enc = self._ensure_encoder()
        enc.reset()
        enc.ctl(OPUS_SET_BANDWIDTH_REQUEST, _SILK_BANDWIDTH[min(self._toc_config, len(_SILK_BANDWIDTH) - 1)])
        n, look = self.frame_samples, enc.lookahead
        stream = np.clip(np.concatenate([self._recent, continuation]), -1.0, 1.0)
        # encoder packet k takes the timeline advanced by the lookahead, so it decodes onto packet k
        warm = len(self._recent) // n
        packet = b""
        for k in range(warm + 1):
            packet = enc.encode(stream[k * n + look:(k + 1) * n + look])
        return decoder.decode(packet)

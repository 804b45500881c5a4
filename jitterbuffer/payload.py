"""Payload decoders of the jitter buffer: RTP payload bytes to 16 kHz float samples.

Two payloads are known, each under its usual dynamic payload type:

* ``pcm`` (payload type 96, RTP clock 16000 Hz): 16-bit little-endian,
  16 kHz, mono samples (this project's raw format; RFC 3551's L16 would be
  big-endian).
* ``opus`` (payload type 111, RTP clock 48000 Hz as RFC 7587 requires),
  decoded with libopus at 16 kHz through :mod:`plc.codecs.opus`; on a loss
  the decoder runs its own concealment (:meth:`PayloadDecoder.conceal`),
  which keeps its state continuous and is what ``--method opus`` plays.

In-band FEC is a decoder capability: :meth:`PayloadDecoder.fec_duration` says whether a
payload also carries a redundant copy of the frame before it, and
:meth:`PayloadDecoder.decode_fec` decodes that copy (Opus: the LBRR data,
:mod:`plc.codecs.opus_fec`); formats without FEC keep the defaults (none). A format with a
``split`` (RED, RFC 2198, :mod:`jitterbuffer.red`) wraps other payloads instead of being decoded.

A packet must carry a whole number of 10 ms frames (the decision interval);
anything else is reported as malformed by :meth:`PayloadDecoder.duration`
and dropped by the jitter buffer.
"""

from __future__ import annotations

import abc

from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

import numpy as np

from .red import RED_PAYLOAD_TYPE, split_red

#: Output rate of every decoder (the concealers' native rate), Hz.
SAMPLE_RATE = 16000
#: Samples per 10 ms frame at :data:`SAMPLE_RATE`.
FRAME_SAMPLES = SAMPLE_RATE // 100
#: The longest packet accepted, ms (Opus' maximum).
MAX_PACKET_MS = 120

PCM_PAYLOAD_TYPE = 96
OPUS_PAYLOAD_TYPE = 111


class PayloadDecoder(abc.ABC):
    """Decode one payload format to :data:`SAMPLE_RATE` Hz float32 mono.

    Attributes
    ----------
    name : str
        ``pcm`` or ``opus``.
    clock_rate : int
        RTP timestamp rate of the format, Hz.
    """

    name = "base"
    clock_rate = SAMPLE_RATE

    @abc.abstractmethod
    def duration(self, payload: bytes) -> Optional[int]:
        """Duration of the payload in RTP timestamp units, or None if it is malformed."""

    @abc.abstractmethod
    def decode(self, payload: bytes) -> Optional[np.ndarray]:
        """Decode into ``duration * SAMPLE_RATE / clock_rate`` samples; None if undecodable."""

    def conceal(self, n_samples: int) -> Optional[np.ndarray]:
        """The codec's own concealment of ``n_samples`` lost samples, or None if it has none."""
        return None

    def fec_duration(self, payload: bytes) -> Optional[int]:
        """Duration in RTP units of the in-band FEC copy of the audio just before ``payload``
        (libwebrtc's ``PacketDurationRedundant``), or None if the payload carries none."""
        return None

    def decode_fec(self, payload: bytes, duration: int) -> Optional[np.ndarray]:
        """The ``duration`` RTP units before ``payload`` decoded from its FEC copy, at
        :data:`SAMPLE_RATE`; None if undecodable. Called before ``payload`` itself is decoded."""
        return None

    def reset(self) -> None:
        """Forget decoder state (a new stream)."""


class PcmDecoder(PayloadDecoder):
    """16-bit little-endian 16 kHz mono PCM."""

    name = "pcm"
    clock_rate = SAMPLE_RATE

    def duration(self, payload: bytes) -> Optional[int]:
        n = len(payload)
        if n == 0 or n % 2:
            return None
        samples = n // 2
        if samples % FRAME_SAMPLES or samples > SAMPLE_RATE * MAX_PACKET_MS // 1000:
            return None
        return samples

    def decode(self, payload: bytes) -> Optional[np.ndarray]:
        if self.duration(payload) is None:
            return None
        return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0


def encode_pcm(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to the PCM payload (16-bit little-endian)."""
    x = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    return np.round(x * 32767.0).astype("<i2").tobytes()


#: Opus frame durations in 48 kHz samples by TOC configuration (RFC 6716 section 3.1).
_OPUS_FRAME_48K = (
    [480, 960, 1920, 2880] * 3     # SILK-only, NB/MB/WB: 10, 20, 40, 60 ms
    + [480, 960] * 2               # Hybrid SWB/FB: 10, 20 ms
    + [120, 240, 480, 960] * 4     # CELT-only: 2.5, 5, 10, 20 ms
)


def opus_packet_samples_48k(payload: bytes) -> Optional[int]:
    """Duration of an Opus packet in 48 kHz samples from its TOC byte, None if malformed."""
    if not payload:
        return None
    toc = payload[0]
    per_frame = _OPUS_FRAME_48K[toc >> 3]
    code = toc & 0x03
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(payload) < 2:
            return None
        frames = payload[1] & 0x3F
        if frames == 0:
            return None
    total = frames * per_frame
    if total > 48 * MAX_PACKET_MS:
        return None
    return total


class OpusPayloadDecoder(PayloadDecoder):
    """Opus through libopus, decoded at 16 kHz; ``conceal`` is libopus' own PLC, ``decode_fec``
    its in-band FEC (as libwebrtc's ``AudioDecoderOpusImpl::DecodeRedundantInternal``)."""

    name = "opus"
    clock_rate = 48000

    def __init__(self) -> None:
        from plc.codecs.opus import OpusDecoder

        self._factory = lambda: OpusDecoder(SAMPLE_RATE, frame_ms=20)
        self._decoder = self._factory()

    def duration(self, payload: bytes) -> Optional[int]:
        n48 = opus_packet_samples_48k(payload)
        if n48 is None or n48 % 480:  # whole 10 ms frames only
            return None
        return n48

    def decode(self, payload: bytes) -> Optional[np.ndarray]:
        from plc.codecs.opus import OpusError

        n48 = self.duration(payload)
        if n48 is None:
            return None
        try:
            out = self._decoder.decode(bytes(payload))
        except (OpusError, ValueError):
            return None
        want = n48 // 3
        if len(out) != want:
            out = np.pad(out, (0, max(0, want - len(out))))[:want]
        return np.asarray(out, dtype=np.float32)

    def fec_duration(self, payload: bytes) -> Optional[int]:
        from plc.codecs.opus_fec import fec_samples

        return fec_samples(payload, self.clock_rate)

    def decode_fec(self, payload: bytes, duration: int) -> Optional[np.ndarray]:
        from plc.codecs.opus import OpusError

        try:
            out = self._decoder.decode_fec(bytes(payload), duration * SAMPLE_RATE // self.clock_rate)
        except (OpusError, ValueError):
            return None
        return np.asarray(out, dtype=np.float32)

    def conceal(self, n_samples: int) -> Optional[np.ndarray]:
        from plc.codecs.opus import OpusError

        try:
            out = self._decoder.decode(None)  # 20 ms of libopus PLC
        except (OpusError, ValueError):
            return None
        return np.asarray(out, dtype=np.float32)

    def reset(self) -> None:
        self._decoder = self._factory()


@dataclass(frozen=True)
class PayloadFormat:
    """A payload type's name, RTP clock rate and decoder factory.

    ``split``: for a format that wraps other payloads (RED) instead of being decoded, the
    function that cuts a payload into its blocks (:func:`jitterbuffer.red.split_red`'s
    signature); such a format has no decoder factory.
    """

    name: str
    clock_rate: int
    factory: Optional[Callable[[], PayloadDecoder]]
    split: Optional[Callable[[bytes], list]] = None


def red_format(clock_rate: int = 48000, payload_type: int = RED_PAYLOAD_TYPE) -> PayloadFormat:
    """RED (RFC 2198) under ``payload_type``, over a codec of ``clock_rate``."""
    return PayloadFormat("red", clock_rate, None, split=partial(split_red, red_payload_type=payload_type))


#: The payload types the jitter buffer knows by default.
DEFAULT_PAYLOAD_TYPES: dict[int, PayloadFormat] = {
    PCM_PAYLOAD_TYPE: PayloadFormat("pcm", SAMPLE_RATE, PcmDecoder),
    OPUS_PAYLOAD_TYPE: PayloadFormat("opus", 48000, OpusPayloadDecoder),
    RED_PAYLOAD_TYPE: red_format(48000, RED_PAYLOAD_TYPE),
}

#: Payload type of each codec name, for the sender side.
PAYLOAD_TYPE_OF = {"pcm": PCM_PAYLOAD_TYPE, "opus": OPUS_PAYLOAD_TYPE}

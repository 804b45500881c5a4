"""What every codec of the registry (:mod:`plc.codecs`) provides: payload bytes to samples and back.

Decoders turn one RTP payload into float32 mono samples at :data:`SAMPLE_RATE` (the concealers'
native rate, whatever the codec's own), and may conceal a lost packet themselves; encoders make
one payload per packet from samples at that rate. A payload carries whole 10 ms frames (the
jitter buffer's decision interval), at most :data:`MAX_PACKET_MS`.

Steering is one too: a decoder whose state must follow what was played (Opus) can take a
concealer's continuation of a lost packet in place of its own PLC
(:meth:`PayloadDecoder.continuation_samples`, :mod:`plc.codecs.opus_steering`).

In-band FEC is a decoder capability: :meth:`PayloadDecoder.fec_duration` says whether a
payload also carries a redundant copy of the frame before it, and
:meth:`PayloadDecoder.decode_fec` decodes that copy (Opus: the LBRR data,
:mod:`plc.codecs.opus_fec`); formats without FEC keep the defaults (none).
"""

from __future__ import annotations

import abc
from typing import Optional, Protocol

import numpy as np

#: Output rate of every decoder and input rate of every encoder (the concealers' native rate), Hz.
SAMPLE_RATE = 16000
#: Samples per 10 ms frame at :data:`SAMPLE_RATE`.
FRAME_SAMPLES = SAMPLE_RATE // 100
#: The longest packet accepted, ms (Opus' maximum).
MAX_PACKET_MS = 120


class PayloadDecoder(abc.ABC):
    """Decode one payload format to :data:`SAMPLE_RATE` Hz float32 mono.

    Attributes
    ----------
    name : str
        The codec's name (``pcm``, ``opus``, ``pcmu``...).
    clock_rate : int
        RTP timestamp rate of the format, Hz.
    """

    name = "base"
    clock_rate = SAMPLE_RATE
    #: The coding mode of the last payload decoded (Opus: ``silk``, ``hybrid`` or ``celt``), which
    #: the codec's own concealment continues; None for a codec without modes or before a payload.
    mode: Optional[str] = None

    @abc.abstractmethod
    def duration(self, payload: bytes) -> Optional[int]:
        """Duration of the payload in RTP timestamp units, or None if it is malformed."""

    @abc.abstractmethod
    def decode(self, payload: bytes) -> Optional[np.ndarray]:
        """Decode into ``duration * SAMPLE_RATE / clock_rate`` samples; None if undecodable."""

    def conceal(self, n_samples: int, continuation: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """The codec's own concealment of the next lost samples (``n_samples`` asked for; a codec
        conceals in its own packet length), or None if it has none.

        ``continuation``: a concealer's own continuation of the audio, :meth:`continuation_samples`
        long, for a decoder that can be *steered* (decoder in step): it plays that continuation
        as the codec renders it, and its state follows it, instead of running its own PLC
        (:attr:`steered` says whether the last concealment did)."""
        return None

    #: Whether the last :meth:`conceal` played a concealer's continuation (a steerable decoder
    #: that took it), not the codec's own PLC.
    steered: bool = False

    def continuation_samples(self, n_samples: int) -> Optional[int]:
        """How many samples of continuation :meth:`conceal` takes to conceal the next lost
        ``n_samples`` in step with a concealer, or None if it cannot be steered now (the default:
        a decoder without that capability)."""
        return None

    @property
    def leaves_loss_to_fec(self) -> bool:
        """Whether the next lost packet is not steered only because the stream carries in-band
        FEC (a steerable decoder leaves such a stream to the codec; counted in the concealer's
        ``stats.losses_left_to_fec``)."""
        return False

    def decode_ahead(self, payload: bytes, fec_duration: Optional[int] = None) -> Optional[np.ndarray]:
        """What :meth:`decode` (or, given ``fec_duration``, :meth:`decode_fec`) would return for
        ``payload`` now, leaving the decoder exactly as it was (a jitter buffer looking at the
        packet after a gap before the gap is played), or None if undecodable or the decoder
        cannot tell (the default)."""
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


class PayloadEncoder(Protocol):
    """Makes one payload of ``frame_samples`` samples at :data:`SAMPLE_RATE`."""

    #: Samples per packet.
    frame_samples: int
    #: Encoder delay in samples: the decoded audio lags the input by this much.
    lookahead: int

    def encode(self, samples: np.ndarray) -> bytes:
        """One packet's payload from exactly ``frame_samples`` float samples in [-1, 1]."""


def encode_signal(encoder: PayloadEncoder, signal: np.ndarray, min_packets: int = 0) -> list[bytes]:
    """``signal`` coded packet by packet, as a sender codes it: zero-padded to whole packets and
    on by the encoder's :attr:`~PayloadEncoder.lookahead`, so that its last samples come out of the
    decoder too; at least ``min_packets`` packets (silence after the signal). Decoded packet by
    packet, the output lags ``signal`` by ``encoder.lookahead`` samples."""
    n = encoder.frame_samples
    signal = np.asarray(signal, np.float32).reshape(-1)
    n_packets = max(int(min_packets), -(-(len(signal) + encoder.lookahead) // n))
    padded = np.zeros(n_packets * n, np.float32)
    padded[:len(signal)] = signal
    return [encoder.encode(padded[p * n:(p + 1) * n]) for p in range(n_packets)]

"""Codecs: one registry, keyed by MIME type as aiortc's is (``audio/opus``, ``audio/pcmu``...).

A :class:`Codec` says everything the rest of the project asks of a codec: its RTP clock, the
payload type this project sends it with, a payload decoder (RTP payload to 16 kHz samples,
:class:`~plc.codecs.payload.PayloadDecoder`), an encoder if the project can send it, whether its
decoder conceals a lost packet itself (libopus' PLC: what ``--method opus`` plays) and which
packet durations it carries. The jitter buffer decodes through it, ``plc netsim`` and the offline
Opus pipeline encode through it, and an aiortc call finds the negotiated codec by MIME type.

A new codec is one module (its decoder, its encoder if any) and one :func:`register` call here.

===============  ===========  =====  ====================================================
name             MIME type    PT     what
===============  ===========  =====  ====================================================
``pcm``          audio/x-plc-pcm16   96  16-bit LE PCM at 16 kHz, lossless (:mod:`.pcm`)
``opus``         audio/opus   111    libopus through ctypes, with its PLC (:mod:`.opus`)
``pcmu``,        audio/PCMU,  (aiortc)  G.711 and G.722 through aiortc's decoders, in calls
``pcma``,        audio/PCMA,            only (:mod:`.aiortc_codecs`)
``g722``         audio/G722
``red``          audio/red    63     RED (RFC 2198): Opus with older packets sent again,
                                     split into blocks, not decoded (:mod:`.red`)
===============  ===========  =====  ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

from .aiortc_codecs import AiortcPayloadDecoder
from .opus import DEFAULT_EXPECTED_LOSS_PERCENT, OPUS_FRAME_MS, OpusEncoder, OpusPayloadDecoder
from .payload import FRAME_SAMPLES, MAX_PACKET_MS, SAMPLE_RATE, PayloadDecoder, PayloadEncoder
from .pcm import PcmDecoder, PcmEncoder
from .red import RED_PAYLOAD_TYPE, split_red

#: Packet durations a codec without other limits carries: whole 10 ms frames up to 120 ms.
TEN_MS_PACKETS = tuple(range(10, MAX_PACKET_MS + 1, 10))


@dataclass(frozen=True)
class Codec:
    """One codec of the registry.

    Attributes
    ----------
    name : str
        The short name (``--codec``).
    mime_type : str
        The key, as aiortc spells it (compared in lower case).
    clock_rate : int
        RTP timestamp rate, Hz.
    decoder : callable or None
        ``decoder(frame_ms=20)``: a new :class:`~plc.codecs.payload.PayloadDecoder`; its own
        concealment, if any, makes ``frame_ms`` at a time. None for a format that wraps
        others (``split``).
    encoder : callable or None
        ``encoder(bitrate_bps, frame_ms)``: a new :class:`~plc.codecs.payload.PayloadEncoder`
        (with ``redundancy``, also ``fec=True, expected_loss_percent=...``: in-band FEC);
        None for a codec this project only receives.
    payload_type : int or None
        The payload type this project sends it with (the jitter buffer's default map); None
        where only aiortc's negotiation assigns one.
    conceals : bool
        The decoder conceals a lost packet itself (``PayloadDecoder.conceal``).
    redundancy : bool
        It can be sent with redundancy: in-band FEC (its encoder's ``fec``, its decoder's
        ``decode_fec``) and RED (RFC 2198) blocks.
    lossy : bool
        The offline pipeline codes the sender's audio through it; a lossless codec's offline
        input is the received audio itself (``plc conceal --codec pcm``).
    packet_ms : tuple of int
        Packet durations it carries, ms.
    label : str
        Its name in messages and reports (``Opus``, ``G.722``); default: ``name``.
    split : callable or None
        For a format that wraps other payloads instead of being decoded (RED): the function that
        cuts a payload into its blocks (:func:`plc.codecs.red.split_red`'s signature).
    """

    name: str
    mime_type: str
    clock_rate: int
    decoder: Optional[Callable[..., PayloadDecoder]]
    encoder: Optional[Callable[[int, int], PayloadEncoder]] = None
    payload_type: Optional[int] = None
    conceals: bool = False
    redundancy: bool = False
    lossy: bool = True
    packet_ms: tuple[int, ...] = TEN_MS_PACKETS
    label: str = ""
    split: Optional[Callable[[bytes], list]] = None

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)

    def check_redundancy(self, fec: bool = False, red: bool = False) -> None:
        """``ValueError`` (one line) if FEC or RED is asked of a codec that cannot carry it."""
        if (fec or red) and not self.redundancy:
            able = redundant_codecs()
            raise ValueError(f"FEC and RED are sent with {' or '.join(c.label for c in able)}: use "
                             f"--codec {' or '.join(c.name for c in able)}")

    def check_packet_ms(self, packet_ms: int) -> int:
        """``packet_ms`` if this codec carries packets that long, else ``ValueError`` (one line)."""
        if packet_ms not in self.packet_ms:
            raise ValueError(f"{self.label} packets last {_ms_list(self.packet_ms)} ms, got {packet_ms}")
        return packet_ms


def _ms_list(values: tuple[int, ...]) -> str:
    if values == TEN_MS_PACKETS:
        return f"a multiple of 10 ms from 10 to {MAX_PACKET_MS}"
    return ", ".join(map(str, values))


_CODECS: dict[str, Codec] = {}


def register(codec: Codec) -> Codec:
    """Add ``codec`` to the registry (a name or MIME type registered twice is an error)."""
    key = codec.mime_type.lower()
    if key in _CODECS or any(c.name == codec.name for c in _CODECS.values()):
        raise ValueError(f"codec {codec.name} ({codec.mime_type}) is registered already")
    _CODECS[key] = codec
    return codec


def get_codec(name: str) -> Codec:
    """The codec called ``name`` (short name or MIME type, any case); ``ValueError`` if none is."""
    key = str(name).strip().lower()
    codec = _CODECS.get(key) or next((c for c in _CODECS.values() if c.name == key), None)
    if codec is None:
        raise ValueError(f"unknown codec {name!r}; choose from {', '.join(codec_names())}")
    return codec


def codec_for_mime(mime_type: str) -> Optional[Codec]:
    """The codec registered for ``mime_type`` (aiortc's ``codec.mimeType``), None if none is."""
    return _CODECS.get(str(mime_type).lower())


def codec_names(sendable: bool = True) -> list[str]:
    """Short names of the registered codecs; with ``sendable`` only those with an encoder
    (what ``--codec`` accepts), in registration order."""
    return [c.name for c in _CODECS.values() if c.encoder is not None or not sendable]


def concealing_codecs() -> list[str]:
    """Short names of the sendable codecs whose decoder conceals (where ``--method opus`` works)."""
    return [c.name for c in _CODECS.values() if c.conceals and c.encoder is not None]


def redundant_codecs() -> list[Codec]:
    """The sendable codecs that can carry redundancy (in-band FEC, RED)."""
    return [c for c in _CODECS.values() if c.redundancy and c.encoder is not None]


def default_payload_types() -> dict[int, Codec]:
    """Payload type -> codec for every codec this project sends (the jitter buffer's default map)."""
    return {c.payload_type: c for c in _CODECS.values() if c.payload_type is not None}


def _opus_encoder(bitrate_bps: int, frame_ms: int, fec: bool = False,
                  expected_loss_percent: int = DEFAULT_EXPECTED_LOSS_PERCENT) -> PayloadEncoder:
    return OpusEncoder(SAMPLE_RATE, bitrate_bps=bitrate_bps, frame_ms=frame_ms, fec=fec,
                       expected_loss_percent=expected_loss_percent)


def _aiortc_decoder(mime_type: str) -> Callable[..., PayloadDecoder]:
    return lambda frame_ms=20: AiortcPayloadDecoder(mime_type, 8000, frame_ms)


register(Codec("pcm", "audio/x-plc-pcm16", SAMPLE_RATE, PcmDecoder, PcmEncoder, payload_type=96, lossy=False,
               label="PCM"))
register(Codec("opus", "audio/opus", 48000, OpusPayloadDecoder, _opus_encoder, payload_type=111, conceals=True,
               redundancy=True, packet_ms=OPUS_FRAME_MS, label="Opus"))
for _mime, _label in (("audio/PCMU", "G.711 µ-law"), ("audio/PCMA", "G.711 A-law"), ("audio/G722", "G.722")):
    register(Codec(_mime.split("/")[1].lower(), _mime, 8000, _aiortc_decoder(_mime), label=_label))
register(Codec("red", "audio/red", 48000, None, payload_type=RED_PAYLOAD_TYPE, label="RED",
               split=partial(split_red, red_payload_type=RED_PAYLOAD_TYPE)))

__all__ = [
    "Codec", "register", "get_codec", "codec_for_mime", "codec_names", "concealing_codecs",
    "default_payload_types", "PayloadDecoder", "PayloadEncoder", "SAMPLE_RATE", "FRAME_SAMPLES",
    "MAX_PACKET_MS",
]

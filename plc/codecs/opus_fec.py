"""Opus in-band FEC: which packets carry a low-bitrate copy (LBRR) of the frame before them.

With in-band FEC on (``useinbandfec=1``, :class:`plc.codecs.opus.OpusEncoder` ``fec=True``),
a SILK or hybrid Opus packet may carry, besides its own frame, a low-bitrate redundant copy
of the *previous* frame. A receiver that lost that frame decodes it from the copy
(:meth:`plc.codecs.opus.OpusDecoder.decode_fec`). CELT-only packets never carry one.

:func:`has_lbrr` reads the LBRR flag the way libwebrtc's ``WebRtcOpus_PacketHasFec``
(``modules/audio_coding/codecs/opus/opus_interface.cc``) and libopus' own
``opus_packet_has_lbrr`` (libopus >= 1.5) do (RFC 6716 section 4.2.3-4.2.4): the SILK layer
of the first Opus frame starts with one VAD flag per SILK frame (1, 2 or 3 of them for 10/20,
40 and 60 ms) and then the LBRR flag, a second such group for the side channel of a stereo
packet; they are the range coder's first symbols, coded with uniform probability, so they are
the top bits of the frame's first byte. libopus' function is used when the library has it;
otherwise the frame is located with ``opus_packet_parse`` (every libopus version) and the bits
read here. The FEC copy lasts one Opus frame (``opus_packet_get_samples_per_frame``), as in
libwebrtc's ``WebRtcOpus_FecDurationEst``, and only the first frame's copy is decodable.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import Optional

from .opus import load_libopus

#: Most frames an Opus packet holds (RFC 6716 section 3.2.5).
_MAX_FRAMES = 48


@lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    lib = load_libopus()
    lib.opus_packet_get_samples_per_frame.restype = ctypes.c_int
    lib.opus_packet_get_samples_per_frame.argtypes = [ctypes.c_char_p, ctypes.c_int32]
    lib.opus_packet_get_nb_channels.restype = ctypes.c_int
    lib.opus_packet_get_nb_channels.argtypes = [ctypes.c_char_p]
    lib.opus_packet_parse.restype = ctypes.c_int
    lib.opus_packet_parse.argtypes = [ctypes.c_char_p, ctypes.c_int32, ctypes.POINTER(ctypes.c_ubyte),
                                      ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int16),
                                      ctypes.POINTER(ctypes.c_int)]
    if hasattr(lib, "opus_packet_has_lbrr"):
        lib.opus_packet_has_lbrr.restype = ctypes.c_int
        lib.opus_packet_has_lbrr.argtypes = [ctypes.c_char_p, ctypes.c_int32]
    return lib


def libopus_has_lbrr_check() -> bool:
    """True if the loaded libopus has ``opus_packet_has_lbrr`` (1.5 and later)."""
    return hasattr(_lib(), "opus_packet_has_lbrr")


def _silk_frames(packet: bytes) -> int:
    """SILK frames per Opus frame (1 for 10 and 20 ms, 2 for 40, 3 for 60), 0 if not SILK/hybrid."""
    if packet[0] & 0x80:  # CELT-only
        return 0
    ms = _lib().opus_packet_get_samples_per_frame(packet, 48000) // 48
    return {10: 1, 20: 1, 40: 2, 60: 3}.get(ms, 0)


def parse_has_lbrr(packet: bytes) -> bool:
    """:func:`has_lbrr` read here from the first frame's bits (``WebRtcOpus_PacketHasFec``'s way)."""
    packet = bytes(packet)
    if not packet:
        return False
    silk_frames = _silk_frames(packet)
    if not silk_frames:
        return False
    frames = (ctypes.c_void_p * _MAX_FRAMES)()
    sizes = (ctypes.c_int16 * _MAX_FRAMES)()
    if _lib().opus_packet_parse(packet, len(packet), None, frames, sizes, None) <= 0 or sizes[0] < 1:
        return False
    first = ctypes.cast(frames[0], ctypes.POINTER(ctypes.c_ubyte))[0]
    channels = _lib().opus_packet_get_nb_channels(packet)
    # The LBRR flag of channel n is bit (n + 1) * (silk_frames + 1) from the top.
    return any(first & (0x80 >> ((n + 1) * (silk_frames + 1) - 1)) for n in range(channels))


def has_lbrr(packet: bytes) -> bool:
    """True if the Opus ``packet`` carries an in-band FEC copy of the frame before it.

    A malformed packet has none.
    """
    packet = bytes(packet)
    if not packet:
        return False
    lib = _lib()
    if hasattr(lib, "opus_packet_has_lbrr"):
        return lib.opus_packet_has_lbrr(packet, len(packet)) == 1
    return parse_has_lbrr(packet)


def fec_samples(packet: bytes, sample_rate: int) -> Optional[int]:
    """Samples at ``sample_rate`` of the FEC copy ``packet`` carries (one Opus frame, at least
    10 ms), or None if it carries none."""
    if not has_lbrr(packet):
        return None
    n = _lib().opus_packet_get_samples_per_frame(bytes(packet), int(sample_rate))
    if n < sample_rate // 100 or n > sample_rate * 120 // 1000:
        return None
    return int(n)

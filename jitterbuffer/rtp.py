"""RTP (RFC 3550) headers: parse, validate and serialize, and counter unwrapping.

Only what a receiver needs is kept: the fixed header (version, padding,
extension, CSRC count, marker, payload type, sequence number, timestamp,
SSRC), the CSRC list, the header extension (profile and data, RFC 3550
section 5.3.1) and the payload with the padding removed.

:func:`parse_rtp` raises :class:`RtpError` for anything that is not a valid
RTP packet; the jitter buffer counts and drops those, so a malformed packet
never reaches the caller as an exception.

The 16-bit sequence number and the 32-bit timestamp wrap around; the
unwrappers turn them into monotonic Python integers (the "extended" sequence
number of RFC 3550 appendix A.1 and its timestamp twin), taking the shortest
way round from the previous value so that reordered packets unwrap to the
right side of a wrap. :class:`SequenceLossCounter` counts the packets lost over the extended
sequence number as WebRTC does (reordering, and big jumps as a sender restart or a stray packet).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Optional

RTP_VERSION = 2
#: Length of the fixed RTP header in bytes.
FIXED_HEADER_BYTES = 12
#: Payload types 72..76 collide with RTCP packet types 200..204 when the
#: marker bit is set (RFC 5761 section 4); a packet carrying one is not RTP.
RTCP_CONFLICT_PAYLOAD_TYPES = range(72, 77)

_FIXED = struct.Struct("!BBHII")


class RtpError(ValueError):
    """The bytes are not a valid RTP packet (one line, for counters and logs)."""


@dataclass
class RtpPacket:
    """One RTP packet.

    Attributes
    ----------
    payload_type : int
        7-bit payload type.
    sequence_number : int
        16-bit sequence number.
    timestamp : int
        32-bit media timestamp, in units of the payload's clock rate.
    ssrc : int
        32-bit synchronization source.
    payload : bytes
        The payload, padding removed.
    marker : bool
        Marker bit (first packet of a talk spurt for audio).
    csrc : tuple of int
        Contributing sources (at most 15).
    extension_profile : int or None
        The 16-bit profile of the header extension, None without extension.
    extension_data : bytes
        The extension body (a multiple of 4 bytes).
    padding : int
        Number of padding bytes (including the count byte) seen or to write.
    """

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension_profile: Optional[int] = None
    extension_data: bytes = b""
    padding: int = 0

    def serialize(self) -> bytes:
        """The packet as bytes on the wire. Raises :class:`RtpError` for out-of-range fields."""
        if not 0 <= self.payload_type < 128:
            raise RtpError(f"payload type {self.payload_type} is not 7 bits")
        if not 0 <= self.sequence_number < 1 << 16:
            raise RtpError(f"sequence number {self.sequence_number} is not 16 bits")
        if not 0 <= self.timestamp < 1 << 32 or not 0 <= self.ssrc < 1 << 32:
            raise RtpError("timestamp and SSRC must be 32-bit unsigned")
        if len(self.csrc) > 15:
            raise RtpError(f"{len(self.csrc)} CSRCs; at most 15 fit")
        if len(self.extension_data) % 4:
            raise RtpError("extension data must be a multiple of 4 bytes")
        if not 0 <= self.padding < 256:
            raise RtpError("padding must be 0..255 bytes")
        has_ext = self.extension_profile is not None
        first = (RTP_VERSION << 6) | (0x20 if self.padding else 0) | (0x10 if has_ext else 0) | len(self.csrc)
        second = (0x80 if self.marker else 0) | self.payload_type
        out = bytearray(_FIXED.pack(first, second, self.sequence_number, self.timestamp, self.ssrc))
        for c in self.csrc:
            out += struct.pack("!I", c & 0xFFFFFFFF)
        if has_ext:
            out += struct.pack("!HH", self.extension_profile & 0xFFFF, len(self.extension_data) // 4)
            out += self.extension_data
        out += self.payload
        if self.padding:
            out += bytes(self.padding - 1) + bytes([self.padding])
        return bytes(out)


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse and validate one RTP packet (RFC 3550 section 5.1 and appendix A.1 checks).

    Raises
    ------
    RtpError
        Too short, version not 2, a CSRC list or extension running past the
        end, a padding count of zero or larger than the payload, or an RTCP
        payload type.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise RtpError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < FIXED_HEADER_BYTES:
        raise RtpError(f"{len(data)} bytes is shorter than the 12-byte RTP header")
    first, second, seq, ts, ssrc = _FIXED.unpack_from(data)
    version = first >> 6
    if version != RTP_VERSION:
        raise RtpError(f"RTP version {version}, expected 2")
    has_padding = bool(first & 0x20)
    has_extension = bool(first & 0x10)
    cc = first & 0x0F
    marker = bool(second & 0x80)
    pt = second & 0x7F
    if pt in RTCP_CONFLICT_PAYLOAD_TYPES:
        raise RtpError(f"payload type {pt} is reserved (RTCP conflict)")
    pos = FIXED_HEADER_BYTES
    end = len(data)
    if pos + 4 * cc > end:
        raise RtpError(f"CSRC list of {cc} entries runs past the end")
    csrc = struct.unpack_from(f"!{cc}I", data, pos) if cc else ()
    pos += 4 * cc
    ext_profile: Optional[int] = None
    ext_data = b""
    if has_extension:
        if pos + 4 > end:
            raise RtpError("header extension runs past the end")
        ext_profile, ext_words = struct.unpack_from("!HH", data, pos)
        pos += 4
        if pos + 4 * ext_words > end:
            raise RtpError("header extension runs past the end")
        ext_data = data[pos:pos + 4 * ext_words]
        pos += 4 * ext_words
    padding = 0
    if has_padding:
        if end <= pos:
            raise RtpError("padding bit set but no padding byte")
        padding = data[end - 1]
        if padding == 0 or pos + padding > end:
            raise RtpError(f"padding of {padding} bytes is invalid for a {end - pos}-byte payload")
        end -= padding
    return RtpPacket(payload_type=pt, sequence_number=seq, timestamp=ts, ssrc=ssrc,
                     payload=data[pos:end], marker=marker, csrc=tuple(csrc),
                     extension_profile=ext_profile, extension_data=ext_data, padding=padding)


class Unwrapper:
    """Turn a wrapping ``bits``-bit counter into a monotonic integer.

    Each value is placed at the shortest distance from the previous one (a
    step of at most half the range forwards or backwards), the way WebRTC's
    ``SeqNumUnwrapper`` does. The first value unwraps to itself.
    """

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self._modulo = 1 << bits
        self._half = 1 << (bits - 1)
        self._last: Optional[int] = None

    @property
    def last(self) -> Optional[int]:
        """The last unwrapped value, or None before the first."""
        return self._last

    def peek(self, value: int) -> int:
        """Unwrap ``value`` without remembering it."""
        value = int(value) % self._modulo
        if self._last is None:
            return value
        delta = (value - self._last) % self._modulo
        if delta >= self._half:
            delta -= self._modulo
        return self._last + delta

    def unwrap(self, value: int) -> int:
        """Unwrap ``value`` and make it the new reference."""
        self._last = self.peek(value)
        return self._last

    def reset(self) -> None:
        """Forget the reference (a new stream)."""
        self._last = None


class SequenceUnwrapper(Unwrapper):
    """Unwrapper of the 16-bit RTP sequence number."""

    def __init__(self) -> None:
        super().__init__(16)


class TimestampUnwrapper(Unwrapper):
    """Unwrapper of the 32-bit RTP timestamp."""

    def __init__(self) -> None:
        super().__init__(32)


#: A sequence number further than this from the highest one so far is not trusted at once
#: (WebRTC's ``kDefaultMaxReorderingThreshold``, ``modules/rtp_rtcp/source/rtp_rtcp_config.h``).
MAX_REORDERING_THRESHOLD = 50


class SequenceLossCounter:
    """Cumulative packet loss of one RTP stream: expected minus received (RFC 3550 appendix A.3)
    over the extended sequence number, with reordering and big jumps handled as WebRTC does.

    Follows WebRTC's ``StreamStatisticianImpl::UpdateCounters`` and ``UpdateOutOfOrder``
    (``modules/rtp_rtcp/source/receive_statistics_impl.cc``):

    * a packet after the highest sequence number so far extends it, and the numbers skipped
      count as lost; a packet below it (reordered, or late) fills a hole counted before;
    * a packet more than ``max_reordering`` numbers away from the highest (either way) is held
      back: if the next packet is its successor, the sender restarted its sequence numbers and
      the jump is not counted as loss; otherwise it was a stray packet, counted as received
      without moving the highest number. One packet with a wild sequence number therefore
      costs no loss, and a packet can add at most ``max_reordering - 1`` to it;
    * a duplicate (a number among the last ``duplicate_window`` seen) is not counted again
      (WebRTC counts it as received, which can make the loss negative);
    * the loss never goes below zero: WebRTC clamps the value it reports and offsets later ones
      (``cumulative_loss_rtcp_offset_``); here it is clamped at every packet, so a misbehaving
      sender builds no credit against losses that come later.
    """

    def __init__(self, max_reordering: int = MAX_REORDERING_THRESHOLD, duplicate_window: int = 512) -> None:
        self.max_reordering = int(max_reordering)
        self._unwrapper = SequenceUnwrapper()
        self._recent: deque[int] = deque(maxlen=int(duplicate_window))
        self._recent_set: set[int] = set()
        self.reset()

    def reset(self) -> None:
        """Forget the stream (a new one starts)."""
        self._unwrapper.reset()
        self._recent.clear()
        self._recent_set.clear()
        #: Packets lost so far (>= 0).
        self.packets_lost = 0
        self._highest: Optional[int] = None
        self._held: Optional[int] = None  # a far sequence number, judged by the next packet

    def update(self, sequence_number: int) -> None:
        """Register a received packet's 16-bit sequence number."""
        seq = int(sequence_number) & 0xFFFF
        if seq in self._recent_set:
            return
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(seq)
        self._recent_set.add(seq)
        if self._highest is None:
            self._highest = self._unwrapper.unwrap(seq)
            return
        if self._held is not None:
            held, self._held = self._held, None
            if seq == (held + 1) & 0xFFFF:  # the sender restarted its sequence numbers here
                self._unwrapper.reset()
                self._recent.clear()
                self._recent_set = {held, seq}
                self._recent.extend((held, seq))
                self._unwrapper.unwrap(held)
                self._highest = self._unwrapper.unwrap(seq)
                return
            self.packets_lost = max(0, self.packets_lost - 1)  # a stray packet: received, moves nothing
        extended = self._unwrapper.peek(seq)
        if abs(extended - self._highest) > self.max_reordering:
            self._held = seq
        elif extended > self._highest:
            self.packets_lost += extended - self._highest - 1
            self._highest = self._unwrapper.unwrap(seq)
        else:  # reordered or late: fills a hole counted as lost
            self.packets_lost = max(0, self.packets_lost - 1)

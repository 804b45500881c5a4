"""The packet buffer: received packets waiting for playout, ordered by timestamp.

Like NetEQ's ``PacketBuffer``:

* packets are kept sorted by their (unwrapped) RTP timestamp;
* each packet has a :class:`Priority` (NetEQ's ``Packet::Priority``): a primary
  packet (0, 0), an Opus in-band FEC copy of the frame before a packet (codec
  level 1), a RED redundant block (RED level k). Of two packets with the same
  timestamp, the one with the better (lower) priority is kept: a late primary
  replaces a FEC copy, a FEC copy never replaces a primary (``PacketBuffer::
  InsertPacket`` in ``modules/audio_coding/neteq/packet_buffer.cc``);
* a second packet with the same timestamp and priority is a duplicate: the
  better copy is kept (the longer payload, i.e. not a truncated one; on a tie,
  the first to arrive) and the other dropped and counted;
* packets whose audio lies entirely before the playout point are "too late"
  and are discarded and counted by :meth:`PacketBuffer.discard_old`;
* the capacity is bounded (``capacity`` packets). On overflow the policy is
  ``drop_oldest`` (default: drop the packet nearest to playout, or the new
  one if it is older still, so the delay shrinks back towards the target) or
  ``flush`` (NetEQ's choice: empty the buffer, then insert the new packet).
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

OVERFLOW_POLICIES = ("drop_oldest", "flush")

#: Packets the buffer holds by default (NetEQ's ``max_packets_in_buffer``).
CAPACITY_PACKETS = 100


class Priority(NamedTuple):
    """NetEQ's ``Packet::Priority``: lower is better, compared codec level first.

    Attributes
    ----------
    codec_level : int
        0 for the codec's own frame, 1 for an in-band FEC copy (libwebrtc's
        ``AudioDecoderOpusImpl::ParsePayload`` gives the LBRR copy priority 1).
    red_level : int
        0 for a RED packet's primary block (and any packet outside RED), k for its k-th
        oldest redundant block (``RedPayloadSplitter::SplitRed``).
    """

    codec_level: int = 0
    red_level: int = 0


#: The priority of a packet's own (primary) payload.
PRIMARY = Priority(0, 0)


@dataclass(order=True)
class BufferedPacket:
    """A packet in the buffer; timestamps and durations are in RTP clock units.

    Attributes
    ----------
    timestamp : int
        Unwrapped RTP timestamp of the first sample.
    duration : int
        Audio carried, in RTP timestamp units.
    sequence_number : int
        Unwrapped sequence number.
    payload_type : int
        RTP payload type.
    payload : bytes
        Payload bytes, padding removed.
    arrival_ms : float
        Arrival time in the receiver's clock, ms.
    priority : Priority
        :data:`PRIMARY`, or the rank of a redundant copy (FEC, RED).
    """

    timestamp: int
    duration: int = field(compare=False)
    sequence_number: int = field(compare=False)
    payload_type: int = field(compare=False)
    payload: bytes = field(compare=False, repr=False)
    arrival_ms: float = field(compare=False)
    priority: Priority = field(default=PRIMARY, compare=False)

    @property
    def is_primary(self) -> bool:
        """True for a packet's own payload, False for a redundant copy (FEC or RED)."""
        return self.priority == PRIMARY

    @property
    def end(self) -> int:
        """Timestamp just after the packet's last sample."""
        return self.timestamp + self.duration


class InsertResult(enum.Enum):
    """What :meth:`PacketBuffer.insert` did with a packet."""

    INSERTED = "inserted"
    #: A duplicate; the new copy was better and replaced the old one.
    REPLACED_DUPLICATE = "replaced_duplicate"
    #: A duplicate; the old copy was kept.
    DROPPED_DUPLICATE = "dropped_duplicate"
    #: Same timestamp as a redundant copy of worse priority, which it replaced (that copy was discarded).
    REPLACED_REDUNDANT = "replaced_redundant"
    #: A redundant copy where a packet of better priority already is: dropped.
    DROPPED_REDUNDANT = "dropped_redundant"
    #: Inserted, but the buffer overflowed and other packets were dropped.
    INSERTED_AFTER_OVERFLOW = "inserted_after_overflow"
    #: The buffer was full and the new packet was the oldest: dropped.
    DROPPED_OVERFLOW = "dropped_overflow"


class PacketBuffer:
    """Packets ordered by timestamp, with duplicates, late packets and overflow handled.

    Parameters
    ----------
    capacity : int
        Most packets held at once.
    overflow : {"drop_oldest", "flush"}
        What to do when a packet arrives at a full buffer (see module docstring).
    """

    def __init__(self, capacity: int = CAPACITY_PACKETS, overflow: str = "drop_oldest") -> None:
        if capacity < 1:
            raise ValueError("packet buffer capacity must be at least 1")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow policy must be one of {OVERFLOW_POLICIES}, got {overflow!r}")
        self.capacity = int(capacity)
        self.overflow = overflow
        self._packets: list[BufferedPacket] = []
        #: Packets dropped because the buffer was full (cumulative).
        self.overflow_dropped = 0
        #: Duplicate copies dropped (cumulative).
        self.duplicates_dropped = 0

    def __len__(self) -> int:
        return len(self._packets)

    def __iter__(self):
        return iter(list(self._packets))

    def clear(self) -> int:
        """Empty the buffer; returns how many packets were dropped."""
        n = len(self._packets)
        self._packets.clear()
        return n

    def insert(self, packet: BufferedPacket) -> InsertResult:
        """Insert ``packet`` in timestamp order (see :class:`InsertResult`)."""
        i = bisect.bisect_left(self._packets, packet)
        if i < len(self._packets) and self._packets[i].timestamp == packet.timestamp:
            old = self._packets[i]
            if packet.priority < old.priority:  # e.g. a late primary: it replaces the FEC copy
                self._packets[i] = packet
                return InsertResult.REPLACED_REDUNDANT
            if packet.priority > old.priority:  # a FEC copy never replaces a primary
                return InsertResult.DROPPED_REDUNDANT
            self.duplicates_dropped += 1
            if len(packet.payload) > len(self._packets[i].payload):
                self._packets[i] = packet
                return InsertResult.REPLACED_DUPLICATE
            return InsertResult.DROPPED_DUPLICATE
        if len(self._packets) < self.capacity:
            self._packets.insert(i, packet)
            return InsertResult.INSERTED
        if self.overflow == "flush":
            self.overflow_dropped += len(self._packets)
            self._packets = [packet]
            return InsertResult.INSERTED_AFTER_OVERFLOW
        if i == 0:  # the new packet is the oldest of all: it goes
            self.overflow_dropped += 1
            return InsertResult.DROPPED_OVERFLOW
        self._packets.pop(0)
        self.overflow_dropped += 1
        self._packets.insert(i - 1, packet)
        return InsertResult.INSERTED_AFTER_OVERFLOW

    def peek(self) -> Optional[BufferedPacket]:
        """The packet with the lowest timestamp, or None."""
        return self._packets[0] if self._packets else None

    def pop(self) -> Optional[BufferedPacket]:
        """Remove and return the packet with the lowest timestamp, or None."""
        return self._packets.pop(0) if self._packets else None

    def discard_old(self, timestamp_limit: int) -> list[BufferedPacket]:
        """Remove the packets whose audio ends at or before ``timestamp_limit`` (too late)."""
        n = 0
        while n < len(self._packets) and self._packets[n].end <= timestamp_limit:
            n += 1
        old, self._packets = self._packets[:n], self._packets[n:]
        return old

    def num_samples(self) -> int:
        """Total audio held, RTP timestamp units: the sum of the primary packets' durations (redundant
        copies overlap them; NetEQ's ``PacketBuffer::NumSamplesInBuffer`` skips them too)."""
        return sum(p.duration for p in self._packets if p.is_primary)

    def span(self) -> int:
        """From the first packet's start to the last packet's end, RTP timestamp units."""
        if not self._packets:
            return 0
        return max(p.end for p in self._packets) - self._packets[0].timestamp

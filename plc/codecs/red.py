"""RTP payload for redundant audio (RED, RFC 2198): split, and build for tests and simulations.

A RED payload carries the current (primary) encoding of a packet and one or more older
encodings sent again (redundant blocks), each under its own payload type::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |F|   block PT  |  timestamp offset         |   block length    |   (F=1: a redundant block)
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |0|   block PT  |                                                   (F=0: the last header, the primary)
    +-+-+-+-+-+-+-+-+
    block data, in header order; the primary's runs to the end of the payload

:func:`split_red` follows libwebrtc's ``RedPayloadSplitter::SplitRed`` and
``CheckRedPayloads`` (``modules/audio_coding/neteq/red_payload_splitter.cc``): block *i* of
*n* gets the RED level ``n - 1 - i`` (the primary 0, the oldest copy the highest), so that
the packet buffer keeps, for each timestamp, the copy with the best priority
(:class:`jitterbuffer.packet_buffer.Priority`); empty blocks are skipped; blocks of another
payload type than the primary's are dropped. Unlike NetEQ, which keeps the blocks read before
a bad length, a malformed payload is refused whole (:class:`RedError`): a header cut short, a
block length past the end, more than :data:`MAX_RED_BLOCKS` blocks, a block that is RED
again (a recursive header), or no primary data. A receiver counts it as malformed and loses one packet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

#: libwebrtc's ``kMaxRedBlocks``: more blocks than this means the packet is corrupt.
MAX_RED_BLOCKS = 32
#: Bytes of a redundant block's header and of the last (primary) header.
RED_HEADER_BYTES, RED_LAST_HEADER_BYTES = 4, 1
#: Largest timestamp offset and block length a header can carry (14 and 10 bits).
MAX_TIMESTAMP_OFFSET, MAX_BLOCK_BYTES = (1 << 14) - 1, (1 << 10) - 1
#: Chrome's payload type for ``audio/red`` over Opus (``a=fmtp:63 111/111``).
RED_PAYLOAD_TYPE = 63


class RedError(ValueError):
    """A RED payload that cannot be split (one line, for counters and logs)."""


@dataclass(frozen=True)
class RedBlock:
    """One block of a RED payload.

    Attributes
    ----------
    payload_type : int
        The block's payload type (the codec's, e.g. 111 for Opus).
    timestamp_offset : int
        How far before the RTP packet's timestamp the block's audio starts (0 for the primary).
    payload : bytes
        The block's data.
    red_level : int
        0 for the primary, k for the k-th oldest redundant copy (NetEQ's ``Priority::red_level``).
    """

    payload_type: int
    timestamp_offset: int
    payload: bytes
    red_level: int


def split_red(payload: bytes, red_payload_type: Optional[int] = None) -> list[RedBlock]:
    """The blocks of a RED ``payload``, the primary last.

    ``red_payload_type``: the RED payload type itself; a block carrying it is a recursive
    header. Only blocks of the primary's payload type are kept. Raises :class:`RedError`.
    """
    data = bytes(payload)
    headers: list[tuple[int, int, int]] = []   # (payload type, timestamp offset, length)
    pos = 0
    while True:
        if pos >= len(data):
            raise RedError("RED header cut short")
        first = data[pos]
        pt = first & 0x7F
        if red_payload_type is not None and pt == red_payload_type:
            raise RedError(f"RED block of payload type {pt} is RED again (recursive header)")
        if not first & 0x80:  # F = 0: the last header, the primary block
            pos += RED_LAST_HEADER_BYTES
            headers.append((pt, 0, -1))
            break
        if pos + RED_HEADER_BYTES > len(data):
            raise RedError("RED header cut short")
        offset = (data[pos + 1] << 6) | (data[pos + 2] >> 2)
        length = ((data[pos + 2] & 0x03) << 8) | data[pos + 3]
        headers.append((pt, offset, length))
        pos += RED_HEADER_BYTES
        if len(headers) > MAX_RED_BLOCKS:
            raise RedError(f"more than {MAX_RED_BLOCKS} RED blocks")
    redundant_bytes = sum(h[2] for h in headers[:-1])
    if pos + redundant_bytes > len(data):
        raise RedError(f"RED block lengths ({redundant_bytes} bytes) run past the end of the payload")
    primary_pt = headers[-1][0]
    if pos + redundant_bytes == len(data):
        raise RedError("RED payload without a primary block")
    sized = [(pt, off, length) for pt, off, length in headers[:-1]] + [(primary_pt, 0, len(data) - pos - redundant_bytes)]
    kept = [h for h in sized if h[2] > 0]     # NetEQ skips empty blocks before giving levels
    blocks = []
    for i, (pt, off, length) in enumerate(kept):
        if pt == primary_pt:
            blocks.append(RedBlock(pt, off, data[pos:pos + length], len(kept) - 1 - i))
        pos += length
    return blocks


def build_red(primary_payload_type: int, primary: bytes, redundant: Sequence[tuple[int, bytes]] = (),
              redundant_payload_type: Optional[int] = None) -> bytes:
    """A RED payload: ``redundant`` blocks ``(timestamp offset, data)``, oldest first, then the
    primary. (The sender side of a simulation, and tests.)"""
    pt_red = primary_payload_type if redundant_payload_type is None else redundant_payload_type
    for value, name in ((primary_payload_type, "payload type"), (pt_red, "payload type")):
        if not 0 <= value <= 127:
            raise ValueError(f"{name} must be 0..127, got {value}")
    head = bytearray()
    body = bytearray()
    for offset, block in redundant:
        if not 0 <= offset <= MAX_TIMESTAMP_OFFSET or len(block) > MAX_BLOCK_BYTES:
            raise ValueError("a RED block needs a timestamp offset < 2^14 and at most 1023 bytes")
        head += bytes([0x80 | pt_red, offset >> 6, ((offset & 0x3F) << 2) | (len(block) >> 8), len(block) & 0xFF])
        body += block
    head.append(primary_payload_type & 0x7F)
    return bytes(head + body + bytes(primary))

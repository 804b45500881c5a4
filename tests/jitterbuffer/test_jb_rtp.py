"""RTP header parsing, validation, serialization and counter unwrapping (jitterbuffer/rtp.py)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitterbuffer.rtp import (
    MAX_REORDERING_THRESHOLD, RtpError, RtpPacket, SequenceLossCounter, SequenceUnwrapper, TimestampUnwrapper,
    parse_rtp,
)


def test_round_trip_with_every_header_part():
    p = RtpPacket(payload_type=96, sequence_number=65535, timestamp=0xFFFFFFF0, ssrc=0xDEADBEEF,
                  payload=b"\x01\x02\x03", marker=True, csrc=(1, 2, 3), extension_profile=0xBEDE,
                  extension_data=b"\xaa" * 8, padding=5)
    data = p.serialize()
    assert len(data) == 12 + 12 + 4 + 8 + 3 + 5
    q = parse_rtp(data)
    assert q == p


def test_fixed_header_fields():
    data = bytes([0x80, 0x80 | 111]) + struct.pack("!HII", 7, 123456, 42) + b"xyz"
    p = parse_rtp(data)
    assert (p.payload_type, p.sequence_number, p.timestamp, p.ssrc, p.marker, p.payload) == (111, 7, 123456, 42,
                                                                                            True, b"xyz")


@pytest.mark.parametrize("data, why", [
    (b"", "shorter"),
    (b"\x80\x60\x00\x01\x00\x00\x00\x01\x00\x00\x00", "shorter"),
    (bytes([0x40, 96]) + bytes(10), "version"),                       # version 1
    (bytes([0x83, 96]) + bytes(10) + bytes(8), "CSRC"),                # 3 CSRCs, only 2 present
    (bytes([0x90, 96]) + bytes(10) + b"\x00\x00", "extension"),       # extension header cut
    (bytes([0x90, 96]) + bytes(10) + b"\xbe\xde\x00\x04" + bytes(8), "extension"),  # body cut
    (bytes([0xA0, 96]) + bytes(10) + b"ab\x00", "padding"),           # padding count 0
    (bytes([0xA0, 96]) + bytes(10) + b"ab\x09", "padding"),           # more padding than payload
    (bytes([0x80, 0x80 | 72]) + bytes(10), "RTCP"),                    # RTCP sender report
])
def test_malformed_packets_are_rejected(data, why):
    with pytest.raises(RtpError, match=why):
        parse_rtp(data)


def test_serialize_rejects_out_of_range_fields():
    with pytest.raises(RtpError):
        RtpPacket(128, 0, 0, 0).serialize()
    with pytest.raises(RtpError):
        RtpPacket(96, 1 << 16, 0, 0).serialize()
    with pytest.raises(RtpError):
        RtpPacket(96, 0, 0, 0, csrc=tuple(range(16))).serialize()


@given(st.binary(max_size=80))
@settings(derandomize=True, max_examples=300)
def test_parse_never_raises_anything_but_rtp_error(data):
    try:
        p = parse_rtp(data)
    except RtpError:
        return
    assert 0 <= p.payload_type < 128 and len(p.payload) <= len(data)


@given(pt=st.integers(0, 127).filter(lambda v: v not in range(72, 77)), seq=st.integers(0, 65535),
       ts=st.integers(0, 2 ** 32 - 1), ssrc=st.integers(0, 2 ** 32 - 1), payload=st.binary(max_size=50),
       marker=st.booleans(), csrc=st.lists(st.integers(0, 2 ** 32 - 1), max_size=15),
       ext=st.one_of(st.none(), st.integers(0, 65535)), ext_words=st.integers(0, 3), padding=st.integers(0, 20))
@settings(derandomize=True, max_examples=200)
def test_round_trip_property(pt, seq, ts, ssrc, payload, marker, csrc, ext, ext_words, padding):
    p = RtpPacket(pt, seq, ts, ssrc, payload, marker, tuple(csrc), ext, b"\x5a" * (4 * ext_words) if ext is not None
                  else b"", padding)
    assert parse_rtp(p.serialize()) == p


def test_sequence_unwrapping_forward_backward_and_across_wrap():
    u = SequenceUnwrapper()
    assert u.unwrap(65533) == 65533
    assert u.unwrap(65535) == 65535
    assert u.unwrap(1) == 65537          # wrapped forward
    assert u.unwrap(65534) == 65534      # reordered packet from before the wrap
    assert u.unwrap(2) == 65538
    assert u.peek(3) == 65539 and u.last == 65538


def test_timestamp_unwrapping_many_wraps():
    u = TimestampUnwrapper()
    step = 960 * 1000
    ts = 2 ** 32 - 5 * step
    values = [u.unwrap((ts + k * step) % 2 ** 32) for k in range(20000)]
    assert values == [ts + k * step for k in range(20000)]  # 4+ wraps, always monotonic


def test_unwrapper_reset():
    u = SequenceUnwrapper()
    u.unwrap(10)
    u.reset()
    assert u.last is None and u.unwrap(40000) == 40000


def lost_after(seqs) -> int:
    counter = SequenceLossCounter()
    for q in seqs:
        counter.update(q & 0xFFFF)
    return counter.packets_lost


def test_loss_is_expected_minus_received_across_the_wrap_with_reordering_and_duplicates():
    seqs = list(range(65500, 65500 + 100))
    assert lost_after(seqs) == 0
    gaps = [q for q in seqs if q not in (65530, 65536, 65537)]
    assert lost_after(gaps) == 3
    reordered = gaps[:40] + [65537] + gaps[40:45] + [65530] + gaps[45:]  # two late packets fill their holes
    assert lost_after(reordered) == 1
    assert lost_after(gaps + gaps[-30:] + gaps[:5]) == 3    # duplicates, even very late ones, count once


@pytest.mark.parametrize("jump", [30000, -30000, 40000, 2 ** 15, MAX_REORDERING_THRESHOLD + 1])
def test_one_packet_with_a_wild_sequence_number_is_a_stray_not_thousands_of_losses(jump):
    seqs = list(range(1000, 1100))
    assert lost_after(seqs[:50] + [seqs[50] + jump] + seqs[50:]) == 0   # an extra packet
    assert lost_after(seqs[:50] + [seqs[50] + jump] + seqs[51:]) == 1   # packet 50 carried a wrong number
    assert lost_after(seqs[:50] + [seqs[50] + jump] + seqs[52:]) == 2


@pytest.mark.parametrize("jump", [30000, -30000, 12345])
def test_a_sender_that_restarts_its_sequence_numbers_loses_nothing(jump):
    seqs = list(range(1000, 1100)) + list(range(1100 + jump, 1200 + jump))
    assert lost_after(seqs) == 0
    assert lost_after(seqs[:150] + seqs[152:]) == 2  # losses after the restart still count


def test_random_sequence_numbers_cannot_inflate_the_loss():
    """Fuzzing used to reach millions: a packet adds at most the reordering threshold."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        seqs = rng.integers(0, 65536, size=200)
        assert 0 <= lost_after(seqs) <= (MAX_REORDERING_THRESHOLD - 1) * len(seqs)
        mixed = np.where(rng.random(200) < 0.3, seqs, 5000 + np.arange(200))
        assert lost_after(mixed) <= 200

"""RED (RFC 2198): the splitter's round trip and refusals (property-based), and RED in the jitter buffer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitterbuffer.jitter_buffer import JitterBuffer, JitterBufferConfig
from jitterbuffer.rtp import RtpPacket
from plc.codecs import get_codec
from plc.codecs.opus import OpusEncoder
from plc.codecs.red import MAX_RED_BLOCKS, RED_PAYLOAD_TYPE, RedError, build_red, split_red
from plc.concealers import make_concealer
from tests.conftest import syllabic

OPUS_PAYLOAD_TYPE = get_codec("opus").payload_type

blocks = st.lists(st.tuples(st.integers(0, (1 << 14) - 1), st.binary(min_size=1, max_size=60)), max_size=5)


@given(blocks, st.binary(min_size=1, max_size=200), st.integers(0, 127))
def test_split_undoes_build(redundant, primary, pt):
    if pt == RED_PAYLOAD_TYPE:
        pt = 111
    out = split_red(build_red(pt, primary, redundant), red_payload_type=RED_PAYLOAD_TYPE)
    assert out[-1].payload == primary and out[-1].red_level == 0 and out[-1].timestamp_offset == 0
    assert [(b.timestamp_offset, b.payload) for b in out[:-1]] == list(redundant)
    assert [b.red_level for b in out] == list(range(len(out) - 1, -1, -1))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_bytes_split_or_refuse_cleanly(data):
    try:
        out = split_red(data, red_payload_type=RED_PAYLOAD_TYPE)
    except RedError:
        return
    total = sum(len(b.payload) for b in out)
    assert 1 <= len(out) <= MAX_RED_BLOCKS + 1 and total <= len(data)
    assert all(b.payload for b in out) and out[-1].red_level == 0


@given(blocks, st.binary(min_size=1, max_size=50), st.integers(0, 39))
def test_block_lengths_past_the_end_are_refused(redundant, primary, cut):
    red = build_red(111, primary, redundant + [(960, b"z" * 40)])
    with pytest.raises(RedError):  # the payload ends inside (or right after) the last redundant block
        split_red(red[:len(red) - len(primary) - cut])


def test_malformed_red_is_refused():
    with pytest.raises(RedError, match="recursive"):
        split_red(build_red(RED_PAYLOAD_TYPE, b"abc"), red_payload_type=RED_PAYLOAD_TYPE)
    with pytest.raises(RedError, match="recursive"):
        split_red(build_red(111, b"abc", [(960, b"x")], redundant_payload_type=RED_PAYLOAD_TYPE),
                  red_payload_type=RED_PAYLOAD_TYPE)
    header = bytes([0x80 | 111, 0, 0, 1])  # a one-byte redundant block
    with pytest.raises(RedError, match="more than"):
        split_red(header * (MAX_RED_BLOCKS + 1) + bytes([111]) + b"x" * (MAX_RED_BLOCKS + 2))
    for bad in (b"", bytes([0x80 | 111, 0, 0]), build_red(111, b"")):
        with pytest.raises(RedError):
            split_red(bad)


def test_empty_and_foreign_blocks_are_skipped():
    red = build_red(111, b"primary", [(1920, b""), (960, b"old")])
    out = split_red(red)
    assert [(b.timestamp_offset, b.payload, b.red_level) for b in out] == [(960, b"old", 1), (0, b"primary", 0)]
    red = build_red(111, b"primary", [(960, b"dtmf")], redundant_payload_type=101)
    assert [b.payload for b in split_red(red)] == [b"primary"]


# ------------------------------------------------------------- in the buffer
def red_stream(seconds: float = 2.0) -> list[bytes]:
    x = syllabic(seconds, seed=4)
    enc = OpusEncoder(16000, 24000, 20)  # no in-band FEC: RED alone carries the redundancy
    payloads = [enc.encode(x[k * 320:(k + 1) * 320]) for k in range(len(x) // 320)]
    return [RtpPacket(RED_PAYLOAD_TYPE, k, 9000 + 960 * k, 5,
                      build_red(OPUS_PAYLOAD_TYPE, p, [(960, payloads[k - 1])] if k else [])).serialize()
            for k, p in enumerate(payloads)]


def test_red_blocks_recover_isolated_losses(helpers):
    packets = red_stream()
    lost = set(range(5, len(packets) - 1, 6))
    arrivals = [(20.0 * k + 30.0, p) for k, p in enumerate(packets) if k not in lost]
    jb = JitterBuffer(make_concealer("neteq"), JitterBufferConfig.from_spec("fixed:60"))
    y = helpers.play(jb, arrivals, 300, until_done=True)
    s = jb.stats
    assert s["fecPacketsRecovered"] == len(lost) and s["concealedSamples"] == 0
    assert s["fecPacketsReceived"] == len(packets) - len(lost) - 1   # the first packet has no block
    assert s["packetsLost"] == len(lost) and s["packetsMalformed"] == 0
    assert np.sqrt(np.mean(y[4000:-4000] ** 2)) > 0.05


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=80), min_size=1, max_size=20))
def test_garbage_red_packets_never_raise(payloads):
    good = red_stream(0.5)
    jb = JitterBuffer(make_concealer("zero"), JitterBufferConfig.from_spec("fixed:40"))
    for k, p in enumerate(good):
        jb.insert_packet(p, 20.0 * k)
        if k < len(payloads):
            jb.insert_packet(RtpPacket(RED_PAYLOAD_TYPE, 1000 + k, 9000 + 960 * k + 480, 5, payloads[k]).serialize(),
                             20.0 * k + 5)
        frame = jb.get_audio(20.0 * k)
        assert frame.shape == (160,) and np.all(np.isfinite(frame))
    assert jb.stats["internalErrors"] == 0

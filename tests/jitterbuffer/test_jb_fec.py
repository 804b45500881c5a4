"""Redundancy in the jitter buffer: Opus in-band FEC copies and NetEQ's priority rule."""

from __future__ import annotations

import numpy as np
import pytest

from jitterbuffer.jitter_buffer import JitterBuffer, JitterBufferConfig
from jitterbuffer.packet_buffer import PRIMARY, BufferedPacket, InsertResult, PacketBuffer, Priority
from jitterbuffer.rtp import RtpPacket
from plc.codecs import get_codec
from plc.codecs.opus import OpusEncoder
from plc.codecs.opus_fec import has_lbrr
from plc.concealers import make_concealer
from tests.conftest import syllabic

OPUS_PAYLOAD_TYPE = get_codec("opus").payload_type

STEP = 960  # 20 ms at Opus' 48 kHz RTP clock


def opus_stream(seconds: float = 3.0, fec: bool = True, seed: int = 0) -> tuple[list[bytes], list[bytes]]:
    """20 ms Opus RTP packets of a speech-like signal, and their payloads."""
    x = syllabic(seconds, seed=seed)
    enc = OpusEncoder(16000, 24000, 20, fec=fec, expected_loss_percent=10)
    payloads = [enc.encode(x[k * 320:(k + 1) * 320]) for k in range(len(x) // 320)]
    packets = [RtpPacket(OPUS_PAYLOAD_TYPE, 100 + k, 70000 + STEP * k, 42, p).serialize()
               for k, p in enumerate(payloads)]
    return packets, payloads


def assert_counters_add_up(s: dict) -> None:
    assert s["jitterBufferEmittedCount"] + s["concealedSamples"] == s["totalSamplesReceived"]


# ---------------------------------------------------------------- packet buffer
def _bp(ts: int, priority: Priority = PRIMARY, payload: bytes = b"x") -> BufferedPacket:
    return BufferedPacket(ts, 960, 0, 111, payload, 0.0, priority)


def test_packet_buffer_keeps_the_better_priority_at_a_timestamp():
    buf = PacketBuffer()
    assert buf.insert(_bp(960, Priority(1, 0))) == InsertResult.INSERTED
    # a late primary replaces its FEC copy
    assert buf.insert(_bp(960)) == InsertResult.REPLACED_REDUNDANT
    assert buf.peek().is_primary
    # a FEC copy never replaces a primary; nor a RED copy
    assert buf.insert(_bp(960, Priority(1, 0), b"longer payload")) == InsertResult.DROPPED_REDUNDANT
    assert buf.insert(_bp(960, Priority(0, 1))) == InsertResult.DROPPED_REDUNDANT
    assert buf.peek().is_primary and len(buf) == 1
    # between copies the lower (codec level, RED level) wins
    assert buf.insert(_bp(0, Priority(1, 0))) == InsertResult.INSERTED
    assert buf.insert(_bp(0, Priority(0, 1))) == InsertResult.REPLACED_REDUNDANT
    assert buf.peek().priority == Priority(0, 1)
    assert buf.duplicates_dropped == 0
    # copies are left out of the buffered audio (NetEQ's NumSamplesInBuffer)
    assert buf.num_samples() == 960


# ------------------------------------------------------------------ the bar
@pytest.mark.parametrize("buffer", ["fixed:60", "adaptive"])
@pytest.mark.parametrize("method", ["neteq", "zero"])
def test_every_loss_whose_successor_is_buffered_in_time_is_recovered(helpers, buffer, method):
    packets, payloads = opus_stream()
    n = len(packets)
    lost = set(range(4, n - 1, 7)) | set(range(11, n - 1, 21))  # isolated losses and some pairs
    # 40 ms network delay, no jitter: every successor is in the buffer before its predecessor is due
    arrivals = [(20.0 * k + 40.0, p) for k, p in enumerate(packets) if k not in lost]
    recoverable = [k for k in lost if k + 1 not in lost and has_lbrr(payloads[k + 1])]
    assert len(recoverable) > 10
    jb = JitterBuffer(make_concealer(method), JitterBufferConfig.from_spec(buffer))
    y = helpers.play(jb, arrivals, 400, until_done=True)
    s = jb.stats
    assert s["fecPacketsRecovered"] == len(recoverable)
    assert s["fecSamplesDecoded"] == 320 * len(recoverable)
    assert s["fecPacketsReceived"] == sum(has_lbrr(payloads[k]) for k in range(n) if k not in lost)
    assert s["fecPacketsReceived"] - s["fecPacketsDiscarded"] == len(recoverable)
    assert s["packetsLost"] == len(lost) and s["decodeErrors"] == 0 and s["packetsDiscarded"] == 0
    assert_counters_add_up(s)
    if buffer.startswith("fixed"):  # fixed: two concealed 10 ms frames per unrecovered packet, nothing else
        assert s["concealedSamples"] == 320 * (len(lost) - len(recoverable))
    assert np.all(np.isfinite(y))


def test_recovery_can_be_switched_off_and_costs_nothing_without_fec(helpers):
    packets, _ = opus_stream()
    arrivals = [(20.0 * k + 40.0, p) for k, p in enumerate(packets) if k % 7 != 4]
    results = {}
    for name, config in (("on", JitterBufferConfig.from_spec("fixed:60")),
                         ("off", JitterBufferConfig.from_spec("fixed:60", use_redundancy=False))):
        jb = JitterBuffer(make_concealer("zero"), config)
        results[name] = (helpers.play(jb, arrivals, 400, until_done=True), jb.stats)
    assert results["on"][1]["fecPacketsRecovered"] > 10
    assert results["off"][1]["fecPacketsRecovered"] == results["off"][1]["fecPacketsReceived"] == 0
    assert results["off"][1]["concealedSamples"] > results["on"][1]["concealedSamples"]
    # a stream without FEC: the same output whether recovery is on or off
    plain, _ = opus_stream(fec=False)
    arrivals = [(20.0 * k + 40.0, p) for k, p in enumerate(plain) if k % 7 != 4]
    outs = []
    for use in (True, False):
        jb = JitterBuffer(make_concealer("neteq"), JitterBufferConfig.from_spec("adaptive", use_redundancy=use))
        outs.append(helpers.play(jb, arrivals, 400, until_done=True))
        assert jb.stats["fecPacketsReceived"] == 0
    assert np.array_equal(outs[0], outs[1])


def test_a_late_primary_replaces_its_fec_copy_and_a_played_copy_makes_it_late(helpers):
    packets, payloads = opus_stream(1.0)
    k = next(i for i in range(3, len(packets) - 2) if has_lbrr(payloads[i + 1]))
    # packet k comes before the next one (its FEC copy is dropped), or after it but before its turn
    # (the primary replaces the copy): either way the primary is played
    for delay_ms in (15.0, 50.0):
        arrivals = [(20.0 * i + 40.0, p) for i, p in enumerate(packets) if i != k]
        arrivals.append((20.0 * k + 40.0 + delay_ms, packets[k]))
        jb = JitterBuffer(make_concealer("zero"), JitterBufferConfig.from_spec("fixed:80"))
        helpers.play(jb, arrivals, 120, until_done=True)
        s = jb.stats
        assert s["fecPacketsRecovered"] == 0 and s["concealedSamples"] == 0 and s["packetsLate"] == 0
        assert s["fecPacketsDiscarded"] == s["fecPacketsReceived"] > 0 and s["packetsDuplicated"] == 0
    # packet k comes after its FEC copy was played: it is late (not a duplicate), the copy counts as recovered
    arrivals = [(20.0 * i + 40.0, p) for i, p in enumerate(packets) if i != k] + [(20.0 * k + 300.0, packets[k])]
    jb = JitterBuffer(make_concealer("zero"), JitterBufferConfig.from_spec("fixed:80"))
    helpers.play(jb, arrivals, 120, until_done=True)
    s = jb.stats
    assert s["fecPacketsRecovered"] == 1 and s["packetsLate"] == 1 and s["packetsDuplicated"] == 0
    assert s["concealedSamples"] == 0
    assert_counters_add_up(s)


def test_duplicated_packets_do_not_count_their_copies_twice(helpers):
    packets, payloads = opus_stream(1.0)
    arrivals = [(20.0 * i + 40.0, p) for i, p in enumerate(packets)]
    arrivals += [(20.0 * i + 45.0, p) for i, p in enumerate(packets) if i % 5 == 2]  # network duplicates
    jb = JitterBuffer(make_concealer("zero"), JitterBufferConfig.from_spec("fixed:60"))
    helpers.play(jb, arrivals, 120, until_done=True)
    s = jb.stats
    assert s["fecPacketsRecovered"] == 0 and s["concealedSamples"] == 0
    assert s["fecPacketsDiscarded"] == s["fecPacketsReceived"] > 0

"""Property tests: arbitrary packet sequences never break the jitter buffer.

Whatever arrives (duplicates, reordering, wrap-around of the sequence number
and timestamp, SSRC and payload type changes, truncated packets, garbage
bytes, absurd arrival times), every tick gives exactly one finite 10 ms frame
in [-1, 1], no exception escapes, no internal error is counted, memory
stays bounded, the played samples add up and neither the loss nor the delay
statistics run away.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitterbuffer.neteq import JitterBuffer, JitterBufferConfig
from jitterbuffer.payload import OPUS_PAYLOAD_TYPE, PCM_PAYLOAD_TYPE
from jitterbuffer.rtp import MAX_REORDERING_THRESHOLD, RtpPacket
from plc.concealers import make_concealer

CAPACITY = 16
SETTINGS = settings(derandomize=True, deadline=None, max_examples=80,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

near_wrap_seq = st.one_of(st.integers(0, 65535), st.integers(65500, 65535), st.integers(0, 40))
near_wrap_ts = st.one_of(st.integers(0, 2 ** 32 - 1), st.integers(2 ** 32 - 20000, 2 ** 32 - 1), st.integers(0, 20000))


@st.composite
def rtp_packets(draw):
    pt = draw(st.sampled_from([PCM_PAYLOAD_TYPE] * 6 + [OPUS_PAYLOAD_TYPE, 0, 97]))
    if pt == PCM_PAYLOAD_TYPE:
        n = draw(st.sampled_from([640] * 6 + [320, 1280, 160, 3, 0]))
        payload = draw(st.binary(min_size=n, max_size=n)) if n < 64 else bytes(draw(
            st.lists(st.integers(0, 255), min_size=8, max_size=8)) * (n // 8)) + bytes(n % 8)
    else:
        payload = draw(st.binary(max_size=60))
    pkt = RtpPacket(pt, draw(near_wrap_seq), draw(near_wrap_ts), draw(st.sampled_from([1] * 6 + [2, 0xFFFFFFFF])),
                    payload, draw(st.booleans()), tuple(draw(st.lists(st.integers(0, 2 ** 32 - 1), max_size=3))),
                    draw(st.one_of(st.none(), st.just(0xBEDE))), b"", draw(st.sampled_from([0, 0, 4])))
    data = pkt.serialize()
    cut = draw(st.sampled_from([None] * 8 + [len(data) - 1, len(data) // 2, 11]))
    return data if cut is None else data[:cut]


packets = st.one_of(rtp_packets(), rtp_packets(), rtp_packets(), rtp_packets(), st.binary(max_size=100))
arrival_offsets = st.one_of(*[st.floats(-50, 300)] * 8, st.just(float("nan")), st.just(1e12))
events = st.lists(st.tuples(packets, arrival_offsets, st.integers(0, 3)), max_size=40)


def check_frame(frame: np.ndarray) -> None:
    assert frame.shape == (160,) and frame.dtype == np.float32
    assert np.all(np.isfinite(frame)) and np.max(np.abs(frame)) <= 1.0


def check_bounded(jb: JitterBuffer) -> None:
    assert len(jb.packets) <= CAPACITY
    assert len(jb._sync) <= jb._sync.capacity and len(jb._frames) <= 12
    assert len(jb.arrivals) <= 1000 and len(jb._recent_ts) <= 256 and len(jb._loss._recent_set) <= 512


def run(jb: JitterBuffer, evs) -> None:
    now = 0.0
    for data, dt, ticks in evs:
        arrival = now + dt if np.isfinite(dt) else dt
        assert jb.insert_packet(data, arrival) in (True, False)
        for _ in range(ticks):
            now += 10.0
            check_frame(jb.get_audio(now))
        check_bounded(jb)
    for _ in range(30):
        now += 10.0
        check_frame(jb.get_audio(now))
    stats = jb.stats
    assert stats["internalErrors"] == 0
    assert all(np.isfinite(v) for v in stats.values() if isinstance(v, float))
    check_counters(stats)


def check_counters(stats: dict) -> None:
    """Every played sample is received or concealed; neither loss nor delay runs away."""
    assert stats["jitterBufferEmittedCount"] + stats["concealedSamples"] == stats["totalSamplesReceived"]
    assert 0 <= stats["silentConcealedSamples"] <= stats["concealedSamples"]
    assert 0 <= stats["packetsLost"] <= MAX_REORDERING_THRESHOLD * stats["packetsReceived"]
    if stats["jitterBufferEmittedCount"]:  # a sample waits at most the buffer plus the arrival tolerance
        assert 0 <= stats["jitterBufferDelay"] / stats["jitterBufferEmittedCount"] <= 5.0


@given(events, st.sampled_from(["adaptive", "fixed:40"]))
@SETTINGS
def test_arbitrary_packets_never_break_the_buffer(evs, buffer):
    jb = JitterBuffer(make_concealer("repeat"), JitterBufferConfig.from_spec(buffer, capacity_packets=CAPACITY))
    run(jb, evs)


@st.composite
def mangled_stream(draw):
    """A real 20 ms PCM stream near both wrap points, then duplicated, reordered, dropped and jittered."""
    n = draw(st.integers(5, 60))
    seq0 = draw(st.integers(65500, 65535))
    ts0 = draw(st.integers(2 ** 32 - 320 * 30, 2 ** 32 - 1))
    tone = (0.3 * np.sin(np.arange(320 * n) * 0.07)).astype("<f4")
    pkts = []
    for k in range(n):
        payload = (np.clip(tone[k * 320:(k + 1) * 320], -1, 1) * 32767).astype("<i2").tobytes()
        pkts.append((20.0 * k, RtpPacket(PCM_PAYLOAD_TYPE, (seq0 + k) & 0xFFFF, (ts0 + 320 * k) & 0xFFFFFFFF,
                                         42, payload).serialize()))
    out = []
    for t, p in pkts:
        copies = draw(st.sampled_from([0, 1, 1, 1, 1, 2]))
        for _ in range(copies):
            out.append((t + draw(st.floats(0, 150)), p))
    if draw(st.booleans()):  # an SSRC change half way
        out = [(t, p if t < 10.0 * n else p[:8] + b"\x00\x00\x00\x07" + p[12:]) for t, p in out]
    return sorted(out, key=lambda e: e[0])


@given(mangled_stream(), st.sampled_from(["adaptive", "fixed:60"]), st.sampled_from(["zero", "g711"]))
@SETTINGS
def test_mangled_real_streams_play_without_errors(arrivals, buffer, method):
    jb = JitterBuffer(make_concealer(method), JitterBufferConfig.from_spec(buffer, capacity_packets=CAPACITY))
    i, now = 0, 0.0
    last = arrivals[-1][0] if arrivals else 0.0
    while now < last + 500:
        while i < len(arrivals) and arrivals[i][0] <= now:
            jb.insert_packet(arrivals[i][1], arrivals[i][0])
            i += 1
        check_frame(jb.get_audio(now))
        check_bounded(jb)
        now += 10.0
    s = jb.stats
    assert s["internalErrors"] == 0 and s["packetsMalformed"] == 0
    assert s["packetsReceived"] == len(arrivals)
    check_counters(s)

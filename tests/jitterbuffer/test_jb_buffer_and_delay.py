"""Packet buffer (ordering, duplicates, late packets, overflow) and delay manager."""

from __future__ import annotations

import numpy as np
import pytest

from jitterbuffer.delay_manager import (ClockSkewEstimator, DelayManager, DelayManagerConfig, Histogram,
                                        PacketArrivalHistory, ReorderOptimizer)
from jitterbuffer.packet_buffer import BufferedPacket, InsertResult, PacketBuffer


def pkt(ts: int, payload: bytes = b"x" * 640, arrival: float = 0.0, dur: int = 320) -> BufferedPacket:
    return BufferedPacket(ts, dur, ts // dur, 96, payload, arrival)


# ------------------------------------------------------------- packet buffer
def test_packets_come_out_in_timestamp_order():
    b = PacketBuffer(10)
    for ts in (960, 0, 640, 320):
        assert b.insert(pkt(ts)) == InsertResult.INSERTED
    assert [b.pop().timestamp for _ in range(4)] == [0, 320, 640, 960]
    assert b.pop() is None and b.peek() is None


def test_duplicate_keeps_the_better_copy():
    b = PacketBuffer(10)
    b.insert(pkt(0, b"short"))
    assert b.insert(pkt(0, b"x" * 640)) == InsertResult.REPLACED_DUPLICATE
    assert b.insert(pkt(0, b"trunc")) == InsertResult.DROPPED_DUPLICATE
    assert len(b) == 1 and b.peek().payload == b"x" * 640 and b.duplicates_dropped == 2


def test_discard_old_removes_only_packets_entirely_before_the_limit():
    b = PacketBuffer(10)
    for ts in (0, 320, 640):
        b.insert(pkt(ts))
    old = b.discard_old(500)
    assert [p.timestamp for p in old] == [0]  # 320..640 still overlaps the limit
    assert b.num_samples() == 640 and b.span() == 640


def test_overflow_drop_oldest():
    b = PacketBuffer(3, "drop_oldest")
    for ts in (320, 640, 960):
        b.insert(pkt(ts))
    assert b.insert(pkt(1280)) == InsertResult.INSERTED_AFTER_OVERFLOW
    assert [p.timestamp for p in b] == [640, 960, 1280]
    assert b.insert(pkt(0)) == InsertResult.DROPPED_OVERFLOW  # older than everything held
    assert b.overflow_dropped == 2 and len(b) == 3


def test_overflow_flush():
    b = PacketBuffer(2, "flush")
    b.insert(pkt(0))
    b.insert(pkt(320))
    assert b.insert(pkt(640)) == InsertResult.INSERTED_AFTER_OVERFLOW
    assert [p.timestamp for p in b] == [640] and b.overflow_dropped == 2


def test_bad_buffer_settings():
    with pytest.raises(ValueError):
        PacketBuffer(0)
    with pytest.raises(ValueError):
        PacketBuffer(5, "random")


# ------------------------------------------------------------- delay manager
def test_histogram_quantile_and_forgetting():
    h = Histogram(10, 0.9, start_forget_weight=None)
    for _ in range(200):
        h.add(2)
    assert h.quantile(0.95) == 2
    for _ in range(200):
        h.add(7)
    assert h.quantile(0.5) == 7  # old values forgotten
    assert abs(h.buckets.sum() - 1.0) < 1e-9


def test_arrival_history_relative_and_playout_delay():
    a = PacketArrivalHistory(window_ms=2000)
    a.insert(0.0, 100.0)      # reference: transit 100
    a.insert(20.0, 150.0)     # 30 ms later than the reference predicts
    assert a.delay_ms(20.0, 150.0) == pytest.approx(30.0)
    assert a.playout_delay_ms(0.0, 160.0) == pytest.approx(60.0)
    a.insert(40.0, 130.0)     # faster than the reference: becomes the reference
    assert a.delay_ms(20.0, 150.0) == pytest.approx(40.0)
    assert a.max_delay_ms() == pytest.approx(40.0)
    assert not a.insert(40.0, 500.0)  # same timestamp again
    assert a.is_newest(40.0) and not a.is_newest(20.0)


def test_arrival_history_forgets_outside_the_window():
    a = PacketArrivalHistory(window_ms=100)
    a.insert(0.0, 0.0)  # very fast packet
    for k in range(1, 20):
        a.insert(20.0 * k, 20.0 * k + 50)
    assert len(a) <= 7
    assert a.delay_ms(380.0, 430.0) == pytest.approx(0.0)  # the old fast packet no longer counts


def test_target_follows_jitter_and_comes_back_down():
    rng = np.random.default_rng(1)
    dm = DelayManager(DelayManagerConfig())
    dm.set_packet_ms(20)
    for _ in range(500):
        dm.update(float(rng.exponential(40.0)), False)
    high = dm.target_ms
    for _ in range(2000):
        dm.update(float(rng.exponential(2.0)), False)
    assert high >= 90.0 and dm.target_ms <= 30.0


def test_target_is_clamped():
    dm = DelayManager(DelayManagerConfig(min_delay_ms=60, max_delay_ms=100))
    for d in (0.0, 1.0, 2.0):
        dm.update(d, False)
    assert dm.target_ms == 60
    for _ in range(300):
        dm.update(500.0, False)
    assert dm.target_ms == 100
    with pytest.raises(ValueError):
        DelayManager(DelayManagerConfig(min_delay_ms=50, max_delay_ms=10))


def test_reordering_raises_the_target():
    r = ReorderOptimizer()
    for k in range(3000):
        r.update(60.0 if k % 20 == 0 else 0.0, reordered=k % 20 == 0)  # 5% reordered by 60 ms
    assert r.optimal_delay_ms >= 60
    dm = DelayManager(DelayManagerConfig())
    for k in range(3000):
        dm.update(0.0 if k % 20 else 60.0, reordered=k % 20 == 0)
    assert dm.target_ms >= 60  # the underrun quantile alone would say 10


def test_clock_skew_estimate_ignores_jitter_and_spikes():
    rng = np.random.default_rng(3)
    est = ClockSkewEstimator()
    for k in range(3000):  # 60 s; the sender's clock runs 1% slow
        ts = 20.0 * k
        spike = 300.0 if 1000 <= k < 1010 else 0.0
        est.update(ts, ts * 1.0101 + 40 + rng.exponential(20.0) + spike)
    assert est.skew == pytest.approx(0.0101, abs=0.001)
    hist = PacketArrivalHistory()
    hist.skew = est.skew
    for k in range(100):  # with the skew known, the drift is not taken for delay
        ts = 20.0 * k
        hist.insert(ts, ts * 1.0101 + 40)
    assert hist.delay_ms(2000.0, 2000.0 * 1.0101 + 40) == pytest.approx(0.0, abs=0.5)


def test_each_setting_has_one_default():
    """The jitter buffer's configuration holds its parts' configurations (not copies of their fields),
    the arrival window is the configured one, and plc netsim's options default to the same values."""
    from jitterbuffer.decision_logic import DecisionConfig
    from jitterbuffer.jitter_buffer import JitterBuffer, JitterBufferConfig
    from jitterbuffer.time_stretch import TimeStretchConfig
    from plc.cli import build_parser
    from plc.concealers import make_concealer

    c = JitterBufferConfig()
    assert (c.delay, c.decision, c.stretch) == (DelayManagerConfig(), DecisionConfig(), TimeStretchConfig())
    jb = JitterBuffer(make_concealer("zero"), JitterBufferConfig(delay=DelayManagerConfig(history_window_ms=500.0)))
    assert jb.arrivals.window_ms == 500.0 and jb.delay_manager.config is jb.config.delay
    assert jb.delay_manager.target_ms == c.prefetch_ms
    args = build_parser().parse_args(["netsim", "in.wav", "out.wav", "--network", "clean"])
    assert (args.min_delay, args.max_delay, args.quantile) == (c.delay.min_delay_ms, c.delay.max_delay_ms,
                                                               c.delay.quantile)

"""The delay manager: the target playout delay from measured arrival jitter.

Modelled on NetEQ's ``DelayManager`` (``delay_manager.cc``,
``packet_arrival_history.cc``, ``underrun_optimizer.cc``,
``reorder_optimizer.cc``, ``histogram.cc``):

* :class:`PacketArrivalHistory` keeps the packets of the last ``window_ms``
  of media time. A packet's *relative arrival delay* is how much later it
  arrived than the fastest packet of the window would predict:
  ``(arrival - ref.arrival) - (timestamp - ref.timestamp)``, where ``ref`` is
  the packet with the smallest ``arrival - timestamp`` (the least delayed).
  The same reference gives the *playout delay* of the sample being played,
  ``now - ref.arrival - (playout_timestamp - ref.timestamp)``: how long after
  the fastest possible arrival it is heard. A packet is late exactly when its
  relative arrival delay exceeds the playout delay, so the decision logic
  steers the playout delay towards the target.
* :class:`UnderrunOptimizer` puts the relative delays of in-order packets in
  a histogram whose old entries are forgotten exponentially
  (``forget_factor`` per packet, with NetEQ's faster start), and takes a high
  quantile (``quantile``): the delay that covers that share of packets.
* :class:`ReorderOptimizer` (reacting to reordering) puts the delays of
  reordered packets (and a zero for in-order ones) in a slower histogram and
  picks the delay minimising ``delay + ms_per_loss_percent * loss%``: a
  reordered packet is lost unless the delay covers it.
* :class:`DelayManager` combines them: ``max(underrun, reorder)``, clamped to
  ``[min_delay_ms, max_delay_ms]``, at least one packet and at most 3/4 of the
  packet buffer.

All times are in milliseconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Optional

import numpy as np


class Histogram:
    """Probability histogram with exponential forgetting (NetEQ's ``Histogram``).

    Each :meth:`add` multiplies every bucket by the forget factor and adds
    ``1 - forget_factor`` to the bucket of the value, so the buckets always
    sum to one. With ``start_forget_weight`` the forget factor starts low
    (``1 - w / (n + 1)`` after ``n`` values, a plain average) and grows to
    ``forget_factor``, so the first packets are not drowned by the initial state.
    """

    def __init__(self, num_buckets: int, forget_factor: float, start_forget_weight: Optional[float] = 2.0) -> None:
        if num_buckets < 1 or not 0.0 < forget_factor < 1.0:
            raise ValueError("histogram needs buckets and a forget factor in (0, 1)")
        self.num_buckets = int(num_buckets)
        self.base_forget_factor = float(forget_factor)
        self.start_forget_weight = start_forget_weight
        self.reset()

    def reset(self) -> None:
        self.buckets = np.zeros(self.num_buckets, dtype=np.float64)
        self.buckets[0] = 1.0
        self.forget_factor = 0.0
        self.add_count = 0

    def add(self, index: int) -> None:
        """Register one observation in bucket ``index`` (clamped to the last bucket)."""
        index = min(max(int(index), 0), self.num_buckets - 1)
        self.buckets *= self.forget_factor
        self.buckets[index] += 1.0 - self.forget_factor
        self.add_count += 1
        if self.start_forget_weight:
            self.forget_factor = max(0.0, min(self.base_forget_factor,
                                              1.0 - self.start_forget_weight / (self.add_count + 1)))
        else:
            self.forget_factor += (self.base_forget_factor - self.forget_factor) / 4.0
        if self.add_count % 64 == 0:  # keep rounding from drifting
            total = self.buckets.sum()
            if total > 0:
                self.buckets /= total

    def quantile(self, probability: float) -> int:
        """Smallest bucket index whose cumulative probability reaches ``probability``."""
        cum = np.cumsum(self.buckets)
        return int(min(np.searchsorted(cum, probability - 1e-12), self.num_buckets - 1))


class ClockSkewEstimator:
    """Rate difference between the sender's media clock and the receiver's clock.

    The least transit time (``arrival - timestamp``) of each ``block_ms`` of
    arrivals is kept for the last ``blocks`` blocks, and the skew is the
    Theil-Sen slope (median of pairwise slopes) of those minima against the
    timestamp: robust to jitter, spikes and losses. A sender whose clock runs
    1% slow gives a skew of about +0.01 (each packet arrives 1% later).
    """

    def __init__(self, block_ms: float = 1000.0, blocks: int = 30, min_blocks: int = 5,
                 max_skew: float = 0.05) -> None:
        self.block_ms = float(block_ms)
        self.min_blocks = int(min_blocks)
        self.max_skew = float(max_skew)
        self._minima: deque[tuple[float, float]] = deque(maxlen=int(blocks))
        self._block: Optional[int] = None
        self._best: Optional[tuple[float, float]] = None
        self.skew = 0.0

    def reset(self) -> None:
        self._minima.clear()
        self._block = None
        self._best = None
        self.skew = 0.0

    def update(self, ts_ms: float, arrival_ms: float) -> float:
        """Register a packet; returns the current skew estimate."""
        block = int(arrival_ms // self.block_ms)
        if self._block is not None and block != self._block and self._best is not None:
            self._minima.append(self._best)
            self._best = None
            if len(self._minima) >= self.min_blocks:
                self._fit()
        self._block = block
        transit = arrival_ms - ts_ms
        if self._best is None or transit < self._best[1]:
            self._best = (ts_ms, transit)
        return self.skew

    def _fit(self) -> None:
        pts = np.array(self._minima)
        t, y = pts[:, 0], pts[:, 1]
        i, j = np.triu_indices(len(t), 1)
        dt = t[j] - t[i]
        ok = np.abs(dt) > 1e-6
        if not np.any(ok):
            return
        slope = float(np.median((y[j] - y[i])[ok] / dt[ok]))
        self.skew = float(np.clip(slope, -self.max_skew, self.max_skew))


class PacketArrivalHistory:
    """Arrival times of the last ``window_ms`` of packets, for relative and playout delays.

    With a clock ``skew`` set (see :class:`ClockSkewEstimator`), timestamps
    are scaled by ``1 + skew`` first, so that a drifting sender clock does not
    look like delay building up inside the window.

    Parameters
    ----------
    window_ms : float
        Media time kept, counted back from the newest timestamp (2000 in NetEQ).
    max_entries : int
        Hard bound on the packets kept (against floods of odd timestamps).
    """

    def __init__(self, window_ms: float = 2000.0, max_entries: int = 1000) -> None:
        self.window_ms = float(window_ms)
        self._history: deque[tuple[float, float]] = deque(maxlen=max_entries)
        self._timestamps: dict[float, int] = {}
        self._ref: Optional[tuple[float, float]] = None
        self._skew = 0.0
        self.newest_ts_ms: Optional[float] = None

    def __len__(self) -> int:
        return len(self._history)

    @property
    def skew(self) -> float:
        return self._skew

    @skew.setter
    def skew(self, value: float) -> None:
        if value != self._skew:
            self._skew = float(value)
            self._ref = self._best() if self._history else None

    def reset(self) -> None:
        self._history.clear()
        self._timestamps.clear()
        self._ref = None
        self.newest_ts_ms = None

    def _transit(self, p: tuple[float, float]) -> float:
        return p[1] - p[0] * (1.0 + self._skew)

    def _best(self) -> tuple[float, float]:
        return min(self._history, key=self._transit)

    def insert(self, ts_ms: float, arrival_ms: float) -> bool:
        """Record a packet (media timestamp and arrival time, ms). False if already recorded."""
        if ts_ms in self._timestamps:
            return False
        if self.newest_ts_ms is None or ts_ms > self.newest_ts_ms:
            self.newest_ts_ms = ts_ms
        dirty = False
        if len(self._history) == self._history.maxlen:
            dirty = self._drop_oldest()
        self._history.append((ts_ms, arrival_ms))
        self._timestamps[ts_ms] = self._timestamps.get(ts_ms, 0) + 1
        while self._history and self._history[0][0] + self.window_ms < self.newest_ts_ms:
            dirty = self._drop_oldest() or dirty
        if not self._history:
            self._ref = None
        elif dirty or self._ref is None:
            self._ref = self._best()
        elif self._transit((ts_ms, arrival_ms)) <= self._transit(self._ref):
            self._ref = (ts_ms, arrival_ms)
        return True

    def _drop_oldest(self) -> bool:
        old = self._history.popleft()
        left = self._timestamps.get(old[0], 1) - 1
        if left <= 0:
            self._timestamps.pop(old[0], None)
        else:
            self._timestamps[old[0]] = left
        return old == self._ref

    def is_newest(self, ts_ms: float) -> bool:
        """True if no recorded packet has a later timestamp."""
        return self.newest_ts_ms is None or ts_ms >= self.newest_ts_ms

    def delay_ms(self, ts_ms: float, arrival_ms: float) -> float:
        """Relative arrival delay of a packet (>= 0), ms."""
        offset = self.offset_ms(ts_ms, arrival_ms)
        return 0.0 if offset is None else max(0.0, offset)

    def offset_ms(self, ts_ms: float, arrival_ms: float) -> Optional[float]:
        """How much later than the fastest packet of the window predicts a packet arrives, ms
        (negative: earlier, which the timestamp of a real packet never allows by much); None
        while the history is empty."""
        if self._ref is None:
            return None
        return self._transit((ts_ms, arrival_ms)) - self._transit(self._ref)

    def playout_delay_ms(self, playout_ts_ms: float, now_ms: float) -> float:
        """How long after the fastest possible arrival the sample at ``playout_ts_ms`` plays, ms."""
        if self._ref is None:
            return 0.0
        return self._transit((playout_ts_ms, now_ms)) - self._transit(self._ref)

    def max_delay_ms(self) -> float:
        """The largest relative arrival delay in the window, ms."""
        if self._ref is None:
            return 0.0
        return max(self.delay_ms(t, a) for t, a in self._history)


class UnderrunOptimizer:
    """Target delay as a high quantile of relative arrival delays (NetEQ's ``UnderrunOptimizer``).

    With ``resample_interval_ms`` set, only the largest delay of each interval
    of arrival time is added (NetEQ's option for bursty networks).
    """

    def __init__(self, quantile: float = 0.95, forget_factor: float = 0.983,
                 start_forget_weight: Optional[float] = 2.0, bucket_ms: float = 10.0,
                 max_delay_ms: float = 2000.0, resample_interval_ms: Optional[float] = None) -> None:
        if not 0.0 < quantile < 1.0:
            raise ValueError("quantile must be within (0, 1)")
        self.quantile = float(quantile)
        self.bucket_ms = float(bucket_ms)
        self.histogram = Histogram(int(np.ceil(max_delay_ms / bucket_ms)), forget_factor, start_forget_weight)
        self.resample_interval_ms = resample_interval_ms
        self.optimal_delay_ms: Optional[float] = None
        self._interval_start: Optional[float] = None
        self._interval_max = 0.0

    def reset(self) -> None:
        self.histogram.reset()
        self.optimal_delay_ms = None
        self._interval_start = None
        self._interval_max = 0.0

    def update(self, relative_delay_ms: float, arrival_ms: float = 0.0) -> None:
        if self.resample_interval_ms:
            if self._interval_start is None:
                self._interval_start = arrival_ms
                self._interval_max = relative_delay_ms
            self._interval_max = max(self._interval_max, relative_delay_ms)
            if arrival_ms - self._interval_start < self.resample_interval_ms and self.optimal_delay_ms is not None:
                return
            relative_delay_ms = self._interval_max
            self._interval_start = arrival_ms
            self._interval_max = 0.0
        self.histogram.add(int(relative_delay_ms // self.bucket_ms))
        self.optimal_delay_ms = (self.histogram.quantile(self.quantile) + 1) * self.bucket_ms


class ReorderOptimizer:
    """Delay that best trades reordered-packet losses against delay (NetEQ's ``ReorderOptimizer``).

    Reordered packets register their relative delay, in-order packets a
    zero; the chosen delay minimises ``delay_ms + 100 * ms_per_loss_percent *
    P(reordered delay > delay)``.
    """

    def __init__(self, forget_factor: float = 0.9993, ms_per_loss_percent: float = 20.0,
                 start_forget_weight: Optional[float] = 2.0, bucket_ms: float = 20.0,
                 max_delay_ms: float = 2000.0) -> None:
        self.bucket_ms = float(bucket_ms)
        self.ms_per_loss_percent = float(ms_per_loss_percent)
        self.histogram = Histogram(int(np.ceil(max_delay_ms / bucket_ms)), forget_factor, start_forget_weight)
        self.optimal_delay_ms: Optional[float] = None

    def reset(self) -> None:
        self.histogram.reset()
        self.optimal_delay_ms = None

    def update(self, relative_delay_ms: float, reordered: bool) -> None:
        self.histogram.add(int(relative_delay_ms // self.bucket_ms) if reordered else 0)
        loss = 1.0 - np.cumsum(self.histogram.buckets)  # P(delay beyond bucket i)
        delay = np.arange(self.histogram.num_buckets) * self.bucket_ms
        cost = delay + 100.0 * self.ms_per_loss_percent * np.maximum(loss, 0.0)
        self.optimal_delay_ms = (int(np.argmin(cost)) + 1) * self.bucket_ms


@dataclass
class DelayManagerConfig:
    """Settings of :class:`DelayManager` (ms unless said otherwise)."""

    #: Share of in-order packets the target delay should cover.
    quantile: float = 0.95
    #: Per-packet forget factor of the delay histogram (0.995: about 4 s of memory at 50 packets/s).
    forget_factor: float = 0.995
    start_forget_weight: Optional[float] = 2.0
    bucket_ms: float = 10.0
    resample_interval_ms: Optional[float] = None
    use_reorder_optimizer: bool = True
    reorder_forget_factor: float = 0.9993
    ms_per_loss_percent: float = 20.0
    min_delay_ms: float = 0.0
    max_delay_ms: float = 2000.0
    #: Target before the first measurements (NetEQ's kStartDelayMs).
    start_delay_ms: float = 80.0
    #: Media window of the arrival history.
    history_window_ms: float = 2000.0


class DelayManager:
    """Target playout delay from relative arrival delays, clamped to the configured range."""

    def __init__(self, config: Optional[DelayManagerConfig] = None, max_packets_in_buffer: int = 100) -> None:
        self.config = config or DelayManagerConfig()
        c = self.config
        if c.min_delay_ms < 0 or c.max_delay_ms < c.min_delay_ms:
            raise ValueError("need 0 <= min_delay_ms <= max_delay_ms")
        self.max_packets_in_buffer = max_packets_in_buffer
        self.underrun = UnderrunOptimizer(c.quantile, c.forget_factor, c.start_forget_weight, c.bucket_ms,
                                          resample_interval_ms=c.resample_interval_ms)
        self.reorder = (ReorderOptimizer(c.reorder_forget_factor, c.ms_per_loss_percent, c.start_forget_weight)
                        if c.use_reorder_optimizer else None)
        self.packet_ms = 0.0
        self.unlimited_target_ms = c.start_delay_ms
        self.target_ms = self._clamp(c.start_delay_ms)

    def reset(self) -> None:
        self.underrun.reset()
        if self.reorder is not None:
            self.reorder.reset()
        self.unlimited_target_ms = self.config.start_delay_ms
        self.target_ms = self._clamp(self.config.start_delay_ms)

    def set_packet_ms(self, packet_ms: float) -> None:
        """Audio per packet, ms (the target is at least one packet)."""
        if packet_ms > 0 and packet_ms != self.packet_ms:
            self.packet_ms = float(packet_ms)
            self.target_ms = self._clamp(self.unlimited_target_ms)

    def update(self, relative_delay_ms: float, reordered: bool, arrival_ms: float = 0.0) -> float:
        """Register a packet's relative arrival delay; returns the new target delay, ms."""
        if self.reorder is None or not reordered:
            self.underrun.update(relative_delay_ms, arrival_ms)
        target = self.underrun.optimal_delay_ms
        if target is None:
            target = self.config.start_delay_ms
        if self.reorder is not None:
            self.reorder.update(relative_delay_ms, reordered)
            target = max(target, self.reorder.optimal_delay_ms or 0.0)
        self.unlimited_target_ms = target
        self.target_ms = self._clamp(target)
        return self.target_ms

    def _clamp(self, target: float) -> float:
        c = self.config
        target = min(max(target, c.min_delay_ms), c.max_delay_ms)
        if self.packet_ms > 0:
            target = max(target, self.packet_ms)
            target = min(target, 0.75 * self.max_packets_in_buffer * self.packet_ms)
        return float(target)

"""The jitter buffer: RTP packets in, one 10 ms frame of 16 kHz audio out per tick.

:class:`JitterBuffer` is the receive side of a call, modelled on WebRTC's
NetEQ. ``insert_packet(rtp_bytes, arrival_time_ms)`` whenever a packet
arrives; ``get_audio()`` every 10 ms. Inside:

* :mod:`~jitterbuffer.rtp` parses and validates the header and unwraps the
  sequence number and timestamp; malformed packets are counted and dropped.
* :mod:`~jitterbuffer.packet_buffer` holds the packets by timestamp (duplicates,
  late packets and overflow handled there), each with NetEQ's priority.
* Redundancy, as NetEQ's ``InsertPacketInternal`` (``modules/audio_coding/neteq/neteq_impl.cc``):
  a packet whose decoder finds an in-band FEC copy of the frame before it (Opus LBRR,
  ``AudioDecoderOpusImpl::ParsePayload``) also puts that copy into the packet buffer at the
  earlier timestamp, with a worse priority; a RED packet (RFC 2198, :mod:`plc.codecs.red`)
  is split into its primary and redundant blocks (``RedPayloadSplitter``). A missing frame
  whose copy is buffered is then simply there when its turn comes and is decoded from the
  copy (``decode_fec``), not concealed; a late primary replaces its copy, a copy never replaces
  a primary. Only primary packets feed the delay estimates and the loss count.
* :mod:`~jitterbuffer.delay_manager` turns arrival times into the target delay.
* :mod:`~jitterbuffer.decision_logic` picks each tick's operation: normal,
  expand, merge, accelerate, fast accelerate or preemptive expand.
* :mod:`plc.codecs` decodes (PCM, Opus...); the pluggable concealer
  (any :class:`plc.concealers.Concealer`, behind :class:`plc.concealers.FallbackConcealer`
  and de-clicked by :class:`~jitterbuffer.declick.Declicker`) makes expand and merge;
  :mod:`~jitterbuffer.time_stretch` accelerates and expands by pitch periods.

Internally, decoded and concealed frames go into a *sync buffer* of audio
prepared but not yet played (NetEQ's name), each sample tagged with the RTP
timestamp it came from and its packet's arrival time; time-stretching
rewrites that future part only, and each tick plays its first 10 ms.

Two modes (:class:`JitterBufferConfig`): ``adaptive`` (NetEQ: the delay
follows the measured jitter; expands hold the timeline so that a late packet
is waited for rather than lost; accelerate and preemptive expand move the
delay to the target) and ``fixed`` (the baseline, like aiortc's: playout starts
``prefetch_ms`` after the first packet and runs at a constant delay; a packet
not there in time is concealed and, if it comes later, discarded).

Hostile input costs at most a packet or two: a packet whose timestamp is far off
the stream's timeline (seconds ahead of where its arrival time puts it, or far
behind) is held until the next packet says whether it was a stray (dropped and
counted) or the sender really jumped (a new stream, as on an SSRC change); an
arrival time far from the playout clock is replaced by the clock; sequence
number jumps are judged the same way by the loss count
(:class:`~jitterbuffer.rtp.SequenceLossCounter`).

Statistics (:attr:`JitterBuffer.stats`) use the names of WebRTC's
``RTCInboundRtpStreamStats`` for audio; the cumulative delays are in seconds
as there. Every played sample is either received (``jitterBufferEmittedCount``)
or concealed (``concealedSamples``), and the two add up to
``totalSamplesReceived``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from plc.codecs import FRAME_SAMPLES, SAMPLE_RATE, Codec, PayloadDecoder, default_payload_types
from plc.codecs.red import RedBlock
from plc.concealers import Concealer, default_method, make_concealer, with_fallback
from plc.concealers.codec_plc import codec_concealment
from plc.dsp import raised_cosine_fade

from .declick import Declicker
from .decision_logic import Decision, DecisionConfig, DecisionLogic, DecisionStatus, Operation
from .delay_manager import START_DELAY_MS, ClockSkewEstimator, DelayManager, DelayManagerConfig, PacketArrivalHistory
from .packet_buffer import CAPACITY_PACKETS, BufferedPacket, InsertResult, PacketBuffer, Priority
from .sync_buffer import SyncBuffer
from .rtp import RtpError, RtpPacket, SequenceLossCounter, SequenceUnwrapper, TimestampUnwrapper, parse_rtp
from .time_stretch import NoiseFloorTracker, TimeStretchConfig, accelerate, preemptive_expand

FRAME_MS = 10
#: The concealer's counters in :attr:`JitterBuffer.stats` (camelCase) by their
#: :class:`~plc.concealers.base.ConcealerStats` names; they go on counting across ``replace_concealer``.
CONCEALER_STATS = {
    "fallbackFrames": "fallback_frames",
    "codecConcealedFrames": "codec_concealed_frames",
    "noiseConcealedFrames": "noise_concealed_frames",
    "steeredLosses": "steered_losses",
    "lossesLeftToFec": "losses_left_to_fec",
    "gapsEndedAhead": "gaps_ended_ahead",
}
#: Audio prepared ahead for an accelerate (NetEQ works on 30 ms).
_ACCELERATE_SAMPLES = 3 * FRAME_SAMPLES
#: Played samples kept for preemptive expand's correlation.
_PLAYED_HISTORY = 3 * FRAME_SAMPLES
#: Emission offset of each sample of a frame from the frame's start, ms.
_EMIT_OFFSETS_MS = np.arange(FRAME_SAMPLES) * 1000.0 / SAMPLE_RATE
#: Fade-in of the first received frame of a call.
_FADE_IN = raised_cosine_fade(SAMPLE_RATE * 2 // 1000)


def _is_silent(frame: np.ndarray) -> bool:
    """True if no sample of ``frame`` reaches one int16 step (``silentConcealedSamples``)."""
    return float(np.max(np.abs(frame))) < 1.0 / 32768


@dataclass
class JitterBufferConfig:
    """Settings of :class:`JitterBuffer` (times in ms).

    Attributes
    ----------
    mode : {"adaptive", "fixed"}
        See the module docstring.
    prefetch_ms : float
        Fixed mode: the constant delay after the first packet's arrival.
        Adaptive mode: the delay before playout starts (then the target takes over).
    capacity_packets : int
        Packet buffer capacity.
    overflow : {"drop_oldest", "flush"} or None
        Packet buffer overflow policy; None: ``drop_oldest`` in adaptive mode,
        ``flush`` (and restart after ``prefetch_ms``, NetEQ's choice) in fixed mode.
    late_restart_ms : float
        Fixed mode: when packets carrying this much audio in a row arrive too late
        (the sender's clock is slower, or the network delay rose for good), playout
        restarts ``prefetch_ms`` after the next packet. Longer than any delay spike.
    delay : DelayManagerConfig
        The adaptive target delay: the quantile of arrival delays it covers, its clamp
        (``min_delay_ms``, ``max_delay_ms``), the histograms
        (:class:`~jitterbuffer.delay_manager.DelayManagerConfig`).
    decision : DecisionConfig
        Time-stretch thresholds relative to the target (the playout delay is kept between
        target + 10 and target + 20 ms), their spacing, the longest gap waited for, and whether
        to time-stretch at all (:class:`~jitterbuffer.decision_logic.DecisionConfig`).
    stretch : TimeStretchConfig
        Least correlation of the cross-faded pitch periods for an ordinary stretch and for a
        fast accelerate (:class:`~jitterbuffer.time_stretch.TimeStretchConfig`).
    burst_follower_ratio : float
        A packet arriving less than this fraction of its timestamp step after the
        previous one queued behind it; it is left out of the delay histogram, so a
        delay spike or a jitter burst counts once, not once per packet it held up.
    use_redundancy : bool
        Decode missing frames from the redundant copies packets carry (Opus in-band FEC, RED
        blocks), as NetEQ always does; False plays the primary payloads only (for comparisons).
    stream_restart_ms, max_timestamp_lead_ms : float
        A packet whose timestamp puts it more than ``stream_restart_ms`` behind (NetEQ's 5 s
        horizon, ``PacketBuffer::IsObsoleteTimestamp``) or ``max_timestamp_lead_ms`` ahead of
        where its arrival time places it on the stream's timeline (measured against the fastest
        packet of the arrival history, as the relative delay is) is *off the timeline*: a stray
        packet, or a sender that jumped its timestamps without changing SSRC. It is held until the
        next packet: if that one continues it, the stream restarts from it (``timestampJumps``,
        ``streamResets``); otherwise it is dropped (``packetsOffTimeline``). A real packet is
        never early by much: the fastest packet of the last two seconds sets the reference.
    arrival_tolerance_ms : float
        An arrival time further than this from the playout clock (the last ``get_audio`` time)
        cannot be right (packets arrive in real time); it is replaced by the clock
        (``arrivalTimesCorrected``), so it cannot poison the delay estimates and statistics.
        Packets given before the first ``get_audio`` with arrival times that far from its time
        are on another clock: they are flushed (``timelineRestarts``, ``packetsFlushed``).
    """

    mode: str = "adaptive"
    prefetch_ms: float = START_DELAY_MS
    capacity_packets: int = CAPACITY_PACKETS
    overflow: Optional[str] = None
    late_restart_ms: float = 1000.0
    stream_restart_ms: float = 5000.0
    max_timestamp_lead_ms: float = 500.0
    arrival_tolerance_ms: float = 2000.0
    burst_follower_ratio: float = 0.25
    use_redundancy: bool = True
    delay: DelayManagerConfig = field(default_factory=DelayManagerConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    stretch: TimeStretchConfig = field(default_factory=TimeStretchConfig)

    @classmethod
    def from_spec(cls, spec: str, **overrides) -> "JitterBufferConfig":
        """``adaptive`` or ``fixed:MS`` (the ``--buffer`` option). Raises ValueError."""
        text = spec.strip().lower()
        if text == "adaptive":
            return cls(mode="adaptive", **overrides)
        if text.startswith("fixed"):
            _, _, value = text.partition(":")
            value = value.strip().removesuffix("ms")
            try:
                ms = float(value) if value else START_DELAY_MS
            except ValueError:
                raise ValueError(f"--buffer {spec!r}: the fixed delay must be a number of ms, e.g. fixed:80") from None
            if not 0.0 <= ms <= 10000.0 or not math.isfinite(ms):
                raise ValueError(f"--buffer {spec!r}: the fixed delay must be within 0..10000 ms")
            return cls(mode="fixed", prefetch_ms=ms, **overrides)
        raise ValueError(f"--buffer {spec!r}: use adaptive or fixed:MS (e.g. fixed:80)")


@dataclass
class TickInfo:
    """What the last :meth:`JitterBuffer.get_audio` did (for simulators and logs).

    Attributes
    ----------
    operation : Operation
        The tick's operation.
    now_ms : float
        The playout time of the frame's first sample.
    playout_timestamp : int or None
        RTP timestamp (32 bits) of the first received sample played, None if
        the frame holds no received audio.
    received_samples : int
        Samples of the frame that came from packets (the rest are concealment).
    playout_delay_ms, target_delay_ms : float
        Playout delay and target at that tick.
    buffered_ms : float
        Audio waiting (packets plus prepared audio) after the tick.
    """

    operation: Operation
    now_ms: float
    playout_timestamp: Optional[int]
    received_samples: int
    playout_delay_ms: float
    target_delay_ms: float
    buffered_ms: float


@dataclass
class _Counters:
    jitter_buffer_delay_s: float = 0.0
    jitter_buffer_target_delay_s: float = 0.0
    jitter_buffer_emitted_count: int = 0
    total_samples_received: int = 0
    concealed_samples: int = 0
    silent_concealed_samples: int = 0
    concealment_events: int = 0
    inserted_samples_for_deceleration: int = 0
    removed_samples_for_acceleration: int = 0
    packets_received: int = 0
    packets_late: int = 0
    packets_duplicated: int = 0
    packets_flushed: int = 0
    packets_malformed: int = 0
    packets_unknown_payload: int = 0
    decode_errors: int = 0
    stream_resets: int = 0
    timestamp_jumps: int = 0
    packets_off_timeline: int = 0
    arrival_times_corrected: int = 0
    timeline_restarts: int = 0
    internal_errors: int = 0
    lost_in_closed_streams: int = 0
    fec_packets_received: int = 0
    fec_packets_discarded: int = 0
    fec_packets_recovered: int = 0
    fec_samples_decoded: int = 0
    operations: dict = field(default_factory=lambda: {op.value: 0 for op in Operation})


@dataclass
class _HeldPacket:
    """A packet off the stream's timeline, waiting for the next packet's verdict."""

    packet: RtpPacket
    timestamp: int        # unwrapped against the current stream (not made its reference)
    duration: int
    arrival_ms: float


class JitterBuffer:
    """Adaptive (NetEQ-like) or fixed jitter buffer for one incoming audio stream.

    Parameters
    ----------
    concealer : Concealer, optional
        Makes expand and merge; 16 kHz, 10 ms frames. Default: the best
        installed (:func:`default_method`). A concealer that declares
        ``uses_codec_concealment`` is fed the codec's own concealment (libopus'
        PLC) of each lost frame before it is asked for it;
        :class:`~plc.concealers.codec_plc.CodecPlcConcealer` (``opus``) plays it as is.
    config : JitterBufferConfig, optional
        Mode and settings.
    payload_types : dict, optional
        Payload type -> :class:`plc.codecs.Codec`
        (default: 96 = PCM, 111 = Opus).

    Notes
    -----
    Neither method raises on bad input: malformed packets are counted in
    ``packetsMalformed``; an unexpected internal error is counted in
    ``internalErrors`` and the frame is concealed.
    """

    sample_rate = SAMPLE_RATE
    frame_samples = FRAME_SAMPLES

    def __init__(self, concealer: Optional[Concealer] = None, config: Optional[JitterBufferConfig] = None,
                 payload_types: Optional[dict[int, Codec]] = None) -> None:
        self.config = config or JitterBufferConfig()
        c = self.config
        if concealer is None:
            concealer = make_concealer(default_method(), sample_rate=SAMPLE_RATE, frame_ms=FRAME_MS)
        self._use_concealer(concealer)
        self._retired: dict[str, int] = {}  # CONCEALER_STATS of concealers replaced by replace_concealer
        self.declicker = Declicker(SAMPLE_RATE)
        self.payload_types = dict(payload_types or default_payload_types())
        overflow = c.overflow or ("flush" if c.mode == "fixed" else "drop_oldest")
        self.packets = PacketBuffer(c.capacity_packets, overflow)
        self.delay_manager = DelayManager(c.delay, max_packets_in_buffer=c.capacity_packets,
                                          start_delay_ms=c.prefetch_ms)
        self.decision = DecisionLogic(c.mode, c.decision)
        self.arrivals = PacketArrivalHistory(c.delay.history_window_ms)
        self.skew = ClockSkewEstimator()
        self.noise_floor = NoiseFloorTracker()
        self._n = _Counters()
        self._decoders: dict[int, PayloadDecoder] = {}
        self._ssrc: Optional[int] = None
        self._clock_rate = SAMPLE_RATE
        self._payload_type: Optional[int] = None
        self._ever_played = False
        self._clock_ms: Optional[float] = None
        self.last_tick: Optional[TickInfo] = None
        self._played = np.zeros(_PLAYED_HISTORY, dtype=np.float32)
        self._sync = SyncBuffer()
        self._last_played_real = True   # the last played sample was received audio (not concealment)
        self._first_arrival_ms: Optional[float] = None
        self._last_arrival_ms: Optional[float] = None
        self._loss = SequenceLossCounter()
        self._held: Optional[_HeldPacket] = None
        self._new_stream()

    def _use_concealer(self, concealer: Concealer) -> None:
        if concealer.sample_rate != SAMPLE_RATE or concealer.frame_samples != FRAME_SAMPLES:
            raise ValueError(f"the concealer must work on 10 ms frames at {SAMPLE_RATE} Hz")
        #: The concealer, behind the fallback (:func:`plc.concealers.with_fallback`): a concealer that
        #: raises, returns garbage or runs late never costs a frame.
        self.concealer = with_fallback(concealer)

    def replace_concealer(self, concealer: Concealer) -> None:
        """Conceal with ``concealer`` from the next frame on (a live call switching method).

        The buffered packets, the delay estimate and every counter are kept;
        the new concealer first hears the last audio played, so a loss right
        after the switch has a past to continue. ``fallbackFrames`` goes on
        counting (the old concealer's frames are kept); ``fallbackReason`` is
        the new concealer's.
        """
        old = self.concealer.stats.as_dict()
        warm_up = self._played.reshape(-1, FRAME_SAMPLES)
        self._use_concealer(concealer)
        for frame in warm_up:  # through the fallback: a concealer that fails here falls back, as in a call
            self.concealer.process(frame)
        for name in CONCEALER_STATS.values():
            self._retired[name] = self._retired.get(name, 0) + old[name]

    # ----------------------------------------------------------------- state
    def _new_stream(self) -> None:
        """Forget the stream's timeline (first packet, SSRC or clock change, restart)."""
        self._n.packets_flushed += self.packets.clear() + (self._held is not None)
        self._held = None
        self._seq = SequenceUnwrapper()
        self._ts = TimestampUnwrapper()
        self.arrivals.reset()
        self.skew.reset()
        self._last_in_order: Optional[tuple[float, float]] = None
        self._restart_timeline()
        self._recent_ts: deque[int] = deque(maxlen=256)
        self._recent_ts_set: set[int] = set()
        self._plc_debt = 0
        self._n.lost_in_closed_streams += self._loss.packets_lost
        self._loss.reset()
        self.decision.reset()

    def _restart_timeline(self) -> None:
        """Start playout again from the next packet (after the start delay); audio already
        prepared is still played."""
        self._frames: deque[tuple[int, Optional[np.ndarray], float]] = deque()
        self._target_ts: Optional[int] = None      # next frame to prepare, RTP units (unwrapped)
        self._start_at_ms: Optional[float] = None  # playout starts at this time
        self._started = False
        self._last_op = Operation.EXPAND if self._ever_played else Operation.SILENCE
        self._generated = 0
        self._late_run = 0.0

    @property
    def _frame_rtp(self) -> int:
        return self._clock_rate // 100

    def _rtp_per_sample(self) -> float:
        return self._clock_rate / SAMPLE_RATE

    def _ms(self, rtp_units: float) -> float:
        return rtp_units * 1000.0 / self._clock_rate

    @property
    def target_delay_ms(self) -> float:
        """The target playout delay, ms (the constant prefetch in fixed mode)."""
        if self.config.mode == "fixed":
            return float(self.config.prefetch_ms)
        return self.delay_manager.target_ms

    @property
    def playout_delay_ms(self) -> float:
        """The playout delay of the next sample, relative to the fastest arrival, ms."""
        if self._target_ts is None or self._clock_ms is None:
            return 0.0
        return self.arrivals.playout_delay_ms(self._ms(self._playout_ts()), self._clock_ms)

    def buffered_ms(self) -> float:
        """Audio waiting: packets in the buffer, decoded frames and prepared audio, ms."""
        return (self._ms(self.packets.num_samples()) + FRAME_MS * len(self._frames)
                + len(self._sync) * 1000.0 / SAMPLE_RATE)

    @property
    def has_pending_audio(self) -> bool:
        """True while packets, decoded frames or prepared received audio wait to be played."""
        return bool(len(self.packets) or self._frames or self._sync.has_received_audio())

    def _playout_ts(self) -> float:
        first = self._sync.first_timestamp()
        if first is not None:
            return first
        return float(self._target_ts if self._target_ts is not None else 0)

    # ---------------------------------------------------------------- insert
    def insert_packet(self, rtp_bytes: bytes, arrival_time_ms: float) -> bool:
        """Give the buffer a packet that arrived at ``arrival_time_ms`` (receiver clock, ms).

        Returns True if the packet was buffered, False if it was dropped (and
        counted: malformed, unknown payload type, duplicate, late or overflow).
        Never raises.
        """
        try:
            return self._insert(rtp_bytes, float(arrival_time_ms))
        except Exception:  # noqa: BLE001 - a receive path must not die on one packet
            self._n.internal_errors += 1
            return False

    def _insert(self, rtp_bytes: bytes, arrival_ms: float) -> bool:
        if not math.isfinite(arrival_ms):
            self._n.packets_malformed += 1
            return False
        try:
            pkt = parse_rtp(rtp_bytes)
        except RtpError:
            self._n.packets_malformed += 1
            return False
        codec = self.payload_types.get(pkt.payload_type)
        if codec is None:
            self._n.packets_unknown_payload += 1
            return False
        red_blocks: list[RedBlock] = []
        if codec.split is not None:  # RED: the primary block goes on as the packet, the rest are copies
            unwrapped = self._unwrap_red(pkt, codec)
            if unwrapped is None:
                return False
            pkt, codec, red_blocks = unwrapped
        decoder = self._decoder(pkt.payload_type, codec)
        duration = decoder.duration(pkt.payload) if decoder is not None else None
        if duration is None:
            self._n.packets_malformed += 1
            return False
        arrival_ms = self._checked_arrival(arrival_ms)
        if pkt.ssrc != self._ssrc or codec.clock_rate != self._clock_rate:
            if self._ssrc is not None:
                self._n.stream_resets += 1
            self._ssrc = pkt.ssrc
            self._clock_rate = codec.clock_rate
            self._new_stream()
        self._n.packets_received += 1
        self._loss.update(pkt.sequence_number)
        ts = self._ts.peek(pkt.timestamp)
        held, self._held = self._held, None
        if self._on_timeline(ts, arrival_ms):
            self._n.packets_off_timeline += held is not None  # the packet before was a stray
            accepted = self._accept(pkt, duration, arrival_ms)
            self._accept_redundancy(pkt, decoder, red_blocks, arrival_ms)
            return accepted
        if held is not None and ts > held.timestamp and self._continues(held, ts, arrival_ms):
            # Two packets in a row on a new timeline: the sender jumped its timestamps.
            self._n.timestamp_jumps += 1
            self._n.stream_resets += 1
            self._new_stream()
            self._accept(held.packet, held.duration, held.arrival_ms)
            accepted = self._accept(pkt, duration, arrival_ms)
            self._accept_redundancy(pkt, decoder, red_blocks, arrival_ms)
            return accepted
        self._n.packets_off_timeline += held is not None
        self._held = _HeldPacket(pkt, ts, duration, arrival_ms)
        return True

    def _unwrap_red(self, pkt: RtpPacket, red: Codec) -> Optional[tuple[RtpPacket, Codec, list[RedBlock]]]:
        """A RED packet as its primary block, that block's codec and the redundant blocks; None if
        refused (counted: malformed, RED in RED or another clock; unknown payload type)."""
        try:
            *blocks, primary = red.split(pkt.payload)
        except ValueError:  # RedError: refused whole
            blocks, primary = [], None
        inner = self.payload_types.get(primary.payload_type) if primary is not None else None
        if primary is not None and inner is None:
            self._n.packets_unknown_payload += 1
            return None
        if inner is None or inner.split is not None or inner.clock_rate != red.clock_rate:
            self._n.packets_malformed += 1
            return None
        return dataclasses.replace(pkt, payload_type=primary.payload_type, payload=primary.payload), inner, blocks

    def _checked_arrival(self, arrival_ms: float) -> float:
        """``arrival_ms``, or the playout clock if it is further than ``arrival_tolerance_ms`` from it
        (the next tick's time: a packet is there by then, and an arrival that looks early would
        become the delay estimate's reference)."""
        if self._clock_ms is not None and abs(arrival_ms - self._clock_ms) > self.config.arrival_tolerance_ms:
            self._n.arrival_times_corrected += 1
            arrival_ms = self._clock_ms + FRAME_MS
        self._last_arrival_ms = arrival_ms
        return arrival_ms

    def _on_timeline(self, ts: int, arrival_ms: float) -> bool:
        """True unless the packet is far off the stream's timeline (see ``stream_restart_ms``)."""
        offset = self.arrivals.offset_ms(self._ms(ts), arrival_ms)
        c = self.config
        return offset is None or -c.max_timestamp_lead_ms <= offset <= c.stream_restart_ms

    def _continues(self, held: _HeldPacket, ts: int, arrival_ms: float) -> bool:
        """True if a packet at ``ts`` arriving at ``arrival_ms`` follows ``held`` on its timeline."""
        drift = (arrival_ms - held.arrival_ms) - self._ms(ts - held.timestamp)
        return abs(drift) <= self.config.max_timestamp_lead_ms

    def _accept(self, pkt: RtpPacket, duration: int, arrival_ms: float) -> bool:
        """Buffer a packet that is on the stream's timeline (counted, delay statistics updated)."""
        seq = self._seq.unwrap(pkt.sequence_number)
        ts = self._ts.unwrap(pkt.timestamp)
        if ts in self._recent_ts_set:
            self._n.packets_duplicated += 1
            return False
        ts_ms = self._ms(ts)
        reordered = not self.arrivals.is_newest(ts_ms)
        follower = False
        if not reordered and self._last_in_order is not None:
            # A packet that arrives right behind the previous one although it was sent later
            # queued behind it (a delay spike or a jitter burst): the event is already counted.
            gap_ts = ts_ms - self._last_in_order[0]
            follower = gap_ts > 0 and arrival_ms - self._last_in_order[1] < self.config.burst_follower_ratio * gap_ts
        if not reordered:
            self._last_in_order = (ts_ms, arrival_ms)
        if self.config.mode == "adaptive":
            self.arrivals.skew = self.skew.update(ts_ms, arrival_ms)
        if self.arrivals.insert(ts_ms, arrival_ms) and len(self.arrivals) >= 2:
            delay = self.arrivals.delay_ms(ts_ms, arrival_ms)
            if not follower or delay <= 0.0:
                self.delay_manager.update(delay, reordered, arrival_ms)
        self.delay_manager.set_packet_ms(self._ms(duration))
        if self._target_ts is not None and ts + duration <= self._target_ts:
            self._n.packets_late += 1
            self._late_run += self._ms(duration)
            if self.config.mode == "fixed" and self._late_run >= self.config.late_restart_ms:
                self._n.timeline_restarts += 1  # the fixed delay no longer fits: start over
                self._n.packets_flushed += self.packets.clear()
                self._restart_timeline()
            return False
        self._late_run = 0.0
        result = self.packets.insert(BufferedPacket(ts, duration, seq, pkt.payload_type, pkt.payload, arrival_ms))
        if result in (InsertResult.DROPPED_DUPLICATE, InsertResult.REPLACED_DUPLICATE):
            self._n.packets_duplicated += 1
        elif result == InsertResult.REPLACED_REDUNDANT:  # the late primary takes its copy's place
            self._n.fec_packets_discarded += 1
        elif result == InsertResult.INSERTED_AFTER_OVERFLOW and self.packets.overflow == "flush":
            self._n.timeline_restarts += 1  # NetEQ: flush, then start again from this packet
            self._restart_timeline()
        if self._first_arrival_ms is None:
            self._first_arrival_ms = arrival_ms
        if self._start_at_ms is None:
            delay = self.config.prefetch_ms if self.config.mode == "fixed" else self.target_delay_ms
            self._start_at_ms = arrival_ms + delay
        return result not in (InsertResult.DROPPED_DUPLICATE, InsertResult.DROPPED_OVERFLOW)

    def _accept_redundancy(self, pkt: RtpPacket, decoder: PayloadDecoder, red_blocks: list[RedBlock],
                           arrival_ms: float) -> None:
        """Buffer the redundant copies a packet carries: its decoder's in-band FEC copy of the frame
        before it (priority codec level 1) and the RED blocks (RED level k), each with its own FEC
        copy. As ``InsertPacketInternal``, each is one more packet of worse priority at its own
        timestamp; it feeds neither the delay estimates nor the loss count."""
        if not self.config.use_redundancy:
            return
        base = self._ts.peek(pkt.timestamp)
        seq = self._seq.peek(pkt.sequence_number)
        pieces = [(base, pkt.payload, 0)] + [(base - b.timestamp_offset, b.payload, b.red_level) for b in red_blocks]
        for ts, payload, red_level in pieces:
            if red_level:  # a RED block: the codec's own frame, sent again
                duration = decoder.duration(payload)
                if duration is not None:
                    self._buffer_copy(BufferedPacket(ts, duration, seq, pkt.payload_type, payload, arrival_ms,
                                                     Priority(0, red_level)))
            fec = decoder.fec_duration(payload)
            if fec:
                self._buffer_copy(BufferedPacket(ts - fec, fec, seq, pkt.payload_type, payload, arrival_ms,
                                                 Priority(1, red_level)))

    def _buffer_copy(self, copy: BufferedPacket) -> None:
        """Insert one redundant copy (``fecPacketsReceived``); a copy that is too late, or where a
        better one already is, is dropped and counted in ``fecPacketsDiscarded``."""
        self._n.fec_packets_received += 1
        if self._target_ts is not None and copy.end <= self._target_ts or copy.timestamp in self._recent_ts_set:
            self._n.fec_packets_discarded += 1
            return
        result = self.packets.insert(copy)
        if result in (InsertResult.DROPPED_REDUNDANT, InsertResult.REPLACED_REDUNDANT,
                      InsertResult.DROPPED_DUPLICATE, InsertResult.REPLACED_DUPLICATE,
                      InsertResult.DROPPED_OVERFLOW):
            self._n.fec_packets_discarded += 1
        elif result == InsertResult.INSERTED_AFTER_OVERFLOW and self.packets.overflow == "flush":
            self._n.timeline_restarts += 1
            self._restart_timeline()

    def _decoder(self, payload_type: int, codec: Codec) -> Optional[PayloadDecoder]:
        dec = self._decoders.get(payload_type)
        if dec is None:
            try:
                dec = codec.decoder()
            except Exception:  # noqa: BLE001 - e.g. libopus missing: treat as undecodable
                return None
            self._decoders[payload_type] = dec
        return dec

    def _remember_ts(self, ts: int) -> None:
        if len(self._recent_ts) == self._recent_ts.maxlen:
            self._recent_ts_set.discard(self._recent_ts[0])
        self._recent_ts.append(ts)
        self._recent_ts_set.add(ts)

    # ------------------------------------------------------------------ play
    def get_audio(self, now_ms: Optional[float] = None) -> np.ndarray:
        """The next 10 ms of audio: 160 float32 samples at 16 kHz, always finite in [-1, 1].

        Parameters
        ----------
        now_ms : float, optional
            Playout time of the frame in the receiver's clock (the clock of the
            arrival times). Default: 10 ms after the previous call (the first
            call: the first packet's arrival time).
        """
        if now_ms is None or not math.isfinite(float(now_ms)):
            if self._clock_ms is not None:
                now_ms = self._clock_ms + FRAME_MS
            else:
                now_ms = self._first_arrival_ms if self._first_arrival_ms is not None else 0.0
        now = float(now_ms)
        if (self._clock_ms is None and self._last_arrival_ms is not None
                and abs(now - self._last_arrival_ms) > self.config.arrival_tolerance_ms):
            # the packets that came before the first tick carry another clock's arrival times
            self._n.timeline_restarts += 1
            self._new_stream()
        self._clock_ms = now
        try:
            out = self._tick(now)
        except Exception:  # noqa: BLE001 - never let the audio device thread die
            self._n.internal_errors += 1
            out = self._emergency_frame()
        out = np.asarray(out, dtype=np.float32).reshape(-1)
        if len(out) != FRAME_SAMPLES or not float(np.abs(out).max()) <= 1.0:  # NaN fails the test too
            out = np.clip(np.nan_to_num(out[:FRAME_SAMPLES]), -1.0, 1.0)
            if len(out) < FRAME_SAMPLES:
                out = np.pad(out, (0, FRAME_SAMPLES - len(out)))
        self._played = np.concatenate([self._played, out])[-_PLAYED_HISTORY:]
        return out

    def _emergency_frame(self) -> np.ndarray:
        try:
            out = self._conceal_frame(None)
        except Exception:  # noqa: BLE001
            out = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self._sync.clear()
        concealed = np.zeros(FRAME_SAMPLES, dtype=bool)
        self._count_played(concealed, np.full(FRAME_SAMPLES, _is_silent(out)))
        return out

    def _tick(self, now: float) -> np.ndarray:
        if not self._started:
            if self._start_at_ms is not None and now >= self._start_at_ms and len(self.packets):
                self._started = True
                self._target_ts = self.packets.peek().timestamp
                self._last_op = Operation.EXPAND if self._ever_played else Operation.NORMAL
            elif self._ever_played:  # a new stream is buffering: keep concealing
                self._expand(advance=False)
                return self._emit(now, Operation.EXPAND)
            else:
                self._record(now, Operation.SILENCE, None, 0)
                return np.zeros(FRAME_SAMPLES, dtype=np.float32)
        for p in self.packets.discard_old(self._target_ts):
            if p.is_primary:
                self._n.packets_late += 1
            else:
                self._n.fec_packets_discarded += 1
        available = self._frame_available()
        leap = None
        if not available and len(self.packets):
            leap = self._ms(self.packets.peek().timestamp - self._target_ts)
        status = DecisionStatus(
            last_operation=self._last_op,
            prepared_ms=len(self._sync) * 1000.0 / SAMPLE_RATE,
            frame_available=available,
            future_leap_ms=leap,
            generated_ms=self._generated * 1000.0 / SAMPLE_RATE,
            playout_delay_ms=self.arrivals.playout_delay_ms(self._ms(self._playout_ts()), now),
            target_delay_ms=self.target_delay_ms,
            clock_skew=self.arrivals.skew,
        )
        decision: Decision = self.decision.decide(status)
        op = decision.operation
        if op == Operation.EXPAND:
            self._expand(advance=self.config.mode == "fixed")
        elif op == Operation.MERGE:
            if decision.jump:
                self._jump()
            op = self._fill(FRAME_SAMPLES, merge=True)
        elif op in (Operation.ACCELERATE, Operation.FAST_ACCELERATE):
            done = self._accelerate(fast=op == Operation.FAST_ACCELERATE)
            self.decision.stretched(done)
            op = op if done else Operation.NORMAL
            op = self._fill(FRAME_SAMPLES, label=op)
        elif op == Operation.PREEMPTIVE_EXPAND:
            done = self._preemptive_expand()
            self.decision.stretched(done)
            op = self._fill(FRAME_SAMPLES, label=op if done else Operation.NORMAL)
        else:
            op = self._fill(FRAME_SAMPLES)
        if op != Operation.EXPAND:
            self._generated = 0
        return self._emit(now, op)

    # ------------------------------------------------------------ operations
    def _frame_available(self) -> bool:
        while self._frames and self._frames[0][0] < self._target_ts:
            self._frames.popleft()
        if self._frames:
            return self._frames[0][0] == self._target_ts
        p = self.packets.peek()
        return p is not None and p.timestamp <= self._target_ts < p.end

    def _pull_frame(self) -> bool:
        """Prepare the frame at the playout timestamp through the concealer. False if it is not there."""
        if not self._frame_available():
            if self._frames:  # decoded frames further on: nothing at the target
                return False
            p = self.packets.peek()
            if p is None or p.timestamp > self._target_ts:
                return False
        if not self._frames:
            p = self.packets.pop()
            if p.is_primary:  # a copy's timestamp stays open: its late primary counts as late, not duplicated
                self._remember_ts(p.timestamp)
            self._payload_type = p.payload_type
            step = self._frame_rtp
            k = -(-(self._target_ts - p.timestamp) // step)  # first frame at or after the target
            if p.timestamp + k * step >= p.end:
                if p.is_primary:
                    self._n.packets_late += 1
                else:
                    self._n.fec_packets_discarded += 1
                return False
            self._target_ts = p.timestamp + k * step
            samples = self._decode(p)
            if samples is None:
                self._n.decode_errors += 1
            n_frames = p.duration // step
            if samples is not None and not p.is_primary:  # a missing frame recovered from its copy
                self._n.fec_packets_recovered += 1
                self._n.fec_samples_decoded += (n_frames - k) * FRAME_SAMPLES
            for i in range(k, n_frames):
                frame = None if samples is None else samples[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]
                if frame is not None and len(frame) < FRAME_SAMPLES:
                    frame = np.pad(frame, (0, FRAME_SAMPLES - len(frame)))
                self._frames.append((p.timestamp + i * step, frame, p.arrival_ms))
        ts, frame, arrival = self._frames.popleft()
        if frame is None:  # undecodable: conceal it, the timeline moves on
            self._expand(advance=True)
            return True
        out = self._conceal_frame(frame)
        if not self._ever_played:  # the very first audio of the call fades in over 2 ms (no click)
            out = out.copy()
            out[:_FADE_IN.size] *= _FADE_IN
        self.noise_floor.update(frame)
        self._append(out, ts, self._rtp_per_sample(), arrival, True)
        self._target_ts = ts + self._frame_rtp
        self._ever_played = True
        self._plc_debt = 0  # the codec decoded real audio: its next concealment starts afresh
        return True

    def _codec_mode(self) -> Optional[str]:
        decoder = self._decoders.get(self._payload_type) if self._payload_type is not None else None
        return None if decoder is None else decoder.mode

    def _decode(self, p: BufferedPacket) -> Optional[np.ndarray]:
        """A buffered packet's samples: its payload decoded, or for an in-band FEC copy the
        payload's redundant data (``decode_fec``); None if undecodable."""
        decoder = self._decoders.get(p.payload_type)
        if decoder is None:
            return None
        if p.priority.codec_level > 0:
            return decoder.decode_fec(p.payload, p.duration)
        return decoder.decode(p.payload)

    def _fill(self, n: int, merge: bool = False, label: Optional[Operation] = None) -> Operation:
        """Prepare at least ``n`` samples; returns the tick's operation label."""
        op = label or (Operation.MERGE if merge else Operation.NORMAL)
        while len(self._sync) < n:
            if not self._pull_frame():
                self._expand(advance=self.config.mode == "fixed")
                op = Operation.EXPAND
        return op

    def _expand(self, advance: bool) -> None:
        """One concealed frame. ``advance``: give the frame up (fixed mode, undecodable packet)."""
        decoder = self._decoders.get(self._payload_type) if self._payload_type is not None else None
        if decoder is not None:
            if self._plc_debt <= 0:  # keep a codec's own state continuous (libopus PLC, 20 ms a call)
                plc = codec_concealment(decoder, self.concealer, 2 * FRAME_SAMPLES,
                                        self._audio_after(decoder, 2 * FRAME_SAMPLES, advance))
                if plc is not None:
                    self._plc_debt += len(plc)
                    if self.concealer.uses_codec_concealment:
                        self.concealer.feed_codec_concealment(plc, decoder.mode)
            self._plc_debt -= FRAME_SAMPLES
        out = self._conceal_frame(None)
        ts0 = self._target_ts if self._target_ts is not None else 0
        self._append(out, ts0, self._rtp_per_sample() if advance else 0.0, math.nan, False, _is_silent(out))
        if advance and self._target_ts is not None:
            self._target_ts += self._frame_rtp
        self._generated += FRAME_SAMPLES

    def _audio_after(self, decoder: PayloadDecoder, n: int, advance: bool) -> Optional[Callable[[], Optional[np.ndarray]]]:
        """Where the buffered packet (or in-band FEC copy) that plays next begins right where the
        next ``n`` concealed samples end (the gap's end is then at hand:
        :mod:`plc.concealers.gap_end`), a function decoding it ahead; else None."""
        p = self.packets.peek()
        if p is None or self._target_ts is None or self._frames or p.payload_type != self._payload_type:
            return None
        concealed = 0 if advance else self._generated   # in adaptive mode the timeline waits at the gap
        end = self._target_ts + (concealed + n) * self._rtp_per_sample()
        if abs(p.timestamp - end) >= 0.5:
            return None
        fec_duration = p.duration if p.priority.codec_level > 0 else None
        return lambda: decoder.decode_ahead(p.payload, fec_duration)

    def _conceal_frame(self, frame: Optional[np.ndarray]) -> np.ndarray:
        """The concealer's frame for a decoded ``frame`` (or ``None``: expand), de-clicked."""
        return self.declicker.process(self.concealer.process(frame), frame is None)

    def _jump(self) -> None:
        """Move the timeline over a gap to the next packet (the gap is given up)."""
        p = self.packets.peek()
        if p is not None and p.timestamp > self._target_ts:
            self._target_ts = p.timestamp
        self._frames.clear()

    def _prepare(self, n: int) -> None:
        """Pull frames (as far as they are there) until ``n`` samples are prepared."""
        while len(self._sync) < n and self._frame_available():
            if not self._pull_frame():
                break

    def _accelerate(self, fast: bool) -> bool:
        self._prepare(_ACCELERATE_SAMPLES)
        if len(self._sync) < FRAME_SAMPLES // 2:
            return False
        res = accelerate(self._sync.audio, SAMPLE_RATE, fast=fast, passive_power=self.noise_floor.passive_threshold(),
                         threshold=self.config.stretch.fast_correlation if fast else self.config.stretch.correlation)
        if res.change == 0:
            return False
        self._apply(res.audio, res.source_index)
        self._n.removed_samples_for_acceleration += res.change
        return True

    def _preemptive_expand(self) -> bool:
        self._prepare(2 * FRAME_SAMPLES)
        if len(self._sync) < FRAME_SAMPLES // 2:
            return False
        res = preemptive_expand(self._played, self._sync.audio, SAMPLE_RATE,
                                passive_power=self.noise_floor.passive_threshold(), threshold=self.config.stretch.correlation)
        if res.change == 0:
            return False
        self._apply(res.audio, res.source_index)
        self._n.inserted_samples_for_deceleration += res.change
        return True

    # ------------------------------------------------------------ sync buffer
    def _append(self, audio: np.ndarray, first_ts: float, ts_step: float, arrival: float, real: bool,
                silent: bool = False) -> None:
        self._sync.append(audio, first_ts, ts_step, arrival, real, silent)

    def _apply(self, audio: np.ndarray, index: np.ndarray) -> None:
        self._sync.replace(audio, index)

    def _emit(self, now: float, op: Operation) -> np.ndarray:
        n = FRAME_SAMPLES
        delay = self.arrivals.playout_delay_ms(self._ms(self._playout_ts()), now)
        out, src_ts, arrival, real, silent = self._sync.pop(n)
        n_real = int(np.count_nonzero(real))
        playout_ts = None
        if n_real:
            # each received sample waited from its packet's arrival until it is heard (never < 0:
            # an arrival time a little ahead of the playout clock does not make a negative wait)
            waits = now + _EMIT_OFFSETS_MS - arrival
            if n_real < n:
                waits = waits[real]  # concealment has no arrival (NaN)
            self._n.jitter_buffer_delay_s += float(np.maximum(waits, 0.0).sum()) / 1000.0
            self._n.jitter_buffer_emitted_count += n_real
            self._n.jitter_buffer_target_delay_s += n_real * self.target_delay_ms / 1000.0
            playout_ts = int(src_ts[int(np.argmax(real))]) & 0xFFFFFFFF
        self._count_played(real, silent)
        self._last_op = op
        self._record(now, op, playout_ts, n_real, delay)
        return out

    def _count_played(self, real: np.ndarray, silent: np.ndarray) -> None:
        """Count a played frame's samples: each is received or concealed, so that
        ``jitterBufferEmittedCount + concealedSamples == totalSamplesReceived``; a concealment
        event is a run of concealed samples."""
        concealed = ~real
        self._n.total_samples_received += len(real)
        self._n.concealed_samples += int(np.count_nonzero(concealed))
        self._n.silent_concealed_samples += int(np.count_nonzero(concealed & silent))
        before = np.concatenate(([self._last_played_real], real[:-1]))
        self._n.concealment_events += int(np.count_nonzero(concealed & before))
        self._last_played_real = bool(real[-1])

    def _record(self, now: float, op: Operation, playout_ts: Optional[int], n_real: int,
                delay: float = 0.0) -> None:
        self._n.operations[op.value] += 1
        self.last_tick = TickInfo(op, now, playout_ts, n_real, delay, self.target_delay_ms, self.buffered_ms())

    # ---------------------------------------------------------------- stats
    @property
    def stats(self) -> dict:
        """Statistics, named after WebRTC's getStats audio receiver fields where one exists.

        ``jitterBufferDelay`` and ``jitterBufferTargetDelay`` are sums over the
        emitted samples, in seconds (divide by ``jitterBufferEmittedCount``);
        every played sample is emitted (received) or concealed:
        ``jitterBufferEmittedCount + concealedSamples == totalSamplesReceived``.
        ``fecPacketsReceived`` counts the redundant copies packets carried (Opus in-band FEC, RED
        blocks), ``fecPacketsDiscarded`` those not used (their packet came, they came too late,
        or a better copy was there), ``fecPacketsRecovered`` those played in place of a missing
        packet and ``fecSamplesDecoded`` their samples (NetEQ's ``SecondaryDecodedSamples``):
        those are received audio, not concealment.
        ``packetsDiscarded`` counts packets dropped as late, as duplicates, on
        overflow, on a flush or as strays off the timeline (broken down in ``packetsLate``,
        ``packetsDuplicated``, ``packetsOverflow``, ``packetsFlushed``, ``packetsOffTimeline``);
        ``timestampJumps`` counts senders that jumped their timestamps (each a stream reset),
        ``arrivalTimesCorrected`` arrival times too far from the playout clock to be true.
        ``packetsLost`` is the cumulative loss over the extended sequence number
        (:class:`~jitterbuffer.rtp.SequenceLossCounter`: a sequence number jump is a restart
        or a stray, not thousands of losses; duplicates not counted twice). ``fallbackFrames``
        counts frames made by classic concealment instead of the configured
        concealer, ``fallbackReason`` says why (the latest reason, or why the concealer's model
        could not be loaded; ``None`` if none). Where the other concealed frames came from
        (10 ms frames; :class:`~plc.concealers.base.ConcealerStats`): ``codecConcealedFrames``
        played the codec's own concealment (libopus' PLC, or a steered packet),
        ``noiseConcealedFrames`` were LPC-shaped noise after unvoiced audio, the rest the
        concealer's own (the model); ``steeredLosses`` counts losses that began with the
        concealer's continuation coded into the decoder, ``lossesLeftToFec`` those it was not
        asked for as the stream carries in-band FEC, ``gapsEndedAhead`` bursts whose concealment
        ended on its way into the next packet, already buffered (:mod:`plc.concealers.gap_end`).
        ``codecMode`` is the coding mode of the last payload decoded (Opus: ``silk``, ``hybrid`` or
        ``celt``; ``None`` for PCM or before a packet), which decides whether ``neural`` plays the
        codec's own concealment.
        """
        n = self._n
        concealer = self.concealer.stats.as_dict()
        discarded = (n.packets_late + n.packets_duplicated + self.packets.overflow_dropped + n.packets_flushed
                     + n.packets_off_timeline)
        return {
            "jitterBufferDelay": n.jitter_buffer_delay_s,
            "jitterBufferTargetDelay": n.jitter_buffer_target_delay_s,
            "jitterBufferEmittedCount": n.jitter_buffer_emitted_count,
            "concealedSamples": n.concealed_samples,
            "silentConcealedSamples": n.silent_concealed_samples,
            "concealmentEvents": n.concealment_events,
            "insertedSamplesForDeceleration": n.inserted_samples_for_deceleration,
            "removedSamplesForAcceleration": n.removed_samples_for_acceleration,
            "packetsDiscarded": discarded,
            "packetsLost": n.lost_in_closed_streams + self._loss.packets_lost,
            "packetsReceived": n.packets_received,
            "totalSamplesReceived": n.total_samples_received,
            "packetsLate": n.packets_late,
            "packetsDuplicated": n.packets_duplicated,
            "packetsOverflow": self.packets.overflow_dropped,
            "packetsFlushed": n.packets_flushed,
            "packetsOffTimeline": n.packets_off_timeline,
            "packetsMalformed": n.packets_malformed,
            "packetsUnknownPayloadType": n.packets_unknown_payload,
            "decodeErrors": n.decode_errors,
            "fecPacketsReceived": n.fec_packets_received,
            "fecPacketsDiscarded": n.fec_packets_discarded,
            "fecPacketsRecovered": n.fec_packets_recovered,
            "fecSamplesDecoded": n.fec_samples_decoded,
            # Frames the classic concealment made: the concealer failed, gave garbage, missed its
            # deadline or has no model (a model that did not load says so before the first loss too),
            # counting those of concealers replace_concealer retired.
            **{key: self._retired.get(name, 0) + concealer[name] for key, name in CONCEALER_STATS.items()},
            "fallbackReason": self.concealer.fallback_reason,
            "declickedFrames": self.declicker.declicked_frames,
            "streamResets": n.stream_resets,
            "timestampJumps": n.timestamp_jumps,
            "arrivalTimesCorrected": n.arrival_times_corrected,
            "timelineRestarts": n.timeline_restarts,
            "internalErrors": n.internal_errors,
            "codecMode": self._codec_mode(),
            "operations": dict(n.operations),
            "targetDelayMs": self.target_delay_ms,
            "playoutDelayMs": self.playout_delay_ms,
            "bufferedMs": self.buffered_ms(),
            "mode": self.config.mode,
        }

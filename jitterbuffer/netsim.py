"""Network simulation: packetize audio, send it through a network model, play it out.

:func:`simulate` is the engine of ``plc netsim``: the 16 kHz input is cut
into 20 ms packets with real RTP headers (PCM or Opus), each packet reaches
the :class:`~jitterbuffer.jitter_buffer.JitterBuffer` at its arrival time (from
:mod:`jitterbuffer.network` or a recorded trace), and the buffer is asked for
10 ms of audio every 10 ms of the receiver's clock, from the first send until
everything that arrived has been played.

Besides the jitter buffer's own statistics, :func:`simulate` measures:

* ``playoutDelayMeanMs`` / ``playoutDelayP95Ms``: mouth-to-ear delay of the
  received audio (send time of the first received sample of each 10 ms
  frame to its playout), over the frames that hold received audio;
* ``jitterBufferDelayMeanMs``: getStats' ``jitterBufferDelay /
  jitterBufferEmittedCount`` (arrival to playout), ms;
* ``lateLossRate``: packets that arrived too late to be played (the buffer's
  ``packetsLate`` and the ``packetsBeyondHorizon``), over packets sent;
* ``concealedFraction``: concealed samples over samples played since playout began;
* ``payloadBitrateBps``: the mean bitrate of the RTP payloads sent (with ``fec`` or ``red``,
  what the redundancy costs);
* ``spikeRecoveryMs``: after the largest delay spike, the time from the
  arrival of its first delayed packet until the playout delay is back
  within 20 ms of the target (and stays there for 200 ms); 0 if it never
  left that band, None if it never came back or there was no spike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from plc.codecs import SAMPLE_RATE, codec_names, get_codec
from plc.codecs.opus import DEFAULT_EXPECTED_LOSS_PERCENT
from plc.codecs.red import RED_PAYLOAD_TYPE, build_red
from plc.concealers import Concealer, check_method, make_concealer

from .decision_logic import Operation
from .jitter_buffer import FRAME_MS, JitterBuffer, JitterBufferConfig
from .network import MAX_DRIFT, MAX_TRANSIT_MS, Arrival, NetworkSpec
from .rtp import RtpPacket

PACKET_MS = 20
#: Band around the target in which the delay counts as recovered, ms.
RECOVERY_BAND_MS = 20.0
#: How long it must stay in the band, ms.
RECOVERY_HOLD_MS = 200.0


@dataclass
class Packetized:
    """The sender's packets: wire bytes, RTP timestamps and clock."""

    packets: list[bytes]
    first_timestamp: int
    timestamp_step: int
    clock_rate: int
    #: Mean payload bitrate (RTP payloads, headers left out), bit/s.
    payload_bitrate_bps: float = 0.0


def packetize(audio: np.ndarray, codec: str = "pcm", packet_ms: int = PACKET_MS, seed: int = 0,
              bitrate_bps: int = 24000, fec: bool = False, expected_loss_percent: int = DEFAULT_EXPECTED_LOSS_PERCENT,
              red: bool = False) -> Packetized:
    """Cut 16 kHz mono ``audio`` into ``packet_ms`` RTP packets (random first seq, timestamp, SSRC).

    ``fec``: Opus with in-band FEC planned for ``expected_loss_percent`` loss. ``red``: each packet
    also carries the one before it as a RED block (RFC 2198, payload type
    :data:`~plc.codecs.red.RED_PAYLOAD_TYPE`, as Chrome sends ``audio/red``).
    """
    spec = get_codec(codec)
    if spec.encoder is None or spec.payload_type is None:
        raise ValueError(f"codec {codec!r} is received only; send {' or '.join(codec_names())}")
    spec.check_redundancy(fec, red)
    rng = np.random.default_rng(seed + 7919)
    seq0 = int(rng.integers(0, 1 << 16))
    ts0 = int(rng.integers(0, 1 << 32))
    ssrc = int(rng.integers(1, 1 << 32))
    per = SAMPLE_RATE * packet_ms // 1000
    n = int(np.ceil(len(audio) / per))
    padded = np.zeros(n * per, dtype=np.float32)
    padded[:len(audio)] = audio
    encoder = spec.encoder(bitrate_bps, packet_ms, **({"fec": True, "expected_loss_percent": expected_loss_percent}
                                                       if fec else {}))
    payloads = [encoder.encode(padded[k * per:(k + 1) * per]) for k in range(n)]
    clock = spec.clock_rate
    step = clock * packet_ms // 1000
    pt = spec.payload_type
    if red:
        payloads = [build_red(pt, payloads[k], [(step, payloads[k - 1])] if k else []) for k in range(n)]
        pt = RED_PAYLOAD_TYPE
    packets = [RtpPacket(pt, (seq0 + k) & 0xFFFF, (ts0 + k * step) & 0xFFFFFFFF, ssrc, payloads[k],
                         marker=k == 0).serialize() for k in range(n)]
    return Packetized(packets, ts0, step, clock, sum(len(p) for p in payloads) * 8 * 1000.0 / (n * packet_ms))


def make_method_concealer(method: str, codec: str) -> Concealer:
    """The concealer for ``--method`` with the ``codec`` payload (``ValueError`` if it cannot run with it)."""
    check_method(method, codec)
    return make_concealer(method, sample_rate=SAMPLE_RATE, frame_ms=FRAME_MS)


@dataclass
class NetsimResult:
    """Output of :func:`simulate`.

    Attributes
    ----------
    audio : np.ndarray
        The played signal, 16 kHz float32, from the first send on.
    stats : dict
        Jitter buffer statistics plus the simulation's (module docstring).
    tick_ms, playout_delay_ms, target_delay_ms, e2e_delay_ms, buffered_ms : np.ndarray
        Per 10 ms tick: time, playout delay, target, mouth-to-ear delay of the
        received audio (NaN if none) and audio waiting in the buffer.
    operations : list of str
        Per tick: the jitter buffer's operation.
    """

    audio: np.ndarray
    stats: dict
    tick_ms: np.ndarray
    playout_delay_ms: np.ndarray
    target_delay_ms: np.ndarray
    e2e_delay_ms: np.ndarray
    buffered_ms: np.ndarray
    operations: list[str] = field(default_factory=list)


def largest_spike(arrivals: list[Arrival], spec: Optional[NetworkSpec] = None) -> Optional[tuple[float, float]]:
    """(height ms, arrival time ms of its first delayed packet) of the largest delay spike.

    From the network model's own spikes when ``spec`` simulated some, else
    from the trace: the packet whose transit time most exceeds the median.
    """
    got = [a for a in arrivals if a.arrival_ms is not None]
    if not got:
        return None
    if spec is not None and spec.spikes:
        t0, height = max(spec.spikes, key=lambda s: s[1])
        hit = [a for a in got if a.send_ms >= t0]
        if not hit:
            return None
        first = min(hit, key=lambda a: a.send_ms)
        return height, float(first.arrival_ms)
    transit = np.array([a.arrival_ms - a.send_ms for a in got])
    excess = transit - np.median(transit)
    i = int(np.argmax(excess))
    if excess[i] < 100.0:  # no spike worth the name
        return None
    return float(excess[i]), float(got[i].arrival_ms)


def recovery_time(tick_ms: np.ndarray, delay: np.ndarray, target: np.ndarray, start_ms: float,
                  band_ms: float = RECOVERY_BAND_MS, hold_ms: float = RECOVERY_HOLD_MS) -> Optional[float]:
    """Time from ``start_ms`` until ``|delay - target| <= band_ms`` holds for ``hold_ms``; None if never."""
    idx = np.flatnonzero(tick_ms >= start_ms)
    if len(idx) == 0:
        return None
    inside = np.abs(delay[idx] - target[idx]) <= band_ms
    hold = max(1, int(round(hold_ms / FRAME_MS)))
    run = 0
    for j, ok in enumerate(inside):
        run = run + 1 if ok else 0
        if run >= hold:
            first = j - hold + 1
            return float(tick_ms[idx[first]] - start_ms) if first > 0 else 0.0
    return None


def simulate(audio: np.ndarray, arrivals: list[Arrival], config: Optional[JitterBufferConfig] = None,
             method: str = "g711", codec: str = "pcm", seed: int = 0, spec: Optional[NetworkSpec] = None,
             concealer: Optional[Concealer] = None, bitrate_bps: int = 24000,
             max_tail_ms: float = 5000.0, fec: bool = False,
             expected_loss_percent: int = DEFAULT_EXPECTED_LOSS_PERCENT, red: bool = False) -> NetsimResult:
    """Run the receive side on ``audio`` (16 kHz mono float) under ``arrivals``.

    Parameters
    ----------
    arrivals : list of Arrival
        Per packet (``seq`` = packet index) send and arrival times in ms;
        duplicates appear twice, lost packets have ``arrival_ms`` None.
        Packets beyond the audio are ignored.
    config : JitterBufferConfig
        Buffer mode and settings (default adaptive).
    method : str
        Concealment method (see :func:`make_method_concealer`), unless
        ``concealer`` is given.
    spec : NetworkSpec, optional
        The model that made ``arrivals`` (for its spike list).
    max_tail_ms : float
        Stop at the latest this long after the last arrival (or the input's end, if later).
    fec, expected_loss_percent, red :
        The sender's redundancy (:func:`packetize`); the jitter buffer uses what arrives.

    Raises ``ValueError`` for times that are not finite or a packet that arrives before it
    was sent. The run takes at most ``(input + MAX_TRANSIT_MS + max_tail_ms) / 10 ms`` ticks.
    """
    config = config or JitterBufferConfig()
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if len(audio) == 0:
        raise ValueError("no audio to send")
    pk = packetize(audio, codec, seed=seed, bitrate_bps=bitrate_bps, fec=fec,
                   expected_loss_percent=expected_loss_percent, red=red)
    n_packets = len(pk.packets)
    jb = JitterBuffer(concealer or make_method_concealer(method, codec), config)
    _check_times(arrivals)
    send_ms = _send_times(arrivals, n_packets)
    start = float(np.floor(send_ms.min() / FRAME_MS) * FRAME_MS)
    # The longest the sender can take to send the input, and how long we wait for its packets.
    span_ms = n_packets * PACKET_MS / (1.0 - MAX_DRIFT)
    horizon_ms = start + span_ms + MAX_TRANSIT_MS
    events = sorted((a.arrival_ms, i, a.seq) for i, a in enumerate(arrivals)
                    if a.arrival_ms is not None and 0 <= a.seq < n_packets)
    beyond = {e[2] for e in events if e[0] > horizon_ms}
    events = [e for e in events if e[0] <= horizon_ms]
    beyond -= {e[2] for e in events}  # a copy of the packet came in time
    end_ms = min(float(send_ms.max()) + PACKET_MS, horizon_ms)  # the input's end: always played out
    last_event = max(events[-1][0] if events else start, end_ms)
    max_ticks = int(np.ceil((span_ms + MAX_TRANSIT_MS + max_tail_ms) / FRAME_MS)) + 1
    ticks = _play(jb, pk, send_ms, events, start, end_ms, last_event + max_tail_ms, max_ticks)
    stats = jb.stats
    spike = largest_spike([a for a in arrivals if a.arrival_ms is None or a.arrival_ms <= horizon_ms], spec)
    arrived = len({e[2] for e in events} | beyond)
    stats.update(_simulation_stats(stats, ticks, spike, n_packets, arrived, len(beyond)))
    stats.update({"payloadBitrateBps": pk.payload_bitrate_bps, "durationS": len(ticks.audio) / SAMPLE_RATE,
                  "inputDurationS": len(audio) / SAMPLE_RATE})
    return NetsimResult(ticks.audio, stats, ticks.tick_ms, ticks.delay, ticks.target, ticks.e2e, ticks.buffered,
                        ticks.operations)


def _check_times(arrivals: list[Arrival]) -> None:
    """``ValueError`` for a time that is not finite or a packet that arrives before it was sent."""
    for a in arrivals:
        if not (np.isfinite(a.send_ms) and (a.arrival_ms is None or np.isfinite(a.arrival_ms))):
            raise ValueError(f"packet {a.seq}: send and arrival times must be finite numbers of ms")
        if a.arrival_ms is not None and a.arrival_ms < a.send_ms:
            raise ValueError(f"packet {a.seq} arrives at {a.arrival_ms:g} ms, before it was sent at {a.send_ms:g} ms")


def _send_times(arrivals: list[Arrival], n_packets: int) -> np.ndarray:
    """Each packet's send time, ms (interpolated for packets a trace does not list)."""
    send_ms = np.full(n_packets, np.nan)
    for a in arrivals:
        if 0 <= a.seq < n_packets and np.isnan(send_ms[a.seq]):
            send_ms[a.seq] = a.send_ms
    if np.any(np.isnan(send_ms)):  # packets missing from a trace: never sent as far as we know
        known = np.flatnonzero(~np.isnan(send_ms))
        if len(known) == 0:
            raise ValueError("the arrivals cover none of the packets")
        send_ms = np.interp(np.arange(n_packets), known, send_ms[known])
    return send_ms


@dataclass
class _Ticks:
    """What :func:`_play` recorded, per 10 ms tick."""

    audio: np.ndarray
    tick_ms: np.ndarray
    delay: np.ndarray
    target: np.ndarray
    e2e: np.ndarray
    buffered: np.ndarray
    operations: list[str]


def _play(jb: JitterBuffer, pk: Packetized, send_ms: np.ndarray, events: list, start: float, end_ms: float,
          give_up_ms: float, max_ticks: int) -> _Ticks:
    """Insert each packet at its arrival time and play a frame every 10 ms from ``start`` until the
    input's end (``end_ms``) and every arrived packet have been played, or ``give_up_ms``."""
    n_packets = len(pk.packets)
    frames, ticks, delays, targets, e2e, buffered, ops = [], [], [], [], [], [], []
    i = 0
    step = pk.timestamp_step
    for tick in range(max_ticks):
        now = start + tick * FRAME_MS
        while i < len(events) and events[i][0] <= now:
            jb.insert_packet(pk.packets[events[i][2]], events[i][0])
            i += 1
        frames.append(jb.get_audio(now))
        info = jb.last_tick
        ticks.append(now)
        delays.append(info.playout_delay_ms)
        targets.append(info.target_delay_ms)
        buffered.append(info.buffered_ms)
        ops.append(info.operation.value)
        if info.playout_timestamp is not None:
            offset = (info.playout_timestamp - pk.first_timestamp) % (1 << 32)
            k = min(offset // step, n_packets - 1)
            within_ms = (offset - k * step) * 1000.0 / pk.clock_rate
            e2e.append(now - (send_ms[k] + within_ms))
        else:
            e2e.append(np.nan)
        played_to = now + FRAME_MS
        if i >= len(events) and not jb.has_pending_audio and played_to >= end_ms:
            break
        if played_to > give_up_ms:
            break
    return _Ticks(np.concatenate(frames), np.asarray(ticks), np.asarray(delays), np.asarray(targets),
                  np.asarray(e2e), np.asarray(buffered), ops)


def _simulation_stats(stats: dict, ticks: _Ticks, spike: Optional[tuple[float, float]], n_packets: int,
                      arrived: int, beyond: int) -> dict:
    """The simulation's own statistics (module docstring) from the jitter buffer's ``stats``."""
    received = ticks.e2e[~np.isnan(ticks.e2e)]
    playing = np.asarray(ticks.operations) != Operation.SILENCE.value
    played = stats["totalSamplesReceived"]
    recovery = None
    if spike is not None:
        recovery = recovery_time(ticks.tick_ms, ticks.delay, ticks.target, spike[1])
    return {
        "packetsSent": n_packets,
        "packetsArrived": arrived,
        "playoutDelayMeanMs": float(np.mean(received)) if len(received) else None,
        "playoutDelayP95Ms": float(np.percentile(received, 95)) if len(received) else None,
        "jitterBufferDelayMeanMs": (1000.0 * stats["jitterBufferDelay"] / stats["jitterBufferEmittedCount"]
                                    if stats["jitterBufferEmittedCount"] else None),
        "targetDelayMeanMs": float(np.mean(ticks.target[playing])) if np.any(playing) else None,
        "packetsBeyondHorizon": beyond,
        "lateLossRate": (stats["packetsLate"] + beyond) / n_packets,
        "networkLossRate": 1.0 - arrived / n_packets,
        "concealedFraction": stats["concealedSamples"] / played if played else 0.0,
        "largestSpikeMs": spike[0] if spike else None,
        "spikeRecoveryMs": recovery,
    }

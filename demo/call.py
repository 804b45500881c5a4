"""``plc demo call``: a real aiortc call over an impaired loopback network, with and without concealment.

Two ``RTCPeerConnection`` objects run in this process with no STUN server;
their ICE host candidates are on 127.0.0.1. The SDP candidates are rewritten
so that each peer sends to a UDP relay (:class:`UdpRelay`, also on
127.0.0.1) instead of to the other peer; the relay forwards everything, and
on the sender-to-receiver direction it drops and delays RTP packets as
``--loss`` and ``--jitter-ms`` say (:class:`NetworkImpairment`: the fate of
the n-th RTP packet depends only on ``--seed`` and n, so every method meets
the same network). STUN, DTLS and RTCP pass untouched.

The sender streams the input through aiortc's Opus encoder in real time; the
receiver enables :func:`plc.webrtc.enable_concealment` with ``--method``
(``aiortc`` leaves aiortc as it is, for reference) and records every frame
its remote track yields: ``DIR/received_<method>.wav`` (48 kHz, what a
listener would hear) and ``DIR/stats.json``. ``--compare`` runs ``none``,
``neteq``, ``opus`` and ``neural`` on the same network and prints a table with
PLCMOS v2 and, when the transcript is known (the built-in LibriVox clips),
the word error rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from plc import argtypes
from plc.codecs.opus import DEFAULT_EXPECTED_LOSS_PERCENT

SEND_RATE = 48000
FRAME_SAMPLES = 960            # 20 ms at 48 kHz
FRAME_S = 0.02
COMPARE_METHODS = ("none", "neteq", "opus", "neural")
CALL_METHODS = ("neural", "neteq", "opus", "none", "aiortc")
DEFAULT_SECONDS = 11.0
CLIP_GAP_S = 0.4


# ---------------------------------------------------------------- the network
class NetworkImpairment:
    """Seeded loss and delay of the n-th RTP packet of a stream.

    Parameters
    ----------
    loss_spec : str or None
        ``bernoulli:P`` or ``gilbert:P,BURST`` (:func:`plc.loss_models.parse_loss_spec`).
    jitter_ms : float
        Mean extra one-way delay; each packet's delay is drawn from an
        exponential distribution with this mean, so packets whose delays
        differ by more than the 20 ms packet interval arrive out of order.
    seed : int
    lost : sequence of int, optional
        Indices of packets to drop, instead of (or on top of) ``loss_spec``.
    capacity : int
        Packets covered (later ones pass unimpaired).
    """

    def __init__(self, loss_spec: Optional[str] = None, jitter_ms: float = 0.0, seed: int = 0,
                 lost: Optional[list[int]] = None, capacity: int = 50 * 600) -> None:
        self.loss_spec = loss_spec
        self.jitter_ms = float(jitter_ms)
        self.seed = int(seed)
        self.lost = np.zeros(capacity, dtype=bool)
        if loss_spec:
            from plc.loss_models import parse_loss_spec

            self.lost |= parse_loss_spec(loss_spec).generate(capacity, np.random.default_rng([self.seed, 1]))
        for i in lost or ():
            if 0 <= i < capacity:
                self.lost[i] = True
        rng = np.random.default_rng([self.seed, 2])
        self.delay_ms = rng.exponential(self.jitter_ms, capacity) if self.jitter_ms > 0 else np.zeros(capacity)

    def fate(self, index: int) -> tuple[bool, float]:
        """(dropped, extra delay in ms) of packet ``index`` (0 = the first RTP packet)."""
        if 0 <= index < len(self.lost):
            return bool(self.lost[index]), float(self.delay_ms[index])
        return False, 0.0


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: "UdpRelay", name: str) -> None:
        self.relay = relay
        self.name = name
        self.transport: Optional[asyncio.DatagramTransport] = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.relay._received(self.name, data, addr)


@dataclass
class RelayStats:
    rtp_packets: int = 0
    rtp_dropped: int = 0
    rtp_reordered: int = 0
    other_packets: int = 0
    mean_delay_ms: float = 0.0
    _delay_sum: float = field(default=0.0, repr=False)

    def as_dict(self) -> dict:
        return {"rtp_packets": self.rtp_packets, "rtp_dropped": self.rtp_dropped,
                "rtp_reordered": self.rtp_reordered, "other_packets": self.other_packets,
                "mean_extra_delay_ms": self._delay_sum / max(1, self.rtp_packets - self.rtp_dropped)}


class UdpRelay:
    """A UDP relay on 127.0.0.1 between two peers, impairing RTP from the sender to the receiver.

    Side ``a`` faces the receiver and stands for the sender (the receiver is
    told that the sender's candidate is ``a``); side ``b`` faces the sender
    and stands for the receiver. Datagrams from the sender arriving on ``b``
    leave from ``a`` to the receiver, and the other way round, so each peer
    sees the other at the address it was given.
    """

    def __init__(self, impairment: Optional[NetworkImpairment] = None) -> None:
        self.impairment = impairment or NetworkImpairment()
        self.sender_addr: Optional[tuple] = None
        self.receiver_addr: Optional[tuple] = None
        self.stats = RelayStats()
        self._sides: dict[str, _Side] = {}
        self._first_seq: Optional[int] = None
        self._last_ext: Optional[int] = None
        self._max_forwarded: Optional[int] = None
        self.closed = False

    async def start(self) -> "UdpRelay":
        loop = asyncio.get_running_loop()
        for name in ("a", "b"):
            _, proto = await loop.create_datagram_endpoint(lambda n=name: _Side(self, n), local_addr=("127.0.0.1", 0))
            self._sides[name] = proto
        return self

    def address(self, side: str) -> tuple[str, int]:
        return self._sides[side].transport.get_extra_info("sockname")[:2]

    def close(self) -> None:
        self.closed = True  # packets still in flight are dropped by _forward_rtp
        for side in self._sides.values():
            if side.transport is not None:
                side.transport.close()

    def _extended_seq(self, seq: int) -> int:
        if self._last_ext is None:
            self._first_seq = seq
            self._last_ext = seq
            return seq
        ext = self._last_ext + ((seq - self._last_ext + 0x8000) & 0xFFFF) - 0x8000
        self._last_ext = max(self._last_ext, ext)
        return ext

    def _received(self, side: str, data: bytes, addr) -> None:
        if self.closed:
            return
        if side == "b":  # from the sender
            self.sender_addr = self.sender_addr or addr
            if self.receiver_addr is None:
                return
            if _is_rtp(data):
                self._impair(data)
            else:
                self.stats.other_packets += 1
                self._send("a", data, self.receiver_addr)
        else:            # from the receiver
            self.receiver_addr = self.receiver_addr or addr
            if self.sender_addr is not None:
                self.stats.other_packets += 1
                self._send("b", data, self.sender_addr)

    def _impair(self, data: bytes) -> None:
        ext = self._extended_seq(int.from_bytes(data[2:4], "big"))
        index = ext - self._first_seq
        self.stats.rtp_packets += 1
        dropped, delay_ms = self.impairment.fate(index)
        if dropped:
            self.stats.rtp_dropped += 1
            return
        self.stats._delay_sum += delay_ms
        if delay_ms <= 0:
            self._forward_rtp(ext, data)
        else:
            asyncio.get_running_loop().call_later(delay_ms / 1000.0, self._forward_rtp, ext, data)

    def _forward_rtp(self, ext: int, data: bytes) -> None:
        if self.closed:
            return
        if self._max_forwarded is not None and ext < self._max_forwarded:
            self.stats.rtp_reordered += 1
        self._max_forwarded = ext if self._max_forwarded is None else max(self._max_forwarded, ext)
        self._send("a", data, self.receiver_addr)

    def _send(self, side: str, data: bytes, addr) -> None:
        transport = self._sides[side].transport
        if transport is not None and not transport.is_closing():
            transport.sendto(data, addr)


def _is_rtp(data: bytes) -> bool:
    """RTP (not RTCP, STUN or DTLS) by RFC 7983's first byte and RFC 5761's packet type."""
    return len(data) >= 12 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223


_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ )(\S+) (\d+)( typ host.*)$", re.IGNORECASE)


def candidate_address(sdp: str) -> tuple[str, int]:
    """The first IPv4 UDP host candidate of an SDP."""
    for line in sdp.splitlines():
        m = _CANDIDATE.match(line.strip())
        if m and ":" not in m.group(2):
            return m.group(2), int(m.group(3))
    raise RuntimeError("no IPv4 host candidate in the SDP")


def route_through(sdp: str, address: tuple[str, int]) -> str:
    """The SDP with its one IPv4 host candidate moved to ``address`` (the relay) and no others."""
    out = []
    done = False
    for line in sdp.splitlines():
        m = _CANDIDATE.match(line.strip())
        if line.startswith("a=candidate:"):
            if m and not done and ":" not in m.group(2):
                out.append(f"{m.group(1)}{address[0]} {address[1]}{m.group(4)}")
                done = True
            continue
        out.append(line)
    return "\r\n".join(out) + "\r\n"


@contextlib.contextmanager
def loopback_candidates():
    """While gathering, ICE host candidates are 127.0.0.1 only (aioice skips loopback by default)."""
    import aioice.ice

    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


async def connect(offerer, answerer, relay: Optional[UdpRelay] = None) -> None:
    """Negotiate two local peer connections, ICE on 127.0.0.1, through ``relay`` if given.

    With a relay, ``offerer`` is the side whose RTP the relay impairs.
    """
    from aiortc import RTCSessionDescription

    with loopback_candidates():
        await offerer.setLocalDescription(await offerer.createOffer())
    offer = offerer.localDescription.sdp
    if relay is not None:
        relay.sender_addr = candidate_address(offer)
        offer = route_through(offer, relay.address("a"))
    await answerer.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    with loopback_candidates():
        await answerer.setLocalDescription(await answerer.createAnswer())
    answer = answerer.localDescription.sdp
    if relay is not None:
        relay.receiver_addr = candidate_address(answer)
        answer = route_through(answer, relay.address("b"))
    await offerer.setRemoteDescription(RTCSessionDescription(answer, "answer"))


# ------------------------------------------------------------------ the media
def _array_track_class():
    import av
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    class ArrayAudioTrack(MediaStreamTrack):
        """Plays a mono float array (48 kHz) as 20 ms s16 frames in real time, then ends."""

        kind = "audio"

        def __init__(self, samples: np.ndarray) -> None:
            super().__init__()
            x = np.clip(np.asarray(samples, dtype=np.float64).reshape(-1), -1.0, 1.0)
            n = int(math.ceil(len(x) / FRAME_SAMPLES)) * FRAME_SAMPLES
            self._pcm = np.round(np.pad(x, (0, n - len(x))) * 32767).astype(np.int16)
            self._index = 0
            self._start: Optional[float] = None
            self.frames_sent = 0

        @property
        def n_frames(self) -> int:
            return len(self._pcm) // FRAME_SAMPLES

        async def recv(self):
            if self.readyState != "live" or self._index >= self.n_frames:
                self.stop()
                raise MediaStreamError
            if self._start is None:
                self._start = time.monotonic()
            wait = self._start + self._index * FRAME_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            chunk = self._pcm[self._index * FRAME_SAMPLES:(self._index + 1) * FRAME_SAMPLES]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SEND_RATE
            frame.time_base = fractions.Fraction(1, SEND_RATE)
            frame.pts = self._index * FRAME_SAMPLES
            self._index += 1
            self.frames_sent += 1
            return frame

    return ArrayAudioTrack


def ArrayAudioTrack(samples: np.ndarray):  # noqa: N802 - builds the aiortc track class lazily
    """An aiortc audio track playing ``samples`` (mono float, 48 kHz) in real time."""
    return _array_track_class()(samples)


def frame_to_mono(frame) -> np.ndarray:
    """An aiortc audio frame (s16/s16p/flt, any layout) as mono float."""
    a = frame.to_ndarray()
    channels = len(frame.layout.channels)
    a = a.astype(np.float64)
    if frame.format.name.startswith("s16"):
        a = a / 32768.0
    if channels > 1:
        a = a.reshape(channels, -1).mean(axis=0) if frame.format.is_planar else a.reshape(-1, channels).mean(axis=1)
    return a.reshape(-1).astype(np.float32)


# ------------------------------------------------------------------- the call
@dataclass
class CallResult:
    """What the receiver heard and counted in one call."""

    method: str
    received: np.ndarray                 # mono float at 48 kHz
    frames: int
    pts_gaps: int                        # frames whose pts did not follow the previous frame's
    sample_rate: int
    stats: Optional[dict]
    relay: dict
    frames_sent: int
    connect_s: float
    timeline: Optional[list] = None


async def run_call(audio48: np.ndarray, method: Optional[str] = None, loss: Optional[str] = None, jitter_ms: float = 0.0,
                   seed: int = 0, lost: Optional[list[int]] = None, tail_s: float = 1.0,
                   connect_timeout_s: float = 15.0, options: Optional[dict] = None,
                   fec: Optional[int] = None) -> CallResult:
    """One call: send ``audio48`` (mono, 48 kHz) through the relay, record the receiver's remote track.

    ``method`` ``aiortc`` runs without :func:`plc.webrtc.enable_concealment`; None: the
    project's default (:func:`plc.concealers.default_method`). ``fec``: the
    sender's Opus carries in-band FEC planned for that packet loss (%)
    (:func:`plc.webrtc_fec.enable_opus_fec`), and the receiver advertises ``useinbandfec=1``.
    The sender follows the audio with silence; the receiver records
    ``len(audio48)`` plus ``tail_s`` seconds of frames (aiortc alone: as
    many frames, or until its track goes quiet for ``tail_s``).
    """
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import MediaStreamError

    from plc.webrtc import enable_concealment
    from plc.webrtc_fec import enable_opus_fec

    relay = await UdpRelay(NetworkImpairment(loss, jitter_ms, seed, lost)).start()
    config = RTCConfiguration(iceServers=[])
    pc_send, pc_recv = RTCPeerConnection(config), RTCPeerConnection(config)
    # the sender goes on with silence after the audio, so the tail is not a loss
    track = ArrayAudioTrack(np.concatenate([audio48, np.zeros(int((tail_s + 1.0) * SEND_RATE))]))
    handle = None
    frames: list[np.ndarray] = []
    pts: list[int] = []
    sample_rate = [SEND_RATE]
    n_target = int(math.ceil(len(audio48) / FRAME_SAMPLES + tail_s / FRAME_S))
    done = asyncio.get_running_loop().create_future()
    t_start = time.monotonic()
    connected_at: list[float] = []

    async def record(remote) -> None:
        try:
            while len(frames) < n_target:
                if method == "aiortc":
                    try:
                        frame = await asyncio.wait_for(remote.recv(), timeout=tail_s if frames else connect_timeout_s)
                    except asyncio.TimeoutError:
                        break
                else:
                    frame = await remote.recv()
                if not connected_at:
                    connected_at.append(time.monotonic())
                frames.append(frame_to_mono(frame))
                pts.append(int(frame.pts) if frame.pts is not None else -1)
                sample_rate[0] = frame.sample_rate
        except MediaStreamError:
            pass
        finally:
            if not done.done():
                done.set_result(None)

    @pc_recv.on("track")
    def on_track(remote) -> None:
        if remote.kind == "audio":
            asyncio.ensure_future(record(remote))

    try:
        if method != "aiortc":
            fec_options = {"fec": True, "expected_loss_percent": fec} if fec is not None else {}
            handle = enable_concealment(pc_recv, method=method, **(options or {}), **fec_options)
        if fec is not None:
            enable_opus_fec(pc_send, fec)
        pc_send.addTrack(track)
        await connect(pc_send, pc_recv, relay)
        deadline = connect_timeout_s + len(audio48) / SEND_RATE + tail_s + 10.0
        await asyncio.wait_for(done, timeout=deadline)
        if not frames:
            raise RuntimeError("the call did not connect over loopback (no audio received)")
        stats = handle.stats if handle is not None else None
        timeline = None
        if handle is not None and handle.receivers and handle.receivers[0].timeline is not None:
            timeline = list(handle.receivers[0].timeline)
    finally:
        await pc_send.close()
        await pc_recv.close()
        relay.close()
        if handle is not None:
            handle.disable()
    gaps = sum(1 for a, b in zip(pts, pts[1:]) if b - a != FRAME_SAMPLES * sample_rate[0] // SEND_RATE)
    return CallResult(method=method, received=np.concatenate(frames), frames=len(frames), pts_gaps=gaps,
                      sample_rate=sample_rate[0], stats=stats, relay=relay.stats.as_dict(),
                      frames_sent=track.frames_sent,
                      connect_s=(connected_at[0] - t_start) if connected_at else float("nan"), timeline=timeline)


# ------------------------------------------------------------------ analysis
def estimate_lag(ref: np.ndarray, deg: np.ndarray, sample_rate: int, start_s: float, window_s: float = 2.0,
                 max_lag_s: float = 1.0) -> tuple[float, float]:
    """Delay (s) of ``ref[start:start+window]`` inside ``deg``, and the normalised correlation there."""
    a = int(start_s * sample_rate)
    w = int(window_s * sample_rate)
    seg = np.asarray(ref[a:a + w], dtype=np.float64)
    span = np.asarray(deg[a:a + w + int(max_lag_s * sample_rate)], dtype=np.float64)
    if len(seg) < w // 2 or len(span) < len(seg):
        return float("nan"), 0.0
    n = 1 << int(math.ceil(math.log2(len(span) + len(seg))))
    corr = np.fft.irfft(np.fft.rfft(span, n) * np.conj(np.fft.rfft(seg, n)), n)[: len(span) - len(seg) + 1]
    energy = np.sqrt(np.convolve(span ** 2, np.ones(len(seg)), "valid") * np.sum(seg ** 2)) + 1e-12
    norm = corr / energy
    k = int(np.argmax(norm))
    return k / sample_rate, float(norm[k])


def summarize(result: CallResult, sent16: np.ndarray) -> dict:
    """Numbers of one call for stats.json and the table (no PLCMOS/WER)."""
    from eval.metrics import to_16k

    rec16 = to_16k(result.received, result.sample_rate)
    s = result.stats or {}
    rate = s.get("sampleRate", 16000)
    emitted = s.get("jitterBufferEmittedCount", 0)
    dur = len(sent16) / 16000
    lag_start, c_start = estimate_lag(sent16, rec16, 16000, 0.5)
    lag_end, c_end = estimate_lag(sent16, rec16, 16000, max(0.5, dur - 2.5))
    return {
        "method": result.method,
        "frames": result.frames,
        "received_s": len(result.received) / result.sample_rate,
        "sent_s": dur,
        "pts_gaps": result.pts_gaps,
        "connect_s": round(result.connect_s, 3),
        "concealment_events": s.get("concealmentEvents") if result.stats else None,
        "concealed_ms": 1000.0 * s.get("concealedSamples", 0) / rate if result.stats else None,
        "silent_concealed_ms": 1000.0 * s.get("silentConcealedSamples", 0) / rate if result.stats else None,
        "mean_playout_delay_ms": (1000.0 * s["jitterBufferDelay"] / emitted) if emitted else None,
        "mean_target_delay_ms": (1000.0 * s["jitterBufferTargetDelay"] / emitted) if emitted else None,
        "delay_start_ms": round(1000 * lag_start, 1), "delay_start_corr": round(c_start, 3),
        "delay_end_ms": round(1000 * lag_end, 1), "delay_end_corr": round(c_end, 3),
        "network": result.relay,
        "receiver_stats": result.stats,
    }


# ----------------------------------------------------------------------- input
@dataclass
class CallInput:
    """The audio to send (mono float, 16 kHz) and what is said in it."""

    audio: np.ndarray
    source: str
    #: (start s, end s, transcript) of each clip; empty when the words are unknown
    segments: list = field(default_factory=list)

    @property
    def transcript(self) -> Optional[str]:
        return " ".join(t for _, _, t in self.segments) if self.segments else None


def load_input(path: Optional[str], seconds: float, transcript: Optional[str] = None) -> CallInput:
    """``--input`` (with ``--transcript``) or the built-in clips: whole clips, at most ``seconds``."""
    from plc.audio_io import AudioError, load_audio, resample
    from plc.cli import UserError

    n_max = int(seconds * 16000)
    if path:
        try:
            x, sr = load_audio(path)
        except AudioError as exc:
            raise UserError(str(exc)) from None
        x = resample(x.mean(axis=1), sr, 16000)[:n_max].astype(np.float32)
        if len(x) < 16000:
            raise UserError(f"{path}: shorter than 1 s; the call needs at least a second of audio")
        segments = [(0.0, len(x) / 16000, transcript)] if transcript else []
        return CallInput(x, str(path), segments)
    from .default_input import librivox_clips

    clips = librivox_clips()
    if not clips:
        raise UserError("the built-in demo speech is missing: run `make setup` (installs Debian's "
                        "pocketsphinx-testdata) or pass --input AUDIO")
    parts, segments, names = [], [], []
    total = 0
    gap = np.zeros(int(CLIP_GAP_S * 16000), np.float32)
    for clip_path, text in clips:
        x, sr = load_audio(clip_path)
        x = resample(x.mean(axis=1), sr, 16000)
        start = total + (len(gap) if parts else 0)
        if parts and start + len(x) > n_max:
            break
        if parts:
            parts.append(gap)
        parts.append(x)
        segments.append((start / 16000, (start + len(x)) / 16000, text))
        names.append(Path(clip_path).stem.rsplit("-", 1)[-1])
        total = start + len(x)
    audio = np.concatenate(parts)
    if len(audio) > n_max:  # the first clip alone is longer than --seconds: words unknown
        audio, segments = audio[:n_max], []
    if transcript:
        segments = [(0.0, len(audio) / 16000, transcript)]
    return CallInput(audio.astype(np.float32), "LibriVox clips " + ", ".join(names), segments)


# ------------------------------------------------------------------------- CLI
def add_call_parser(demo_sub: argparse._SubParsersAction) -> None:
    """Register ``plc demo call``."""
    p = demo_sub.add_parser(
        "call", help="a real WebRTC (aiortc) call over an impaired loopback network",
        description="Two aiortc peer connections in this process, connected over 127.0.0.1 through a UDP relay "
                    "that drops, delays and reorders the audio packets. The sender streams INPUT through Opus; "
                    "the receiver conceals with --method (plc.webrtc.enable_concealment) and records what a "
                    "listener hears to DIR/received_<method>.wav, with DIR/stats.json.")
    p.add_argument("--input", metavar="AUDIO",
                   help="speech to send (default: the built-in LibriVox clips, whose transcripts give the WER)")
    p.add_argument("--transcript", metavar="TEXT", help="what --input says, to score the word error rate")
    p.add_argument("--method", default=None, choices=CALL_METHODS,
                   help="receiver concealment: neural (the default where onnxruntime is installed, else neteq), "
                        "neteq, opus (libopus' PLC), none (our jitter buffer, silence in the gaps) or aiortc "
                        "(no plugin: aiortc's own jitter buffer)")
    p.add_argument("--compare", action="store_true",
                   help="run the same network (same seed) once for each of none, neteq, opus and neural and print "
                        "a table")
    p.add_argument("--loss", default="gilbert:0.1,3", metavar="SPEC",
                   help="loss of audio packets: bernoulli:RATE, gilbert:RATE,MEAN_BURST_PACKETS or none "
                        "(default gilbert:0.1,3)")
    p.add_argument("--jitter-ms", type=argtypes.float_range(0.0, 1000.0), default=20.0, metavar="MS",
                   help="mean extra one-way delay of each audio packet, exponentially distributed, which also "
                        "reorders packets (default 20)")
    p.add_argument("--seconds", type=argtypes.float_range(1.0, 600.0), default=DEFAULT_SECONDS, metavar="N",
                   help=f"send at most N seconds of the input (default {DEFAULT_SECONDS:g}: the first two built-in "
                        "clips)")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="seed of the network impairments (default 0)")
    p.add_argument("--buffer", default="adaptive", metavar="MODE",
                   help="receiver jitter buffer: adaptive (default) or fixed:MS")
    p.add_argument("--fec", action="store_true",
                   help="the sender's Opus carries in-band FEC (as browsers send it; aiortc's encoder at its 96 "
                        "kbit/s with libopus' fec and packet_loss options) and the receiver decodes lost packets "
                        "from it (plc.webrtc_fec)")
    p.add_argument("--expected-loss", type=argtypes.loss_percent, default=None, metavar="PERCENT",
                   help="with --fec: the packet loss the sender plans the FEC for (default 10)")
    p.add_argument("--no-score", action="store_true", help="skip PLCMOS and the word error rate")
    p.add_argument("--out", default="out/call", metavar="DIR", help="output folder (default out/call)")
    p.set_defaults(func=run_call_command)


def _check_args(args: argparse.Namespace) -> Optional[str]:
    from plc.cli import UserError

    loss = None if args.loss.strip().lower() in ("", "none", "0") else args.loss
    if loss:
        from plc.loss_models import TraceError, parse_loss_spec

        try:
            parse_loss_spec(loss)
        except TraceError as exc:
            raise UserError(f"--loss: {exc}") from None
    try:
        from jitterbuffer.jitter_buffer import JitterBufferConfig

        JitterBufferConfig.from_spec(args.buffer)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if args.expected_loss is not None and not args.fec:
        raise UserError("--expected-loss goes with --fec")
    return loss


def run_call_command(args: argparse.Namespace) -> int:
    from plc.audio_io import write_audio
    from plc.cli import UserError

    loss = _check_args(args)
    call_input = load_input(args.input, args.seconds, args.transcript)
    sent16, source = call_input.audio, call_input.source
    from plc.concealers import default_method

    methods = list(COMPARE_METHODS) if args.compare else [args.method or default_method()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from plc.audio_io import resample

    audio48 = resample(sent16, 16000, SEND_RATE)
    print(f"Call over loopback: {source} ({len(sent16) / 16000:.1f} s), loss {loss or 'none'}, "
          f"jitter {args.jitter_ms:g} ms, seed {args.seed}; receiver: {', '.join(methods)}")
    runs: dict[str, dict] = {}
    fec = (DEFAULT_EXPECTED_LOSS_PERCENT if args.expected_loss is None else args.expected_loss) if args.fec else None
    for method in methods:
        options = {"buffer": args.buffer} if method != "aiortc" else None
        try:
            result = asyncio.run(run_call(audio48, method, loss, args.jitter_ms, args.seed, options=options,
                                          fec=fec))
        except (RuntimeError, asyncio.TimeoutError, OSError) as exc:
            raise UserError(f"the {method} call failed: {type(exc).__name__}: {exc}") from None
        wav = out / f"received_{method}.wav"
        write_audio(wav, result.received, result.sample_rate, "PCM_16")
        runs[method] = summarize(result, sent16)
        runs[method]["wav"] = str(wav)
        r = runs[method]
        print(f"  {method:7s} {r['frames']} frames, {r['network']['rtp_dropped']}/{r['network']['rtp_packets']} "
              f"packets dropped, {r['network']['rtp_reordered']} reordered, {r['pts_gaps']} time gaps in the "
              f"received frames"
              + (f", {r['receiver_stats'].get('fecPacketsRecovered', 0)} packets recovered from FEC"
                 if fec is not None and r.get("receiver_stats") else "")
              + _steering_note(r.get("receiver_stats") or {})
              + f" -> {wav}")
    if not args.no_score:
        _score(runs, call_input)
    stats = {
        "config": {"input": source, "seconds": len(sent16) / 16000, "loss": loss, "jitter_ms": args.jitter_ms,
                   "seed": args.seed, "buffer": args.buffer, "transcript": call_input.transcript,
                   "fec_expected_loss_percent": fec},
        "runs": runs,
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2, default=_json_default) + "\n")
    print()
    print(format_table(runs))
    print(f"\nWrote {out}/stats.json and {', '.join(Path(r['wav']).name for r in runs.values())}")
    return 0


def _steering_note(stats: dict) -> str:
    """How the call's Opus losses began, where the concealer steered the decoder or left it to FEC,
    and how many bursts ended on their way into the packet after them (already buffered)."""
    steered, left = stats.get("steeredLosses", 0), stats.get("lossesLeftToFec", 0)
    ended = stats.get("gapsEndedAhead", 0)
    return ((f", {steered} losses began with the model's packet in the decoder" if steered else "")
            + (f", {left} losses left to libopus' PLC (the stream carries FEC)" if left else "")
            + (f", {ended} bursts ended into the next packet" if ended else ""))


def _score(runs: dict, call_input: CallInput) -> None:
    """PLCMOS v2 of each received signal, and its WER when the words are known (clip by clip)."""
    import soundfile as sf

    from eval.metrics import plcmos, to_16k

    transcriber = None
    if call_input.segments:
        try:
            from eval.asr import Transcriber

            transcriber = Transcriber()
        except Exception as exc:  # noqa: BLE001 - no ASR installed: no WER column
            print(f"(no word error rate: {exc})")
    for method, r in runs.items():
        x, sr = sf.read(r["wav"], dtype="float32")
        x16 = to_16k(x, sr)
        try:
            r["plcmos"] = round(plcmos(x16, 16000, seed=0), 3)
        except Exception as exc:  # noqa: BLE001 - speechmos missing
            r["plcmos"] = None
            r["plcmos_error"] = str(exc)
        if transcriber is not None:
            r.update(_wer(transcriber, x16, call_input.segments, r.get("delay_start_ms")))


def _wer(transcriber, x16: np.ndarray, segments: list, delay_ms: Optional[float]) -> dict:
    """Word error rate over the clips: the received audio is cut between clips (shifted by the delay)."""
    from eval.text_norm import word_errors

    shift = int(16000 * (delay_ms or 0.0) / 1000) if delay_ms is not None and math.isfinite(delay_ms) else 0
    cuts = [0] + [int(16000 * (a_end + b_start) / 2) + shift
                  for (_, a_end, _), (b_start, _, _) in zip(segments, segments[1:])] + [len(x16)]
    errors = words = 0
    hyps = []
    for (_, _, text), a, b in zip(segments, cuts, cuts[1:]):
        hyp = transcriber.transcribe(x16[max(0, a):max(a, b)], 16000)
        we = word_errors(text, hyp)
        errors += we["substitutions"] + we["deletions"] + we["insertions"]
        words += we["ref_words"]
        hyps.append(hyp)
    return {"wer": round(errors / max(1, words), 4), "hypothesis": " | ".join(hyps)}


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        width = re.match(r"\d*", spec).group(0)
        return format("-", f">{width}")
    return format(value, spec)


def format_table(runs: dict) -> str:
    """The --compare table (one row per method)."""
    head = (f"{'method':8s} {'events':>7s} {'concealed ms':>13s} {'mean delay ms':>14s} {'PLCMOS':>7s} {'WER':>7s} "
            f"{'fallback':>9s}")
    lines = [head, "-" * len(head)]
    for method, r in runs.items():
        wer = r.get("wer")
        fallback = (r.get("receiver_stats") or {}).get("fallbackFrames")
        lines.append(f"{method:8s} {_fmt(r.get('concealment_events'), '7d')} {_fmt(r.get('concealed_ms'), '13.0f')} "
                     f"{_fmt(r.get('mean_playout_delay_ms'), '14.1f')} {_fmt(r.get('plcmos'), '7.2f')} "
                     f"{_fmt(None if wer is None else 100 * wer, '6.1f') + ('%' if wer is not None else ''):>7s} "
                     f"{_fmt(fallback if method != 'none' else None, '9d')}")
    lines.append("events/concealed: jitter buffer concealment (WebRTC concealmentEvents, concealedSamples); "
                 "mean delay: jitterBufferDelay / jitterBufferEmittedCount; fallback: 10 ms frames the classic "
                 "concealer made because the model failed or would miss its deadline")
    return "\n".join(lines)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)

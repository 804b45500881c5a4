"""Packet loss concealment for aiortc calls: one call on the receiving peer connection.

Usage::

    from aiortc import RTCPeerConnection
    from plc.webrtc import enable_concealment

    pc = RTCPeerConnection()
    handle = enable_concealment(pc)                    # neural by default; before or after negotiation
    ...
    @pc.on("track")
    def on_track(track):
        ...                      # track.recv() as usual: a frame every 20 ms
    ...
    print(handle.stats["concealmentEvents"], handle.stats["concealedSamples"])
    handle.disable()             # back to aiortc's own audio path

What it does
------------
aiortc (1.16) hands every received RTP packet of an audio receiver to its own
jitter buffer, which reassembles whole frames and passes them to a decoder
thread; the decoded 20 ms frames go into the remote track's queue. A lost
packet is simply skipped (a time gap), and nothing is played while the
network stalls.

:func:`enable_concealment` changes two things on each *audio*
``RTCRtpReceiver`` instance it is given (or finds on the peer connection,
now and as transceivers get their remote tracks, via the ``track`` event);
aiortc's classes, video receivers, senders, data channels and RTCP are not
touched (every access to aiortc's internals is in :mod:`plc.aiortc_compat`, which
checks that this aiortc has them):

1. the receiver's private aiortc jitter buffer object is replaced by a tap
   that timestamps each packet (after aiortc's own SSRC bookkeeping, RTCP
   statistics and RTX unwrapping, which keep running) and hands it to this
   project's NetEQ-style :class:`jitterbuffer.jitter_buffer.JitterBuffer` with the
   chosen concealer; aiortc's decoder thread then receives nothing (it still
   ends the track when the receiver stops);
2. a playout clock, started by the first packet, ticks every 20 ms: it asks
   the jitter buffer for two 10 ms frames of 16 kHz audio (packets are
   inserted with their arrival times, so the output depends only on when
   packets arrived, not on when the clock task got to run), resamples them to
   48 kHz with a stateful polyphase filter and puts one ``av.AudioFrame``
   (s16, 960 samples, stereo like aiortc's Opus decoder or mono, ``pts``
   advancing by 960 without gaps, ``time_base`` 1/48000) into the remote
   track's queue. The track's ``recv()`` is aiortc's, unchanged: it just
   receives a frame every 20 ms, concealment included, even when no packet
   arrives.

Opus in-band FEC: the jitter buffer decodes a missing frame from the next packet's FEC
copy whenever one is there (browsers send it); with ``fec=True`` this connection's own
Opus senders send it too and its SDP says ``useinbandfec=1`` (:mod:`plc.webrtc_fec`).
``fecPacketsReceived`` and ``fecPacketsDiscarded`` count the copies.

The receiver's ``getStats()`` also gets the jitter buffer's counters added to
its audio ``inbound-rtp`` entry (as declared fields of a subclass of aiortc's
``RTCInboundRtpStreamStats``); :attr:`ConcealmentHandle.stats` and
:func:`get_concealment_stats` return them as a dict. Field names are
WebRTC's (``jitterBufferDelay``, ``jitterBufferTargetDelay``,
``jitterBufferEmittedCount``, ``concealedSamples``,
``silentConcealedSamples``, ``concealmentEvents``,
``insertedSamplesForDeceleration``, ``removedSamplesForAcceleration``,
``packetsDiscarded``, ``packetsLost``, ...); sample counts are at the jitter
buffer's 16 kHz and the delays are sums in seconds, as in WebRTC. Beyond them
(:attr:`jitterbuffer.jitter_buffer.JitterBuffer.stats`): ``fallbackFrames`` and
``fallbackReason`` (the classic took over: the model failed or ran late), and where
the concealment came from: ``codecConcealedFrames`` (libopus' PLC played),
``steeredLosses`` (losses that began with the model's packet coded into the Opus
decoder), ``lossesLeftToFec`` (not steered, as the stream carries in-band FEC) and
``gapsEndedAhead`` (bursts whose concealment ended on its way into the next packet,
already buffered: :mod:`plc.concealers.gap_end`).

Codecs: those of :mod:`plc.codecs`, found by the negotiated MIME type (as aiortc
finds its decoders): Opus is decoded with libopus at 16 kHz (mono); PCMU, PCMA and
G.722 go through aiortc's own decoders and are resampled to 16 kHz. Packets must
carry whole 10 ms frames (all of aiortc's audio codecs do).

Methods: any concealer name of :func:`plc.concealers.make_concealer`
(``neural``, ``neteq``, ``g711``, ``repeat``, ``zero``), ``opus`` (libopus'
own PLC) and ``none`` (this jitter buffer with silence in the gaps, for
comparison).

This module does not import the evaluation, training or demo packages.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import logging
import struct
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable, Optional

import numpy as np

from . import aiortc_compat
from .codecs import codec_for_mime
from .codecs.opus import DEFAULT_EXPECTED_LOSS_PERCENT
from .dsp import StreamUpsampler

logger = logging.getLogger(__name__)

__all__ = [
    "enable_concealment", "disable_concealment", "get_concealment_stats", "is_concealment_enabled",
    "ConcealmentHandle", "ReceiverConcealment", "STANDARD_STATS", "OUTPUT_RATE", "OUTPUT_FRAME_SAMPLES",
]

#: Rate of the frames the remote track yields (aiortc's Opus decoder rate), Hz.
OUTPUT_RATE = 48000
#: Samples per output frame (20 ms at 48 kHz).
OUTPUT_FRAME_SAMPLES = 960
#: Output frame duration, ms.
OUTPUT_FRAME_MS = 20
_JB_RATE = 16000
_JB_FRAME_MS = 10
#: Options of :func:`enable_concealment` for the sender side (:mod:`plc.webrtc_fec`), not the receivers.
_FEC_OPTIONS = {"fec", "expected_loss_percent"}
_TIME_BASE = fractions.Fraction(1, OUTPUT_RATE)

#: The WebRTC ``RTCInboundRtpStreamStats`` fields added to the receiver's ``getStats()``.
STANDARD_STATS = (
    "jitterBufferDelay", "jitterBufferTargetDelay", "jitterBufferEmittedCount", "concealedSamples",
    "silentConcealedSamples", "concealmentEvents", "insertedSamplesForDeceleration",
    "removedSamplesForAcceleration", "packetsDiscarded", "totalSamplesReceived", "fecPacketsReceived",
    "fecPacketsDiscarded",
)

# ------------------------------------------------------------------ registry
_RECEIVERS: "weakref.WeakKeyDictionary[Any, ReceiverConcealment]" = weakref.WeakKeyDictionary()
_PEERS: "weakref.WeakKeyDictionary[Any, ConcealmentHandle]" = weakref.WeakKeyDictionary()


def _monotonic_ms() -> float:
    return time.monotonic() * 1000.0


# ------------------------------------------------------------------ concealers
def _method_names() -> list[str]:
    from plc.concealers import available_methods

    return sorted(set(available_methods()) | {"none"})


def _check_method(method: str) -> str:
    """The method's name (lower case); ValueError if unknown."""
    name = str(method).lower()
    if name not in _method_names():
        raise ValueError(f"unknown concealment method {method!r}; choose from {', '.join(_method_names())}")
    return name


def _make_concealer(method: str, concealer_options: dict):
    from plc.concealers import make_concealer

    name = "zero" if method == "none" else method
    return make_concealer(name, sample_rate=_JB_RATE, frame_ms=_JB_FRAME_MS, **concealer_options)


def _make_jitter_buffer(method: str, buffer: str, concealer_options: dict):
    from jitterbuffer.jitter_buffer import JitterBuffer, JitterBufferConfig

    config = buffer if isinstance(buffer, JitterBufferConfig) else JitterBufferConfig.from_spec(str(buffer))
    return JitterBuffer(concealer=_make_concealer(method, concealer_options), config=config, payload_types={})


# ------------------------------------------------------------ receiver patch
class _PacketTap:
    """Stands in for aiortc's per-receiver jitter buffer: takes packets, never returns frames."""

    def __init__(self, owner: "ReceiverConcealment") -> None:
        self._owner = owner

    def add(self, packet) -> tuple[bool, None]:
        self._owner._on_packet(packet)
        return False, None


_RTP_HEADER = struct.Struct("!BBHII")


def _rtp_bytes(packet) -> bytes:
    """A plain RTP packet (fixed header + payload) for our jitter buffer's parser."""
    second = (0x80 if packet.marker else 0) | (packet.payload_type & 0x7F)
    return _RTP_HEADER.pack(0x80, second, packet.sequence_number & 0xFFFF, packet.timestamp & 0xFFFFFFFF,
                            packet.ssrc & 0xFFFFFFFF) + bytes(packet.payload)


class ReceiverConcealment:
    """Concealment on one audio ``RTCRtpReceiver`` (made by :func:`enable_concealment`).

    Attributes
    ----------
    receiver : aiortc.RTCRtpReceiver
    method : str
    jitter_buffer : jitterbuffer.jitter_buffer.JitterBuffer
    frames_emitted : int
        20 ms frames put into the remote track so far.
    timeline : collections.deque or None
        With ``log_ticks=N``: the last N jitter buffer ticks as
        ``(frame_index, operation)`` (two 10 ms ticks per output frame).
    impairment : callable or None
        A simulated network on the receive path (``plc demo serve``): called
        with each RTP packet aiortc hands over, before the jitter buffer; it
        returns ``None`` to drop the packet or an extra delay in ms (packets
        delayed past later ones arrive reordered). ``None`` (default): none.
    """

    def __init__(self, receiver, method: str, buffer="adaptive", layout: str = "stereo", threaded: bool = True,
                 max_catchup_ms: float = 500.0, max_queued_frames: int = 500, log_ticks: int = 0,
                 concealer_options: Optional[dict] = None, clock: Callable[[], float] = _monotonic_ms) -> None:
        aiortc_compat.check_receiver(receiver)
        if layout not in ("stereo", "mono"):
            raise ValueError(f"layout must be 'stereo' or 'mono', not {layout!r}")
        self.receiver = receiver
        self.method = method
        self.layout = layout
        self.max_catchup_ms = float(max_catchup_ms)
        self.max_queued_frames = int(max_queued_frames)
        self._clock = clock
        self._lock = threading.Lock()
        self._concealer_options = dict(concealer_options or {})
        self.jitter_buffer = _make_jitter_buffer(method, buffer, self._concealer_options)
        self.impairment: Optional[Callable[[Any], Optional[float]]] = None
        self._upsampler = StreamUpsampler(OUTPUT_RATE // _JB_RATE)
        self._pending: deque = deque()          # (arrival_ms, rtp bytes, codec), loop thread -> worker
        self._known_pt: set[int] = set()
        self._executor = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="plc-audio")
                          if threaded else None)
        self._task: Optional[asyncio.Task] = None
        self._t0: Optional[float] = None
        self._pts0 = 0
        self.frames_emitted = 0
        self.frames_dropped_unread = 0
        self.clock_skips = 0
        self.late_ticks = 0
        self.packets_tapped = 0
        self.timeline: Optional[deque] = deque(maxlen=int(log_ticks)) if log_ticks else None
        self.enabled = False
        self.error: Optional[str] = None
        self._original_jb = None
        self._unpatch_get_stats: Optional[Callable[[], None]] = None

    # -------------------------------------------------------------- install
    def _install(self) -> None:
        r = self.receiver
        self._original_jb = aiortc_compat.jitter_buffer(r)
        aiortc_compat.set_jitter_buffer(r, _PacketTap(self))
        self._unpatch_get_stats = aiortc_compat.patch_get_stats(r, self._annotate)
        self.enabled = True
        _RECEIVERS[r] = self

    def disable(self) -> None:
        """Give the receiver back to aiortc's own audio path (idempotent)."""
        if not self.enabled:
            return
        self.enabled = False
        r = self.receiver
        if isinstance(aiortc_compat.jitter_buffer(r), _PacketTap):
            aiortc_compat.set_jitter_buffer(r, self._original_jb)
        if self._unpatch_get_stats is not None:
            self._unpatch_get_stats()
        if _RECEIVERS.get(r) is self:
            del _RECEIVERS[r]
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._shutdown_executor()

    def _shutdown_executor(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    @property
    def track(self):
        """The receiver's remote track (None until the remote description created it)."""
        return aiortc_compat.remote_track(self.receiver)

    def set_method(self, method: str) -> None:
        """Conceal with another method on the live call, without renegotiating.

        The jitter buffer keeps its packets, delay and counters
        (:meth:`jitterbuffer.jitter_buffer.JitterBuffer.replace_concealer`); the new
        concealer is built before the audio lock is taken (loading the neural
        model takes a moment: call it off the event loop).
        """
        method = _check_method(method)
        concealer = _make_concealer(method, self._concealer_options)
        with self._lock:
            self.jitter_buffer.replace_concealer(concealer)
            self.method = method

    # --------------------------------------------------------------- input
    def _on_packet(self, packet) -> None:
        """A packet from aiortc's receive path (event loop thread), through :attr:`impairment` if set."""
        if self.impairment is not None and self.enabled:
            delay_ms = self.impairment(packet)
            if delay_ms is None:
                return
            if delay_ms > 0:
                asyncio.get_running_loop().call_later(delay_ms / 1000.0, self._accept, packet)
                return
        self._accept(packet)

    def _accept(self, packet) -> None:
        """A packet for the jitter buffer."""
        if not self.enabled or (self._task is not None and self._task.done()):
            return  # the track has ended: nothing will play these
        now = self._clock()
        codec = aiortc_compat.negotiated_codec(self.receiver, packet.payload_type)
        self._pending.append((now, _rtp_bytes(packet), codec))
        self.packets_tapped += 1
        if self._t0 is None:
            self._t0 = now
            self._pts0 = self._initial_pts(packet)
            try:
                self._task = asyncio.get_running_loop().create_task(self._run())
            except RuntimeError:  # no running loop: cannot happen inside aiortc
                self._t0 = None

    def _initial_pts(self, packet) -> int:
        """0, or where aiortc's own frames left off when enabled on a live stream."""
        origin = aiortc_compat.timestamp_origin(self.receiver)
        codec = aiortc_compat.negotiated_codec(self.receiver, packet.payload_type)
        if origin is None or codec is None:
            return 0
        try:
            elapsed = ((packet.timestamp - origin) & 0xFFFFFFFF) * OUTPUT_RATE // int(codec.clockRate)
        except Exception:  # noqa: BLE001
            return 0
        return int(elapsed) // OUTPUT_FRAME_SAMPLES * OUTPUT_FRAME_SAMPLES

    # --------------------------------------------------------------- clock
    def _ended(self) -> bool:
        track = self.track
        if track is None or track.readyState != "live":
            return True
        return not aiortc_compat.decoder_running(self.receiver)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        k = 0
        try:
            while self.enabled and not self._ended():
                due = self._t0 + (k + 1) * OUTPUT_FRAME_MS
                wait = due - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait / 1000.0)
                    if not self.enabled or self._ended():
                        break
                lag = self._clock() - due
                if lag > self.max_catchup_ms:  # the loop was blocked: do not play the backlog in a burst
                    skip = int(lag // OUTPUT_FRAME_MS)
                    self._t0 += skip * OUTPUT_FRAME_MS
                    due += skip * OUTPUT_FRAME_MS
                    self.clock_skips += 1
                elif lag > OUTPUT_FRAME_MS:
                    self.late_ticks += 1
                if self._executor is not None:
                    frame = await loop.run_in_executor(self._executor, self._produce, k, due)
                else:
                    frame = self._produce(k, due)
                if not self.enabled or self._ended():
                    break
                self._deliver(frame)
                k += 1
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - never kill the call: hand the stream back to aiortc
            self.error = f"{type(exc).__name__}: {exc}"
            logger.exception("plc.webrtc: playout clock failed; aiortc's own audio path takes over")
            self.disable()
        finally:
            self._shutdown_executor()

    def _deliver(self, frame) -> None:
        track = self.track
        queue = aiortc_compat.track_queue(track)
        while self.max_queued_frames and queue.qsize() >= self.max_queued_frames:
            try:  # nobody reads the track: drop the oldest frame rather than grow forever
                old = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if old is None:  # the end marker: keep it, the track is ending
                queue.put_nowait(None)
                return
            self.frames_dropped_unread += 1
        queue.put_nowait(frame)
        self.frames_emitted += 1

    def _produce(self, k: int, due_ms: float):
        """Frame ``k``: two jitter buffer ticks at ``due - 10`` and ``due`` ms, resampled (worker thread)."""
        import av

        jb = self.jitter_buffer
        parts = []
        with self._lock:
            for i, tick in enumerate((due_ms - _JB_FRAME_MS, due_ms)):
                while self._pending and self._pending[0][0] <= tick:
                    arrival, data, codec = self._pending.popleft()
                    pt = data[1] & 0x7F
                    if pt not in self._known_pt:
                        self._known_pt.add(pt)
                        known = codec_for_mime(codec.mimeType) if codec is not None else None
                        if known is not None:
                            jb.payload_types[pt] = known
                    jb.insert_packet(data, arrival)
                parts.append(jb.get_audio(tick))
                if self.timeline is not None:
                    op = jb.last_tick.operation.value if jb.last_tick is not None else "?"
                    self.timeline.append((k, op))
            audio16 = np.concatenate(parts)
            audio48 = self._upsampler(audio16)
        pcm = np.clip(np.round(audio48 * 32767.0), -32768, 32767).astype(np.int16)
        if self.layout == "stereo":
            pcm = np.repeat(pcm, 2)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=self.layout)
        frame.sample_rate = OUTPUT_RATE
        frame.time_base = _TIME_BASE
        frame.pts = self._pts0 + k * OUTPUT_FRAME_SAMPLES
        return frame

    # --------------------------------------------------------------- stats
    @property
    def stats(self) -> dict:
        """The jitter buffer's statistics (WebRTC names) plus the playout clock's counters."""
        with self._lock:
            s = dict(self.jitter_buffer.stats)
        s.update({
            "method": self.method,
            "framesEmitted": self.frames_emitted,
            "framesDroppedUnread": self.frames_dropped_unread,
            "packetsTapped": self.packets_tapped,
            "packetsPending": len(self._pending),
            "clockSkips": self.clock_skips,
            "lateTicks": self.late_ticks,
            "sampleRate": _JB_RATE,
            "error": self.error,
        })
        return s

    def _annotate(self, report) -> None:
        """The jitter buffer's WebRTC statistics in the receiver's ``getStats()`` report."""
        if self.enabled:
            s = self.stats
            aiortc_compat.with_inbound_audio_stats(report, {name: s[name] for name in STANDARD_STATS})


# ------------------------------------------------------------------- handle
class ConcealmentHandle:
    """What :func:`enable_concealment` returns: the patched receivers, their stats, ``disable()``.

    Attributes
    ----------
    method : str
    options : dict
    receivers : list of ReceiverConcealment
        One per audio receiver patched so far (a peer connection gains more
        as transceivers get their remote tracks).
    """

    def __init__(self, target, method: str, options: dict) -> None:
        self._target = weakref.ref(target)
        self.method = method
        self.options = dict(options)
        self.receivers: list[ReceiverConcealment] = []
        self.enabled = True
        self._listener = None
        #: The sender side of ``fec=True`` (:class:`plc.webrtc_fec.OpusFecHandle`), else None.
        self.fec = None

    def _attach(self, receiver) -> Optional[ReceiverConcealment]:
        if not self.enabled or aiortc_compat.receiver_kind(receiver, "audio") != "audio":
            return None
        existing = _RECEIVERS.get(receiver)
        if existing is not None:
            if existing not in self.receivers:
                if existing.method != self.method:
                    raise ValueError(f"concealment is already enabled on this receiver with method "
                                     f"{existing.method!r}; disable it first")
                self.receivers.append(existing)
            return existing
        receiver_options = {k: v for k, v in self.options.items() if k not in _FEC_OPTIONS}
        rc = ReceiverConcealment(receiver, self.method, **receiver_options)
        rc._install()
        self.receivers.append(rc)
        return rc

    def concealment_for(self, track_or_receiver) -> Optional[ReceiverConcealment]:
        """The :class:`ReceiverConcealment` of a remote track or receiver, None if not patched here."""
        for rc in self.receivers:
            if track_or_receiver is rc.receiver or track_or_receiver is rc.track:
                return rc
        return None

    @property
    def stats(self) -> dict:
        """Statistics (WebRTC field names). One audio receiver: its stats; several: the sums."""
        live = [rc.stats for rc in self.receivers]
        if not live:
            return _empty_stats(self.method)
        if len(live) == 1:
            return live[0]
        return _sum_stats(live)

    def set_method(self, method: str) -> None:
        """Switch every receiver (and those to come) to another concealment method on the live call.

        See :meth:`ReceiverConcealment.set_method`; raises ValueError on an unknown method.
        """
        method = _check_method(method)
        for rc in self.receivers:
            rc.set_method(method)
        self.method = method

    def disable(self) -> None:
        """Restore aiortc's own audio path on every receiver (idempotent)."""
        if not self.enabled:
            return
        self.enabled = False
        target = self._target()
        if target is not None and self._listener is not None:
            try:
                target.remove_listener("track", self._listener)
            except Exception:  # noqa: BLE001 - already gone
                pass
        for rc in self.receivers:
            rc.disable()
        if self.fec is not None:
            self.fec.disable()
        if target is not None and _PEERS.get(target) is self:
            del _PEERS[target]

    def __repr__(self) -> str:
        return f"ConcealmentHandle(method={self.method!r}, receivers={len(self.receivers)}, enabled={self.enabled})"


def _empty_stats(method: str) -> dict:
    return {name: 0 for name in STANDARD_STATS} | {"packetsLost": 0, "method": method}


def _sum_stats(items: list[dict]) -> dict:
    out: dict = {}
    for s in items:
        for key, value in s.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, dict)):
                out.setdefault(key, value)
            elif isinstance(value, dict):
                d = out.setdefault(key, {})
                for k2, v2 in value.items():
                    d[k2] = d.get(k2, 0) + v2
            else:
                out[key] = out.get(key, 0) + value
    out["tracks"] = len(items)
    return out


# ---------------------------------------------------------------------- API
def enable_concealment(pc_or_receiver, method: Optional[str] = None, **options) -> ConcealmentHandle:
    """Route received audio through this project's jitter buffer and concealer.

    Parameters
    ----------
    pc_or_receiver : aiortc.RTCPeerConnection or aiortc.RTCRtpReceiver
        A peer connection (every audio receiver, present and future; call it
        before or after negotiation) or one audio receiver.
    method : str, optional
        ``neural`` (the trained model; libopus' PLC while the sender's Opus is
        in SILK or hybrid mode), ``neteq``, ``g711``, ``repeat``, ``opus``
        (libopus PLC) or ``none`` (silence in the gaps). Default:
        :func:`plc.concealers.default_method` (``neural`` where onnxruntime is
        installed, the best measured in live calls; README).
    **options
        ``buffer`` (``"adaptive"``, default, or ``"fixed:MS"``, or a
        :class:`jitterbuffer.jitter_buffer.JitterBufferConfig`); ``layout``
        (``"stereo"``, default, as aiortc's Opus decoder, or ``"mono"``);
        ``threaded`` (default True: the jitter buffer and concealer run in a
        worker thread per receiver, off the event loop); ``max_catchup_ms``
        (default 500: an event loop blocked longer than this skips the
        backlog instead of bursting it); ``max_queued_frames`` (default 500:
        unread frames kept in the track before the oldest are dropped);
        ``log_ticks`` (keep the last N tick operations in
        :attr:`ReceiverConcealment.timeline`); ``concealer_options`` (dict of
        keyword arguments for the concealer, e.g. ``{"model_dir": ...}``);
        ``fec`` (default False; True: this connection's Opus senders send in-band
        FEC and its SDP advertises ``useinbandfec=1``, :func:`plc.webrtc_fec.enable_opus_fec`;
        a peer connection only) with ``expected_loss_percent`` (default 10, the loss
        the encoder plans the FEC for). Received FEC is used either way.

    Returns
    -------
    ConcealmentHandle
        ``.stats`` (dict, WebRTC names), ``.receivers``, ``.disable()``.
        Calling again on the same object with the same method returns the
        same handle.

    Raises
    ------
    ValueError
        Unknown method or option, a video receiver, or already enabled with
        another method.
    """
    from aiortc import RTCPeerConnection, RTCRtpReceiver

    if method is None:
        from .concealers import default_method

        method = default_method()
    method = _check_method(method)
    _check_options(options)
    if isinstance(pc_or_receiver, RTCPeerConnection):
        return _enable_on_peer_connection(pc_or_receiver, method, options)
    if isinstance(pc_or_receiver, RTCRtpReceiver):
        return _enable_on_receiver(pc_or_receiver, method, options)
    raise TypeError(f"enable_concealment needs an RTCPeerConnection or RTCRtpReceiver, not "
                    f"{type(pc_or_receiver).__name__}")


#: The options :func:`enable_concealment` takes.
OPTIONS = ("buffer", "layout", "threaded", "max_catchup_ms", "max_queued_frames", "log_ticks",
           "concealer_options") + tuple(sorted(_FEC_OPTIONS))


def _check_options(options: dict) -> None:
    """``ValueError`` for an unknown option, ``expected_loss_percent`` without ``fec`` or a bad
    ``buffer`` spec."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(OPTIONS))}")
    if "expected_loss_percent" in options and not options.get("fec"):
        raise ValueError("expected_loss_percent goes with fec=True")
    if "buffer" in options and isinstance(options["buffer"], str):
        from jitterbuffer.jitter_buffer import JitterBufferConfig

        JitterBufferConfig.from_spec(options["buffer"])  # raises ValueError on a bad spec


def _enable_on_peer_connection(pc, method: str, options: dict) -> ConcealmentHandle:
    """Every audio receiver of ``pc``, now and as transceivers get their remote tracks."""
    handle = _PEERS.get(pc)
    if handle is not None:
        if handle.method != method or handle.options != options:
            raise ValueError(f"concealment is already enabled on this peer connection with method "
                             f"{handle.method!r}; call disable() first")
        return handle
    handle = ConcealmentHandle(pc, method, options)
    if options.get("fec"):
        from .webrtc_fec import enable_opus_fec

        handle.fec = enable_opus_fec(pc, options.get("expected_loss_percent", DEFAULT_EXPECTED_LOSS_PERCENT))
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio":
            handle._attach(transceiver.receiver)

    def on_track(track) -> None:
        if track.kind != "audio" or not handle.enabled:
            return
        for transceiver in pc.getTransceivers():
            if transceiver.receiver.track is track:
                handle._attach(transceiver.receiver)

    handle._listener = on_track
    pc.on("track", on_track)
    _PEERS[pc] = handle
    return handle


def _enable_on_receiver(receiver, method: str, options: dict) -> ConcealmentHandle:
    """One audio receiver."""
    if aiortc_compat.receiver_kind(receiver) != "audio":
        raise ValueError("concealment applies to audio receivers only")
    if options.get("fec"):
        raise ValueError("fec=True turns on the connection's Opus senders: pass the RTCPeerConnection")
    existing = _RECEIVERS.get(receiver)
    if existing is not None and existing.method != method:
        raise ValueError(f"concealment is already enabled on this receiver with method {existing.method!r}; "
                         "disable it first")
    handle = ConcealmentHandle(receiver, method, options)
    handle._attach(receiver)
    return handle


def disable_concealment(pc_or_receiver) -> None:
    """Undo :func:`enable_concealment` on a peer connection or receiver (no-op if not enabled)."""
    handle = _PEERS.get(pc_or_receiver)
    if handle is not None:
        handle.disable()
        return
    rc = _RECEIVERS.get(pc_or_receiver)
    if rc is not None:
        rc.disable()


def _find(track_or_receiver) -> Optional[ReceiverConcealment]:
    rc = _RECEIVERS.get(track_or_receiver) if _is_weakrefable(track_or_receiver) else None
    if rc is not None:
        return rc
    for rc in list(_RECEIVERS.values()):
        if rc.track is track_or_receiver:
            return rc
    return None


def _is_weakrefable(obj) -> bool:
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False


def get_concealment_stats(track_or_receiver) -> Optional[dict]:
    """Statistics of the concealment on a remote audio track or its receiver; None if not enabled."""
    rc = _find(track_or_receiver)
    return rc.stats if rc is not None else None


def is_concealment_enabled(track_or_receiver) -> bool:
    """True if :func:`enable_concealment` is active on this remote track or receiver."""
    return _find(track_or_receiver) is not None


"""The streaming concealer interface shared by every method and by the jitter buffer.

A concealer is fed one frame at a time (10 ms at its native ``sample_rate``):
either the received samples, or ``None`` when the frame was lost. It returns
the samples to play for that frame and keeps its own state between calls:
the history it warms up from, the length of the current loss run (for its
muting schedule) and whatever it needs to cross-fade back into real audio
when packets resume.

Contract, pinned by ``tests/test_concealers.py``:

* ``process`` always returns exactly ``frame_samples`` finite float32 samples
  in [-1, 1].
* A received frame that does not directly follow a loss is returned unchanged.
* Only the first received frame after a loss may differ from its input (the
  merge / cross-fade back into real audio).

Codec concealment (a declared capability): where the audio comes from a codec
with its own packet loss concealment (libopus' PLC in the Opus path and in the
jitter buffer), the decoder runs that concealment on every lost packet anyway,
to keep its state continuous, and the packet after a loss is decoded from the
state it left. A concealer whose class sets :attr:`Concealer.uses_codec_concealment`
is given those samples through :meth:`Concealer.feed_codec_concealment` before it
is asked for the lost frames they cover, with the codec's coding mode (Opus:
``silk``, ``hybrid`` or ``celt``), and may play them (resuming as the codec does,
:meth:`Concealer._codec_resume`) or conceal with its own means. Callers feed only
concealers that declare it, and only what the codec made; without a codec (the
PCM path) nothing is fed and :attr:`Concealer.codec_concealment` stays ``None``.

Decoder in step: where the codec can be steered (Opus in SILK or hybrid mode), a concealer may
propose its own continuation at the start of a loss (:meth:`Concealer.propose_continuation`); the
codec then codes it into its state and feeds back *that* as its concealment
(:func:`~plc.concealers.codec_plc.codec_concealment`), so the packet after the loss decodes
from what was played.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from ..dsp import DEFAULT_MAX_ALIGN_LAG, DEFAULT_MERGE_SAMPLES, align_and_crossfade, sanitize_frame

DEFAULT_SAMPLE_RATE = 16000
DEFAULT_FRAME_MS = 10


@dataclass
class ConcealerStats:
    """Counters a concealer keeps; names follow WebRTC's getStats where one exists.

    Where the concealed frames came from (a concealer counts those it played):
    ``codec_concealed_frames`` played the codec's own concealment as fed (libopus' PLC, or the
    packet a steered decoder made of the concealer's continuation), ``noise_concealed_frames``
    were LPC-shaped noise after unvoiced audio, ``fallback_frames`` the classic's in the
    primary's place; the rest the concealer made itself (the model). Per loss, counted by
    :func:`~plc.concealers.codec_plc.codec_concealment`: ``steered_losses`` began with the
    concealer's continuation coded into the decoder (decoder in step); ``losses_left_to_fec``
    began where a concealer that steers was not asked for one, as the stream carries in-band
    FEC, so the codec's PLC played them; ``gaps_ended_ahead`` ended on their way into the next
    packet, which was already at hand (:mod:`~plc.concealers.gap_end`).
    """

    received_frames: int = 0
    concealed_frames: int = 0
    concealed_samples: int = 0
    silent_concealed_samples: int = 0
    concealment_events: int = 0
    merged_frames: int = 0
    fallback_frames: int = 0
    codec_concealed_frames: int = 0
    noise_concealed_frames: int = 0
    steered_losses: int = 0
    losses_left_to_fec: int = 0
    gaps_ended_ahead: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class Concealer(abc.ABC):
    """Base class of every concealer: frame bookkeeping, history and statistics.

    Subclasses implement :meth:`_conceal` (make one frame of audio for a lost
    frame) and may override :meth:`_resume` (the first received frame after a
    loss, where they cross-fade back) and :meth:`_on_received` (cheap state
    updates on normal frames).

    Parameters
    ----------
    sample_rate : int
        Native rate of the concealer in Hz. Every baseline runs at 16000.
    frame_ms : int
        Frame length in milliseconds (10, like NetEQ's decision interval).
    history_ms : int
        How much of the played signal is kept for analysis.
    """

    #: Short name used by ``--method``.
    name: str = "base"
    #: Whether the concealer uses the codec's own concealment of the lost frames when the pipeline
    #: has one (module docstring): only then do callers :meth:`feed_codec_concealment`.
    uses_codec_concealment: bool = False
    #: Most codec-concealment samples kept queued, in frames (the jitter buffer feeds 20 ms at a time).
    CODEC_QUEUE_FRAMES = 4
    #: Whether it proposes continuations to a steerable codec (:meth:`propose_continuation`).
    steer_codec: bool = False
    #: Whether, where the packet after a gap is already at hand (a jitter buffer), the end of the
    #: codec's concealment it plays is cross-faded into that packet's audio
    #: (:mod:`plc.concealers.gap_end`, done by :func:`~plc.concealers.codec_plc.codec_concealment`).
    ends_gaps_ahead: bool = False

    def __init__(
        self,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        frame_ms: int = DEFAULT_FRAME_MS,
        history_ms: int = 200,
    ) -> None:
        if sample_rate <= 0 or frame_ms <= 0:
            raise ValueError("sample_rate and frame_ms must be positive")
        if (sample_rate * frame_ms) % 1000:
            raise ValueError(f"{frame_ms} ms is not a whole number of samples at {sample_rate} Hz")
        self.sample_rate = int(sample_rate)
        self.frame_ms = int(frame_ms)
        self.frame_samples = self.sample_rate * self.frame_ms // 1000
        self.history_samples = self.sample_rate * history_ms // 1000
        self.stats = ConcealerStats()
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget all signal state (a new call); statistics are kept."""
        self.history = np.zeros(self.history_samples, dtype=np.float32)
        #: Consecutive lost frames so far (0 while audio is received).
        self.lost_frames = 0
        #: Frames received since the call started (history is only valid once > 0).
        self.frames_seen = 0
        self._frame_open = False  # a lost frame has begun (counted) and not yet been played
        self._codec_queue = np.zeros(0, dtype=np.float32)
        #: While :meth:`_conceal` runs: the codec's concealment of this lost frame, taken off the
        #: queue (``None`` if none was fed: no codec, or the concealer does not use it).
        self.codec_concealment: Optional[np.ndarray] = None
        #: The codec's coding mode its concealment continues (:meth:`feed_codec_concealment`), or None.
        self.codec_mode: Optional[str] = None

    # ------------------------------------------------------- codec concealment
    def feed_codec_concealment(self, samples: np.ndarray, mode: Optional[str] = None) -> None:
        """Queue the codec's own concealment of the next lost samples (at ``sample_rate``).

        Called, before the lost frames they cover are asked for, only for concealers that
        declare :attr:`uses_codec_concealment`; a received frame empties the queue (the codec
        decoded real audio again). At most ``CODEC_QUEUE_FRAMES`` frames are kept (the newest).
        ``mode``: the codec's coding mode that the concealment continues (Opus: ``silk``,
        ``hybrid`` or ``celt``, :attr:`~plc.codecs.payload.PayloadDecoder.mode`), kept in
        :attr:`codec_mode` until a frame is received; None if unknown.
        """
        if not self.uses_codec_concealment:
            raise TypeError(f"{self.name}: this concealer does not use the codec's concealment")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        keep = self.CODEC_QUEUE_FRAMES * self.frame_samples
        self._codec_queue = np.concatenate([self._codec_queue, samples])[-keep:]
        self.codec_mode = mode

    def _take_codec_frame(self) -> Optional[np.ndarray]:
        """One frame off the codec-concealment queue, or ``None`` if less than a frame is queued."""
        if len(self._codec_queue) < self.frame_samples:
            self._codec_queue = self._codec_queue[:0]
            return None
        out, self._codec_queue = self._codec_queue[:self.frame_samples], self._codec_queue[self.frame_samples:]
        return np.nan_to_num(out).astype(np.float32, copy=False)

    def _codec_resume(self, frame: np.ndarray) -> np.ndarray:
        """The first received frame after a loss that played the codec's own concealment: as
        decoded (the codec resumes from its concealment), unless the decoder had concealed further
        than was played (the jitter buffer asks libopus for 20 ms at a time and may play 10 before
        a late packet comes): the decoded frame then continues from the end of that, so the
        unplayed rest, which continues what was played, is cross-faded into it at the best lag
        (:func:`~plc.dsp.align_and_crossfade`)."""
        leftover = self._codec_queue
        if len(leftover) < DEFAULT_MAX_ALIGN_LAG + DEFAULT_MERGE_SAMPLES:
            return frame
        return align_and_crossfade(leftover, frame)

    def propose_continuation(self, n_samples: int, mode: Optional[str]) -> Optional[np.ndarray]:
        """At the start of a loss, this concealer's own continuation of the played audio for the
        next ``n_samples``, for a codec that can be steered with it (decoder in step:
        :meth:`~plc.codecs.payload.PayloadDecoder.continuation_samples`) and whose concealment in
        coding ``mode`` it will then play; or None (the default) to leave the loss to the codec's
        own concealment. Called through :func:`~plc.concealers.codec_plc.codec_concealment`."""
        return None

    def _push_history(self, samples: np.ndarray) -> None:
        n = len(samples)
        if n >= self.history_samples:
            self.history = samples[-self.history_samples:].astype(np.float32, copy=True)
        else:
            self.history = np.concatenate([self.history[n:], samples]).astype(np.float32, copy=False)

    @property
    def plays_codec_concealment(self) -> bool:
        """Whether the current loss (or the next lost frame, before it starts) plays the codec's own
        concealment as fed, at no cost of its own: a real-time deadline does not apply to it."""
        return False

    @property
    def unavailable_reason(self) -> Optional[str]:
        """Why this concealer cannot conceal at all (a model that did not load), or None."""
        return None

    # --------------------------------------------------------------- streaming
    def process(self, frame: Optional[np.ndarray]) -> np.ndarray:
        """Return the ``frame_samples`` samples to play for this frame.

        Parameters
        ----------
        frame : np.ndarray or None
            The received samples (float, ``frame_samples`` long, nominally in
            [-1, 1]), or ``None`` if the frame was lost.

        Raises :class:`ConcealmentError` (or anything else a broken concealer raises) when it
        cannot make the frame; :class:`~plc.concealers.fallback.FallbackConcealer` then plays
        its classic concealer's frame and keeps this one in step with :meth:`follow`.
        """
        if frame is None:
            self._begin_lost_frame()
            out = sanitize_frame(self._conceal(), self.frame_samples)
        else:
            frame = np.asarray(frame, dtype=np.float32)
            if frame.shape != (self.frame_samples,):
                raise ValueError(
                    f"{self.name}: expected a frame of {self.frame_samples} samples, got shape {frame.shape}"
                )
            frame = sanitize_frame(frame, self.frame_samples)
            if self.lost_frames > 0:
                out = sanitize_frame(self._resume(frame), self.frame_samples)
            else:
                self._on_received(frame)
                out = frame
        self._end_frame(out, lost=frame is None)
        return out

    def follow(self, played: np.ndarray, lost: bool) -> None:
        """Keep in step with a frame another concealer played in this one's place (a fallback):
        counted, and kept as history, as if this one had made ``played``."""
        if lost:
            self._begin_lost_frame()
        self._end_frame(sanitize_frame(played, self.frame_samples), lost)

    def observe(self, samples: np.ndarray) -> None:
        """Take ``samples`` that another concealer played as history, without counting a frame:
        a loss this one takes over later continues from them (a fallback following its primary)."""
        self._push_history(np.asarray(samples, dtype=np.float32))

    def _begin_lost_frame(self) -> None:
        if self._frame_open:  # a process(None) that raised: this frame has begun already
            return
        self._frame_open = True
        if self.lost_frames == 0:
            self.stats.concealment_events += 1
        # Taken whether or not _conceal plays it, so the queue stays in step with the frames.
        self.codec_concealment = self._take_codec_frame() if self.uses_codec_concealment else None

    def _end_frame(self, out: np.ndarray, lost: bool) -> None:
        """The bookkeeping of a played frame: counters, the loss run, the history."""
        self._frame_open = False
        if lost:
            self.lost_frames += 1
            self.stats.concealed_frames += 1
            self.stats.concealed_samples += self.frame_samples
            if not np.any(out):
                self.stats.silent_concealed_samples += self.frame_samples
        else:
            if self.lost_frames > 0:
                self.stats.merged_frames += 1
            self.lost_frames = 0
            self.frames_seen += 1
            self.stats.received_frames += 1
            self._codec_queue = self._codec_queue[:0]
            self.codec_concealment = None
            self.codec_mode = None
        self._push_history(out)
        self._after_frame(out, lost)

    @abc.abstractmethod
    def _conceal(self) -> np.ndarray:
        """Make one frame for a lost frame. ``self.lost_frames`` frames were lost before it."""

    def _resume(self, frame: np.ndarray) -> np.ndarray:
        """First received frame after a loss; default: play it as is."""
        return frame

    def _on_received(self, frame: np.ndarray) -> None:
        """Hook for cheap state updates on normal received frames."""

    def _after_frame(self, out: np.ndarray, lost: bool) -> None:
        """Hook after every played frame (``out``, now the newest history), made here or followed."""


class ConcealmentError(RuntimeError):
    """A concealer cannot make this frame, or refuses to play what it made (the message says why)."""

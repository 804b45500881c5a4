"""``plc eval --live-call SPEC``: each clip through a real aiortc call, as ``plc demo call`` makes it.

Two aiortc peer connections in this process talk over 127.0.0.1 through the demo's lossy
UDP relay (:mod:`demo.call`: :class:`~demo.call.NetworkImpairment`, :class:`~demo.call.UdpRelay`,
:func:`~demo.call.run_call`); the sender streams the clip through aiortc's Opus encoder
(its defaults: 96 kbit/s, 48 kHz; with ``plc eval --fec`` also with in-band FEC,
:mod:`plc.webrtc_fec`) in real time, the receiver conceals with the method
(:func:`plc.webrtc.enable_concealment`, the NetEQ-style adaptive buffer) and what it plays
is scored. The relay's losses and delays are seeded per clip from SPEC's seed, so every
method meets the same network on a clip; with several seeds one noisy live call becomes a
table with intervals.

SPEC: whitespace-separated ``key=value``: ``loss`` (``bernoulli:P``, ``gilbert:P,BURST`` or
``none``; default ``gilbert:0.1,3``), ``jitter`` (mean extra one-way delay, exponential,
which also reorders; ``20ms`` or ``20``; default 20 ms), ``seed`` (default 0) and
``buffer`` (``adaptive`` or ``fixed:MS``; default adaptive), e.g.
``loss=gilbert:0.1,3 jitter=20ms seed=1``.

Calls run in real time, one at a time (the caller runs these jobs sequentially). The played
audio is delayed against the clip, so only PLCMOS and the WER are scored.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from plc.loss_models import TraceError, burst_lengths, parse_loss_spec
from .runner import Job, Rendered, run_jobs, trace_seed

#: Condition labels of live-call rows start with this.
PREFIX = "live:"
#: The codec of a live call: aiortc's Opus encoder sends the clip.
CODEC = "opus"
DEFAULT_LOSS = "gilbert:0.1,3"
DEFAULT_JITTER_MS = 20.0
#: Seconds the receiver records after the clip (the buffering delay and the jitter fit in it).
TAIL_S = 0.5


class LiveCallSpecError(ValueError):
    """A malformed ``--live-call`` SPEC (one line for the user)."""


@dataclass(frozen=True)
class LiveCallCondition:
    """A live call's network: loss spec (None: no loss), mean jitter, seed and receiver buffer."""

    loss: Optional[str] = DEFAULT_LOSS
    jitter_ms: float = DEFAULT_JITTER_MS
    seed: int = 0
    buffer: str = "adaptive"
    #: Runs in real time: the evaluation runs these jobs one at a time.
    realtime = True

    @property
    def spec(self) -> str:
        """The condition's label in results and reports."""
        buffer = "" if self.buffer == "adaptive" else f" buffer={self.buffer}"
        return f"{PREFIX}loss={self.loss or 'none'} jitter={self.jitter_ms:g}ms seed={self.seed}{buffer}"

    def clip_seed(self, clip_id: str, seed: int) -> int:
        """The relay's seed for one clip: the same for every method, another for every clip."""
        return trace_seed(clip_id, self.spec, seed)

    def render(self, ref: np.ndarray, method: str, job: Job) -> Rendered:
        import asyncio

        from demo.call import FRAME_SAMPLES, SEND_RATE, NetworkImpairment, run_call, summarize
        from eval.metrics import to_16k
        from plc.audio_io import resample
        from plc.codecs.opus import DEFAULT_EXPECTED_LOSS_PERCENT

        from .runner import split_variant

        method, fec = split_variant(method)
        expected_loss = job.expected_loss_percent if job.expected_loss_percent is not None else DEFAULT_EXPECTED_LOSS_PERCENT
        audio48 = resample(ref, 16000, SEND_RATE)
        seed = self.clip_seed(job.clip.clip_id, job.seed)
        result = asyncio.run(run_call(audio48, method, self.loss, self.jitter_ms, seed, tail_s=TAIL_S,
                                      options={"buffer": self.buffer}, fec=expected_loss if fec else None))
        info = summarize(result, ref)
        n_packets = int(np.ceil(len(audio48) / FRAME_SAMPLES))
        lost = NetworkImpairment(self.loss, self.jitter_ms, seed).lost[:n_packets]  # the relay's own draw
        bursts = burst_lengths(lost)
        stats = result.stats or {}
        return Rendered(to_16k(result.received, result.sample_rate).astype(np.float32),
                        loss_rate=float(lost.mean()) if n_packets else 0.0,
                        max_burst=int(bursts.max()) if len(bursts) else 0,
                        fallback_frames=int(stats.get("fallbackFrames") or 0),
                        delay_ms=info.get("mean_playout_delay_ms"), aligned=False,
                        lost_packets=int(lost.sum()), fec_recovered=stats.get("fecPacketsRecovered"))


def parse_live_call(text: str) -> LiveCallCondition:
    """A :class:`LiveCallCondition` from ``--live-call SPEC``; raises :class:`LiveCallSpecError`."""
    values: dict = {}
    for tok in (text or "").split():
        key, sep, value = tok.partition("=")
        key = key.strip().lower()
        if not sep or not value:
            raise LiveCallSpecError(f"live call SPEC item {tok!r} is not key=value "
                                    "(e.g. 'loss=gilbert:0.1,3 jitter=20ms seed=1')")
        if key == "loss":
            if value.lower() in ("none", "0"):
                values["loss"] = None
            else:
                try:
                    values["loss"] = parse_loss_spec(value).spec
                except TraceError as exc:
                    raise LiveCallSpecError(f"live call loss: {exc}") from None
        elif key == "jitter":
            m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(ms)?", value.lower())
            if not m or float(m.group(1)) > 1000:
                raise LiveCallSpecError(f"live call jitter={value!r}: a delay in ms within 0..1000, e.g. 20ms")
            values["jitter_ms"] = float(m.group(1))
        elif key == "seed":
            try:
                values["seed"] = int(value)
            except ValueError:
                raise LiveCallSpecError(f"live call seed={value!r}: not an integer") from None
        elif key == "buffer":
            from jitterbuffer.jitter_buffer import JitterBufferConfig

            try:
                JitterBufferConfig.from_spec(value)
            except ValueError as exc:
                raise LiveCallSpecError(f"live call buffer: {exc}") from None
            values["buffer"] = value
        else:
            raise LiveCallSpecError(f"unknown live call parameter {key!r}; known: loss, jitter, seed, buffer")
    return LiveCallCondition(**values)


def run_sequentially(jobs: list[Job], use_asr: bool, asr_backend: str = "auto", progress: bool = True) -> list[dict]:
    """Run real-time jobs one call at a time in this process, with a progress line per call."""
    calls = [dataclasses.replace(j, methods=(m,)) for j in jobs for m in j.methods]
    rows: list[dict] = []
    started = time.time()
    for i, call_rows in enumerate(run_jobs(calls, 1, use_asr, asr_backend, progress=False), 1):
        rows.extend(call_rows)
        if progress:
            r = call_rows[0]
            what = (f"failed: {r['error']}" if r["error"] else
                    f"PLCMOS {r['plcmos']:.2f}, {100 * r['loss_rate']:.0f}% of packets dropped, "
                    f"{r['fallback_frames']} fallback frames, buffer delay "
                    + ("n/a" if r["delay_ms"] is None else f"{r['delay_ms']:.0f} ms"))
            print(f"live call {i}/{len(calls)} [{time.time() - started:.0f} s]: {r['clip']}, {r['method']}, "
                  f"{r['condition']}: {what}", file=sys.stderr, flush=True)
    return rows

"""Run concealment methods over a speech manifest under loss conditions and score them.

Every (clip, condition) job draws one loss trace, seeded from the clip's path
and the condition, and runs every method on that same trace, so methods are
compared *paired*. Jobs run in parallel worker processes (one thread each),
each with its own ASR model and PLCMOS session.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from plc.loss_models import LossModel, burst_lengths

SAMPLE_RATE = 16000
#: The shortest clip the metrics score (PESQ's minimum), s.
MIN_CLIP_S = 0.25
#: The condition label of the no-loss reference rows (the codec alone).
NO_LOSS = "none"
#: ``plc eval --fec``: each method also runs over Opus with in-band FEC, as ``METHOD+fec``
#: (the same trace or network, the same bitrate), and is paired against itself without it.
FEC_SUFFIX = "+fec"


def split_variant(method: str) -> tuple[str, bool]:
    """``("neteq", True)`` for ``neteq+fec``: the concealment method and whether the sender used FEC."""
    if method.endswith(FEC_SUFFIX):
        return method[:-len(FEC_SUFFIX)], True
    return method, False


class ManifestError(ValueError):
    """The manifest is missing, malformed, or names files that do not exist."""


@dataclass(frozen=True)
class Clip:
    """One manifest row: an absolute audio path, its id and transcript (may be empty)."""

    path: str
    clip_id: str
    corpus: str
    transcript: str


def read_manifest(csv_path: str | os.PathLike, limit: Optional[int] = None, split: Optional[str] = None,
                  train_manifests: Optional[list[str]] = None, limit_per_corpus: Optional[int] = None,
                  skip_per_corpus: Optional[int] = None) -> list[Clip]:
    """Read a manifest in the format of ``shared/data/dev.csv`` (paths relative to the CSV).

    With ``split`` (``tune`` or ``report``), keep that side of the speaker split
    (:mod:`eval.splits`; speakers of ``train_manifests``, by default the ``train*.csv``
    beside the manifest, count as tune). With ``limit_per_corpus``, take at most that many
    clips of each corpus, and with ``limit`` that many clips in all, spread evenly (so every
    corpus is represented), in a deterministic order. With ``skip_per_corpus``, first leave out
    the clips ``limit_per_corpus=skip_per_corpus`` would take (a replication set: clips an
    earlier run did not score).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ManifestError(f"{csv_path}: no such manifest")
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise ManifestError(f"{csv_path}: a manifest needs a 'path' column (and optionally 'transcript')")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:  # binary, or not CSV
        raise ManifestError(f"{csv_path}: not a CSV text file ({' '.join(str(exc).split())[:80]})") from None
    if not rows:
        raise ManifestError(f"{csv_path}: manifest has no rows")
    if split is not None:
        from .splits import SplitError, default_training_manifests, select_split, training_speakers

        try:
            trained = training_speakers(default_training_manifests(csv_path) if train_manifests is None
                                        else train_manifests)
            rows = select_split(rows, split, trained, str(csv_path))
        except SplitError as exc:
            raise ManifestError(str(exc)) from None
        if not rows:
            raise ManifestError(f"{csv_path}: no clips in the {split} split")
    from .splits import skip_per_corpus as skip, spread, spread_per_corpus

    rows = spread(spread_per_corpus(skip(rows, skip_per_corpus), limit_per_corpus), limit)
    if not rows:
        raise ManifestError(f"{csv_path}: no clips left after skipping {skip_per_corpus} per corpus")
    clips = []
    for i, row in enumerate(rows):
        if not (row.get("path") or "").strip():
            raise ManifestError(f"{csv_path}: row {i + 2}: no path")
        path = (csv_path.parent / row["path"]).resolve()
        if not path.is_file():
            raise ManifestError(f"{csv_path}: row {i + 2}: {row['path']} does not exist")
        clips.append(Clip(str(path), row["path"], row.get("corpus", "") or "",
                          (row.get("transcript") or "").strip()))
    return clips


def trace_seed(clip_id: str, condition: str, seed: int) -> int:
    """A stable seed per (clip, condition): the same trace for every method and every run."""
    return zlib.crc32(f"{seed}|{condition}|{clip_id}".encode())


@dataclass(frozen=True)
class Job:
    clip: Clip
    condition: Optional[LossModel]  # None: the no-loss reference
    methods: tuple[str, ...]
    codec: str
    seed: int
    packet_ms: int
    bitrate_bps: int
    use_asr: bool
    #: Planned packet loss of the ``+fec`` variants' encoder, % (None: the codec's default).
    expected_loss_percent: Optional[int] = None


_WORKER: dict = {}


def _init_worker(use_asr: bool, asr_backend: str) -> None:
    """Per-process setup: one thread, and the ASR model loaded once."""
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch  # noqa: F401  (only if present: keep it to one thread too)

        torch.set_num_threads(1)
    except ImportError:
        pass
    if use_asr:
        from .asr import Transcriber

        _WORKER["asr"] = Transcriber(backend=asr_backend).load()


def load_clip_16k(path: str) -> np.ndarray:
    """Mono 16 kHz float32 audio of a clip."""
    from plc.audio_io import load_audio, resample

    audio, sr = load_audio(path)
    return resample(audio.mean(axis=1), sr, SAMPLE_RATE)


def job_trace(job: Job, n_samples: int) -> np.ndarray:
    """The loss trace of a job (all packets received for the reference)."""
    from plc.offline import packets_in

    n = packets_in(n_samples, SAMPLE_RATE, job.packet_ms)
    if job.condition is None:
        return np.zeros(n, dtype=bool)
    rng = np.random.default_rng(trace_seed(job.clip.clip_id, job.condition.spec, job.seed))
    return job.condition.generate(n, rng)


@dataclass
class Rendered:
    """What a condition made of one clip with one method: the played audio (16 kHz) and its counts.

    ``aligned`` is False when the audio is delayed or time-stretched against the clip (a jitter
    buffer, a live call): then only the non-intrusive PLCMOS and the WER are scored.
    """

    audio: np.ndarray
    loss_rate: float
    max_burst: int
    fallback_frames: int = 0
    delay_ms: Optional[float] = None
    aligned: bool = True
    #: Opus only: packets lost (in the network or the trace), of those decoded from in-band FEC,
    #: and the coded payload bitrate (kbit/s).
    lost_packets: Optional[int] = None
    fec_recovered: Optional[int] = None
    payload_kbps: Optional[float] = None


def render_trace(job: Job, ref: np.ndarray, method: str) -> Rendered:
    """A loss-trace condition (or the no-loss reference): conceal the seeded trace offline."""
    from plc.offline import conceal_audio

    lost = job_trace(job, len(ref))
    bursts = burst_lengths(lost)
    method, fec = split_variant(method)
    # The reference has no loss: any concealer returns the (coded) input.
    result = conceal_audio(ref, SAMPLE_RATE, lost, "zero" if method == "reference" else method, codec=job.codec,
                           packet_ms=job.packet_ms, bitrate_bps=job.bitrate_bps, fec=fec,
                           expected_loss_percent=job.expected_loss_percent if fec else None)
    s = result.stats
    coded = "payload_bitrate_bps" in s
    return Rendered(result.audio, float(lost.mean()) if len(lost) else 0.0, int(bursts.max()) if len(bursts) else 0,
                    s.get("fallback_frames", 0), lost_packets=s["lost_packets"] if coded else None,
                    fec_recovered=s.get("fec_recovered_packets"),
                    payload_kbps=s["payload_bitrate_bps"] / 1000.0 if coded else None)


def run_job(job: Job) -> list[dict]:
    """Conceal one clip under one condition with every method and score each output.

    A condition with a ``render(ref, method, job) -> Rendered`` method (``--network``,
    ``--live-call``) makes the audio itself; a loss model's trace is concealed offline.
    """
    from .metrics import compute_all, signal_metric_names

    condition = NO_LOSS if job.condition is None else job.condition.spec
    base = {"clip": job.clip.clip_id, "corpus": job.clip.corpus, "condition": condition, "codec": job.codec}
    try:
        ref = load_clip_16k(job.clip.path)
        if len(ref) < MIN_CLIP_S * SAMPLE_RATE:
            raise ValueError(f"the clip lasts {len(ref) / SAMPLE_RATE:.3f} s; scoring needs at least {MIN_CLIP_S} s")
    except Exception as exc:  # an unreadable or unusable clip: its rows say why, and the run goes on
        return [dict(base, method=method, error=_error_text(exc)) for method in job.methods]
    render = getattr(job.condition, "render", None)
    asr = _WORKER.get("asr") if job.use_asr and job.clip.transcript else None
    rows = []
    for method in job.methods:
        row = dict(base, method=method)
        try:
            out = render(ref, method, job) if render is not None else render_trace(job, ref, method)
            row.update({"loss_rate": out.loss_rate, "max_burst": out.max_burst})
            metrics = compute_all(ref, out.audio, SAMPLE_RATE, transcript=job.clip.transcript or None,
                                  asr=asr, seed=trace_seed(job.clip.clip_id, condition, job.seed),
                                  metrics=signal_metric_names(aligned=out.aligned))
            row.update({k: v for k, v in metrics.to_dict().items() if k != "reference_text"})
            row["fallback_frames"] = out.fallback_frames
            row["delay_ms"] = out.delay_ms
            row.update({"lost_packets": out.lost_packets, "fec_recovered": out.fec_recovered,
                        "payload_kbps": out.payload_kbps})
            row["error"] = ""
        except Exception as exc:  # one bad clip must not end a long run; it is reported
            row["error"] = _error_text(exc)
        rows.append(row)
    return rows


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def plan_jobs(clips: list[Clip], conditions: list[LossModel], methods: list[str], codec: str,
              seed: int = 0, packet_ms: int = 20, bitrate_bps: int = 24000, use_asr: bool = True,
              reference: bool = True, fec: bool = False, expected_loss_percent: Optional[int] = None) -> list[Job]:
    """All jobs of a run: each clip under each condition, plus a no-loss reference per clip.

    With ``fec``, every method (and the reference) also runs as ``METHOD+fec`` in the same job.
    """
    def variants(names: list[str]) -> tuple[str, ...]:
        return tuple(v for m in names for v in ((m, m + FEC_SUFFIX) if fec else (m,)))

    jobs = []
    for clip in clips:
        if reference:
            jobs.append(Job(clip, None, variants(["reference"]), codec, seed, packet_ms, bitrate_bps, use_asr,
                            expected_loss_percent))
        for cond in conditions:
            jobs.append(Job(clip, cond, variants(methods), codec, seed, packet_ms, bitrate_bps, use_asr,
                            expected_loss_percent))
    return jobs


def reuse_rows(jobs: list[Job], results_csvs: list[str], methods: list[str]) -> tuple[list[Job], list[dict]]:
    """Split ``jobs`` into what earlier ``results.csv`` files already hold and what is left to run.

    A row is reused when its method is one of ``methods``, its (clip, condition, method, codec)
    matches and it has no error; the
    caller is responsible for the earlier run having used the same seed, packet size and bitrate
    (the loss traces and PLCMOS raters are seeded from them). Returns the jobs with only the
    methods still to compute (jobs with none left are dropped) and the reused rows.
    """
    import dataclasses

    from .report import RESULT_COLUMNS

    known: dict[tuple, dict] = {}
    for path in results_csvs:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"clip", "condition", "method", "codec"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path} is not a plc eval results.csv (no {', '.join(sorted(missing))} column)")
            for row in reader:
                if not row.get("error") and row["method"] in methods:
                    known[(row["clip"], row["condition"], row["method"], row["codec"])] = \
                        {k: row.get(k, "") for k in RESULT_COLUMNS}
    left, reused = [], []
    for job in jobs:
        condition = NO_LOSS if job.condition is None else job.condition.spec
        todo = []
        for method in job.methods:
            row = known.get((job.clip.clip_id, condition, method, job.codec))
            if row is None:
                todo.append(method)
            else:
                reused.append(dict(row))
        if todo:
            left.append(dataclasses.replace(job, methods=tuple(todo)))
    return left, reused


def run_jobs(jobs: list[Job], n_jobs: int, use_asr: bool, asr_backend: str = "auto",
             progress: bool = True) -> Iterator[list[dict]]:
    """Run jobs in ``n_jobs`` processes, yielding each job's rows as it finishes."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="eval", unit="job", disable=not progress, dynamic_ncols=True)
    if n_jobs <= 1:
        _init_worker(use_asr, asr_backend)
        for job in jobs:
            yield run_job(job)
            bar.update()
    else:
        ctx = mp.get_context("forkserver")
        with ctx.Pool(n_jobs, initializer=_init_worker, initargs=(use_asr, asr_backend)) as pool:
            for rows in pool.imap_unordered(run_job, jobs, chunksize=1):
                yield rows
                bar.update()
    bar.close()

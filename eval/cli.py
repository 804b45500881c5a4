"""``plc eval``: score concealment methods on a speech manifest under loss conditions."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from plc import argtypes
from plc.codecs import codec_names, get_codec


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate concealment methods on a speech manifest",
        description="Conceal every clip of a manifest under each loss condition with each method, and score "
                    "the output with PESQ-WB, STOI, PLCMOS v2 and ASR word error rate. Writes results.csv, "
                    "summary.json and report.md (with plots) to --out.",
    )
    p.add_argument("--manifest", required=True, metavar="CSV",
                   help="CSV with a 'path' column (relative to the CSV) and optionally 'transcript'")
    p.add_argument("--methods", default="zero,repeat,g711,neteq", help="comma-separated methods")
    p.add_argument("--loss", action="append", metavar="SPEC",
                   help="loss condition (repeatable): bernoulli:RATE or gilbert:RATE,MEAN_BURST "
                        "(default gilbert:0.1,3)")
    p.add_argument("--network", action="append", metavar="SPEC",
                   help="jitter buffer condition (repeatable): each clip through plc netsim's network model SPEC "
                        "(its --network syntax, e.g. 'delay=40ms jitter=20ms loss=10%% burst=3', seeded per clip) "
                        "and the adaptive jitter buffer, with the --codec payload; scored by PLCMOS and WER "
                        "(the played audio is delayed and time-stretched: no PESQ/STOI)")
    p.add_argument("--live-call", action="append", metavar="SPEC",
                   help="live call condition (repeatable, needs --codec opus): each clip through a real aiortc call "
                        "over plc demo call's lossy UDP relay, in real time, one call at a time; SPEC is "
                        "'loss=gilbert:0.1,3 jitter=20ms seed=1' (keys loss, jitter, seed, buffer); PLCMOS and WER")
    p.add_argument("--codec", choices=codec_names(), default="pcm",
                   help="pipeline (default pcm: the received audio; opus: coded with libopus, see plc conceal --help)")
    p.add_argument("--bitrate", type=argtypes.bitrate_bps, default=24000, metavar="BPS",
                   help="Opus bitrate (default 24000)")
    argtypes.add_fec_options(p, also="; each method then also runs as METHOD+fec on the same traces, paired "
                                     "against itself without FEC, and the report gives the bitrate and the losses "
                                     "FEC recovered")
    p.add_argument("--packet-ms", type=argtypes.packet_ms, default=20,
                   help="packet duration in ms (default 20; with Opus 10, 20, 40 or 60)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--limit", type=argtypes.count, metavar="N", help="use N clips spread over the manifest")
    p.add_argument("--limit-per-corpus", type=argtypes.count, metavar="N",
                   help="use at most N clips of each corpus (the manifest's corpus column), spread over it")
    p.add_argument("--skip-per-corpus", type=argtypes.count, metavar="N",
                   help="first leave out the clips --limit-per-corpus N would take: a replication set, disjoint "
                        "from an earlier run's clips")
    p.add_argument("--split", choices=("tune", "report"),
                   help="use one side of the deterministic speaker split (eval.splits): choose constants and "
                        "checkpoints on tune, report on report; needs a speaker column")
    p.add_argument("--split-train", action="append", metavar="CSV",
                   help="with --split: training manifest whose speakers count as tune (repeatable; default: the "
                        "train*.csv files beside --manifest)")
    p.add_argument("--jobs", type=argtypes.jobs, default=os.cpu_count() or 1,
                   help="worker processes (default: all cores)")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="seed of the loss traces and PLCMOS raters")
    p.add_argument("--asr", choices=("auto", "whisper", "pocketsphinx", "off"), default="auto",
                   help="ASR for word error rate (default: whisper tiny.en, else pocketsphinx)")
    p.add_argument("--no-reference", action="store_true", help="skip the no-loss reference rows")
    p.add_argument("--reuse", action="append", metavar="RESULTS_CSV",
                   help="take rows of an earlier run (same --seed, --packet-ms, --bitrate) instead of recomputing "
                        "them, for the methods named by --reuse-methods (repeatable; the report says how many "
                        "rows were reused). PESQ, STOI and PLCMOS are reproduced exactly; Whisper's transcripts can "
                        "differ between faster-whisper versions, so reuse WER only from the same installation")
    p.add_argument("--reuse-methods", metavar="M1,M2",
                   help="with --reuse: the methods whose rows may be reused (their code must not have changed "
                        "since), e.g. zero,neteq,reference")
    p.add_argument("--neural-model", metavar="DIR",
                   help="model folder for --methods neural (default: the shipped plc/assets/neural)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from plc.cli import UserError
    from plc.concealers import available_methods, check_method
    from plc.offline import check_packet_ms
    from plc.outputs import check_output_folder

    from .live_call import CODEC as LIVE_CALL_CODEC
    from .live_call import parse_live_call
    from plc.loss_models import parse_loss_spec
    from .network_eval import parse_network_condition
    from .runner import plan_jobs, read_manifest, run_jobs

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in available_methods()]
    if unknown or not methods:
        raise UserError(f"unknown method(s) {', '.join(unknown) or '(none)'}; "
                        f"choose from {', '.join(available_methods())}")
    try:
        for m in methods:
            check_method(m, args.codec)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if (args.network or args.live_call) and args.packet_ms != 20:
        raise UserError("--network and --live-call send 20 ms packets: leave --packet-ms at 20")
    if args.live_call and args.codec != LIVE_CALL_CODEC:
        raise UserError(f"a live call is always {get_codec(LIVE_CALL_CODEC).label} (aiortc's encoder): "
                        f"add --codec {LIVE_CALL_CODEC}")
    fec_error = argtypes.fec_options_error(args)
    if fec_error:
        raise UserError(fec_error)
    try:
        check_packet_ms(args.packet_ms, args.codec)
        default_loss = [] if (args.network or args.live_call) else ["gilbert:0.1,3"]
        conditions = [parse_loss_spec(s) for s in (args.loss or default_loss)]
        conditions += [parse_network_condition(s) for s in args.network or []]
        conditions += [parse_live_call(s) for s in args.live_call or []]
        clips = read_manifest(args.manifest, args.limit, split=args.split, train_manifests=args.split_train,
                              limit_per_corpus=args.limit_per_corpus, skip_per_corpus=args.skip_per_corpus)
    except ValueError as exc:  # a bad packet size, TraceError, NetworkError, LiveCallSpecError, ManifestError
        raise UserError(str(exc)) from None
    out = check_output_folder("--out", args.out)
    if args.neural_model:
        from plc.concealers.neural import select_model_dir

        try:
            select_model_dir(args.neural_model)  # the worker processes inherit it
        except ValueError as exc:
            raise UserError(f"--neural-model: {exc}") from None
    use_asr = args.asr != "off" and any(c.transcript for c in clips)
    asr_backend = None
    if use_asr:
        from .asr import Transcriber

        asr_backend = Transcriber(backend=args.asr).backend
    jobs = plan_jobs(clips, conditions, methods, args.codec, seed=args.seed, packet_ms=args.packet_ms,
                     bitrate_bps=args.bitrate, use_asr=use_asr, reference=not args.no_reference,
                     fec=args.fec, expected_loss_percent=args.expected_loss)
    rows: list[dict] = []
    if bool(args.reuse) != bool(args.reuse_methods):
        raise UserError("--reuse and --reuse-methods go together")
    if args.reuse:
        from .runner import reuse_rows

        try:
            jobs, reused = reuse_rows(jobs, args.reuse, [m.strip() for m in args.reuse_methods.split(",")])
        except (OSError, ValueError) as exc:
            raise UserError(f"--reuse: {exc}") from None
        rows.extend(reused)
        args.reused_rows = len(reused)
        print(f"reusing {len(reused)} rows of {', '.join(args.reuse)}; computing {sum(len(j.methods) for j in jobs)}",
              file=sys.stderr)
    started = time.time()
    realtime = [j for j in jobs if getattr(j.condition, "realtime", False)]
    offline = [j for j in jobs if not getattr(j.condition, "realtime", False)]
    for job_rows in run_jobs(offline, max(1, args.jobs), use_asr, args.asr if use_asr else "auto",
                             progress=not args.quiet):
        rows.extend(job_rows)
    if realtime:
        from .live_call import run_sequentially

        rows.extend(run_sequentially(realtime, use_asr, args.asr if use_asr else "auto"))
    wall_s = time.time() - started
    return write_outputs(out, rows, clips, conditions, methods, args, asr_backend, wall_s)


def write_outputs(out: Path, rows: list[dict], clips, conditions, methods, args, asr_backend, wall_s) -> int:
    from plc.outputs import StagedOutputs

    from . import report
    from .summary import summarize

    errors = [r for r in rows if r.get("error")]
    out.mkdir(parents=True, exist_ok=True)
    notes = []
    if getattr(args, "split", None):
        notes.append(f"Clips of the `{args.split}` side of the speaker split (`eval.splits`).")
    unaligned = [c.spec for c in conditions if hasattr(c, "render")]
    if unaligned:
        notes.append("The audio of " + ", ".join(f"`{c}`" for c in unaligned) + " is delayed by the jitter buffer "
                     "and time-stretched, not sample-aligned with the clip: it has PLCMOS (non-intrusive) and WER "
                     "only, no PESQ or STOI.")
    with StagedOutputs() as staged:  # every file or none: a run that fails here leaves no partial results
        report.write_results_csv(staged.path(out / "results.csv"), rows)
        summary = summarize(rows, seed=args.seed)
        summary.update({"clips": len(clips), "codec": args.codec, "bitrate_bps": args.bitrate,
                        "asr": asr_backend, "wall_s": round(wall_s, 1),
                        "split": getattr(args, "split", None),
                        "limit_per_corpus": getattr(args, "limit_per_corpus", None),
                        "skip_per_corpus": getattr(args, "skip_per_corpus", None),
                        "failed_rows": len(errors), "reused_rows": getattr(args, "reused_rows", 0),
                        "reused_from": getattr(args, "reuse", None) or []})
        report.write_summary_json(staged.path(out / "summary.json"), summary)
        images = ["metrics.png"]
        report.plot_metrics(summary, staged.path(out / "metrics.png"))
        traces = [c for c in conditions if not hasattr(c, "render")]  # loss models: one trace to show
        spec = _spectrogram_figure(staged, out, clips, traces[0], methods, args) if traces else None
        if spec:
            images.append(spec)
        args_line = "plc eval " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else "plc eval"
        tables = report.write_report_md(staged.path(out / "report.md"), summary, args_line, asr_backend, len(clips),
                                        images, wall_s, notes)
    print(tables)
    print(f"\nwrote {out / 'results.csv'}, {out / 'summary.json'}, {out / 'report.md'}")
    if errors:
        print(f"warning: {len(errors)} of {len(rows)} rows failed; first: {errors[0]['clip']} "
              f"{errors[0]['method']}: {errors[0]['error']}", file=sys.stderr)
        return 1
    return 0


def _spectrogram_figure(staged, out: Path, clips, condition, methods, args) -> str | None:
    """Spectrograms of every method around the longest burst of the first clip that has one >= 3 packets
    (written through ``staged``, a :class:`plc.outputs.StagedOutputs`); clips that do not load are skipped."""
    from plc.offline import conceal_audio

    from . import report
    from plc.loss_models import burst_lengths
    from .runner import FEC_SUFFIX, SAMPLE_RATE, Job, job_trace, load_clip_16k

    for clip in clips[:50]:
        job = Job(clip, condition, tuple(methods), args.codec, args.seed, args.packet_ms, args.bitrate, False)
        try:
            ref = load_clip_16k(clip.path)
        except (ValueError, OSError):  # an unreadable clip: its rows already say why
            continue
        lost = job_trace(job, len(ref))
        bursts = burst_lengths(lost)
        starts = np.flatnonzero(np.diff(np.concatenate([[0], lost.astype(np.int8)])) == 1)
        packet = SAMPLE_RATE * args.packet_ms // 1000
        # A burst of 3+ packets inside speech: the 100 ms before it must be loud.
        level = [np.sqrt(np.mean(ref[max(0, s * packet - 5 * packet):s * packet] ** 2) + 1e-12) if s else 0.0
                 for s in starts]
        ok = [i for i in range(len(bursts)) if bursts[i] >= 3 and level[i] > 0.3 * np.sqrt(np.mean(ref ** 2))]
        if not ok:
            continue
        b = max(ok, key=lambda i: bursts[i])
        t_start = starts[b] * args.packet_ms / 1000
        t_end = t_start + bursts[b] * args.packet_ms / 1000
        window = (max(0.0, t_start - 0.25), min(len(ref) / SAMPLE_RATE, t_end + 0.25))
        signals = {"reference": ref}
        for m in methods:
            for fec in (False, True) if getattr(args, "fec", False) else (False,):
                signals[m + (FEC_SUFFIX if fec else "")] = conceal_audio(
                    ref, SAMPLE_RATE, lost, m, codec=args.codec, packet_ms=args.packet_ms, bitrate_bps=args.bitrate,
                    fec=fec, expected_loss_percent=args.expected_loss if fec else None).audio
        name = "spectrograms.png"
        report.plot_spectrograms(signals, lost, SAMPLE_RATE, args.packet_ms, staged.path(out / name),
                                 f"{clip.clip_id} under {condition.spec}: burst of {bursts[b]} packets",
                                 window)
        return name
    return None

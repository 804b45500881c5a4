"""``plc demo``: the main job on a built-in default input.

``plc demo`` (or ``plc demo offline``) conceals bursty packet loss in LibriVox
speech with every method and scores them (PESQ, STOI, PLCMOS, WER), writing
the concealed audio and a report to ``--out``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from plc import argtypes


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the built-in demonstration",
                       description="Run the demonstration on built-in speech (Debian's pocketsphinx-testdata "
                                   "LibriVox clips) or on --input.")
    _add_offline_args(p)
    p.set_defaults(func=run_offline)
    demo_sub = p.add_subparsers(dest="demo_command", metavar="DEMO")
    off = demo_sub.add_parser("offline", help="offline concealment and scoring of every method (default)",
                              description="Conceal bursty loss with every method and score the results.")
    _add_offline_args(off)
    off.set_defaults(func=run_offline)
    try:
        from .call import add_call_parser
    except ImportError:
        return
    add_call_parser(demo_sub)
    from .serve import add_serve_parser

    add_serve_parser(demo_sub)


def _add_offline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", metavar="AUDIO", help="speech file to use instead of the built-in clips")
    p.add_argument("--loss", default="gilbert:0.1,3", help="loss model (default gilbert:0.1,3)")
    p.add_argument("--methods", help="comma-separated methods (default: every PCM method)")
    p.add_argument("--out", default="out/demo", metavar="DIR", help="output folder (default out/demo)")
    p.add_argument("--jobs", type=argtypes.jobs, default=os.cpu_count() or 1, help="worker processes")


def run_offline(args: argparse.Namespace) -> int:
    import csv

    from eval import cli as eval_cli
    from plc.cli import UserError, build_parser
    from plc.concealers import DECODER_METHODS, available_methods

    from .default_input import librivox_clips, write_manifest

    from plc.outputs import check_output_folder

    out = check_output_folder("--out", args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.input:
        if not Path(args.input).is_file():
            raise UserError(f"{args.input}: no such file")
        manifest = out / "manifest.csv"
        with open(manifest, "w", newline="") as f:
            csv.writer(f).writerows([["path", "transcript"], [str(Path(args.input).resolve()), ""]])
    else:
        clips = librivox_clips()
        if not clips:
            raise UserError("the built-in demo speech is missing: run `make setup` (installs Debian's "
                            "pocketsphinx-testdata) or pass --input AUDIO")
        manifest = write_manifest(clips, out / "manifest.csv")
    methods = args.methods or ",".join(m for m in available_methods() if m not in DECODER_METHODS)
    print(f"Concealing {args.loss} packet loss with {methods}; scoring PESQ, STOI, PLCMOS v2 and WER...")
    # `plc eval`'s own parser, so that every option it has gets its default
    eval_args = build_parser().parse_args(["eval", "--manifest", str(manifest), "--methods", methods,
                                           "--loss", args.loss, "--out", str(out), "--jobs", str(args.jobs)])
    rc = eval_cli.run(eval_args)
    _write_listening_files(manifest, methods.split(","), args.loss, out)
    print(f"Listen: {out}/listen_*.wav (same clip, same losses, each method)")
    return rc


def _write_listening_files(manifest: Path, methods: list[str], loss_spec: str, out: Path) -> None:
    from eval.loss_models import parse_loss_spec
    from eval.runner import Job, job_trace, load_clip_16k, read_manifest
    from plc.audio_io import write_audio
    from plc.offline import conceal_audio

    clip = read_manifest(manifest)[0]
    ref = load_clip_16k(clip.path)
    job = Job(clip, parse_loss_spec(loss_spec), tuple(methods), "pcm", 0, 20, 24000, False)
    lost = job_trace(job, len(ref))
    write_audio(out / "listen_reference.wav", ref, 16000)
    for m in methods:
        write_audio(out / f"listen_{m}.wav", conceal_audio(ref, 16000, lost, m).audio, 16000)

"""The ``plc`` command: one entry point, one sub-command per job.

Sub-commands import their heavy dependencies lazily, so ``plc conceal`` does
not load the evaluation or training stacks. User errors print one line and
exit with status 2; unexpected failures print one line and exit with 1
(set ``PLC_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Optional

from . import __version__, argtypes
from .codecs import codec_names
from .errors import UserError  # re-exported: sub-commands raise plc.cli.UserError


class Parser(argparse.ArgumentParser):
    """argparse with plc's convention for usage errors: one line ``plc CMD: error: ...``, exit status 2.

    Sub-parsers are made of the same class (``add_subparsers`` uses the parent's class), so
    every sub-command reports its usage errors this way.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


# --------------------------------------------------------------------- conceal
def _add_conceal(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "conceal",
        help="conceal lost packets in an audio file",
        description="Conceal the lost packets of INPUT and write OUTPUT (same length and rate). "
                    "With --codec pcm INPUT is the received audio (samples of lost packets are ignored); "
                    "with --codec opus INPUT is the sender's audio, coded with Opus before the loss.",
    )
    p.add_argument("input", metavar="INPUT", help="audio file (WAV, FLAC, OGG; any rate, mono or stereo)")
    p.add_argument("output", metavar="OUTPUT", help="output audio file (.wav, .flac or .ogg)")
    loss = p.add_mutually_exclusive_group(required=True)
    loss.add_argument("--trace", metavar="LOSS.txt",
                      help="loss trace: one line per packet, 1 lost, 0 received (PLC Challenge format)")
    loss.add_argument("--loss", metavar="SPEC",
                      help="draw losses from a model: bernoulli:RATE or gilbert:RATE,MEAN_BURST_PACKETS; "
                           "the trace used is written next to OUTPUT")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="seed of the loss model (default 0)")
    p.add_argument("--method", default=None,
                   help="concealment method (default: neural where onnxruntime is installed, else neteq); "
                        "see `plc methods`")
    p.add_argument("--codec", choices=codec_names(), default="pcm", help="pipeline (default pcm)")
    p.add_argument("--bitrate", type=argtypes.bitrate_bps, default=24000, metavar="BPS",
                   help="Opus bitrate in bit/s (default 24000)")
    p.add_argument("--packet-ms", type=argtypes.packet_ms, default=20,
                   help="packet duration in ms (default 20; 10 to 120 in 10 ms steps, with Opus 10, 20, 40 or 60)")
    argtypes.add_fec_options(p)
    p.add_argument("--stats", metavar="JSON", help="write concealment statistics to this JSON file")
    p.add_argument("--neural-model", metavar="DIR",
                   help="model folder for --method neural (default: the shipped plc/assets/neural)")
    p.set_defaults(func=_run_conceal)


def _run_conceal(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from .audio_io import AudioError, audio_subtype, check_output_path, load_audio, write_audio
    from .concealers import check_method, default_method
    from .loss_models import TraceError, parse_loss_spec, read_trace, write_trace
    from .offline import check_packet_ms, conceal_audio, packets_in
    from .outputs import StagedOutputs, check_outputs

    fec_error = argtypes.fec_options_error(args)
    if fec_error:
        raise UserError(fec_error)
    if args.method is None:
        args.method = default_method()
    try:
        check_method(args.method, args.codec)
        check_packet_ms(args.packet_ms, args.codec)
        model = parse_loss_spec(args.loss) if args.loss else None
        output = check_output_path(args.output)
    except ValueError as exc:
        raise UserError(f"{exc}") from None
    trace_path = output.with_name(output.stem + ".trace.txt") if args.loss else None
    check_outputs({"OUTPUT": output, "trace": trace_path, "--stats": args.stats}, inputs=[args.input, args.trace])
    if args.neural_model:
        from .concealers.neural import select_model_dir

        try:
            select_model_dir(args.neural_model)
        except ValueError as exc:
            raise UserError(f"--neural-model: {exc}") from None
    try:
        audio, sample_rate = load_audio(args.input)
        n_packets = packets_in(audio.shape[0], sample_rate, args.packet_ms)
        if args.trace:
            lost = read_trace(args.trace)
            if len(lost) < n_packets:
                raise UserError(f"{args.trace}: trace has {len(lost)} packets but {args.input} needs "
                                f"{n_packets} ({args.packet_ms} ms packets)")
        else:
            lost = model.generate(n_packets, np.random.default_rng(args.seed))
        result = conceal_audio(audio, sample_rate, lost, args.method, codec=args.codec,
                               packet_ms=args.packet_ms, bitrate_bps=args.bitrate, fec=args.fec,
                               expected_loss_percent=args.expected_loss)
        out = result.audio[:, 0] if result.audio.shape[1] == 1 else result.audio
        with StagedOutputs() as staged:  # every output, or none of them
            write_audio(staged.path(output), out, sample_rate, subtype=audio_subtype(args.input))
            if trace_path is not None:
                write_trace(staged.path(trace_path), lost[:n_packets])
            if args.stats:
                staged.path(args.stats).write_text(json.dumps(result.stats, indent=2) + "\n")
    except (AudioError, TraceError, ValueError) as exc:  # bad input or options: one line
        raise UserError(" ".join(str(exc).split())) from None
    lost_n = int(np.count_nonzero(lost[:n_packets]))
    print(f"{output}: {n_packets} packets, {lost_n} lost ({100.0 * lost_n / max(1, n_packets):.1f}%), "
          f"concealed with {args.method} ({args.codec})"
          + (f"; {result.stats['fec_recovered_packets']} recovered from in-band FEC at "
             f"{result.stats['payload_bitrate_bps'] / 1000:.1f} kbit/s" if args.fec else "")
          + (f"; trace written to {trace_path}" if trace_path else ""))
    steered, left_to_fec = result.stats.get("steered_losses", 0), result.stats.get("losses_left_to_fec", 0)
    if steered or left_to_fec:
        print(f"  {steered} losses began with {args.method}'s packet coded into the decoder"
              + (f"; {left_to_fec} were left to libopus' PLC, as the stream carries in-band FEC"
                 if left_to_fec else ""))
    if result.stats.get("fallback_frames"):
        reasons = "; ".join(result.fallback_reasons)
        print(f"warning: {result.stats['fallback_frames']} frames were concealed by the neteq fallback"
              + (f" ({reasons})" if reasons else ""), file=sys.stderr)
    return 0


# ------------------------------------------------------------------- methods
def _add_methods(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list the concealment methods",
                       description="List the concealment methods --method accepts, what each is, and what it "
                                   "needs (a codec with its own concealment, a module that is not installed).")
    p.set_defaults(func=_run_methods)


def _run_methods(args: argparse.Namespace) -> int:
    from .codecs import concealing_codecs
    from .concealers import default_method, registered_methods

    default = default_method()
    for info in registered_methods():
        notes = ["the default"] if info.name == default else []
        if info.needs_codec:
            notes.append(f"with --codec {' or '.join(concealing_codecs())}")
        missing = info.missing()
        if missing:
            notes.append(f"unavailable: {missing}")
        print(f"{info.name:8s} {info.summary}" + (f"  ({'; '.join(notes)})" if notes else ""))
    return 0


# ---------------------------------------------------------------- lazy groups
def _lazy(module: str, name: str, help_text: str) -> Callable[[argparse._SubParsersAction], None]:
    """A sub-command defined in another package, imported only when the parser is built."""

    def add(sub: argparse._SubParsersAction) -> None:
        import importlib

        try:
            mod = importlib.import_module(module)
        except ImportError as exc:  # an optional part is not installed
            p = sub.add_parser(name, help=f"{help_text} (unavailable: {exc.name} missing)")
            p.set_defaults(func=lambda a, e=exc: (_ for _ in ()).throw(
                UserError(f"`plc {name}` needs {e.name}; run `make setup`")))
            return
        mod.add_parser(sub)

    return add


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_conceal,
    _add_methods,
    _lazy("eval.cli", "eval", "evaluate concealment methods on a speech manifest"),
    _lazy("eval.bench", "bench", "measure a concealer's real-time cost"),
    _lazy("training.train", "train", "train the neural concealer"),
    _lazy("training.export", "export", "export a checkpoint to ONNX for the runtime"),
    _lazy("demo.cli", "demo", "run the built-in demonstration"),
    _lazy("jitterbuffer.cli", "netsim", "simulate a network and the jitter buffer on an audio file"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="plc", description="Packet loss concealment for real-time voice.")
    parser.add_argument("--version", action="version", version=f"plc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed, one line)
        return exc.code if isinstance(exc.code, int) else 2
    prog = f"plc {args.command}"
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, no traceback, unless debugging
        if os.environ.get("PLC_DEBUG"):
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{prog}: error: {msg} ({type(exc).__name__}; set PLC_DEBUG=1 for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

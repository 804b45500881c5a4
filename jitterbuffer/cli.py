"""``plc netsim``: run a speech file through a simulated network and the jitter buffer.

Registered in :mod:`plc.cli` as ``_lazy("jitterbuffer.cli", "netsim", ...)``;
:func:`add_parser` adds the sub-command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from plc import argtypes
from plc.codecs import codec_names, get_codec, redundant_codecs
from plc.cli import UserError

from .delay_manager import DelayManagerConfig
from .network import MAX_TRANSIT_MS

HELP = "simulate a network and the jitter buffer on an audio file"

DESCRIPTION = f"""\
Packetize INPUT into 20 ms RTP packets, send them through a network model
(--network) or a recorded trace (--arrivals), feed the jitter buffer at the
arrival times and play out every 10 ms into OUTPUT, at INPUT's rate, mono:
from the first packet's send time until the last packet that arrived has been
played, and never shorter than INPUT (lost packets at the end are concealed).
So OUTPUT is INPUT's length plus the buffering delay. Packets that arrive more
than {MAX_TRANSIT_MS / 1000:g} s after the last one was sent are not waited for; they count as late.

--network SPEC: key=value pairs (commas or spaces), a preset, or a .toml file
with the same keys, e.g. 'delay=40ms jitter=30ms spike=300ms spike_every=10s
loss=5% burst=3 reorder=0.5% dup=0.5% drift=+1% seed=1'. Keys: delay (base
one-way delay), jitter (standard deviation of the extra queueing delay), dist
(pareto|lognormal|exponential|uniform|none), shape, fifo (1: packets keep
their order), spike (height), spike_every (mean interval, s), spike_at (s,
';'-separated), loss (Gilbert-Elliott mean rate), burst (mean burst, packets),
loss_good, loss_bad, reorder, reorder_delay, dup, drift (sender clock, within
+-5%), seed. Presets: clean, heavy, spike500, wifi (e.g. 'heavy,seed=3').
Limits: delay, jitter and reorder_delay up to 10 s, spike up to 60 s,
spike_every 0 or at least 0.1 s, burst up to 10000 packets, shape 2..100
(pareto) or 0.01..3 (lognormal).

--fec: the sender's Opus carries in-band FEC (a low-bitrate copy of the previous
frame in each speech packet, within --bitrate); the buffer decodes a missing
packet from its successor's copy when that is in the buffer in time. --red: each
packet also carries the one before as an RFC 2198 redundant block. The stats
count the copies (fecPacketsReceived, fecPacketsDiscarded, fecPacketsRecovered)
and give the payload bitrate (payloadBitrateBps).

--arrivals CSV: columns seq,send_ms,arrival_ms (seq = packet index from 0; an
empty arrival_ms = never arrived; a seq listed twice = duplicated).
"""


#: --min-delay / --max-delay: a target delay, ms.
DELAY_MS = argtypes.float_range(0.0, 10000.0)
#: The adaptive target's defaults (--min-delay, --max-delay, --quantile).
DELAY_DEFAULTS = DelayManagerConfig()


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``netsim`` sub-command to ``plc``'s sub-parsers."""
    p = sub.add_parser("netsim", help=HELP, description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT", help="audio file (WAV, FLAC, OGG; any rate; stereo is mixed to mono)")
    p.add_argument("output", metavar="OUTPUT", help="output audio file (.wav, .flac or .ogg)")
    net = p.add_mutually_exclusive_group(required=True)
    net.add_argument("--network", metavar="SPEC", help="network model: SPEC string, preset or .toml file")
    net.add_argument("--arrivals", metavar="CSV", help="recorded trace with columns seq,send_ms,arrival_ms")
    p.add_argument("--method", default=None,
                   help="concealment method (default: neural if installed, else neteq; "
                        "plc.concealers.PREFERRED_METHODS); "
                        "'opus' = libopus' own PLC with --codec opus; see `plc methods`")
    p.add_argument("--buffer", default="adaptive", metavar="adaptive|fixed:MS",
                   help="jitter buffer: adaptive (NetEQ-like, default) or fixed:MS (constant prefetch, "
                        "like aiortc's; fixed:80 = aiortc's 4 packets)")
    p.add_argument("--codec", choices=codec_names(), default="pcm", help="payload (default pcm: 16-bit 16 kHz)")
    p.add_argument("--bitrate", type=argtypes.bitrate_bps, default=24000, metavar="BPS",
                   help="Opus bitrate in bit/s (default 24000)")
    argtypes.add_fec_options(p)
    p.add_argument("--red", action="store_true",
                   help="RED (RFC 2198, audio/red): every Opus packet also carries the one before it as a "
                        "redundant block (doubling the bitrate; needs --codec opus)")
    p.add_argument("--stats", metavar="JSON", help="write the statistics to this JSON file")
    p.add_argument("--seed", type=argtypes.seed, default=None, help="override the network SPEC's seed")
    p.add_argument("--min-delay", type=DELAY_MS, default=DELAY_DEFAULTS.min_delay_ms, metavar="MS",
                   help=f"adaptive: lowest target delay (ms, default {DELAY_DEFAULTS.min_delay_ms:g})")
    p.add_argument("--max-delay", type=DELAY_MS, default=DELAY_DEFAULTS.max_delay_ms, metavar="MS",
                   help=f"adaptive: highest target delay (ms, default {DELAY_DEFAULTS.max_delay_ms:g}, at most 10000)")
    p.add_argument("--quantile", type=argtypes.float_range(0.5, 1.0, hi_open=True), default=DELAY_DEFAULTS.quantile,
                   metavar="Q", help="adaptive: share of packets the target delay covers "
                                     f"(default {DELAY_DEFAULTS.quantile:g}; NetEQ uses 0.95)")
    p.add_argument("--save-arrivals", metavar="CSV", help="also write the simulated arrivals as a CSV trace")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``plc netsim``; user errors raise :class:`plc.cli.UserError`."""
    import numpy as np

    from plc.audio_io import AudioError, audio_subtype, check_output_path, load_audio, resample, write_audio
    from plc.codecs import SAMPLE_RATE
    from plc.concealers import check_method
    from plc.outputs import StagedOutputs, check_outputs

    from plc.concealers import default_method

    from .jitter_buffer import JitterBufferConfig
    from .netsim import PACKET_MS, simulate
    from .network import NetworkError, parse_network, read_arrivals_csv, write_arrivals_csv

    method = args.method or default_method()
    try:
        check_method(method, args.codec)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    fec_error = argtypes.fec_options_error(args)
    if fec_error:
        raise UserError(fec_error)
    if args.red and not get_codec(args.codec).redundancy:
        raise UserError(f"--red carries {' or '.join(c.label for c in redundant_codecs())} packets: add --codec "
                        f"{' or '.join(c.name for c in redundant_codecs())}")
    try:
        output = check_output_path(args.output)
    except AudioError as exc:
        raise UserError(str(exc)) from None
    toml = args.network if args.network and args.network.strip().lower().endswith(".toml") else None
    check_outputs({"OUTPUT": output, "--stats": args.stats, "--save-arrivals": args.save_arrivals},
                  inputs=[args.input, args.arrivals, toml])
    if args.max_delay < args.min_delay:
        raise UserError("need --min-delay <= --max-delay")
    try:
        delay = dataclasses.replace(DELAY_DEFAULTS, min_delay_ms=args.min_delay, max_delay_ms=args.max_delay,
                                    quantile=args.quantile)
        config = JitterBufferConfig.from_spec(args.buffer, delay=delay)
        spec = parse_network(args.network, seed=args.seed) if args.network is not None else None
        audio, rate = load_audio(args.input)
        mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
        x = resample(mono, rate, SAMPLE_RATE)
        n_packets = int(np.ceil(len(x) / (SAMPLE_RATE * PACKET_MS / 1000)))
        if spec is not None:
            arrivals = spec.simulate(n_packets, PACKET_MS)
        else:
            arrivals = read_arrivals_csv(args.arrivals)
            covered = max(a.seq for a in arrivals) + 1
            if covered < n_packets:
                raise UserError(f"{args.arrivals}: the trace covers {covered} packets but {args.input} needs "
                                f"{n_packets} ({PACKET_MS} ms packets)")
        fec_options = {"fec": args.fec, "red": args.red}
        if args.expected_loss is not None:
            fec_options["expected_loss_percent"] = args.expected_loss
        result = simulate(x, arrivals, config, method=method, codec=args.codec, seed=args.seed or 0,
                          spec=spec, bitrate_bps=args.bitrate, **fec_options)
        stats = result.stats
        stats.update({"input": str(args.input), "network": args.network, "arrivals": args.arrivals,
                      "buffer": args.buffer, "method": method, "codec": args.codec, "fec": args.fec,
                      "red": args.red})
        with StagedOutputs() as staged:  # every output, or none of them
            write_audio(staged.path(output), resample(result.audio, SAMPLE_RATE, rate), rate,
                        subtype=audio_subtype(args.input))
            if args.save_arrivals:
                write_arrivals_csv(staged.path(args.save_arrivals), arrivals)
            if args.stats:
                staged.path(args.stats).write_text(json.dumps(_finite(stats), indent=2, default=_json_default) + "\n")
    except (AudioError, NetworkError, ValueError, OSError) as exc:
        raise UserError(" ".join(str(exc).split())) from None
    delay = stats["playoutDelayMeanMs"]
    print(f"{output}: {stats['packetsSent']} packets, {100 * stats['networkLossRate']:.1f}% lost in the network, "
          f"{100 * stats['lateLossRate']:.1f}% late; playout delay {_ms(delay)} mean, "
          f"{_ms(stats['playoutDelayP95Ms'])} p95; {100 * stats['concealedFraction']:.1f}% concealed "
          f"({args.buffer}, {method}, {args.codec})"
          + (f"; {stats['fecPacketsRecovered']} packets recovered from redundancy, "
             f"{stats['payloadBitrateBps'] / 1000:.1f} kbit/s" if args.fec or args.red else ""))
    return 0


def _ms(value) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def _finite(value):
    """The statistics with NaN and infinities as null (strict JSON)."""
    import math

    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")

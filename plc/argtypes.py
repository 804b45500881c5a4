"""Checked numbers for command-line options: argparse ``type=`` callables, defined once.

Every sub-command parses its numbers with these, so NaN, infinities, negative
seeds or zero repeats are refused where the option is read, as a usage error
(``plc CMD: error: argument --seed: ...``, exit status 2), instead of failing
deep inside the work or being accepted as nonsense.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Optional

from .codecs.opus import OPUS_MAX_BITRATE_BPS, OPUS_MIN_BITRATE_BPS

#: Seeds: what numpy's generators and every seeded model here accept.
MAX_SEED = 2 ** 32 - 1


def integer(text: str) -> int:
    """A decimal integer (no range)."""
    try:
        return int(str(text).strip(), 10)
    except ValueError:  # also a number too long to convert
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not an integer") from None


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    """An integer in ``lo..hi`` (inclusive)."""

    def parse(text: str) -> int:
        value = integer(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer from {lo} to {hi}, got {value}")
        return value

    parse.__name__ = f"int_range({lo}, {hi})"
    return parse


def float_range(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Callable[[str], float]:
    """A finite number in ``lo..hi``; ``lo_open`` / ``hi_open`` exclude that end."""

    def parse(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_shown(text)} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {_shown(text)}")
        if (value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi)):
            raise argparse.ArgumentTypeError(
                f"must be within {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}, got {value:g}")
        return value

    parse.__name__ = f"float_range({lo}, {hi})"
    return parse


def checked(parse: Callable[[str], object], check: Callable[[object], object]) -> Callable[[str], object]:
    """``parse`` then ``check`` (a validator that raises ``ValueError`` with a one-line reason), as a type.

    For rules that live with the code they protect (``plc.offline.check_packet_ms``), so that
    the command line and the library refuse the same values with the same words.
    """

    def parse_checked(text: str):
        value = parse(text)
        try:
            check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(" ".join(str(exc).split())) from None
        return value

    parse_checked.__name__ = getattr(check, "__name__", "checked")
    return parse_checked


def _shown(text: Optional[str], limit: int = 40) -> str:
    text = repr(str(text))
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def _check_packet_ms(value: int) -> None:
    from .offline import check_packet_ms  # imported when the option is given: it loads scipy

    check_packet_ms(value)


#: ``--seed``: a non-negative integer that numpy's generators accept.
seed = int_range(0, MAX_SEED)
#: ``--jobs``: worker processes.
jobs = int_range(1, 256)
#: A count of things (``--limit``, ``--repeat``): at least one.
count = int_range(1, 10 ** 9)
#: ``--packet-ms``: whole 10 ms frames up to Opus' longest packet (the codec's own sizes are checked with --codec).
packet_ms = checked(integer, _check_packet_ms)
#: ``--bitrate``: what libopus takes.
bitrate_bps = int_range(OPUS_MIN_BITRATE_BPS, OPUS_MAX_BITRATE_BPS)
#: ``--expected-loss``: the packet loss Opus' in-band FEC is planned for, whole percent.
loss_percent = int_range(0, 100)


def add_fec_options(parser: argparse.ArgumentParser, also: str = "") -> None:
    """``--fec`` and ``--expected-loss``: Opus in-band FEC at the sender, the same wording everywhere
    (``also``: what the command does more with it)."""
    from .codecs.opus import DEFAULT_EXPECTED_LOSS_PERCENT

    parser.add_argument("--fec", action="store_true",
                        help="Opus in-band FEC: every speech packet also carries a low-bitrate copy of the one "
                             "before (within --bitrate), and a lost packet whose successor arrived is decoded "
                             "from it instead of concealed (needs --codec opus)" + also)
    parser.add_argument("--expected-loss", type=loss_percent, default=None, metavar="PERCENT",
                        help="with --fec: the packet loss the encoder plans the FEC for "
                             f"(default {DEFAULT_EXPECTED_LOSS_PERCENT}; 0 = no FEC copies)")


def fec_options_error(args: argparse.Namespace) -> Optional[str]:
    """Why ``--fec`` / ``--expected-loss`` do not fit the other options, or None."""
    if args.expected_loss is not None and not args.fec:
        return "--expected-loss goes with --fec"
    from .codecs import get_codec, redundant_codecs

    if args.fec and not get_codec(args.codec).redundancy:
        able = redundant_codecs()
        return (f"--fec is {' or '.join(c.label for c in able)}' in-band FEC: add --codec "
                f"{' or '.join(c.name for c in able)}")
    return None

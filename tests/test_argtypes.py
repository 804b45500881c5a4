"""The shared number types of the command line (plc/argtypes.py), and every command using them.

Property tests: whatever text an option gets, its type either returns a finite value in range
or raises ``ArgumentTypeError`` (which argparse turns into one line and exit status 2).
"""

from __future__ import annotations

import argparse
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plc import argtypes
from plc.cli import main

NUMBER_TEXT = st.one_of(
    st.integers(min_value=-10 ** 30, max_value=10 ** 30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e-999", "0x10", "1_000", " 7 ", "",
                     "1e3", "--1", "٣", "9" * 5000]),
    st.text(max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(text=NUMBER_TEXT, lo=st.integers(-1000, 1000), width=st.integers(0, 1000))
def test_int_range_returns_an_int_in_range_or_a_usage_error(text, lo, width):
    parse = argtypes.int_range(lo, lo + width)
    try:
        value = parse(text)
    except argparse.ArgumentTypeError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 200
        return
    assert isinstance(value, int) and lo <= value <= lo + width


@settings(max_examples=300, deadline=None)
@given(text=NUMBER_TEXT, lo=st.floats(-1e6, 1e6), width=st.floats(0, 1e6), lo_open=st.booleans(),
       hi_open=st.booleans())
def test_float_range_returns_a_finite_number_in_range_or_a_usage_error(text, lo, width, lo_open, hi_open):
    hi = lo + width
    parse = argtypes.float_range(lo, hi, lo_open=lo_open, hi_open=hi_open)
    try:
        value = parse(text)
    except argparse.ArgumentTypeError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 200
        return
    assert math.isfinite(value) and lo <= value <= hi
    assert not (lo_open and value == lo) and not (hi_open and value == hi)


def test_seed_packet_ms_and_bitrate_types():
    assert argtypes.seed("0") == 0 and argtypes.seed(str(2 ** 32 - 1)) == 2 ** 32 - 1
    assert argtypes.packet_ms("20") == 20 and argtypes.bitrate_bps("24000") == 24000
    for parse, bad in ((argtypes.seed, "-1"), (argtypes.seed, str(2 ** 32)), (argtypes.packet_ms, "0"),
                       (argtypes.packet_ms, "15"), (argtypes.packet_ms, "-20"), (argtypes.packet_ms, "130"),
                       (argtypes.bitrate_bps, "0"), (argtypes.bitrate_bps, "nan"), (argtypes.jobs, "-3"),
                       (argtypes.count, "0")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)


# Every number option of every command, with values that cannot be meant. Parsing stops the
# command before any work, so each case takes milliseconds.
IN, OUT = "IN.wav", "OUT.wav"
NUMBER_OPTIONS = [
    (["conceal", IN, OUT, "--loss", "bernoulli:0.1"], "--seed", ["-1", "1.5", "nan", str(2 ** 40)]),
    (["conceal", IN, OUT, "--loss", "bernoulli:0.1"], "--packet-ms", ["0", "15", "-20", "1e3", "nan", "1000"]),
    (["conceal", IN, OUT, "--loss", "bernoulli:0.1"], "--bitrate", ["0", "-5", "1e9", "nan"]),
    (["eval", "--manifest", "m.csv", "--out", "o"], "--packet-ms", ["0", "15", "25"]),
    (["eval", "--manifest", "m.csv", "--out", "o"], "--seed", ["-1", "x"]),
    (["eval", "--manifest", "m.csv", "--out", "o"], "--limit", ["-1", "0", "2.5"]),
    (["eval", "--manifest", "m.csv", "--out", "o"], "--jobs", ["-3", "0", "100000"]),
    (["eval", "--manifest", "m.csv", "--out", "o"], "--bitrate", ["1", "inf"]),
    (["bench", "--method", "neteq"], "--seed", ["-1", "nan"]),
    (["bench", "--method", "neteq"], "--repeat", ["0", "-1", "1e9", "inf"]),
    (["demo", "call"], "--seed", ["-1"]),
    (["demo", "call"], "--seconds", ["nan", "inf", "0", "-3"]),
    (["demo", "call"], "--jitter-ms", ["nan", "-1", "1e300"]),
    (["demo"], "--jobs", ["0", "-3"]),
    (["demo", "serve"], "--port", ["-1", "65536", "80.5", "nan"]),
    (["demo", "serve"], "--max-calls", ["0", "-1", "1e9"]),
    (["netsim", IN, OUT, "--network", "clean"], "--max-delay", ["nan", "inf", "-1", "1e300"]),
    (["netsim", IN, OUT, "--network", "clean"], "--min-delay", ["nan", "-inf", "-5"]),
    (["netsim", IN, OUT, "--network", "clean"], "--quantile", ["nan", "1", "0.2", "inf"]),
    (["netsim", IN, OUT, "--network", "clean"], "--seed", ["-1", "1e3"]),
    (["netsim", IN, OUT, "--network", "clean"], "--bitrate", ["0", "nan"]),
]


@pytest.mark.parametrize("args, option, values", NUMBER_OPTIONS, ids=lambda v: v if isinstance(v, str) else None)
def test_every_number_option_refuses_nonsense_in_one_line(args, option, values, capsys):
    for value in values:
        assert main([*args, f"{option}={value}"]) == 2, (option, value)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"plc {args[0]}"), err
        assert f"argument {option}" in err and "Traceback" not in err


@settings(max_examples=40, deadline=None)
@given(value=st.one_of(st.integers(max_value=-1), st.integers(min_value=2 ** 32),
                       st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not f.is_integer())))
def test_any_bad_seed_is_a_usage_error(value):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["bench", "--method", "neteq", f"--seed={value!r}"]) == 2
    assert err.getvalue().count("\n") == 1 and "argument --seed" in err.getvalue()

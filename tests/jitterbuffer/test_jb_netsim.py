"""The bar of the jitter buffer issue, on simulated networks, and the ``plc netsim`` command.

* On a heavy-tailed network, ``adaptive`` has fewer late losses than
  ``fixed:80`` at no more mean delay.
* After a 500 ms delay spike the playout delay is back within 20 ms of the
  target in under 2 s.
* With 1% sender clock drift over 10 minutes the buffer neither grows nor
  underruns steadily.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
import pytest
import soundfile as sf

from jitterbuffer.bench_network import synthetic_speech
from jitterbuffer.jitter_buffer import JitterBufferConfig
from jitterbuffer.netsim import packetize, recovery_time, simulate
from jitterbuffer.network import parse_network
from jitterbuffer.rtp import parse_rtp

SR = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthetic_speech(30.0, seed=0)


def run(x, network: str, buffer: str, seed: int = 1, method: str = "zero"):
    spec = parse_network(network, seed=seed)
    arrivals = spec.simulate(int(np.ceil(len(x) / 320)))
    return simulate(x, arrivals, JitterBufferConfig.from_spec(buffer), method=method, spec=spec)


def test_packetize_makes_real_rtp():
    x = synthetic_speech(1.0)
    pk = packetize(x, "pcm", seed=3)
    assert len(pk.packets) == 50 and pk.timestamp_step == 320 and pk.clock_rate == 16000
    first, second = parse_rtp(pk.packets[0]), parse_rtp(pk.packets[1])
    assert first.marker and not second.marker and len(first.payload) == 640
    assert (second.sequence_number - first.sequence_number) % 65536 == 1
    assert (second.timestamp - first.timestamp) % 2 ** 32 == 320 and first.ssrc == second.ssrc


def test_heavy_network_adaptive_beats_fixed_80(speech):
    """Fewer late losses than fixed:80 at no more mean delay, over several networks."""
    ada, fix = [], []
    for seed in (1, 2, 3, 4, 5):
        ada.append(run(speech, "heavy", "adaptive", seed).stats)
        fix.append(run(speech, "heavy", "fixed:80", seed).stats)
    late_a = np.mean([s["lateLossRate"] for s in ada])
    late_f = np.mean([s["lateLossRate"] for s in fix])
    delay_a = np.mean([s["playoutDelayMeanMs"] for s in ada])
    delay_f = np.mean([s["playoutDelayMeanMs"] for s in fix])
    assert late_a < late_f / 5, (late_a, late_f)
    assert delay_a <= delay_f, (delay_a, delay_f)
    for s in ada + fix:
        assert s["internalErrors"] == 0 and s["fallbackFrames"] == 0


@pytest.mark.parametrize("jitter", [5, 20])
def test_recovers_from_a_500_ms_spike_within_2_s(speech, jitter):
    x = speech[: 20 * SR]
    r = run(x, f"delay=40ms jitter={jitter}ms dist=exponential spike=500ms spike_at=5", "adaptive")
    s = r.stats
    assert s["largestSpikeMs"] == 500.0
    assert s["spikeRecoveryMs"] is not None and s["spikeRecoveryMs"] < 2000.0, s["spikeRecoveryMs"]
    assert s["packetsLate"] == 0  # the delayed audio is played, not dropped
    # right after the spike the delay was far above the target: there was something to recover from
    i = int(np.searchsorted(r.tick_ms, 5000.0 + 540.0))
    assert np.max(r.playout_delay_ms[i:i + 20] - r.target_delay_ms[i:i + 20]) > 300


def test_recovery_time_helper():
    t = np.arange(0, 3000, 10.0)
    delay = np.where(t < 1000, 500.0, 60.0)
    target = np.full_like(t, 50.0)
    assert recovery_time(t, delay, target, 500.0) == pytest.approx(500.0)
    assert recovery_time(t, delay, target, 1500.0) == 0.0
    assert recovery_time(t, np.full_like(t, 500.0), target, 0.0) is None


@pytest.mark.parametrize("drift", ["+1%", "-1%"])
def test_clock_drift_over_10_minutes_neither_grows_nor_underruns(drift):
    x = synthetic_speech(600.0, seed=2)
    r = run(x, f"delay=40ms jitter=3ms dist=exponential drift={drift}", "adaptive", method="zero")
    s = r.stats
    ops = np.array(r.operations)
    minute = (r.tick_ms // 60000).astype(int)
    delay = np.array([np.mean(r.playout_delay_ms[minute == m]) for m in range(1, 10)])
    peak = np.array([np.max(r.buffered_ms[minute == m]) for m in range(1, 10)])
    underruns = np.array([np.sum(ops[minute == m] == "expand") for m in range(1, 10)])
    assert np.ptp(delay) < 10.0, delay              # the delay does not creep up or down
    assert np.max(peak) < 100.0, peak               # nor does the buffer
    assert np.sum(underruns) <= 5, underruns        # no steady underruns
    assert s["packetsLate"] == 0 and s["packetsOverflow"] == 0
    stretched = s["removedSamplesForAcceleration"] - s["insertedSamplesForDeceleration"]
    expected = (1 if drift == "+1%" else -1) * 0.01 / 1.01 * len(x)  # the drift, taken up by time-stretching
    assert abs(stretched - expected) < 0.1 * abs(expected), (stretched, expected)


def test_fixed_buffer_cannot_follow_drift():
    x = synthetic_speech(120.0, seed=2)
    slow = run(x, "delay=40ms jitter=3ms dist=exponential drift=-1%", "fixed:80").stats
    assert slow["packetsLate"] > 100 and slow["timelineRestarts"] >= 1


def test_trace_replay_gives_the_same_result(speech, tmp_path):
    from jitterbuffer.network import read_arrivals_csv, write_arrivals_csv

    x = speech[: 10 * SR]
    spec = parse_network("heavy", seed=4)
    arrivals = spec.simulate(int(np.ceil(len(x) / 320)))
    write_arrivals_csv(tmp_path / "a.csv", arrivals)
    replay = read_arrivals_csv(tmp_path / "a.csv")
    a = simulate(x, arrivals, JitterBufferConfig(), method="zero")
    b = simulate(x, replay, JitterBufferConfig(), method="zero")
    np.testing.assert_allclose(a.audio, b.audio, atol=1e-6)
    assert a.stats["packetsLate"] == b.stats["packetsLate"]


# ------------------------------------------------------------------------ CLI
class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def plc(*args: str) -> Result:
    """Run ``plc ARGS`` in this process, capturing its output."""
    from plc.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, usage errors
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("netsim") / "in.wav"
    sf.write(path, synthetic_speech(3.0, seed=5), SR, subtype="PCM_16")
    return str(path)


def test_cli_help():
    r = plc("netsim", "--help")
    assert r.returncode == 0
    for word in ("--network", "--arrivals", "--method", "--buffer", "--codec", "--stats", "seq,send_ms,arrival_ms"):
        assert word in r.stdout


def test_cli_network_run_writes_audio_and_stats(wav, tmp_path):
    out, stats = tmp_path / "out.wav", tmp_path / "s.json"
    r = plc("netsim", wav, str(out), "--network", "heavy,seed=2", "--method", "g711", "--stats", str(stats),
            "--save-arrivals", str(tmp_path / "a.csv"))
    assert r.returncode == 0, r.stderr
    assert "late" in r.stdout and "concealed" in r.stdout
    data = json.loads(stats.read_text())
    for key in ("jitterBufferDelay", "jitterBufferTargetDelay", "jitterBufferEmittedCount", "concealedSamples",
                "silentConcealedSamples", "concealmentEvents", "insertedSamplesForDeceleration",
                "removedSamplesForAcceleration", "packetsDiscarded", "packetsLost", "playoutDelayMeanMs",
                "playoutDelayP95Ms", "lateLossRate", "concealedFraction", "spikeRecoveryMs"):
        assert key in data
    info_in, info_out = sf.info(wav), sf.info(str(out))
    assert info_out.samplerate == info_in.samplerate
    extra = info_out.duration - info_in.duration
    assert 0.04 < extra < 1.0  # the buffering delay
    r = plc("netsim", wav, str(tmp_path / "replay.wav"), "--arrivals", str(tmp_path / "a.csv"),
            "--buffer", "fixed:80", "--codec", "opus", "--method", "opus")
    assert r.returncode == 0, r.stderr
    for redundancy in (["--fec"], ["--red"], ["--fec", "--expected-loss", "20", "--red"]):
        r = plc("netsim", wav, str(tmp_path / "fec.wav"), "--arrivals", str(tmp_path / "a.csv"), "--codec", "opus",
                "--stats", str(tmp_path / "fec.json"), *redundancy)
        assert r.returncode == 0, r.stderr
        data = json.loads((tmp_path / "fec.json").read_text())
        assert data["fecPacketsReceived"] > 0 and data["payloadBitrateBps"] > 10000
        assert "recovered from redundancy" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["missing.wav", "o.wav", "--network", "heavy"], "no such file"),
    (["CORRUPT", "o.wav", "--network", "heavy"], "not a readable audio file"),
    (["IN", "o.wav", "--network", "delay=fast"], "not a number"),
    (["IN", "o.wav", "--network", "heavy", "--buffer", "elastic"], "adaptive or fixed"),
    (["IN", "o.wav", "--arrivals", "BADCSV"], "seq,send_ms,arrival_ms"),
    (["IN", "o.wav", "--arrivals", "SHORTCSV"], "covers 3 packets"),
    (["IN", "o.wav", "--network", "heavy", "--method", "nope"], "unknown concealment method"),
    (["IN", "o.wav", "--network", "heavy", "--method", "opus"], "--codec opus"),
    (["IN", "o.txt", "--network", "heavy"], "must end in"),
    (["IN", "o.wav", "--network", "heavy", "--quantile", "1.5"], "--quantile"),
    (["IN", "o.wav", "--network", "heavy", "--min-delay", "50", "--max-delay", "10"], "--min-delay"),
    (["IN", "o.wav", "--network", "heavy", "--fec"], "--codec opus"),
    (["IN", "o.wav", "--network", "heavy", "--red"], "--codec opus"),
    (["IN", "o.wav", "--network", "heavy", "--codec", "opus", "--expected-loss", "5"], "goes with --fec"),
    (["IN", "o.wav", "--network", "heavy", "--codec", "opus", "--fec", "--expected-loss", "-3"], "--expected-loss"),
])
def test_cli_errors_are_one_line(wav, tmp_path, args, message):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF not really a wav file")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    (tmp_path / "short.csv").write_text("seq,send_ms,arrival_ms\n0,0,40\n1,20,60\n2,40,\n")
    subst = {"IN": wav, "CORRUPT": str(tmp_path / "corrupt.wav"), "BADCSV": str(tmp_path / "bad.csv"),
             "SHORTCSV": str(tmp_path / "short.csv"), "o.wav": str(tmp_path / "o.wav"),
             "o.txt": str(tmp_path / "o.txt")}
    r = plc("netsim", *[subst.get(a, a) for a in args])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


# ------------------------------------------------------- hostile input (issue 20)
def _files(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _one_line_usage_error(r: Result, *words: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("plc netsim: error: "), r.stderr
    for word in words:
        assert word in r.stderr, (word, r.stderr)


def test_cli_refuses_to_overwrite_its_input_or_arrivals(wav, tmp_path):
    import os
    import shutil

    src = tmp_path / "in.wav"
    shutil.copy(wav, src)
    (tmp_path / "link.wav").symlink_to(src)
    (tmp_path / "a.csv").write_text("seq,send_ms,arrival_ms\n" + "".join(f"{k},{20 * k},{20 * k + 40}\n"
                                                                         for k in range(150)))
    os.link(tmp_path / "a.csv", tmp_path / "hard.csv")
    before = _files(tmp_path)
    for args in ([str(src), str(src), "--network", "clean"], [str(src), str(tmp_path / "link.wav"), "--network", "clean"],
                 [str(src), str(tmp_path / "o.wav"), "--arrivals", str(tmp_path / "a.csv"),
                  "--save-arrivals", str(tmp_path / "hard.csv")],
                 [str(src), str(tmp_path / "o.wav"), "--network", "clean", "--stats", str(tmp_path / "o.wav")]):
        r = plc("netsim", *args)
        _one_line_usage_error(r)
        assert "is the input" in r.stderr or "is also" in r.stderr
    assert _files(tmp_path) == before


@pytest.mark.parametrize("option, target", [("--stats", "FOLDER"), ("--stats", "nodir/s.json"),
                                            ("--save-arrivals", "FOLDER"), ("--stats", "FILE/s.json")])
def test_cli_checks_every_output_before_the_work(wav, tmp_path, option, target):
    out = tmp_path / "out.wav"
    out.write_bytes(b"precious")
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_bytes(b"x")
    target = {"FOLDER": str(tmp_path / "folder"), "FILE/s.json": str(tmp_path / "file" / "s.json")}.get(
        target, str(tmp_path / target))
    before = _files(tmp_path)
    _one_line_usage_error(plc("netsim", wav, str(out), "--network", "heavy", option, target), option)
    assert _files(tmp_path) == before


@pytest.mark.parametrize("spec", [
    "jitter=1e300ms", "jitter=11s", "delay=1e300", "spike=61s", "reorder_delay=1e9", "shape=1e-300 jitter=10ms",
    "dist=lognormal shape=1e-300 jitter=10ms", "dist=lognormal shape=1e300 jitter=10ms", "shape=nan jitter=10",
    "shape=inf jitter=10", "burst=inf loss=5%", "burst=nan loss=5%", "burst=1e300 loss=5%",
    "spike=300ms spike_every=1e-300s", "spike=1e-300ms spike_every=0.001s", "seed=-1", "drift=nan", "loss=nan",
])
def test_specs_that_describe_no_network_are_refused(wav, tmp_path, spec):
    r = plc("netsim", wav, str(tmp_path / "o.wav"), "--network", spec)
    _one_line_usage_error(r, "network")
    assert not (tmp_path / "o.wav").exists()


@pytest.mark.parametrize("toml", ['jitter = inf', 'delay = nan', 'burst = 1e300', 'seed = -1', 'shape = 1e-300\njitter = 5'])
def test_toml_specs_that_describe_no_network_are_refused(wav, tmp_path, toml):
    (tmp_path / "n.toml").write_text(toml + "\n")
    _one_line_usage_error(plc("netsim", wav, str(tmp_path / "o.wav"), "--network", str(tmp_path / "n.toml")),
                          "network")


def _arrivals_csv(path, rows) -> str:
    path.write_text("seq,send_ms,arrival_ms\n" + "".join(f"{s},{t},{'' if a is None else a}\n" for s, t, a in rows))
    return str(path)


@pytest.mark.parametrize("late", [1e15, 1e300, 80_000.0 + 3000])
def test_a_packet_arriving_absurdly_late_is_counted_not_waited_for(wav, tmp_path, late):
    """The run is bounded by the input: a packet beyond the horizon is late, and the output is
    the input plus the buffering delay (not the time until that packet)."""
    import resource
    import time

    rows = [(k, 20 * k, 20 * k + 40) for k in range(150)]
    rows[50] = (50, 1000, late)
    csv_path = _arrivals_csv(tmp_path / "a.csv", rows)
    started = time.process_time()
    r = plc("netsim", wav, str(tmp_path / "o.wav"), "--arrivals", csv_path, "--stats", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    assert time.process_time() - started < 30
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 4 * 1024 * 1024  # kB: under 4 GB
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["packetsBeyondHorizon"] == 1 and stats["lateLossRate"] == pytest.approx(1 / 150)
    assert stats["networkLossRate"] == 0.0
    duration = sf.info(str(tmp_path / "o.wav")).duration
    assert 3.0 <= duration < 3.5


@pytest.mark.parametrize("rows, message", [
    ([(0, 0, 40), (1, 20, 10)], "before it was sent"),
    ([(0, 0, 40), (1, 20, -1e300)], "before it was sent"),
])
def test_arrivals_that_cannot_happen_are_refused(wav, tmp_path, rows, message):
    rows = rows + [(k, 20 * k, 20 * k + 40) for k in range(2, 150)]
    csv_path = _arrivals_csv(tmp_path / "a.csv", rows)
    _one_line_usage_error(plc("netsim", wav, str(tmp_path / "o.wav"), "--arrivals", csv_path), message)


def test_simulate_is_bounded_by_the_input_whatever_the_times():
    """Send times far apart, all packets beyond the horizon, or at 1e300 ms: the number of 10 ms
    ticks never exceeds (input + MAX_TRANSIT_MS + tail) / 10 ms."""
    from jitterbuffer.network import MAX_TRANSIT_MS, Arrival

    x = synthetic_speech(1.0, seed=1)
    bound = (len(x) / SR * 1000 / 0.95 + MAX_TRANSIT_MS + 5000.0) / 10 + 2
    cases = [
        [Arrival(k, 20.0 * k + (1e15 if k == 10 else 0.0), 20.0 * k + 40 + (1e15 if k == 10 else 0.0))
         for k in range(50)],
        [Arrival(k, 20.0 * k, 1e12 + k) for k in range(50)],
        [Arrival(k, 1e300 + 20.0 * k, 1e300 + 20.0 * k) for k in range(50)],
        [Arrival(k, 20.0 * k, None) for k in range(50)],
    ]
    for arrivals in cases:
        r = simulate(x, arrivals, JitterBufferConfig(), method="zero")
        assert len(r.tick_ms) <= bound
        assert len(r.audio) >= len(x)  # never shorter than the input


@pytest.mark.parametrize("network, at_most_s", [
    ("loss=99.9% burst=1000", 3.0), ("loss=99.99% burst=10000 seed=3", 3.0), ("loss=50% burst=100", 4.0),
    ("heavy", 4.0), ("delay=10s jitter=10s shape=2.01 spike=60s spike_at=1", 3.0 + 75.0 + 5.0),
])
def test_output_is_the_input_plus_the_buffering_delay(wav, tmp_path, network, at_most_s):
    """What the help says: never shorter than the input (with 99.9% loss it used to be), and
    only longer by the buffering delay (with every packet lost it used to be 2.5 times as long)."""
    r = plc("netsim", wav, str(tmp_path / "o.wav"), "--network", network, "--stats", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    duration = sf.info(str(tmp_path / "o.wav")).duration
    assert sf.info(wav).duration <= duration <= at_most_s
    every_packet_lost = _arrivals_csv(tmp_path / "a.csv", [(k, 20 * k, None) for k in range(150)])
    r = plc("netsim", wav, str(tmp_path / "lost.wav"), "--arrivals", every_packet_lost)
    assert r.returncode == 0, r.stderr
    assert sf.info(str(tmp_path / "lost.wav")).duration == pytest.approx(sf.info(wav).duration, abs=0.021)


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(["delay", "jitter", "spike", "spike_every", "reorder_delay", "burst", "shape", "loss",
                            "reorder", "dup", "drift", "loss_good", "loss_bad"]),
       value=st.floats(allow_nan=True, allow_infinity=True))
def test_any_number_in_a_spec_is_refused_or_simulates_in_bounded_time(key, value):
    """Property: a SPEC value is a one-line NetworkError, or the network it describes delivers
    every packet at a finite time after it was sent (and spikes end)."""
    from jitterbuffer.network import NetworkError

    extra = {"spike_every": " spike=300ms", "shape": " jitter=30ms", "burst": " loss=5%"}.get(key, "")
    try:
        spec = parse_network(f"{key}={value!r}{extra}")
    except NetworkError as exc:
        assert "\n" not in str(exc)
        return
    arrivals = spec.simulate(500)
    assert all(a.arrival_ms is None or (np.isfinite(a.arrival_ms) and a.arrival_ms >= a.send_ms) for a in arrivals)

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
import pytest
import soundfile as sf

from jitterbuffer.bench_network import synthetic_speech
from jitterbuffer.neteq import JitterBufferConfig
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


@pytest.mark.parametrize("args, message", [
    (["missing.wav", "o.wav", "--network", "heavy"], "no such file"),
    (["CORRUPT", "o.wav", "--network", "heavy"], "not a readable audio file"),
    (["IN", "o.wav", "--network", "delay=fast"], "not a number"),
    (["IN", "o.wav", "--network", "heavy", "--buffer", "elastic"], "adaptive or fixed"),
    (["IN", "o.wav", "--arrivals", "BADCSV"], "seq,send_ms,arrival_ms"),
    (["IN", "o.wav", "--arrivals", "SHORTCSV"], "covers 3 packets"),
    (["IN", "o.wav", "--network", "heavy", "--method", "nope"], "unknown method"),
    (["IN", "o.wav", "--network", "heavy", "--method", "opus"], "--codec opus"),
    (["IN", "o.txt", "--network", "heavy"], "must end in"),
    (["IN", "o.wav", "--network", "heavy", "--quantile", "1.5"], "--quantile"),
    (["IN", "o.wav", "--network", "heavy", "--min-delay", "50", "--max-delay", "10"], "--min-delay"),
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

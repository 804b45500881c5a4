"""`plc conceal` and `plc eval` end to end, and their error paths."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from plc.loss_models import read_trace
from plc.cli import main

from .conftest import harmonic, shared_data_or_skip


@pytest.fixture()
def wav(tmp_path):
    path = tmp_path / "in.wav"
    sf.write(path, harmonic(seconds=1.0), 16000, subtype="PCM_16")
    return path


def test_every_subcommand_has_help():
    for cmd in ["conceal", "eval", "methods", "demo", "train", "export"]:
        r = subprocess.run([sys.executable, "-m", "plc.cli", cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0, (cmd, r.stderr)
        assert "usage: plc" in r.stdout


def test_conceal_with_loss_model_writes_output_and_trace(wav, tmp_path, capsys):
    out = tmp_path / "out.wav"
    assert main(["conceal", str(wav), str(out), "--loss", "gilbert:0.2,3", "--seed", "5", "--method", "g711",
                 "--stats", str(tmp_path / "s.json")]) == 0
    y, sr = sf.read(out, dtype="float32")
    x, _ = sf.read(wav, dtype="float32")
    assert sr == 16000 and y.shape == x.shape
    trace = read_trace(tmp_path / "out.trace.txt")
    assert len(trace) == 50 and trace.any()
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["lost_packets"] == trace.sum()
    # Same trace file in, same output out.
    out2 = tmp_path / "out2.wav"
    assert main(["conceal", str(wav), str(out2), "--trace", str(tmp_path / "out.trace.txt"), "--method", "g711"]) == 0
    assert np.array_equal(sf.read(out2)[0], y)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600


def test_conceal_stereo_flac_at_48k_with_opus(tmp_path):
    x = np.stack([harmonic(seconds=1.0, sample_rate=48000), harmonic(200, 1.0, 48000)], axis=1) * 0.5
    src = tmp_path / "in.flac"
    sf.write(src, x, 48000)
    out = tmp_path / "out.ogg"
    assert main(["conceal", str(src), str(out), "--loss", "bernoulli:0.2", "--codec", "opus", "--method", "opus",
                 "--bitrate", "32000"]) == 0
    info = sf.info(str(out))
    assert info.samplerate == 48000 and info.channels == 2 and abs(info.frames - len(x)) <= 1


@pytest.mark.parametrize("content,args,message", [
    (None, ["--loss", "bernoulli:0.1"], "no such file"),
    (b"", ["--loss", "bernoulli:0.1"], "empty"),
    (b"RIFF\x00\x00\x00\x00WAVEjunkjunk", ["--loss", "bernoulli:0.1"], "not a readable audio file"),
    (b"hello, I am text", ["--loss", "bernoulli:0.1"], "not a readable audio file"),
])
def test_bad_input_exits_with_one_line(tmp_path, capsys, content, args, message):
    src = tmp_path / "bad.wav"
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "out.wav"
    out.write_bytes(b"precious")
    assert main(["conceal", str(src), str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out.read_bytes() == b"precious"  # never overwritten


@pytest.mark.parametrize("trace,message", [("0\n1\n", "trace has 2 packets"), ("0\n" * 49 + "7\n", ":50: expected 0 or 1")])
def test_bad_traces(wav, tmp_path, capsys, trace, message):
    (tmp_path / "t.txt").write_text(trace)
    out = tmp_path / "out.wav"
    assert main(["conceal", str(wav), str(out), "--trace", str(tmp_path / "t.txt")]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_bad_options(wav, tmp_path, capsys):
    out = str(tmp_path / "o.wav")
    assert main(["conceal", str(wav), out, "--loss", "gilbert:2,3"]) == 2
    assert main(["conceal", str(wav), out, "--loss", "bernoulli:0.1", "--method", "nope"]) == 2
    assert main(["conceal", str(wav), out, "--loss", "bernoulli:0.1", "--method", "opus"]) == 2
    assert main(["conceal", str(wav), str(tmp_path / "o.mp3"), "--loss", "bernoulli:0.1"]) == 2
    assert main(["conceal", str(wav), out, "--loss", "bernoulli:0.1", "--packet-ms", "15"]) == 2


def test_a_traceback_never_reaches_the_user(tmp_path):
    r = subprocess.run([sys.executable, "-m", "plc.cli", "conceal", str(tmp_path / "x.wav"), str(tmp_path / "y.wav"),
                        "--loss", "bernoulli:0.1"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_eval_end_to_end_on_real_clips(tmp_path):
    data = shared_data_or_skip()
    rows = list(csv.DictReader(open(data / "dev.csv")))
    picks = [r for r in rows if r["corpus"] == "ljspeech"][:2] + [r for r in rows if r["corpus"] == "an4"][:1]
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in picks:
            w.writerow(dict(r, path=str(data / r["path"])))
    out = tmp_path / "ev"
    rc = main(["eval", "--manifest", str(manifest), "--methods", "zero,neteq", "--loss", "gilbert:0.2,3",
               "--out", str(out), "--jobs", "1", "--quiet"])
    assert rc == 0
    results = list(csv.DictReader(open(out / "results.csv")))
    assert len(results) == 3 * 2 + 3  # clips x methods, plus one no-loss reference per clip
    assert all(not r["error"] for r in results)
    summary = json.loads((out / "summary.json").read_text())
    cond = summary["conditions"]["gilbert:0.2,3"]
    assert cond["neteq"]["pesq"]["mean"] > cond["zero"]["pesq"]["mean"]
    assert cond["zero"]["diff_vs_neteq"]["pesq"]["mean"] < 0
    assert cond["neteq"]["wer"]["n"] == 3
    report = (out / "report.md").read_text()
    assert "| neteq |" in report and "metrics.png" in report
    assert (out / "metrics.png").stat().st_size > 10_000
    # A rerun that reuses the zero rows recomputes only neteq, and gets the same figures.
    again = tmp_path / "again"
    rc = main(["eval", "--manifest", str(manifest), "--methods", "zero,neteq", "--loss", "gilbert:0.2,3",
               "--out", str(again), "--jobs", "1", "--quiet", "--no-reference", "--asr", "off",
               "--reuse", str(out / "results.csv"), "--reuse-methods", "zero"])
    assert rc == 0
    summary2 = json.loads((again / "summary.json").read_text())
    assert summary2["reused_rows"] == 3 and "3 rows were reused" in (again / "report.md").read_text()
    first = {(r["clip"], r["method"]): r for r in results}
    for r in csv.DictReader(open(again / "results.csv")):
        assert float(r["pesq"]) == pytest.approx(float(first[(r["clip"], r["method"])]["pesq"]), abs=1e-9)
        if r["method"] == "neteq":
            assert r["wer"] == ""  # recomputed, with --asr off


def test_eval_rejects_bad_manifest(tmp_path, capsys):
    (tmp_path / "m.csv").write_text("path,transcript\nmissing.flac,HELLO\n")
    assert main(["eval", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_conceal_with_a_broken_neural_model_says_so_and_still_conceals(wav, tmp_path, capsys, monkeypatch):
    """A model that breaks at run time (here: the default model folder, corrupt) falls back to
    the classic concealment and says so; a broken folder named by the user is refused up front."""
    import shutil

    from plc.concealers.neural import DEFAULT_MODEL_DIR, MODEL_DIR_ENV

    broken = tmp_path / "broken"
    shutil.copytree(DEFAULT_MODEL_DIR, broken)
    (broken / "generate.onnx").write_bytes(b"not onnx")
    monkeypatch.setenv(MODEL_DIR_ENV, str(broken))  # undone after the test, whatever main() sets
    out = tmp_path / "n.wav"
    assert main(["conceal", str(wav), str(out), "--loss", "gilbert:0.2,3", "--method", "neural"]) == 0
    err = capsys.readouterr().err
    assert "concealed by the neteq fallback" in err and "unusable" in err
    expected = tmp_path / "e.wav"
    assert main(["conceal", str(wav), str(expected), "--loss", "gilbert:0.2,3", "--method", "neteq"]) == 0
    assert np.array_equal(sf.read(out)[0], sf.read(expected)[0])  # the classic concealment, not silence
    capsys.readouterr()
    for bad in (broken, tmp_path / "nothing"):
        assert main(["conceal", str(wav), str(out), "--loss", "gilbert:0.2,3", "--method", "neural",
                     "--neural-model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "--neural-model" in err and "unusable" in err and "holds no model.json" in err


def test_eval_refuses_a_neural_model_that_does_not_load(tmp_path, capsys, monkeypatch):
    """`plc eval --neural-model DIR` with graphs that do not load stops before any clip is
    scored, instead of evaluating the `neteq` fallback under the name `neural`."""
    import shutil

    from plc.concealers.neural import DEFAULT_MODEL_DIR, MODEL_DIR_ENV

    monkeypatch.setenv(MODEL_DIR_ENV, str(DEFAULT_MODEL_DIR))
    broken = tmp_path / "broken"
    shutil.copytree(DEFAULT_MODEL_DIR, broken)
    (broken / "start.onnx").write_bytes(b"\x00" * 64)
    sf.write(tmp_path / "a.wav", harmonic(seconds=1.0), 16000)
    (tmp_path / "m.csv").write_text("path,transcript\na.wav,HELLO\n")
    assert main(["eval", "--manifest", str(tmp_path / "m.csv"), "--methods", "neteq,neural", "--asr", "off",
                 "--neural-model", str(broken), "--out", str(tmp_path / "o")]) == 2
    assert "unusable" in capsys.readouterr().err
    assert not (tmp_path / "o" / "results.csv").exists()


def test_bench_json_reports_what_the_issue_names(tmp_path, capsys):
    """`plc bench --json`: one JSON object with the timing, size and fallback figures (here on
    a short made-up input with noise-like stretches, so the neural concealer's noise path runs)."""
    x = harmonic(seconds=2.0)
    x[8000:16000] = 0.05 * np.random.default_rng(0).standard_normal(8000)
    sf.write(tmp_path / "s.wav", x, 16000)
    assert main(["bench", "--method", "neural", "--input", str(tmp_path / "s.wav"), "--repeat", "1", "--json",
                 "--loss", "gilbert:0.3,3"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("p50_ms", "p99_ms", "max_ms", "received_ms", "rtf", "params", "model_bytes", "peak_rss_mb",
                "fallback_frames", "noise_frames"):
        assert key in result, key
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["params"] > 100_000 and result["fallback_frames"] == 0
    assert 0 < result["noise_frames"] < result["concealed_frames"]


def test_conceal_says_how_its_opus_losses_began(speech_16k, tmp_path, capsys):
    """`plc conceal --codec opus --method neural` on real speech: losses steered by the model are
    counted in the stats and said; with in-band FEC none is, and those FEC could not mend are
    counted as left to libopus."""
    sf.write(tmp_path / "s.wav", speech_16k, 16000)
    base = ["conceal", str(tmp_path / "s.wav"), str(tmp_path / "o.wav"), "--loss", "gilbert:0.2,3", "--seed", "1",
            "--codec", "opus", "--method", "neural", "--stats", str(tmp_path / "s.json")]
    assert main(base) == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["steered_losses"] > 0 and stats["losses_left_to_fec"] == 0
    assert 0 < stats["codec_concealed_frames"] == stats["concealed_frames"]
    assert f"{stats['steered_losses']} losses began with neural's packet" in capsys.readouterr().out
    assert main(base + ["--fec", "--expected-loss", "20"]) == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["steered_losses"] == 0 and stats["losses_left_to_fec"] > 0
    assert f"{stats['losses_left_to_fec']} were left to libopus' PLC" in capsys.readouterr().out


def test_bench_times_the_opus_path_with_the_steered_losses(speech_16k, tmp_path, capsys):
    """`plc bench --codec opus`: lost packets are timed whole (decoder and steering included), and
    on real speech in SILK mode some losses were steered by the model."""
    sf.write(tmp_path / "s.wav", speech_16k, 16000)
    assert main(["bench", "--method", "neural", "--codec", "opus", "--input", str(tmp_path / "s.wav"),
                 "--repeat", "2", "--json", "--loss", "gilbert:0.2,3"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["codec"] == "opus" and result["bitrate_bps"] == 24000
    assert 0 < result["packet_p50_ms"] <= result["packet_p99_ms"] <= result["packet_max_ms"]
    assert result["steered_losses"] > 0 and result["codec_concealed_frames"] == result["concealed_frames"]

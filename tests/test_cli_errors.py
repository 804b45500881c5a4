"""Hostile input to the commands (issue 20): one-line usage errors (exit 2), nothing lost.

``plc netsim``'s cases are in tests/jitterbuffer/test_jb_netsim.py; the number options of
every command in tests/test_argtypes.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from plc.cli import main

from .conftest import harmonic

PRECIOUS = b"precious: must survive"


@pytest.fixture()
def wav(tmp_path) -> Path:
    path = tmp_path / "in.wav"
    sf.write(path, harmonic(seconds=1.0), 16000, subtype="PCM_16")
    return path


def usage_error(capsys, args: list[str], *words: str) -> str:
    """Run ``plc ARGS``: it must exit 2 with one line ``plc CMD: error: ...`` naming ``words``."""
    assert main(args) == 2, args
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"plc {args[0]}") and ": error: " in err, err
    assert "Traceback" not in err and "PLC_DEBUG" not in err, err
    for word in words:
        assert word in err, (word, err)
    return err


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ------------------------------------------------------------------ argparse
@pytest.mark.parametrize("args", [
    ["conceal"], ["conceal", "a.wav", "b.wav"], ["conceal", "a.wav", "b.wav", "--loss", "x", "--trace", "t"],
    ["nope"], [], ["eval", "--bogus"], ["demo", "call", "--method", "nope"], ["netsim", "a.wav"],
    ["bench", "--json", "extra"],
])
def test_argparse_errors_are_one_line(args, capsys):
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and ": error: " in err and "usage:" not in err, err
    assert err.startswith("plc"), err


def test_argparse_error_from_the_installed_command_is_one_line():
    r = subprocess.run([sys.executable, "-m", "plc.cli", "conceal", "x.wav"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("plc conceal: error: ")


# ------------------------------------------------------------- nothing lost
@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_conceal_refuses_to_overwrite_its_input(wav, tmp_path, capsys, link):
    out = wav
    if link == "symlink":
        out = tmp_path / "link.wav"
        out.symlink_to(wav)
    elif link == "hardlink":
        out = tmp_path / "hard.wav"
        os.link(wav, out)
    before = wav.read_bytes()
    usage_error(capsys, ["conceal", str(wav), str(out), "--loss", "bernoulli:0.1"], "is the input")
    assert wav.read_bytes() == before
    trace = tmp_path / "t.txt"
    trace.write_text("0\n" * 50)
    usage_error(capsys, ["conceal", str(wav), str(trace.with_suffix(".wav")), "--trace", str(trace),
                         "--stats", str(trace)], "--stats", "is the input")
    assert trace.read_text() == "0\n" * 50


@pytest.mark.parametrize("stats", ["nodir/s.json", "FOLDER", "FILE/s.json", "OUT", "TRACE"])
def test_conceal_checks_every_output_before_the_work(wav, tmp_path, capsys, stats):
    """A bad --stats is found before out.wav is replaced or out.trace.txt is written."""
    out = tmp_path / "out.wav"
    out.write_bytes(PRECIOUS)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_bytes(b"x")
    stats = {"FOLDER": str(tmp_path / "folder"), "FILE/s.json": str(tmp_path / "file" / "s.json"),
             "OUT": str(out), "TRACE": str(tmp_path / "out.trace.txt")}.get(stats, str(tmp_path / stats))
    before = files_in(tmp_path)
    usage_error(capsys, ["conceal", str(wav), str(out), "--loss", "bernoulli:0.1", "--stats", stats], "--stats")
    assert files_in(tmp_path) == before


@pytest.mark.parametrize("output", ["FOLDER.wav", "/proc/plc-test.wav", "FILE/o.wav", "nodir/o.wav"])
def test_conceal_output_that_cannot_be_written_is_refused_up_front(wav, tmp_path, capsys, output):
    (tmp_path / "folder.wav").mkdir()
    (tmp_path / "file").write_bytes(b"x")
    output = {"FOLDER.wav": str(tmp_path / "folder.wav"), "FILE/o.wav": str(tmp_path / "file" / "o.wav"),
              "nodir/o.wav": str(tmp_path / "nodir" / "o.wav")}.get(output, output)
    before = files_in(tmp_path)
    usage_error(capsys, ["conceal", str(wav), output, "--loss", "bernoulli:0.1"], "OUTPUT")
    assert files_in(tmp_path) == before


def test_conceal_failing_while_writing_leaves_the_old_outputs(wav, tmp_path, capsys, monkeypatch):
    """All outputs go through temporary files renamed at the end: a failure after the audio was
    written (here: the trace) leaves the old output and no temporary files."""
    import plc.loss_models

    out = tmp_path / "out.wav"
    out.write_bytes(PRECIOUS)
    before = files_in(tmp_path)

    def broken(path, lost):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plc.loss_models, "write_trace", broken)
    assert main(["conceal", str(wav), str(out), "--loss", "bernoulli:0.1", "--stats", str(tmp_path / "s.json")]) == 1
    assert "No space left" in capsys.readouterr().err
    assert files_in(tmp_path) == before


# ------------------------------------------------------------- clear errors
@pytest.mark.parametrize("spec", ["gilbert:0.1,nan", "gilbert:0.1,inf", "gilbert:nan,3", "bernoulli:nan",
                                  "bernoulli:inf", "bernoulli:-0.1", "gilbert:0.1,1e300", "gilbert:0.1,-inf",
                                  "bernoulli:1", "gilbert:0.5,0.5"])
def test_loss_specs_that_mean_nothing_are_refused(wav, tmp_path, capsys, spec):
    out = tmp_path / "o.wav"
    usage_error(capsys, ["conceal", str(wav), str(out), "--loss", spec], "loss spec")
    assert not out.exists()
    usage_error(capsys, ["bench", "--method", "zero", "--input", str(wav), "--loss", spec], "loss spec")


def test_conceal_packet_size_the_codec_cannot_carry(wav, tmp_path, capsys):
    usage_error(capsys, ["conceal", str(wav), str(tmp_path / "o.wav"), "--loss", "bernoulli:0.1", "--codec", "opus",
                         "--method", "neteq", "--packet-ms", "30"], "Opus packets")
    assert not (tmp_path / "o.wav").exists()


def test_conceal_fec_options_need_opus_and_each_other(wav, tmp_path, capsys):
    base = ["conceal", str(wav), str(tmp_path / "o.wav"), "--loss", "bernoulli:0.1"]
    usage_error(capsys, base + ["--fec"], "--codec opus")
    usage_error(capsys, base + ["--codec", "opus", "--expected-loss", "10"], "goes with --fec")
    usage_error(capsys, base + ["--codec", "opus", "--fec", "--expected-loss", "150"], "--expected-loss")
    assert not (tmp_path / "o.wav").exists()
    assert main(base + ["--codec", "opus", "--fec", "--expected-loss", "20", "--stats", str(tmp_path / "s.json")]) == 0
    assert "fec_recovered_packets" in (tmp_path / "s.json").read_text()


def test_bench_refuses_what_it_cannot_time(wav, tmp_path, capsys):
    one = tmp_path / "one.wav"
    sf.write(one, harmonic(seconds=1.0)[:1], 16000)
    usage_error(capsys, ["bench", "--method", "neteq", "--input", str(one)], "too short")
    usage_error(capsys, ["bench", "--method", "neteq", "--input", str(wav), "--loss", "bernoulli:0"], "needs losses")
    usage_error(capsys, ["bench", "--method", "neteq", "--input", str(wav), "--loss", "bernoulli:0.001",
                         "--repeat", "1"], "no frame was lost")
    usage_error(capsys, ["bench", "--method", "neteq", "--input", str(wav), "--loss", "gilbert:0.999,1000",
                         "--repeat", "1"], "every frame was lost")
    usage_error(capsys, ["bench", "--method", "neural", "--input", str(wav), "--model-dir",
                         str(tmp_path / "MISSING")], "--model-dir", "no model.json")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.json").write_text("{not json")
    usage_error(capsys, ["bench", "--method", "neural", "--input", str(wav), "--model-dir",
                         str(tmp_path / "broken")], "--model-dir")
    usage_error(capsys, ["bench", "--method", "neteq", "--input", str(wav), "--model-dir", str(tmp_path)],
                "--model-dir is for --method neural")


# ---------------------------------------------------------------------- eval
def write_manifest(folder: Path, names: list[str]) -> Path:
    manifest = folder / "m.csv"
    manifest.write_text("path,transcript\n" + "".join(f"{n},\n" for n in names))
    return manifest


def test_eval_goes_on_past_unreadable_and_too_short_clips(tmp_path, capsys):
    """Their rows carry the error; the other clips are scored; the end says how many failed."""
    sf.write(tmp_path / "good.wav", harmonic(seconds=1.0), 16000)
    sf.write(tmp_path / "one.wav", harmonic(seconds=1.0)[:1], 16000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (tmp_path / "text.wav").write_text("hello")
    manifest = write_manifest(tmp_path, ["good.wav", "one.wav", "corrupt.wav", "text.wav"])
    out = tmp_path / "ev"
    assert main(["eval", "--manifest", str(manifest), "--methods", "zero", "--asr", "off", "--jobs", "1",
                 "--quiet", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "6 of 8 rows failed" in err
    import csv

    rows = {(r["clip"], r["method"]): r for r in csv.DictReader(open(out / "results.csv"))}
    assert len(rows) == 8 and not rows[("good.wav", "zero")]["error"] and float(rows[("good.wav", "zero")]["pesq"]) > 1
    assert "not a readable audio file" in rows[("corrupt.wav", "zero")]["error"]
    assert "not a readable audio file" in rows[("text.wav", "reference")]["error"]
    assert "scoring needs at least" in rows[("one.wav", "zero")]["error"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_rows"] == 6
    assert "**6 rows failed**" in (out / "report.md").read_text()


def test_eval_that_fails_while_writing_leaves_no_partial_results(tmp_path, capsys, monkeypatch):
    import eval.report

    sf.write(tmp_path / "good.wav", harmonic(seconds=1.0), 16000)
    manifest = write_manifest(tmp_path, ["good.wav"])
    out = tmp_path / "ev"

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(eval.report, "write_report_md", broken)
    assert main(["eval", "--manifest", str(manifest), "--methods", "zero", "--asr", "off", "--jobs", "1",
                 "--no-reference", "--quiet", "--out", str(out)]) == 1
    assert "No space left" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # no results.csv / summary.json that look complete


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"\x00\x00path\x00\n", b"\xff\xfe\x00p\x00a"])
def test_eval_refuses_a_binary_manifest(tmp_path, capsys, content):
    (tmp_path / "m.csv").write_bytes(content)
    usage_error(capsys, ["eval", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o")], "m.csv")
    assert not (tmp_path / "o").exists()


def test_eval_refuses_an_out_that_is_not_a_folder_before_any_work(tmp_path, capsys):
    sf.write(tmp_path / "good.wav", harmonic(seconds=1.0), 16000)
    manifest = write_manifest(tmp_path, ["good.wav"])
    (tmp_path / "file").write_bytes(PRECIOUS)
    for out in (tmp_path / "file", tmp_path / "file" / "sub", Path("/proc/plc-eval")):
        usage_error(capsys, ["eval", "--manifest", str(manifest), "--out", str(out), "--asr", "off"], "--out")
    assert (tmp_path / "file").read_bytes() == PRECIOUS


def test_eval_packet_size_is_refused_before_any_file_is_written(tmp_path, capsys):
    sf.write(tmp_path / "good.wav", harmonic(seconds=1.0), 16000)
    manifest = write_manifest(tmp_path, ["good.wav"])
    for extra in (["--packet-ms", "15"], ["--packet-ms", "0"], ["--codec", "opus", "--packet-ms", "30"]):
        usage_error(capsys, ["eval", "--manifest", str(manifest), "--out", str(tmp_path / "o"), *extra], "packet")
    assert not (tmp_path / "o").exists()


def test_eval_manifest_row_without_a_path(tmp_path, capsys):
    (tmp_path / "m.csv").write_text("path,transcript\n,HELLO\n")
    usage_error(capsys, ["eval", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o")], "no path")


def test_demo_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_bytes(PRECIOUS)
    usage_error(capsys, ["demo", "--out", str(tmp_path / "f"), "--input", str(tmp_path / "f")], "--out")
    assert (tmp_path / "f").read_bytes() == PRECIOUS


def test_demo_offline_runs_on_an_input(tmp_path, capsys):
    """`plc demo --input` hands its options to `plc eval` through eval's own parser (it used to
    build them by hand and stop on the first option eval had gained since)."""
    sf.write(tmp_path / "in.wav", harmonic(seconds=1.0), 16000)
    out = tmp_path / "demo"
    assert main(["demo", "--input", str(tmp_path / "in.wav"), "--methods", "zero", "--jobs", "1",
                 "--out", str(out)]) == 0
    assert (out / "results.csv").is_file() and (out / "listen_zero.wav").is_file()

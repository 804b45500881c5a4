"""plc eval beyond loss traces: pairing against libopus' PLC, per-corpus tables, --network and --live-call."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from eval.live_call import LiveCallCondition, parse_live_call
from eval.network_eval import NetworkCondition
from eval.report import corpus_table, markdown_table
from eval.summary import summarize
from plc.cli import main
from tests.conftest import shared_data_or_skip


def _rows(rng, corpus, methods, n=30):
    rows = []
    for i in range(n):
        base = rng.uniform(2.5, 4.0)
        for m, shift in methods.items():
            rows.append({"clip": f"{corpus}/{i}", "corpus": corpus, "condition": "c", "method": m,
                         "plcmos": base + shift + rng.normal(0, 0.02), "pesq": base, "stoi": 0.9})
    return rows


def test_every_method_is_paired_against_neteq_and_opus_overall_and_per_corpus():
    rng = np.random.default_rng(0)
    rows = (_rows(rng, "read", {"neteq": 0.0, "opus": 0.2, "neural": 0.1})
            + _rows(rng, "prompts", {"neteq": 0.0, "opus": 0.4, "neural": 0.3}))
    s = summarize(rows)
    neural = s["conditions"]["c"]["neural"]
    assert neural["diff_vs_neteq"]["plcmos"]["ci95"][0] > 0.15           # +0.2 on average
    assert -0.13 < neural["diff_vs_opus"]["plcmos"]["ci95"][0] < neural["diff_vs_opus"]["plcmos"]["ci95"][1] < -0.07
    assert "diff_vs_opus" not in s["conditions"]["c"]["opus"]
    per = s["by_corpus"]
    assert abs(per["read"]["c"]["neural"]["diff_vs_neteq"]["plcmos"]["mean"] - 0.1) < 0.02
    assert abs(per["prompts"]["c"]["neural"]["diff_vs_neteq"]["plcmos"]["mean"] - 0.3) < 0.02
    # a figure does not depend on which other methods ran
    alone = summarize([r for r in rows if r["method"] in ("neteq", "neural")])
    assert alone["conditions"]["c"]["neural"]["diff_vs_neteq"] == neural["diff_vs_neteq"]
    table = markdown_table(s, "c")
    assert "ΔPLCMOS vs opus" in table and "ΔPLCMOS vs neteq" in table
    assert corpus_table(s, "c").count("| prompts |") == 3


def _clips_manifest(tmp_path, n, seconds):
    data = shared_data_or_skip()
    rows = [r for r in csv.DictReader(open(data / "dev.csv")) if float(r["duration_s"]) >= seconds][:n]
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            x, sr = sf.read(str(data / r["path"]), dtype="float32")
            path = tmp_path / f"{len(list(tmp_path.glob('*.flac')))}.flac"
            sf.write(str(path), x[: int(seconds * sr)], sr)
            w.writerow(dict(r, path=path.name, duration_s=f"{seconds:.3f}"))
    return manifest


def test_network_condition_runs_each_clip_through_the_jitter_buffer_seeded_per_clip(tmp_path):
    manifest = _clips_manifest(tmp_path, 2, 3.0)
    spec = "delay=40ms jitter=20ms loss=10% burst=3"
    out = tmp_path / "ev"
    rc = main(["eval", "--manifest", str(manifest), "--codec", "opus", "--methods", "opus,neteq", "--network", spec,
               "--out", str(out), "--jobs", "1", "--quiet", "--asr", "off", "--no-reference"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 * 2 and not any(r["error"] for r in rows)
    assert {r["condition"] for r in rows} == {"net:" + spec}
    for r in rows:
        assert 2.0 < float(r["plcmos"]) < 5.0 and r["pesq"] in ("", "nan") and r["stoi"] in ("", "nan")
        assert float(r["delay_ms"]) >= 40.0                                # at least the network's base delay
    by_clip = {}
    for r in rows:
        by_clip.setdefault(r["clip"], set()).add((r["loss_rate"], r["max_burst"]))
    assert all(len(v) == 1 for v in by_clip.values())                      # one network per clip for every method
    cond = NetworkCondition(spec)
    a, b = (cond.network(clip, 0).simulate(150) for clip in by_clip)
    assert [x.arrival_ms for x in a] != [x.arrival_ms for x in b]          # another network for every clip
    summary = json.loads((out / "summary.json").read_text())
    assert "plcmos" in summary["conditions"]["net:" + spec]["neteq"]["diff_vs_opus"]
    assert "no PESQ or STOI" in (out / "report.md").read_text()


def test_live_call_condition_runs_a_real_call_per_clip_and_method(tmp_path, capsys):
    manifest = _clips_manifest(tmp_path, 1, 2.0)
    out = tmp_path / "live"
    rc = main(["eval", "--manifest", str(manifest), "--codec", "opus", "--methods", "neteq,opus",
               "--live-call", "loss=gilbert:0.15,3 jitter=10ms seed=3", "--out", str(out), "--jobs", "1",
               "--asr", "off", "--no-reference"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "live call 1/2" in err and "live call 2/2" in err                # one call at a time, a line per call
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["method"] for r in rows] == ["neteq", "opus"] and not any(r["error"] for r in rows)
    assert rows[0]["condition"] == "live:loss=gilbert:0.15,3 jitter=10ms seed=3"
    assert rows[0]["loss_rate"] == rows[1]["loss_rate"]                     # the same relay losses for both
    for r in rows:
        assert 1.0 < float(r["plcmos"]) < 5.0 and r["pesq"] in ("", "nan") and float(r["delay_ms"]) > 0


def test_live_call_spec_parses_and_rejects_bad_items(tmp_path, capsys):
    c = parse_live_call("loss=gilbert:0.1,3 jitter=20ms seed=2")
    assert c == LiveCallCondition("gilbert:0.1,3", 20.0, 2) and c.spec == "live:loss=gilbert:0.1,3 jitter=20ms seed=2"
    assert parse_live_call("loss=none jitter=0").loss is None
    manifest = tmp_path / "m.csv"
    sf.write(str(tmp_path / "x.flac"), np.zeros(16000, np.float32), 16000)
    manifest.write_text("path,transcript\nx.flac,\n")
    for args, message in ((["--codec", "opus", "--live-call", "loss=gilbert:2,3"], "loss"),
                          (["--codec", "opus", "--live-call", "jitter=fast"], "jitter"),
                          (["--codec", "opus", "--live-call", "volume=3"], "unknown live call parameter"),
                          (["--live-call", "seed=1"], "--codec opus"),
                          (["--codec", "opus", "--network", "delay=abc"], "not a number"),
                          (["--network", "heavy", "--packet-ms", "10"], "20 ms")):
        rc = main(["eval", "--manifest", str(manifest), "--out", str(tmp_path / "o"), *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and message in err[0], (args, err)


@pytest.mark.parametrize("bad", ["seed", "loss=", "seed=1.5"])
def test_live_call_spec_items_need_key_and_value(bad):
    from eval.live_call import LiveCallSpecError

    with pytest.raises(LiveCallSpecError):
        parse_live_call(bad)


def test_fec_variants_are_paired_against_the_same_method_without_fec():
    rng = np.random.default_rng(1)
    rows = _rows(rng, "read", {"neteq": 0.0, "neteq+fec": 0.3, "opus": 0.1, "opus+fec": 0.2})
    for r in rows:
        r.update({"lost_packets": 10, "fec_recovered": 7 if r["method"].endswith("+fec") else 0,
                  "payload_kbps": 23.0})
    s = summarize(rows)
    cond = s["conditions"]["c"]
    assert abs(cond["neteq+fec"]["diff_vs_nofec"]["plcmos"]["mean"] - 0.3) < 0.02
    assert abs(cond["opus+fec"]["diff_vs_nofec"]["plcmos"]["mean"] - 0.1) < 0.02
    assert "diff_vs_nofec" not in cond["neteq"]
    assert cond["neteq+fec"]["fec_recovered"] == 7 * 30 and cond["neteq+fec"]["lost_packets"] == 300
    from eval.report import fec_table, method_order

    table = fec_table(cond)
    assert "| neteq |" in table and "| opus |" in table and "210 of 300 (70%)" in table
    assert method_order(list(cond)) == ["neteq", "neteq+fec", "opus", "opus+fec"]


def test_eval_fec_runs_each_method_with_and_without_fec_on_the_same_traces(tmp_path):
    manifest = _clips_manifest(tmp_path, 1, 3.0)
    out = tmp_path / "ev"
    rc = main(["eval", "--manifest", str(manifest), "--codec", "opus", "--fec", "--methods", "zero",
               "--loss", "bernoulli:0.15", "--network", "delay=40ms jitter=0ms dist=none loss=10%",
               "--out", str(out), "--jobs", "1", "--quiet", "--asr", "off"])
    assert rc == 0
    rows = {(r["condition"], r["method"]): r for r in csv.DictReader(open(out / "results.csv"))}
    assert set(m for _, m in rows) == {"reference", "reference+fec", "zero", "zero+fec"}
    for cond in ("bernoulli:0.15", "net:delay=40ms jitter=0ms dist=none loss=10%"):
        plain, fec = rows[(cond, "zero")], rows[(cond, "zero+fec")]
        assert plain["loss_rate"] == fec["loss_rate"] and plain["lost_packets"] == fec["lost_packets"]
        assert int(plain["fec_recovered"]) == 0 < int(fec["fec_recovered"]) <= int(fec["lost_packets"])
        assert float(fec["plcmos"]) > float(plain["plcmos"])  # silence in the gaps: FEC fills most
        assert abs(float(fec["payload_kbps"]) - float(plain["payload_kbps"])) < 3.0
    report = (out / "report.md").read_text()
    assert "with and without Opus in-band FEC" in report and "reference+fec" in report
    summary = json.loads((out / "summary.json").read_text())
    assert "diff_vs_nofec" in summary["conditions"]["bernoulli:0.15"]["zero+fec"]
    assert main(["eval", "--manifest", str(manifest), "--fec", "--out", str(tmp_path / "x")]) == 2

"""eval.headline: several plc eval runs pooled into one table of paired differences per path."""

import csv

import numpy as np

from eval.headline import headline, main, read_rows
from eval.report import RESULT_COLUMNS


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return str(path)


def _run(rng, codec, condition, methods, corpora=("read", "prompts"), n=12):
    rows = []
    for corpus in corpora:
        for i in range(n):
            base = rng.uniform(2.5, 4.0)
            for m, shift in methods.items():
                rows.append({"clip": f"{corpus}/{i}", "corpus": corpus, "condition": condition, "method": m,
                             "codec": codec, "plcmos": base + shift + rng.normal(0, 0.01), "pesq": base,
                             "stoi": 0.9, "error": ""})
            rows.append({"clip": f"{corpus}/{i}", "corpus": corpus, "condition": "none", "method": "reference",
                         "codec": codec, "plcmos": 4.2, "pesq": 4.5, "stoi": 1.0, "error": ""})
    return rows


def test_headline_labels_paths_pools_live_seeds_and_splits_by_corpus(tmp_path, capsys):
    rng = np.random.default_rng(0)
    pcm = _write(tmp_path / "pcm.csv", _run(rng, "pcm", "gilbert:0.1,3", {"g711": 0, "neteq": 0, "neural": 0.1}))
    opus = _write(tmp_path / "opus.csv",
                  _run(rng, "opus", "gilbert:0.1,3", {"opus": 0.3, "neteq": 0, "neural": 0.1})
                  + _run(rng, "opus", "net:delay=40ms loss=10%", {"opus": 0.1, "neteq": 0, "neural": 0.2}))
    live = _write(tmp_path / "live.csv",
                  _run(rng, "opus", "live:loss=gilbert:0.1,3 jitter=20ms seed=1", {"opus": 0, "neteq": 0, "neural": 0})
                  + _run(rng, "opus", "live:loss=gilbert:0.1,3 jitter=20ms seed=2", {"opus": 0, "neteq": 0,
                                                                                      "neural": 0}))
    rows = read_rows([pcm, opus, live])
    assert {r["condition"] for r in rows} == {"PCM / gilbert:0.1,3", "Opus 24 kbit/s / gilbert:0.1,3",
                                              "jitter buffer (Opus) / delay=40ms loss=10%",
                                              "live call (aiortc, Opus) / loss=gilbert:0.1,3 jitter=20ms"}
    text = headline([pcm, opus, live])
    lines = {line.split(" | ")[0] + " | " + line.split(" | ")[1]: line for line in text.splitlines()
             if line.startswith("| ") and text.index(line) < text.index("### Δ")}
    assert "| 48 |" in lines["| live call (aiortc, Opus) | loss=gilbert:0.1,3 jitter=20ms"]   # 2 seeds x 24 clips
    opus_line = lines["| Opus 24 kbit/s | gilbert:0.1,3"].split(" | ")
    assert opus_line[7].startswith("-0.20") and opus_line[8].startswith("0.10")   # neural - opus, neural - neteq
    pcm_line = lines["| PCM | gilbert:0.1,3"].split(" | ")
    assert pcm_line[7] == "—" and pcm_line[9].startswith("0.10")                  # no libopus PLC in PCM; g711
    assert "### prompts" in text and "### read" in text
    assert main([pcm, opus, "--out", str(tmp_path / "h.md"), "--plot", str(tmp_path / "h.png")]) == 0
    assert (tmp_path / "h.md").read_text() and (tmp_path / "h.png").stat().st_size > 5000
    capsys.readouterr()
    assert main([str(tmp_path / "missing.csv")]) == 2


def test_a_runs_opus_bitrate_comes_from_its_summary(tmp_path):
    """Runs at other Opus bitrates (``plc eval --bitrate 96000``: CELT mode) are their own path;
    a run whose summary does not say is at the default 24 kbit/s."""
    import json

    rng = np.random.default_rng(1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _write(tmp_path / "a" / "results.csv", _run(rng, "opus", "gilbert:0.1,3", {"opus": 0, "neural": 0.1}))
    b = _write(tmp_path / "b" / "results.csv", _run(rng, "opus", "gilbert:0.1,3", {"opus": 0, "neural": 0.3}))
    (tmp_path / "b" / "summary.json").write_text(json.dumps({"codec": "opus", "bitrate_bps": 96000}))
    assert {r["condition"] for r in read_rows([a, b])} == {"Opus 24 kbit/s / gilbert:0.1,3",
                                                           "Opus 96 kbit/s / gilbert:0.1,3"}

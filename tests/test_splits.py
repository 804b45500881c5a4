"""eval.splits: the deterministic tune / report split by speaker, and plc eval's --split."""

import csv

import numpy as np
import pytest
import soundfile as sf

from eval.runner import ManifestError, read_manifest
from eval.splits import main, skip_per_corpus, speaker_split, split_of_row, spread_per_corpus, write_split_manifests
from plc.cli import main as plc_main


def _manifest(tmp_path, speakers, clips_per_speaker=2, name="dev.csv", audio=True):
    rows = []
    for corpus, spk in speakers:
        for k in range(clips_per_speaker):
            path = tmp_path / "audio" / f"{corpus}-{spk}-{k}.flac"
            if audio and not path.exists():
                path.parent.mkdir(exist_ok=True)
                sf.write(str(path), np.zeros(1600, np.float32), 16000)
            rows.append({"path": f"audio/{path.name}", "corpus": corpus, "speaker": spk, "duration_s": "0.1",
                         "transcript": ""})
    out = tmp_path / name
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


SPEAKERS = [("a", f"a{i}") for i in range(12)] + [("b", f"b{i}") for i in range(12)] + [("lj", "lj")]


def test_split_is_by_speaker_deterministic_and_roughly_half():
    sides = [speaker_split("corpus", f"spk{i}") for i in range(400)]
    assert sides == [speaker_split("corpus", f"spk{i}") for i in range(400)]      # no state, no seed
    assert 0.4 < sides.count("tune") / 400 < 0.6
    assert speaker_split("x", "s1") == speaker_split("x", "s1") and {speaker_split("x", f"s{i}") for i in range(9)} \
        == {"tune", "report"}
    # a speaker the model trained on is tune, whatever its hash
    trained = frozenset({("lj", "lj")})
    assert split_of_row({"corpus": "lj", "speaker": "lj"}, trained) == "tune"


def test_split_manifests_partition_the_clips_and_keep_training_speakers_out_of_report(tmp_path):
    manifest = _manifest(tmp_path, SPEAKERS)
    _manifest(tmp_path, [("lj", "lj")], name="train.csv", audio=False)    # beside dev.csv: its speakers are tune
    written = write_split_manifests(manifest, tmp_path / "out" / "splits")
    tune, report = (list(csv.DictReader(open(written[s]))) for s in ("tune", "report"))
    assert len(tune) + len(report) == 2 * len(SPEAKERS)
    assert not {r["speaker"] for r in tune} & {r["speaker"] for r in report}
    assert "lj" in {r["speaker"] for r in tune}
    # paths are rewritten relative to the new manifests, and plc eval reads the same clips with --split
    assert [c.path for c in read_manifest(written["report"])] == \
        [c.path for c in read_manifest(manifest, split="report")]
    assert [c.path for c in read_manifest(written["tune"])] == [c.path for c in read_manifest(manifest, split="tune")]
    assert main(["--manifest", str(manifest), "--out", str(tmp_path / "o2")]) == 0


def test_limit_per_corpus_spreads_over_each_corpus():
    rows = [{"corpus": c, "i": i} for c in "ab" for i in range(10)] + [{"corpus": "c", "i": 0}]
    picked = spread_per_corpus(rows, 3)
    assert [(r["corpus"], r["i"]) for r in picked] == [("a", 0), ("a", 4), ("a", 9), ("b", 0), ("b", 4), ("b", 9),
                                                        ("c", 0)]
    assert spread_per_corpus(rows, None) == rows


def test_skip_per_corpus_leaves_out_exactly_what_limit_per_corpus_took():
    rows = [{"corpus": c, "i": i} for c in "ab" for i in range(10)] + [{"corpus": "c", "i": 0}]
    rest = skip_per_corpus(rows, 3)
    taken = spread_per_corpus(rows, 3)
    assert [(r["corpus"], r["i"]) for r in rest] == [("a", i) for i in (1, 2, 3, 5, 6, 7, 8)] + \
        [("b", i) for i in (1, 2, 3, 5, 6, 7, 8)]   # corpus c had one clip, taken before
    assert not {id(r) for r in rest} & {id(r) for r in taken}
    assert len(rest) + len(taken) == len(rows)
    assert skip_per_corpus(rows, None) == rows


def test_read_manifest_skip_per_corpus_gives_a_disjoint_replication_set(tmp_path):
    m = _manifest(tmp_path, SPEAKERS, clips_per_speaker=2)
    first = {c.path for c in read_manifest(m, limit_per_corpus=4)}
    again = {c.path for c in read_manifest(m, skip_per_corpus=4, limit_per_corpus=4)}
    assert len(first) == 10 and len(again) == 8   # lj has 2 clips: both taken the first time
    assert not first & again
    with pytest.raises(ManifestError, match="no clips left after skipping 30 per corpus"):
        read_manifest(m, skip_per_corpus=30)


def test_eval_split_needs_a_speaker_column(tmp_path, capsys):
    path = tmp_path / "x.flac"
    sf.write(str(path), np.zeros(1600, np.float32), 16000)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,transcript\n{path.name},\n")
    with pytest.raises(ManifestError, match="speaker"):
        read_manifest(manifest, split="report")
    rc = plc_main(["eval", "--manifest", str(manifest), "--split", "report", "--out", str(tmp_path / "o")])
    assert rc == 2 and "speaker" in capsys.readouterr().err

"""training.subset: a FLAC subset of a manifest under a size budget, for the GPU machine."""

import csv

import numpy as np
import pytest
import soundfile as sf

from training.data import read_clip_list
from training.subset import choose_clips, main, write_subset

from .conftest import harmonic


def _manifest(tmp_path, n_per_corpus=(6, 2)):
    rows = ["path,corpus,speaker,duration_s,transcript"]
    for c, n in enumerate(n_per_corpus):
        for i in range(n):
            rel = f"train/corpus{c}/clip{i}.flac"
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / rel, harmonic(120 + 10 * i, seconds=0.5 + 0.1 * i, seed=i), 16000)
            rows.append(f"{rel},corpus{c},s{i},{0.5 + 0.1 * i:.1f},WORD {i}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "m.csv"


def test_draw_keeps_the_corpus_mix_and_the_budget():
    rows = [{"corpus": "a"}] * 75 + [{"corpus": "b"}] * 25
    kept = choose_clips(rows, [10] * 100, max_bytes=400, seed=1)
    assert len(kept) == 40 and kept == sorted(kept)
    assert 27 <= sum(i < 75 for i in kept) <= 33  # about 3/4 from corpus a
    assert choose_clips(rows, [10] * 100, 400, seed=1) == kept          # seeded
    assert choose_clips(rows, [10] * 100, 400, seed=2) != kept
    assert choose_clips(rows, [10] * 100, 400, seed=1, first=3) == [0, 1, 2]
    assert choose_clips(rows, [500] + [10] * 99, 30, seed=0, first=5) == [1, 2, 3]  # the big one is skipped


def test_subset_is_a_working_manifest_of_copied_clips(tmp_path):
    m = _manifest(tmp_path / "src")
    out = tmp_path / "kit" / "train"
    budget_mb = 2.5 * (tmp_path / "src" / "train/corpus0/clip0.flac").stat().st_size / 2**20
    summary = write_subset(m, out, budget_mb, seed=0)
    assert 1 <= summary["clips"] <= 3 and summary["bytes"] <= budget_mb * 2**20
    paths = read_clip_list(out / "manifest.csv")
    assert len(paths) == summary["clips"] and all(p.is_file() and out in p.parents for p in paths)
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(m, newline="") as f:
        originals = {r["path"]: r for r in csv.DictReader(f)}
    for row, path in zip(rows, paths):
        assert row == originals[row["path"]]                       # the same rows, transcripts included
        assert np.array_equal(sf.read(path)[0], sf.read(m.parent / row["path"])[0])
    (out / "stale.flac").write_bytes(b"x")
    write_subset(m, out, 100, first=2)                             # rebuilt whole
    assert not (out / "stale.flac").exists() and len(read_clip_list(out / "manifest.csv")) == 2


def test_bad_manifests_and_budgets_are_clear_errors(tmp_path, capsys):
    m = _manifest(tmp_path / "src", (2,))
    with pytest.raises(ValueError, match="fits in"):
        write_subset(m, tmp_path / "o", 1e-6)
    (tmp_path / "bad.csv").write_text("path,corpus\n../../etc/passwd,x\n")
    with pytest.raises(ValueError, match="inside its folder"):
        write_subset(tmp_path / "bad.csv", tmp_path / "o", 10)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a subset folder"):
        write_subset(m, tmp_path / "mine", 10)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "gone.csv").write_text("path,corpus\nnothing.flac,x\n")
    with pytest.raises(SystemExit) as e:
        main(["--manifest", str(tmp_path / "gone.csv"), "--out", str(tmp_path / "o"), "--max-mb", "1"])
    assert e.value.code == 2 and "do not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--manifest", str(m), "--out", str(tmp_path / "o"), "--max-mb", "0"])
    assert main(["--manifest", str(m), "--out", str(tmp_path / "o"), "--max-mb", "5"]) == 0
    assert "2 of 2 clips" in capsys.readouterr().out

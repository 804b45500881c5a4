"""The fade sweep pairs fade settings on the same clips and losses."""

import numpy as np
import pytest
import soundfile as sf

from eval.fade_sweep import Fade, main

from .conftest import harmonic, write_manifest


@pytest.mark.parametrize("codec", ["pcm", "opus"])
def test_sweep_pairs_variants_against_the_first(tmp_path, capsys, codec):
    manifest = write_manifest(tmp_path, [harmonic(f0, seconds=1.5, seed=i) for i, f0 in enumerate([120, 200])])
    assert main(["--manifest", str(manifest), "--clips", "2", "--every", "1", "--loss", "gilbert:0.3,3",
                 "--variant", "40,120,40,120", "--variant", "60,120,0,60", "--codec", codec]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    label = "pcm" if codec == "pcm" else "opus 24 kbit/s"
    assert len(lines) == 2 and "dPLCMOS +0.000" in lines[0] and f"2 clips, gilbert:0.3,3, {label})" in lines[1]
    plcmos = [float(line.split("PLCMOS ")[1].split()[0]) for line in lines]
    assert all(1.0 <= v <= 5.0 for v in plcmos)


def test_bad_variants_are_refused():
    with pytest.raises(SystemExit):
        main(["--manifest", "x.csv", "--variant", "60,120"])
    assert Fade.parse("60,120,0,60,0.7") == Fade(60, 120, 0, 60, 0.7)
    assert np.isclose(Fade.parse("60,120,0,60").voiced_threshold, 0.75)  # the concealer's default
    assert Fade.parse("60,120,0,60").unvoiced == "noise"
    assert Fade.parse("60,120,0,60,0.7,model") == Fade(60, 120, 0, 60, 0.7, "model")
    assert Fade.parse("60,120,0,60,model").unvoiced == "model"
    merge = Fade.parse("60,120,40,120,0.7,noise,merge=40,lag=0")
    assert merge.kwargs()["merge_samples"] == 40 and merge.kwargs()["max_align_lag"] == 0
    assert "merge_samples" not in Fade.parse("60,120,40,120").kwargs()   # the concealer's default
    for bad in ("60,120,0,60,merge=x", "60,120,0,60,width=3"):
        with pytest.raises(SystemExit):
            main(["--manifest", "x.csv", "--variant", bad])
    with pytest.raises(ValueError, match="fit"):   # does not fit in a 160-sample frame
        Fade.parse("60,120,0,60,merge=100,lag=100").check()
    Fade.parse("60,120,40,120,merge=40,lag=120").check()
    assert Fade.parse("60,120,40,120,temp=0.5").kwargs()["noise_scale"] == 0.5
    assert "noise_scale" not in Fade.parse("60,120,40,120").kwargs()
    with pytest.raises(ValueError, match="noise_scale"):
        Fade.parse("60,120,40,120,temp=9").check()
    with pytest.raises(SystemExit):
        main(["--manifest", "x.csv", "--variant", "60,120,40,120,temp=hot"])
    with pytest.raises(SystemExit):
        main(["--manifest", "x.csv", "--variant", "60,120,0,60,0.7,lpc"])
    kwargs = Fade.parse("60,120,40,120,cn=0,defer=none").kwargs()
    assert kwargs["comfort_noise"] is False and kwargs["defer_to_codec"] == ()
    assert Fade.parse("60,120,40,120,defer=silk+hybrid").kwargs()["defer_to_codec"] == ("silk", "hybrid")
    assert "comfort_noise" not in Fade.parse("60,120,40,120").kwargs()   # the concealer's default
    for bad in ("60,120,40,120,cn=2", "60,120,40,120,defer=silk+"):
        with pytest.raises(SystemExit):
            main(["--manifest", "x.csv", "--variant", bad])


def test_model_variants_pair_two_exported_models(tmp_path, capsys):
    """``,model=DIR`` runs a variant with another exported model: the shipped model under its own
    folder name scores exactly as the reference, and a folder that does not load is refused
    up front (the concealer would otherwise fall back to ``neteq`` without a word)."""
    from plc.concealers.neural import DEFAULT_MODEL_DIR

    sf.write(tmp_path / "c0.flac", harmonic(150, seconds=1.5, seed=3), 16000)
    (tmp_path / "m.csv").write_text("path,corpus,speaker,duration_s,transcript\nc0.flac,synthetic,s0,1.5,\n")
    assert Fade.parse(f"60,120,40,120,temp=0.5,model={DEFAULT_MODEL_DIR}").model_dir == str(DEFAULT_MODEL_DIR)
    assert main(["--manifest", str(tmp_path / "m.csv"), "--clips", "1", "--every", "1", "--loss", "gilbert:0.3,3",
                 "--variant", "60,120,40,120", "--variant", f"60,120,40,120,model={DEFAULT_MODEL_DIR}"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "dPLCMOS +0.000" in lines[1] and "dPESQ +0.000" in lines[1] and f"model {DEFAULT_MODEL_DIR}" in lines[1]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.json").write_text("{not json")
    for bad in (tmp_path / "missing", tmp_path / "broken"):
        with pytest.raises(ValueError, match="unusable|holds no model.json"):
            Fade.parse(f"60,120,40,120,model={bad}").check()
        with pytest.raises(SystemExit):
            main(["--manifest", str(tmp_path / "m.csv"), "--variant", f"60,120,40,120,model={bad}"])
    with pytest.raises(SystemExit):
        main(["--manifest", str(tmp_path / "m.csv"), "--variant", "60,120,40,120,model="])

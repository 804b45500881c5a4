"""The Opus PLC probe splices libopus' concealment into the lossless decode and scores it."""

import numpy as np
import soundfile as sf

from eval.opus_plc_probe import decode_twice, main, splice_concealment

from .conftest import harmonic


def test_splice_touches_only_the_lost_packets_and_the_merge():
    rng = np.random.default_rng(0)
    clean = rng.standard_normal(16000).astype(np.float32) * 0.1
    concealed = rng.standard_normal(16000).astype(np.float32) * 0.1
    lost = np.zeros(50, dtype=bool)
    lost[5] = True
    out = splice_concealment(clean, concealed, lost)
    assert np.array_equal(out[:1600], clean[:1600]) and np.array_equal(out[1920 + 160:], clean[1920 + 160:])
    assert np.allclose(out[1600:1920], concealed[1600:1920])   # 20 ms: before any fade
    lost[10:20] = True                                        # 200 ms: silent from 120 ms on
    out = splice_concealment(clean, concealed, lost)
    assert not np.any(out[3200 + 1920:6400]) and np.any(out[3200 + 1900:3200 + 1920])
    unfaded = splice_concealment(clean, concealed, lost, fade=False)
    assert np.array_equal(unfaded[3200:6400], concealed[3200:6400])


def test_probe_decodes_and_prints_every_method(tmp_path, capsys):
    x = harmonic(140, seconds=1.2)
    lost = np.zeros(60, dtype=bool)
    lost[20:23] = True
    clean, lossy = decode_twice(x, lost)
    assert len(clean) == len(lossy) == len(x)
    assert np.array_equal(clean[:6000], lossy[:6000]) and not np.array_equal(clean, lossy)
    sf.write(tmp_path / "c.flac", x, 16000)
    (tmp_path / "m.csv").write_text("path,corpus,speaker,duration_s,transcript\nc.flac,synthetic,s,1.2,\n")
    assert main(["--manifest", str(tmp_path / "m.csv"), "--clips", "1", "--loss", "gilbert:0.3,3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("  ")[0].strip() for line in lines] == ["libopus-plc spliced", "libopus-plc unfaded", "neteq", "neural",
                                                             "pipeline: opus", "pipeline: neural"]
    assert "dPLCMOS +0.000" in lines[2]

"""eval.opus_mode_probe: 48 kHz input makes libopus code speech in hybrid mode at 32 kbit/s, and the
probe pairs neural (with and without deferring) against libopus' concealment there."""

import numpy as np
import soundfile as sf

from eval.opus_mode_probe import code_clip, main

from .conftest import syllabic


def test_48k_input_at_32_kbits_is_hybrid_and_at_96_kbits_celt():
    x = syllabic(seconds=1.0)
    lost = np.zeros(50, bool)
    lost[[10, 20, 21]] = True
    decoded, lost_frames, modes, lost_modes, delay = code_clip(x, lost, 32000)
    assert len(decoded) >= len(x) and lost_frames.sum() == 6 and len(modes) == len(lost_frames)
    assert lost_modes == ["hybrid"] * 3 and 0 < delay < 320
    assert set(code_clip(x, lost, 96000)[3]) == {"celt"}


def test_probe_prints_modes_and_pairs_against_opus(tmp_path, capsys):
    rows = ["path,corpus,speaker,duration_s,transcript"]
    for i in range(2):
        sf.write(tmp_path / f"c{i}.flac", syllabic(seconds=1.5, seed=i), 16000)
        rows.append(f"c{i}.flac,synthetic,s{i},1.5,")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    assert main(["--manifest", str(tmp_path / "m.csv"), "--clips", "2", "--every", "1",
                 "--loss", "gilbert:0.3,3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "lost packets coded in" in lines[0] and len(lines) == 4      # a tone is often CELT, speech hybrid
    assert lines[1].startswith("opus:") and "dPLCMOS +0.000" in lines[1]
    assert lines[2].startswith("neural:") and lines[3].startswith("neural, model in every mode:")

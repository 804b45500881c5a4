"""eval.heldout_corpora: indexing Debian's speech packages into a manifest (on a fake tree)."""

import csv
import gzip
from pathlib import Path

import numpy as np
import soundfile as sf

from eval.heldout_corpora import asterisk_sources, fillets_sources, has_speech, index, main
from eval.runner import read_manifest


def _speechlike(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Harmonics at a wandering pitch, in syllables (4 per second) with short pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    x = sum(0.2 / k * np.sin(k * phase) for k in range(1, 10))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t) + 0.6, 0, None)
    return (x * envelope + 0.002 * rng.standard_normal(len(t))).astype(np.float32)


def _write_g722(path: Path, x: np.ndarray) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
    with av.open(str(path), "w", format="g722") as c:
        stream = c.add_stream("g722", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            c.mux(packet)


def _fake_tree(root: Path) -> tuple[Path, Path, Path]:
    sounds, docs, fillets = root / "asterisk", root / "doc", root / "fillets"
    en = sounds / "en_US_f_Test"
    _write_g722(en / "welcome.g722", _speechlike(3.0))
    _write_g722(en / "digits" / "1.g722", _speechlike(0.6))           # too short
    _write_g722(en / "beep.g722", 0.3 * np.sin(2 * np.pi * 1000 * np.arange(48000) / 16000))  # a tone by its text
    _write_g722(en / "silence" / "3.g722", np.zeros(48000))           # no speech
    _write_g722(sounds / "fr_CA_f_Test" / "bonjour.g722", _speechlike(2.5, seed=1))
    (sounds / "en").symlink_to(en)                                   # Debian's alternatives: not a voice of its own
    for lang, lines in (("en", ["; Core Asterisk Sounds in English", "", "welcome: Welcome [pause] to the test.",
                                "beep: [this is a simple beep tone]"]),
                        ("fr", ["bonjour: Bonjour."])):
        d = docs / f"asterisk-core-sounds-{lang}"
        d.mkdir(parents=True)
        with gzip.open(d / f"core-sounds-{lang}.txt.gz", "wt", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    level = fillets / "airplane" / "cs"
    level.mkdir(parents=True)
    sf.write(str(level / "let-m-divna.ogg"), _speechlike(2.2, 22050, seed=2), 22050)
    sf.write(str(level / "let-v-oko.ogg"), _speechlike(12.0, 22050, seed=3), 22050)  # too long
    return sounds, docs, fillets


def test_index_keeps_clips_of_2_to_10_s_with_speech_and_english_transcripts(tmp_path):
    sounds, docs, fillets = _fake_tree(tmp_path / "tree")
    sources = list(asterisk_sources(sounds, docs)) + list(fillets_sources(fillets))
    assert [s.name for s in sources if s.corpus == "asterisk-en"] == ["digits/1", "silence/3", "welcome"]  # no beep
    manifest = index(tmp_path / "out", sources)
    rows = list(csv.DictReader(open(manifest)))
    assert [(r["corpus"], r["speaker"], r["transcript"]) for r in rows] == [
        ("asterisk-en", "en_US_f_Test", "Welcome to the test."),
        ("asterisk-fr", "fr_CA_f_Test", ""),          # English ASR only: no transcript
        ("fillets-cs", "fillets-cs-m", ""),
    ]
    assert [float(r["duration_s"]) for r in rows] == [3.0, 2.5, 2.2]
    x, sr = sf.read(str(manifest.parent / rows[2]["path"]))
    assert sr == 16000 and abs(len(x) - 2.2 * 16000) <= 2
    clips = read_manifest(manifest)                    # plc eval reads it as it reads dev.csv
    assert [c.corpus for c in clips] == ["asterisk-en", "asterisk-fr", "fillets-cs"]
    assert index(tmp_path / "out", sources) == manifest and len(list(csv.DictReader(open(manifest)))) == 3


def test_index_without_packages_says_how_to_install(tmp_path, capsys, monkeypatch):
    import eval.heldout_corpora as hc

    monkeypatch.setattr(hc, "asterisk_sources", lambda: iter(()))
    monkeypatch.setattr(hc, "fillets_sources", lambda: iter(()))
    assert main(["index", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "eval.heldout_corpora install" in err[0]


def test_has_speech_rejects_silence_and_near_silence():
    assert has_speech(_speechlike(3.0))
    assert not has_speech(np.zeros(48000, np.float32))
    assert not has_speech(0.001 * _speechlike(3.0))   # -60 dBFS: not a recording of speech

"""Held-out speech from Debian packages: voices and languages no model or constant here was chosen on.

* ``asterisk-core-sounds-{en,es,fr,it,ru}-g722``: the Asterisk PBX's voice prompts (one
  professional voice per language: en_US and es_MX Allison, fr_CA June, it_IT Carlo,
  ru_RU IvrvoiceRU), raw G.722 at 16 kHz, with the texts of the prompts in
  ``asterisk-core-sounds-<lang>``'s ``core-sounds-<lang>.txt.gz``; prompts whose text is only a
  bracketed description (``[sound of monkeys screaming]``) are left out.
* ``fillets-ng-data-{cs,nl}``: acted dialogue of the game Fish Fillets NG in Czech and Dutch
  (Ogg Vorbis, 22.05 kHz); the speaker is the character code in the file name
  (``let-m-divna.ogg``: ``m``, the small fish).

``python -m eval.heldout_corpora install`` apt-installs the packages (as root);
``python -m eval.heldout_corpora index --out out/heldout`` decodes every clip of 2-10 s with
speech to 16 kHz FLAC under ``out/heldout/audio/`` and writes ``out/heldout/heldout.csv`` in
the format of ``shared/data/dev.csv`` (path, corpus, speaker, duration_s, transcript). The
transcript is filled for English only (the word error rate is scored by an English ASR).
Nothing of it is committed; out/ is ignored.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

SAMPLE_RATE = 16000
ASTERISK_LANGUAGES = ("en", "es", "fr", "it", "ru")
FILLETS_LANGUAGES = ("cs", "nl")
PACKAGES = ([f"asterisk-core-sounds-{lang}-g722" for lang in ASTERISK_LANGUAGES]
            + [f"asterisk-core-sounds-{lang}" for lang in ASTERISK_LANGUAGES]   # the prompts' texts
            + [f"fillets-ng-data-{lang}" for lang in FILLETS_LANGUAGES])
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds")
DOC_ROOT = Path("/usr/share/doc")
FILLETS_SOUNDS = Path("/usr/share/games/fillets-ng/sound")
#: Languages whose transcripts go into the manifest (the ASR of ``plc eval`` is English).
TRANSCRIBED_LANGUAGES = ("en",)
MIN_S, MAX_S = 2.0, 10.0
#: A clip has speech when at least this share of its 20 ms frames is within 35 dB of its loudest.
MIN_ACTIVE_SHARE = 0.4
ACTIVE_RANGE_DB = 35.0
#: ... and its loudest frame is at least this loud (dBFS RMS).
MIN_PEAK_DBFS = -35.0
COLUMNS = ["path", "corpus", "speaker", "duration_s", "transcript"]


class HeldoutError(RuntimeError):
    """The packages are missing or cannot be installed (one line for the user)."""


@dataclass(frozen=True)
class Source:
    """One audio file of a package: where it is, which corpus and speaker, and its text."""

    path: Path
    corpus: str
    speaker: str
    name: str          # path inside the corpus, without extension
    transcript: str    # empty when unknown or not used


# ------------------------------------------------------------------ install
def install(packages: list[str] = PACKAGES) -> None:
    """``apt-get install`` the packages (``apt-get update`` first if that fails)."""
    if shutil.which("apt-get") is None:
        raise HeldoutError("apt-get not found: install " + " ".join(packages) + " with your package manager")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise HeldoutError("installing needs root: sudo apt-get install " + " ".join(packages))
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
        if subprocess.run(cmd, env=env).returncode != 0:
            raise HeldoutError("apt-get install failed for " + " ".join(packages))


# ------------------------------------------------------------------ sources
def prompt_texts(doc_root: Path, lang: str) -> dict[str, str]:
    """``{prompt name: text}`` from ``core-sounds-<lang>.txt.gz`` (empty if the file is missing)."""
    path = doc_root / f"asterisk-core-sounds-{lang}" / f"core-sounds-{lang}.txt.gz"
    if not path.is_file():
        return {}
    texts = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            name, sep, text = line.partition(":")
            if sep:
                texts[name.strip()] = text.strip()
    return texts


def _spoken(text: str) -> str:
    """The spoken words of a prompt text: bracketed descriptions (``[@]``, ``[beep]``) removed."""
    return " ".join(re.sub(r"\[[^\]]*\]", " ", text).split())


def asterisk_sources(sounds: Path = ASTERISK_SOUNDS, doc_root: Path = DOC_ROOT) -> Iterator[Source]:
    """Every G.722 prompt of each installed language voice (``<lang>_<REGION>_<sex>_<Name>/``)."""
    for lang in ASTERISK_LANGUAGES:
        texts = prompt_texts(doc_root, lang)
        voices = sorted(p for p in sounds.glob(f"{lang}_*_*") if p.is_dir() and not p.is_symlink())
        for voice in voices:
            for path in sorted(voice.rglob("*.g722")):
                name = path.relative_to(voice).with_suffix("").as_posix()
                text = texts.get(name)
                if text is not None and not _spoken(text):
                    continue  # a tone or a sound effect, not speech
                yield Source(path, f"asterisk-{lang}", voice.name, name,
                             _spoken(text or "") if lang in TRANSCRIBED_LANGUAGES else "")


def fillets_sources(sounds: Path = FILLETS_SOUNDS) -> Iterator[Source]:
    """Every Ogg dialogue line of each installed language (``<level>/<lang>/<level>-<who>-<line>.ogg``)."""
    for lang in FILLETS_LANGUAGES:
        for path in sorted(sounds.glob(f"*/{lang}/*.ogg")):
            parts = path.stem.split("-")
            who = parts[1] if len(parts) > 2 and parts[1].isalpha() else "other"
            yield Source(path, f"fillets-{lang}", f"fillets-{lang}-{who}",
                         f"{path.parent.parent.name}/{path.stem}", "")


# ------------------------------------------------------------------ audio
def decode_16k(path: Path) -> np.ndarray:
    """Mono float32 audio at 16 kHz: raw G.722 through PyAV (FFmpeg), anything else through plc.audio_io."""
    if path.suffix.lower() == ".g722":
        import av

        with av.open(str(path), format="g722") as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            chunks = [f.to_ndarray().reshape(-1) for frame in container.decode(audio=0)
                      for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    from plc.audio_io import load_audio, resample

    x, sr = load_audio(str(path))
    return resample(x.mean(axis=1), sr, SAMPLE_RATE).astype(np.float32)


def has_speech(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bool:
    """Loud enough, and active (within 35 dB of the loudest 20 ms frame) for at least 40% of the time."""
    n = sample_rate // 50
    frames = x[: len(x) // n * n].reshape(-1, n) if len(x) >= n else np.zeros((0, n))
    if len(frames) == 0:
        return False
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    peak = level.max()
    return bool(peak >= MIN_PEAK_DBFS and np.mean(level >= peak - ACTIVE_RANGE_DB) >= MIN_ACTIVE_SHARE)


# ------------------------------------------------------------------ index
def index(out: Path, sources: Optional[list[Source]] = None, min_s: float = MIN_S, max_s: float = MAX_S,
          log=sys.stderr) -> Path:
    """Decode the clips of ``min_s``..``max_s`` s with speech to ``out/audio/<corpus>/<name>.flac``
    and write ``out/heldout.csv``; files already decoded are kept. Returns the manifest's path."""
    import soundfile as sf

    if sources is None:
        sources = list(asterisk_sources()) + list(fillets_sources())
    if not sources:
        raise HeldoutError("no held-out speech installed: run `python -m eval.heldout_corpora install` (as root)")
    out.mkdir(parents=True, exist_ok=True)
    rows, skipped = [], {"length": 0, "no speech": 0, "unreadable": 0}
    for src in sources:
        flac = out / "audio" / src.corpus / f"{src.name}.flac"
        try:
            if flac.is_file():
                x, _ = sf.read(str(flac), dtype="float32")
            else:
                x = decode_16k(src.path)
        except Exception as exc:  # noqa: BLE001 - a broken file is skipped and counted
            skipped["unreadable"] += 1
            print(f"skipping {src.path}: {type(exc).__name__}: {exc}", file=log)
            continue
        duration = len(x) / SAMPLE_RATE
        if not min_s <= duration <= max_s:
            skipped["length"] += 1
            continue
        if not has_speech(x):
            skipped["no speech"] += 1
            continue
        if not flac.is_file():
            flac.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(flac), np.clip(x, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
        rows.append({"path": flac.relative_to(out).as_posix(), "corpus": src.corpus, "speaker": src.speaker,
                     "duration_s": f"{duration:.3f}", "transcript": src.transcript})
    manifest = out / "heldout.csv"
    tmp = manifest.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(manifest)
    counts: dict[str, list] = {}
    for r in rows:
        counts.setdefault(r["corpus"], []).append(float(r["duration_s"]))
    for corpus, d in counts.items():
        print(f"  {corpus}: {len(d)} clips, {sum(d) / 60:.1f} min", file=log)
    print(f"wrote {manifest} ({len(rows)} clips; left out: {skipped['length']} outside {min_s:g}-{max_s:g} s, "
          f"{skipped['no speech']} without speech, {skipped['unreadable']} unreadable)", file=log)
    return manifest


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.heldout_corpora", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="apt-get install the Debian packages (root)")
    ix = sub.add_parser("index", help="decode the clips to 16 kHz FLAC and write the manifest")
    ix.add_argument("--out", default="out/heldout", metavar="DIR", help="output folder (default out/heldout)")
    args = p.parse_args(argv)
    try:
        if args.command == "install":
            install()
        else:
            index(Path(args.out))
    except HeldoutError as exc:
        print(f"eval.heldout_corpora: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

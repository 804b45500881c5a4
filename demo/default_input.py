"""The built-in demo input: LibriVox read speech with transcripts from Debian's
``pocketsphinx-testdata`` package (installed by ``make setup``), never the project's data folder."""

from __future__ import annotations

import csv
import re
from pathlib import Path

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")


def librivox_clips() -> list[tuple[Path, str]]:
    """(wav path, transcript) of every clip the package ships; empty if it is not installed."""
    transcription = LIBRIVOX_DIR / "transcription"
    if not transcription.is_file():
        return []
    clips = []
    for line in transcription.read_text().splitlines():
        m = re.match(r"\s*<s>(.*)</s>\s*\((.+)\)\s*$", line)
        if m and (LIBRIVOX_DIR / f"{m.group(2)}.wav").is_file():
            clips.append((LIBRIVOX_DIR / f"{m.group(2)}.wav", " ".join(m.group(1).split()).upper()))
    return clips


def write_manifest(clips: list[tuple[Path, str]], csv_path: Path) -> Path:
    """A manifest in the format of ``plc eval --manifest`` (absolute paths)."""
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "corpus", "speaker", "duration_s", "transcript"])
        for path, text in clips:
            w.writerow([str(path), "librivox", "librivox", "", text])
    return csv_path

"""Shared fixtures: real speech from ../shared/data when present, else skip."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data_or_skip() -> Path:
    if not (SHARED_DATA / "dev.csv").is_file():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def speech_16k() -> np.ndarray:
    """About 3 s of real read speech at 16 kHz (an LJSpeech dev clip)."""
    import soundfile as sf

    data = shared_data_or_skip()
    path = sorted((data / "dev" / "ljspeech").glob("*.flac"))[0]
    x, sr = sf.read(str(path), dtype="float32")
    assert sr == 16000
    return x[: 3 * sr]


def harmonic(f0_hz: float = 150.0, seconds: float = 1.0, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A vowel-like harmonic signal with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = sum(0.3 / k * np.sin(2 * np.pi * f0_hz * k * t + rng.uniform(0, 6.28)) for k in range(1, 8))
    return (x + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def syllabic(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """A voiced signal with a syllable-rate envelope at 16 kHz: libopus' VAD calls most of it speech
    (so an encoder with in-band FEC puts copies into most packets; a steady vowel soon counts as noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 150 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(0.3 / k * np.sin(k * phase + k) for k in range(1, 8))
    env = (0.15 + 0.85 * np.abs(np.sin(2 * np.pi * 2.5 * t))) * (1 + 0.3 * np.sin(2 * np.pi * 0.9 * t))
    return (x * env + 0.01 * rng.standard_normal(len(t))).astype(np.float32)



def write_manifest(folder: Path, clips: list, sample_rate: int = 16000) -> Path:
    """``clips`` (float arrays) written to ``folder`` as ``c0.flac``... with a manifest ``m.csv`` in
    dev.csv's columns (one synthetic speaker per clip); returns the manifest's path."""
    import soundfile as sf

    rows = ["path,corpus,speaker,duration_s,transcript"]
    for i, x in enumerate(clips):
        sf.write(folder / f"c{i}.flac", x, sample_rate)
        rows.append(f"c{i}.flac,synthetic,s{i},{len(x) / sample_rate:g},")
    (folder / "m.csv").write_text("\n".join(rows) + "\n")
    return folder / "m.csv"

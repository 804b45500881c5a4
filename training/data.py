"""Training data: speech segments with call-like augmentation and bursty frame losses.

Each example is a ``segment_frames`` x 10 ms stretch of a training clip,
augmented the way calls differ (level, band-limiting and spectral tilt,
added noise synthesised or mixed from another clip), with its log-mel
frames, a per-frame *lost* mask drawn from a Gilbert-Elliott model (bursty,
as networks lose packets, in 20 ms packets) and the mu-law classes of its
pre-emphasised waveform.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfilt

from plc.audio_io import resample
from plc.neural.features import FeatureConfig, log_mel_frames, mulaw_encode, preemphasize


@dataclass
class DataConfig:
    segment_frames: int = 40
    min_rms_dbfs: float = -45.0       # skip near-silent segments
    gain_db_range: tuple = (-32.0, -14.0)  # target RMS level
    lowpass_prob: float = 0.3
    lowpass_hz_range: tuple = (3400.0, 7000.0)
    tilt_prob: float = 0.3
    noise_prob: float = 0.5
    snr_db_range: tuple = (15.0, 50.0)
    mix_prob: float = 0.1
    loss_rate: float = 0.15
    mean_burst_packets: float = 3.0
    packet_frames: int = 2
    warmup_frames: int = 10           # no loss before this frame


def read_clip_list(csv_path: str | Path) -> list[Path]:
    """Audio paths of a manifest (paths relative to the CSV)."""
    csv_path = Path(csv_path)
    with open(csv_path, newline="", encoding="utf-8") as f:
        return [(csv_path.parent / row["path"]).resolve() for row in csv.DictReader(f)]


def data_list_hash(paths: list[Path]) -> str:
    """SHA-256 of the sorted clip names: records which data a model saw."""
    h = hashlib.sha256()
    for p in sorted(str(Path(p).name) for p in paths):
        h.update(p.encode() + b"\n")
    return h.hexdigest()


class SpeechCorpus:
    """All clips of a manifest in memory as int16 at 16 kHz (3 h of speech is ~350 MB)."""

    def __init__(self, paths: list[Path], sample_rate: int = 16000) -> None:
        self.clips: list[np.ndarray] = []
        for p in paths:
            audio, sr = sf.read(str(p), dtype="float32", always_2d=True)
            x = resample(audio.mean(axis=1), sr, sample_rate)
            self.clips.append((np.clip(x, -1, 1) * 32767).astype(np.int16))
        self.lengths = np.array([len(c) for c in self.clips])
        if not self.clips:
            raise ValueError("no training clips")

    def random_segment(self, rng: np.random.Generator, n: int) -> np.ndarray:
        weights = np.maximum(self.lengths - n, 0).astype(np.float64)
        i = rng.choice(len(self.clips), p=weights / weights.sum())
        start = rng.integers(0, self.lengths[i] - n + 1)
        return self.clips[i][start:start + n].astype(np.float32) / 32768.0


def gilbert_frames(rng: np.random.Generator, n_frames: int, cfg: DataConfig) -> np.ndarray:
    """Per-frame lost mask from a Gilbert-Elliott model over 20 ms packets."""
    n_packets = -(-n_frames // cfg.packet_frames)
    p, b = cfg.loss_rate, cfg.mean_burst_packets
    leave, enter = 1.0 / b, p / (b * (1.0 - p))
    lost = np.zeros(n_packets, dtype=bool)
    bad = False
    for i in range(n_packets):
        bad = (rng.random() >= leave) if bad else (rng.random() < enter)
        lost[i] = bad
    frames = np.repeat(lost, cfg.packet_frames)[:n_frames]
    frames[:cfg.warmup_frames] = False
    return frames


def augment(x: np.ndarray, rng: np.random.Generator, cfg: DataConfig, corpus: SpeechCorpus,
            sample_rate: int = 16000) -> np.ndarray:
    """Call-like variation of one segment."""
    if rng.random() < cfg.tilt_prob:  # gentle spectral tilt: first-order pre/de-emphasis mix
        a = rng.uniform(-0.5, 0.5)
        x = x - a * np.concatenate([[0.0], x[:-1]])
    if rng.random() < cfg.lowpass_prob:
        sos = butter(6, rng.uniform(*cfg.lowpass_hz_range), fs=sample_rate, output="sos")
        x = sosfilt(sos, x)
    rms = np.sqrt(np.mean(x ** 2) + 1e-12)
    x = x * (10 ** (rng.uniform(*cfg.gain_db_range) / 20) / rms)
    if rng.random() < cfg.noise_prob:
        kind = rng.integers(3)
        noise = rng.standard_normal(len(x))
        if kind == 1:  # pink-ish
            noise = sosfilt(butter(1, 500, fs=sample_rate, output="sos"), noise)
        elif kind == 2:  # brown-ish / hum-like low noise
            noise = sosfilt(butter(2, 200, fs=sample_rate, output="sos"), noise)
        snr = rng.uniform(*cfg.snr_db_range)
        noise *= np.sqrt(np.mean(x ** 2) / (np.mean(noise ** 2) + 1e-12)) * 10 ** (-snr / 20)
        x = x + noise
    if rng.random() < cfg.mix_prob:  # a far-away second talker
        other = corpus.random_segment(rng, len(x))
        x = x + other * rng.uniform(0.03, 0.1) * np.sqrt(np.mean(x ** 2) / (np.mean(other ** 2) + 1e-12))
    peak = np.abs(x).max()
    if peak > 0.99:
        x = x * (0.99 / peak)
    return x.astype(np.float32)


def make_batch(corpus: SpeechCorpus, rng: np.random.Generator, batch_size: int, data_cfg: DataConfig,
               feat_cfg: FeatureConfig, augment_audio: bool = True) -> dict[str, np.ndarray]:
    """A batch: ``mel`` (B, T, M), ``lost`` (B, T), ``q`` (B, T * hop) int64."""
    hop = feat_cfg.hop_samples
    n = data_cfg.segment_frames * hop
    context = feat_cfg.win_samples  # so the first frame's mel window has real audio
    mels, losts, qs = [], [], []
    while len(mels) < batch_size:
        seg = corpus.random_segment(rng, n + context)
        if 20 * np.log10(np.sqrt(np.mean(seg ** 2)) + 1e-9) < data_cfg.min_rms_dbfs:
            continue
        if augment_audio:
            seg = augment(seg, rng, data_cfg, corpus)
        mel = log_mel_frames(seg, feat_cfg)[context // hop:]
        audio = seg[context:]
        mels.append(mel[:data_cfg.segment_frames])
        losts.append(gilbert_frames(rng, data_cfg.segment_frames, data_cfg))
        qs.append(mulaw_encode(preemphasize(audio, feat_cfg.preemphasis, seg[context - 1]), feat_cfg.mu))
    return {"mel": np.stack(mels), "lost": np.stack(losts).astype(np.float32), "q": np.stack(qs)}

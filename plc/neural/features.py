"""Features shared by training and runtime, in numpy so that the runtime needs no torch.

* Log-mel spectrogram, one frame per 10 ms hop, each computed over a causal
  20 ms Hann window that *ends* at the frame's end (no look-ahead).
* 8-bit mu-law coding of pre-emphasised audio (as LPCNet does): the
  quantisation noise of the generated waveform is shaped toward low
  frequencies, where speech masks it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import lfilter, lfiltic


@dataclass(frozen=True)
class FeatureConfig:
    """Parameters the model was trained with; stored in the model's JSON."""

    sample_rate: int = 16000
    hop_samples: int = 160          # 10 ms
    win_samples: int = 320          # 20 ms
    n_fft: int = 512
    n_mels: int = 32
    fmin_hz: float = 0.0
    fmax_hz: float = 8000.0
    log_floor: float = 1e-5
    mu: int = 255
    preemphasis: float = 0.85

    def as_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=4)
def _mel_basis(cfg: FeatureConfig) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin_hz,
                               fmax=cfg.fmax_hz).astype(np.float32)


@lru_cache(maxsize=4)
def _window(cfg: FeatureConfig) -> np.ndarray:
    return np.hanning(cfg.win_samples + 2)[1:-1].astype(np.float32)


def log_mel_frames(audio: np.ndarray, cfg: FeatureConfig, n_frames: int | None = None) -> np.ndarray:
    """Log-mel of each whole 10 ms frame of ``audio`` -> ``(n_frames, n_mels)`` float32.

    Frame ``f`` covers samples ``[f*hop, (f+1)*hop)``; its window spans the
    ``win_samples`` ending at ``(f+1)*hop`` (zeros before the start of ``audio``).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if n_frames is None:
        n_frames = len(audio) // cfg.hop_samples
    pad = cfg.win_samples - cfg.hop_samples
    x = np.concatenate([np.zeros(pad, np.float32), audio[:n_frames * cfg.hop_samples]])
    idx = np.arange(cfg.win_samples)[None, :] + cfg.hop_samples * np.arange(n_frames)[:, None]
    frames = x[idx] * _window(cfg)
    power = np.abs(np.fft.rfft(frames, n=cfg.n_fft, axis=1)) ** 2
    mel = power.astype(np.float32) @ _mel_basis(cfg).T
    return np.log(mel + cfg.log_floor).astype(np.float32)


def mulaw_encode(x: np.ndarray, mu: int = 255) -> np.ndarray:
    """Float in [-1, 1] -> integer classes 0..mu."""
    x = np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    return np.clip(np.round((y + 1.0) * 0.5 * mu), 0, mu).astype(np.int64)


def mulaw_decode(q: np.ndarray, mu: int = 255) -> np.ndarray:
    """Integer classes 0..mu -> float in [-1, 1]."""
    y = 2.0 * np.asarray(q, dtype=np.float32) / mu - 1.0
    return (np.sign(y) * ((1.0 + mu) ** np.abs(y) - 1.0) / mu).astype(np.float32)


def preemphasize(x: np.ndarray, coef: float, previous_sample: float = 0.0) -> np.ndarray:
    """``y[n] = x[n] - coef * x[n-1]``."""
    x = np.asarray(x, dtype=np.float32)
    prev = np.concatenate([[previous_sample], x[:-1]]).astype(np.float32)
    return x - coef * prev


def deemphasize(y: np.ndarray, coef: float, previous_output: float = 0.0) -> np.ndarray:
    """Inverse of :func:`preemphasize`: ``x[n] = y[n] + coef * x[n-1]``."""
    zi = lfiltic([1.0], [1.0, -coef], [previous_output])
    out, _ = lfilter([1.0], [1.0, -coef], np.asarray(y, dtype=np.float64), zi=zi)
    return out.astype(np.float32)

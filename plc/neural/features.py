"""Features shared by training and runtime, in numpy so that the runtime needs no torch.

* Log-mel spectrogram, one frame per 10 ms hop, each computed over a causal
  20 ms Hann window that *ends* at the frame's end (no look-ahead).
* The pitch lag and voicing of the most recent audio (normalised
  autocorrelation), which the autoregressive network uses as a long-term
  predictor, as speech codecs and LPCNet/FARGAN do.
* The level of the most recent audio, which normalises what the network sees
  so that it works the same at every loudness.
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
    pitch_min_lag: int = 32         # 500 Hz
    pitch_max_lag: int = 320        # 50 Hz
    pitch_window: int = 256         # 16 ms compared with the audio one lag earlier
    gain_window: int = 320          # level of the last 20 ms
    gain_floor: float = 1e-3        # -60 dBFS: quieter audio is normalised as if it were this loud

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


def log_mel_last_frame(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Log-mel of the frame that ends ``audio`` -> ``(1, n_mels)``: the last row of
    :func:`log_mel_frames`, for streaming use (``audio`` holds at least ``win_samples``)."""
    x = np.asarray(audio, dtype=np.float32)[-cfg.win_samples:]
    power = np.abs(np.fft.rfft(x * _window(cfg), n=cfg.n_fft)) ** 2
    mel = power.astype(np.float32)[None] @ _mel_basis(cfg).T
    return np.log(mel + cfg.log_floor).astype(np.float32)


def pitch_lag(audio: np.ndarray, cfg: FeatureConfig) -> tuple[int, float]:
    """Pitch lag (samples) and voicing (normalised correlation in [-1, 1]) at the end of ``audio``.

    Compares the last ``pitch_window`` samples with the same length one lag
    earlier, for every lag in ``[pitch_min_lag, pitch_max_lag]``, and returns
    the shortest lag that correlates about as well as the best (not a multiple of the
    period). Needs ``pitch_window + pitch_max_lag`` samples (zeros are
    assumed before a shorter input).
    """
    w, lo, hi = cfg.pitch_window, cfg.pitch_min_lag, cfg.pitch_max_lag
    x = np.asarray(audio, dtype=np.float64)[-(w + hi):]
    if len(x) < w + hi:
        x = np.concatenate([np.zeros(w + hi - len(x)), x])
    ref = x[-w:]
    past = x[:-lo]                                   # the window starting at i has lag hi - i
    dots = np.correlate(past, ref, mode="valid")
    sq = np.concatenate([[0.0], np.cumsum(past * past)])
    energy = np.maximum(sq[w:] - sq[:-w], 0.0)     # energy of each window, by running sums
    lags = hi - np.arange(len(dots))
    corr = dots / np.sqrt(energy * float(ref @ ref) + 1e-12)
    best = int(np.argmax(corr))
    # Multiples of the period correlate as well as the period: take the shortest lag (the
    # freshest audio) whose peak is within 10% of the best.
    peak = np.r_[True, corr[1:] >= corr[:-1]] & np.r_[corr[:-1] >= corr[1:], True]
    good = np.flatnonzero(peak & (corr >= 0.9 * corr[best])) if corr[best] > 0 else []
    if len(good):
        best = int(good[-1])  # lags fall with the index: the last is the shortest
    return int(lags[best]), float(corr[best])


def frame_gain(audio: np.ndarray, cfg: FeatureConfig) -> float:
    """RMS of the last ``gain_window`` samples, at least ``gain_floor``."""
    x = np.asarray(audio, dtype=np.float64)[-cfg.gain_window:]
    return float(max(np.sqrt(np.mean(x * x)) if len(x) else 0.0, cfg.gain_floor))


def effective_lag(lag: int, reach: int) -> int:
    """The smallest multiple of ``lag`` that is at least ``reach``.

    The network reads a window one lag back that extends ``reach`` samples
    past the start of the sub-frame being made; a short pitch period is used
    two or three periods back so that the window holds only past samples.
    """
    return int(lag * -(-reach // lag))

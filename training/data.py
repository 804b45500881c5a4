"""Training data: loss events in real speech, with call-like augmentation.

Each example is one loss as the runtime meets it: ``context_frames`` of real
audio (10 ms frames) before the loss, then the lost frames and one frame more
(the runtime makes it to cross-fade back), all from a stretch of a training
clip augmented the way calls differ (level, band-limiting and spectral tilt,
added noise synthesised or mixed from another clip). It carries the log-mel
frames the conditioning network reads, per-frame *lost* flags (an earlier
loss in the context is flagged too, as the runtime flags frames it
concealed), the pitch lag, voicing and level of the audio before the loss,
and the number of lost frames, drawn the way networks lose packets: bursts
of 20 ms packets (a Gilbert-Elliott model), sometimes single 10 ms frames
(a jitter buffer's late frame). ``min_voicing`` keeps only the losses after voiced
audio (``plc train --min-voicing``), the only ones the runtime gives to the model.
``codec_prob`` (``plc train --codec-prob``) Opus-codes that share of the examples in SILK
mode and decodes them, context and target alike, as the Opus path's history is what the
model reads there (:func:`opus_roundtrip`).

Batches are a pure function of ``(seed, rank, step)``, which makes resume
exact without saving any generator state.
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
from plc.codecs.opus import OpusDecoder, OpusEncoder
from plc.codecs.payload import encode_signal
from plc.codecs.opus_steering import OPUS_MODE_SILK_ONLY, OPUS_SET_FORCE_MODE_REQUEST
from plc.loss_models import gilbert_elliott_states
from plc.neural.contract import CONTEXT_FRAMES, MAX_LOST_FRAMES, WARMUP_FRAMES
from plc.neural.features import FeatureConfig, effective_lag, frame_gain, log_mel_frames, pitch_lag


@dataclass
class DataConfig:
    context_frames: int = CONTEXT_FRAMES  # real audio before the loss (the runtime's conditioning context)
    warmup_frames: int = WARMUP_FRAMES    # of which the autoregressive GRU is teacher forced over the last
    max_lost_frames: int = MAX_LOST_FRAMES  # 120 ms: silent from then on, nothing to learn beyond
    min_rms_dbfs: float = -45.0       # skip near-silent stretches
    speech_before_loss_prob: float = 0.8  # how often the warm-up frames before the loss must hold speech
    gain_db_range: tuple = (-32.0, -14.0)  # target RMS level
    lowpass_prob: float = 0.3
    lowpass_hz_range: tuple = (3400.0, 7000.0)
    tilt_prob: float = 0.3
    noise_prob: float = 0.5
    snr_db_range: tuple = (15.0, 50.0)
    mix_prob: float = 0.1
    loss_rate: float = 0.15           # Gilbert model of the earlier losses flagged in the context
    mean_burst_packets: float = 2.5   # mean loss burst, 20 ms packets
    packet_frames: int = 2
    single_frame_prob: float = 0.15   # a lone lost 10 ms frame (late packet in a jitter buffer)
    min_voicing: float = -1.0         # keep only losses after audio at least this voiced (pitch correlation;
                                      # the runtime gives the rest to noise continuation); -1: every loss
    codec_prob: float = 0.0           # share of examples Opus-coded (SILK) and decoded, context and target
    codec_bitrate_range: tuple = (12000, 32000)  # their bitrate, bit/s (uniform)
    codec_lead_frames: int = 10       # audio coded before the example so the encoder has warmed up

    @property
    def total_frames(self) -> int:
        return self.context_frames + self.max_lost_frames + 1


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
    lost = gilbert_elliott_states(rng.random(n_packets), p / (b * (1.0 - p)), 1.0 / b)[1:]
    return np.repeat(lost, cfg.packet_frames)[:n_frames]


def loss_length(rng: np.random.Generator, cfg: DataConfig) -> int:
    """Lost frames of one loss event: a geometric burst of 20 ms packets, or one 10 ms frame."""
    if rng.random() < cfg.single_frame_prob:
        return 1
    packets = rng.geometric(1.0 / cfg.mean_burst_packets)
    return int(min(packets * cfg.packet_frames, cfg.max_lost_frames))


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


def opus_roundtrip(x: np.ndarray, bitrate_bps: int, sample_rate: int = 16000, frame_ms: int = 20) -> np.ndarray:
    """``x`` Opus-coded in SILK mode at ``bitrate_bps`` and decoded, time-aligned with ``x``
    (the encoder's lookahead removed), as the Opus path's receiver hears it without loss."""
    enc = OpusEncoder(sample_rate, bitrate_bps=int(bitrate_bps), frame_ms=frame_ms)
    enc.ctl(OPUS_SET_FORCE_MODE_REQUEST, OPUS_MODE_SILK_ONLY)
    dec = OpusDecoder(sample_rate, frame_ms)
    out = np.concatenate([dec.decode(packet) for packet in encode_signal(enc, x)])
    return out[enc.lookahead:enc.lookahead + len(x)].astype(np.float32)


def _rms_dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x ** 2)) + 1e-9))


def make_batch(corpus: SpeechCorpus, rng: np.random.Generator, batch_size: int, data_cfg: DataConfig,
               feat_cfg: FeatureConfig, lag_reach: int, augment_audio: bool = True) -> dict[str, np.ndarray]:
    """A batch of loss events.

    ``mel`` (B, F, M) and ``lost`` (B, F) for ``F = total_frames``; ``audio`` (B, F * hop) the
    real audio; ``lag`` (B,) the effective pitch lag (see :func:`effective_lag`, ``lag_reach``),
    ``voicing`` and ``gain`` (B,) of the audio before the loss; ``n_lost`` (B,).
    """
    hop = feat_cfg.hop_samples
    ctx = data_cfg.context_frames
    n = data_cfg.total_frames * hop
    pre = feat_cfg.win_samples - hop  # so the first frame's mel window has real audio
    out: dict[str, list] = {k: [] for k in ("mel", "lost", "audio", "lag", "voicing", "gain", "n_lost")}
    while len(out["mel"]) < batch_size:
        coded = augment_audio and data_cfg.codec_prob > 0 and rng.random() < data_cfg.codec_prob
        lead = data_cfg.codec_lead_frames * hop if coded else 0
        seg = corpus.random_segment(rng, n + pre + lead)
        if _rms_dbfs(seg[lead:]) < data_cfg.min_rms_dbfs:
            continue
        before = seg[lead + pre + (ctx - data_cfg.warmup_frames) * hop:lead + pre + ctx * hop]  # the warm-up audio
        if rng.random() < data_cfg.speech_before_loss_prob and _rms_dbfs(before) < data_cfg.min_rms_dbfs + 10:
            continue
        if augment_audio:
            seg = augment(seg, rng, data_cfg, corpus)
        if coded:
            seg = opus_roundtrip(seg, rng.integers(*data_cfg.codec_bitrate_range, endpoint=True))[lead:]
        audio = seg[pre:]
        past = audio[:ctx * hop]
        lag, voicing = pitch_lag(past, feat_cfg)
        if voicing < data_cfg.min_voicing:
            continue
        n_lost = loss_length(rng, data_cfg)
        lost = np.zeros(data_cfg.total_frames, dtype=bool)
        lost[:ctx - data_cfg.warmup_frames] = gilbert_frames(rng, ctx - data_cfg.warmup_frames, data_cfg)
        lost[ctx:] = True
        out["mel"].append(log_mel_frames(seg, feat_cfg)[pre // hop:][:data_cfg.total_frames])
        out["lost"].append(lost)
        out["audio"].append(audio)
        out["lag"].append(effective_lag(lag, lag_reach))
        out["voicing"].append(voicing)
        out["gain"].append(frame_gain(past, feat_cfg))
        out["n_lost"].append(n_lost)
    return {
        "mel": np.stack(out["mel"]).astype(np.float32),
        "lost": np.stack(out["lost"]).astype(np.float32),
        "audio": np.stack(out["audio"]).astype(np.float32),
        "lag": np.array(out["lag"], dtype=np.int64),
        "voicing": np.array(out["voicing"], dtype=np.float32),
        "gain": np.array(out["gain"], dtype=np.float32),
        "n_lost": np.array(out["n_lost"], dtype=np.int64),
    }

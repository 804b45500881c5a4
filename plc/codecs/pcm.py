"""PCM payloads: 16-bit little-endian samples at 16 kHz, mono (this project's raw format;
RFC 3551's L16 would be big-endian)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .payload import FRAME_SAMPLES, MAX_PACKET_MS, SAMPLE_RATE, PayloadDecoder


class PcmDecoder(PayloadDecoder):
    """16-bit little-endian 16 kHz mono PCM (no concealment of its own)."""

    name = "pcm"
    clock_rate = SAMPLE_RATE

    def __init__(self, frame_ms: int = 20) -> None:
        del frame_ms  # a PCM payload says its own length

    def duration(self, payload: bytes) -> Optional[int]:
        n = len(payload)
        if n == 0 or n % 2:
            return None
        samples = n // 2
        if samples % FRAME_SAMPLES or samples > SAMPLE_RATE * MAX_PACKET_MS // 1000:
            return None
        return samples

    def decode(self, payload: bytes) -> Optional[np.ndarray]:
        if self.duration(payload) is None:
            return None
        return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0


def encode_pcm(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to the PCM payload (16-bit little-endian)."""
    x = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    return np.round(x * 32767.0).astype("<i2").tobytes()


class PcmEncoder:
    """One PCM payload per ``frame_ms`` packet (no delay)."""

    lookahead = 0

    def __init__(self, bitrate_bps: Optional[int] = None, frame_ms: int = 20) -> None:
        del bitrate_bps  # PCM's bitrate is fixed (256 kbit/s)
        self.frame_samples = SAMPLE_RATE * frame_ms // 1000

    def encode(self, samples: np.ndarray) -> bytes:
        return encode_pcm(samples)

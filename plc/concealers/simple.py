"""The two naive baselines: silence, and repetition of the last packet."""

from __future__ import annotations

import numpy as np

from .base import Concealer


class ZeroConcealer(Concealer):
    """Play silence for every lost frame (what a receiver without PLC does)."""

    name = "zero"

    def _conceal(self) -> np.ndarray:
        return np.zeros(self.frame_samples, dtype=np.float32)


class RepeatConcealer(Concealer):
    """Repeat the last received packet, attenuated a little more each time.

    The last ``packet_ms`` of *received* audio is replayed cyclically; each
    repeated 10 ms frame is ``attenuation_db`` quieter than the one before,
    so a long loss fades out instead of buzzing.
    """

    name = "repeat"

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 10, packet_ms: int = 20,
                 attenuation_db: float = 3.0) -> None:
        self.packet_samples = sample_rate * packet_ms // 1000
        self.step_gain = float(10 ** (-attenuation_db / 20))
        super().__init__(sample_rate, frame_ms)

    def reset(self) -> None:
        super().reset()
        self._packet = np.zeros(self.packet_samples, dtype=np.float32)
        self._position = 0

    def _conceal(self) -> np.ndarray:
        if self.lost_frames == 0:
            self._packet = self.history[-self.packet_samples:].copy()
            self._position = 0
        idx = (self._position + np.arange(self.frame_samples)) % self.packet_samples
        self._position = int((self._position + self.frame_samples) % self.packet_samples)
        return self._packet[idx] * self.step_gain ** (self.lost_frames + 1)

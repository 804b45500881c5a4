"""``BackgroundNoise`` (``background_noise.cc``): an LPC-8 model of the stationary noise floor.

Updated on received audio (``BackgroundNoise::Update``, without the VAD: energy-threshold
tracking and a spectral-flatness check), and played by Expand under the speech it mutes.
Current NetEQ (since the BGN modes were removed) keeps its mute factor at 0 during expansion,
so a long loss fades to true silence; ``NetEqConcealer(background_noise=True)`` restores the
historical ``kBgnOn`` behaviour, where the noise is unmuted with the expand's mute slope and the
loss fades into comfort noise.

Signals here are in int16 units (float samples times :data:`INT16_SCALE`): NetEQ compares
energies with absolute thresholds.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter, lfiltic

from ...dsp import levinson_durbin
from .dsp_helper import q14_mul

LPC_ORDER = 8
#: Samples analysed per update (the newest).
VEC_LEN = 256
RESIDUAL_LENGTH = 64
THRESHOLD_INCREMENT = 229  # 0.0035 in Q16
#: Float signals are scaled to int16 units wherever NetEQ compares energies with absolute thresholds.
INT16_SCALE = 32768.0


class BackgroundNoise:
    """``BackgroundNoise``: LPC-8 model of the stationary noise floor (mono)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.initialized = False
        self.energy = 2500.0
        self.max_energy = 0.0
        self.energy_update_threshold = 500000.0
        self.filter = np.zeros(LPC_ORDER + 1)
        self.filter[0] = 1.0
        self.filter_state = np.zeros(LPC_ORDER)  # oldest first
        self.mute_factor = 0  # Q14
        self.gain = 0.0  # residual RMS / 8192: scales the Q13 random table

    def update(self, signal: np.ndarray) -> None:
        """``BackgroundNoise::Update`` on the last 256 samples (int16 units), no VAD."""
        s = np.asarray(signal[-VEC_LEN:], dtype=np.float64)
        n = len(s)
        energy = float(np.dot(s, s))
        sample_energy = energy / VEC_LEN
        if sample_energy < self.energy_update_threshold:
            if energy <= 0:
                return
            # the other lags only where they are used (a quiet frame): loud frames stay cheap
            ac = np.array([energy] + [np.dot(s[k:], s[:n - k]) for k in range(1, LPC_ORDER + 1)])
            self.energy_update_threshold = max(sample_energy, 1.0)
            lpc = levinson_durbin(ac, LPC_ORDER)
            if lpc is None:
                return
            start = n - RESIDUAL_LENGTH
            residual = lfilter(lpc, [1.0], s[start - LPC_ORDER:])[LPC_ORDER:]
            residual_energy = float(np.dot(residual, residual))
            # Spectrum flat enough: 5 * residual_energy >= 16 * sample_energy.
            if sample_energy > 0 and 5.0 * residual_energy >= 16.0 * sample_energy:
                self.filter = lpc
                self.filter_state = s[-LPC_ORDER:].copy()
                self.energy = max(sample_energy, 1.0)
                self.energy_update_threshold = self.energy
                self.gain = np.sqrt(residual_energy / RESIDUAL_LENGTH) / 8192.0
                self.initialized = True
        else:
            # IncrementEnergyThreshold: +0.35 % per update, max energy decays by
            # 1/1024 per update, threshold never below max_energy - 60 dB.
            self.energy_update_threshold += (
                THRESHOLD_INCREMENT * self.energy_update_threshold / 65536.0)
            self.max_energy -= self.max_energy / 1024.0
            if sample_energy > self.max_energy:
                self.max_energy = sample_energy
            self.energy_update_threshold = max(self.energy_update_threshold,
                                               (self.max_energy + 524288.0) / 1048576.0)

    def generate(self, random_vector: np.ndarray, num_samples: int, mute_slope: int,
                 unmute: bool) -> np.ndarray:
        """``GenerateBackgroundNoise`` (int16 units); ``unmute`` is the old kBgnOn path."""
        if not self.initialized:
            return np.zeros(num_samples)
        scaled = random_vector[:num_samples] * self.gain
        zi = lfiltic([1.0], self.filter, self.filter_state[::-1])
        noise, _ = lfilter([1.0], self.filter, scaled, zi=zi)
        self.filter_state = noise[-LPC_ORDER:].copy()
        if self.mute_factor < 16384:
            if unmute:
                q20 = (self.mute_factor << 6) + 32 + mute_slope * np.arange(num_samples + 1)
                factors = np.minimum(np.maximum(q20, 0) >> 6, 16384)
                factors[0] = self.mute_factor
                noise = noise * (factors[:num_samples] / 16384.0)
                self.mute_factor = int(factors[num_samples])
            else:
                noise = q14_mul(self.mute_factor, noise)
        return noise

"""LPC-shaped noise that continues unvoiced audio through a loss, as SILK's PLC does, and the
call's comfort noise (:class:`ComfortNoise`) that a long loss goes on as.

When the audio before a loss is unvoiced (fricatives, breath, background
noise, pauses), there is no pitch to continue and nothing a model can predict
beyond its spectral envelope and level. SILK (Opus' speech codec) conceals such
frames with white excitation drawn at random from the most recent residual,
through the last LPC synthesis filter, attenuated a little per frame: the
listener hears the same hiss go on. Measured in this project (MODEL.md), that
beats both fading out quickly and letting the neural model improvise the hiss.

Everything here is numpy/scipy on the played history: no model, a few tens of
microseconds per 10 ms frame.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter, lfiltic

from ..dsp import levinson_durbin
from .neteq.background_noise import INT16_SCALE, VEC_LEN, BackgroundNoise

#: LPC order (SILK uses 16 at 16 kHz).
LPC_ORDER = 16
#: Analysis length: the last 20 ms at 16 kHz.
ANALYSIS_SAMPLES = 320
#: Excitation is drawn from the lower-energy of the last two 128-sample residual blocks
#: (SILK's ``RAND_BUF_SIZE``; the quieter block avoids carrying an onset into the loss).
EXCITATION_BLOCK = 128
#: Bandwidth expansion of the LPC polynomial (SILK's ``BWE_COEF``): poles pulled in a little.
BANDWIDTH_EXPANSION = 0.99
#: Level factor per 20 ms frame of loss: the first, then every later one (SILK's
#: ``PLC_RAND_ATTENUATE_UV_Q15``: 0.99, 0.90). Applied per frame as the matching root.
ATTENUATION_PER_20MS = (0.99, 0.90)


class NoiseContinuation:
    """Continue ``history`` (float32 samples at ``sample_rate``, newest last) with LPC-shaped noise.

    Parameters
    ----------
    history : np.ndarray
        The played audio before the loss; its last ``ANALYSIS_SAMPLES + LPC_ORDER`` samples are
        used (zeros are assumed before a shorter one).
    rng : np.random.Generator
        Source of the random excitation picks (the caller seeds it: output is reproducible).
    frame_samples : int
        Samples per :meth:`next_frame` call (160: 10 ms at 16 kHz).
    sample_rate : int
        Hz; sets how many frames make the 20 ms the attenuation is specified per.
    """

    def __init__(self, history: np.ndarray, rng: np.random.Generator, frame_samples: int = 160,
                 sample_rate: int = 16000) -> None:
        need = ANALYSIS_SAMPLES + LPC_ORDER
        x = np.asarray(history, dtype=np.float64)[-need:]
        if len(x) < need:
            x = np.concatenate([np.zeros(need - len(x)), x])
        self.frame_samples = frame_samples
        self._rng = rng
        self._frames_made = 0
        self._frames_per_20ms = max(1, round(0.02 * sample_rate / frame_samples))
        seg = x[-ANALYSIS_SAMPLES:]
        windowed = seg * np.hanning(ANALYSIS_SAMPLES + 2)[1:-1]
        r = np.correlate(windowed, windowed, mode="full")[ANALYSIS_SAMPLES - 1:ANALYSIS_SAMPLES + LPC_ORDER]
        a = None
        if r[0] > 1e-12:
            r = r.copy()
            r[0] *= 1.0 + 1e-4            # white-noise correction (-40 dB): a well-conditioned solve
            a = levinson_durbin(r, LPC_ORDER)
        if a is None:                     # digital silence or an unstable fit: white noise
            a = np.zeros(LPC_ORDER + 1)
            a[0] = 1.0
        self.lpc = a * BANDWIDTH_EXPANSION ** np.arange(LPC_ORDER + 1)
        residual = lfilter(self.lpc, [1.0], x)[LPC_ORDER:]
        older, newer = residual[-2 * EXCITATION_BLOCK:-EXCITATION_BLOCK], residual[-EXCITATION_BLOCK:]
        self.excitation = older if np.dot(older, older) < np.dot(newer, newer) else newer
        # Synthesis filter state from the played samples, so the noise joins them without a step.
        self._zi = lfiltic([1.0], self.lpc, x[::-1][:LPC_ORDER])
        self._scale = 1.0

    def next_frame(self) -> np.ndarray:
        """The next ``frame_samples`` of continuation (float32), before any fade-out."""
        e = self._rng.choice(self.excitation, self.frame_samples) * self._scale
        y, self._zi = lfilter([1.0], self.lpc, e, zi=self._zi)
        first = self._frames_made < self._frames_per_20ms
        self._scale *= ATTENUATION_PER_20MS[0 if first else 1] ** (1.0 / self._frames_per_20ms)
        self._frames_made += 1
        return y.astype(np.float32)


#: Level of the comfort noise over NetEQ's background-noise estimate, which follows the quietest
#: frames and so sits some dB under the background's mean: +6 dB (tuned on training clips in
#: MODEL.md: 1x / 2x / 3x / 4x gave +0.16 / +0.19 / +0.20 / +0.19 PLCMOS over silence under heavy bursts).
COMFORT_NOISE_GAIN = 2.0


class ComfortNoise:
    """The call's background noise, to fill a long loss once the concealment has faded out.

    NetEQ's background-noise estimate (:class:`~.neteq.background_noise.BackgroundNoise`: an LPC-8
    model of the stationary noise floor, updated on received audio whenever it is as quiet as the
    quietest seen lately) is kept current with :meth:`update`; :meth:`next_frame` makes white noise
    at its residual level through its synthesis filter, as NetEQ's background noise and SILK's
    comfort noise fill a gap instead of digital silence. Silent until the estimate has seen a
    quiet, flat-enough stretch (speech with no pause leaves it silent). ``gain`` scales it
    (:data:`COMFORT_NOISE_GAIN` by default).
    """

    #: Samples the estimate analyses per update (the newest).
    ANALYSIS_SAMPLES = VEC_LEN

    def __init__(self, frame_samples: int = 160, gain: float = COMFORT_NOISE_GAIN) -> None:
        self.frame_samples = frame_samples
        self.gain = float(gain)
        self._estimate = BackgroundNoise()
        self._state = np.zeros(0)

    def reset(self) -> None:
        self._estimate.reset()
        self._state = np.zeros(0)

    @property
    def available(self) -> bool:
        """Whether a background noise has been estimated."""
        return self._estimate.initialized

    def update(self, history: np.ndarray) -> None:
        """Update the estimate on the newest played samples (``history``, float, newest last)."""
        self._estimate.update(np.asarray(history[-VEC_LEN:], dtype=np.float64) * INT16_SCALE)

    def start(self) -> None:
        """Begin a gap: the synthesis filter starts from the estimate's last quiet samples."""
        self._state = np.zeros(0)

    def next_frame(self, rng: np.random.Generator) -> np.ndarray:
        """The next ``frame_samples`` of background noise (float32; zeros if none is estimated)."""
        est = self._estimate
        if not est.initialized:
            return np.zeros(self.frame_samples, np.float32)
        if len(self._state) != len(est.filter) - 1:
            self._state = lfiltic([1.0], est.filter, est.filter_state[::-1])
        # BackgroundNoise.gain scales NetEQ's Q13 random table: the residual RMS is gain * 8192.
        excitation = rng.standard_normal(self.frame_samples) * (est.gain * 8192.0 * self.gain)
        y, self._state = lfilter([1.0], est.filter, excitation, zi=self._state)
        return (y / INT16_SCALE).astype(np.float32)

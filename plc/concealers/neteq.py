"""A float (numpy) port of WebRTC NetEQ's Expand and Merge operations.

Source followed: ``modules/audio_coding/neteq/expand.cc``, ``merge.cc``,
``dsp_helper.cc``, ``random_vector.cc`` and ``background_noise.cc`` of the
WebRTC tree (2018-2023 versions; the algorithm has not changed in that span).
Signals are floats, but every *control* quantity that NetEQ keeps in fixed
point (mute factor Q14, mute slope Q20, voice-mix factors Q14, amplitude
ratio Q13, the cross-fade and ramp increments) is kept as the same integer,
so the muting / mixing schedule is NetEQ's to the sample.

Expand (one call of ``Expand::Process`` makes one pitch period)
---------------------------------------------------------------
* **AnalyzeSignal** (first expand of a loss), on the last 256 * fs_mult
  samples: auto-correlation at 4 kHz (``Correlation``: the 5-tap decimation
  filter, lags 10..63), the three best peaks with NetEQ's parabolic fit
  (``PeakDetection``), sum-abs-diff distortion around each (``MinDistortion``),
  best candidate by correlation / distortion, the exact best correlation
  between the correlation lag and the distortion lag, the correlation
  coefficient, the two expand vectors (last ``max_lag + overlap`` samples and
  the same one ``distortion_lag`` earlier, energy-matched; the amplitude
  ratio), the three lags, the 6th-order AR model of the unvoiced part
  (Levinson-Durbin on 20 ms), the AR gain (residual RMS of the last 128
  samples),
  the voice-mix factor polynomial, and the mute slope / onset logic.
* **Process**: lag index cycling 0,1,2,1,0... over the three lags (vectors
  mixed 1:0, 3:1, 1:1), the ``overlap_length`` (0.625 ms) smoothing of the
  previous output's not-yet-played tail, LPC-shaped noise from NetEQ's own random
  table (``RandomVector``, seed 777, seed-increment stepping), the
  voiced/unvoiced cross-fade from ``current_voice_mix_factor`` down to
  ``voice_mix_factor``, the muting (``MuteSignal`` plus the per-period mute
  factor update, the slope bumps at consecutive expands 3 and 7, the guard
  that zeroes a stuck gain) and the background-noise addition.
* ``NetEqImpl::DoExpand``: periods are appended until at least one frame plus
  ``overlap_length`` samples are pending; the frame is played from the front
  and the rest (at least ``overlap_length`` samples) stays pending, so the
  next period can cross-fade into it exactly as NetEQ's sync buffer allows.

Background noise: current NetEQ (since the BGN modes were removed) keeps the
background-noise mute factor at 0 during expansion, so a long loss fades to
true silence; that is the default here. ``background_noise=True`` restores the
historical ``kBgnOn`` behaviour: a :class:`BackgroundNoise` estimate (LPC-8,
energy-threshold tracking and spectral-flatness check of
``BackgroundNoise::Update``, run on normal frames) is unmuted with the expand's
mute slope while the speech mutes, so the loss fades into comfort noise.

Merge (first received frame after a loss)
-----------------------------------------
``Merge::Process`` is ported for its parts: ``GetExpandedSignal`` (pending
expand samples plus one more period with lag index 0 and muting stopped,
repeated), ``SignalScaling`` (the new audio starts at
``max(expand mute factor, sqrt(E_expanded / E_input))`` and ramps up at
``max(4194 / fs_mult, back-to-full-scale)`` per sample, Q20),
``Downsample`` and ``CorrelateAndPeakSearch`` (4 kHz correlation of the new
frame with the expanded signal over NetEQ's allowed lag range, single peak
with parabolic fit), and the linear cross-fade ``DspHelper::CrossFade``.

Adaptations to this project's fixed-length, time-aligned frames
---------------------------------------------------------------
1. *Start of a loss.* NetEQ delays playout by ``overlap_length`` samples
   (5 per 8 kHz, 10 at 16 kHz) and smooths the first period into those
   still-unplayed real samples. Here the history has already been played, so
   the smoothing is moved just after it: the first ``overlap_length`` output
   samples cross-fade (NetEQ's Q15 mute/unmute windows) from the zero-input
   continuation of the real signal through the 6th-order AR filter that
   AnalyzeSignal has just estimated (the same state NetEQ starts its unvoiced
   filter from) into the expansion. Pitch phase is unchanged: the expansion
   still starts with the sample one lag back from "now".
2. *Merge.* NetEQ inserts the ``best_correlation_index`` samples of expansion
   before the new frame and lets the jitter buffer absorb the extra delay;
   here the frame must keep its length and end on the received samples. The
   lag ``b`` that CorrelateAndPeakSearch finds says that the new audio lines
   up with the expansion read ``b`` samples ahead. The output therefore (a)
   plays the expansion, (b) jumps from reading it at ``n`` to reading it at
   ``n + b`` at the point of the first pitch period where the two readings
   differ least (``MinDistortion`` over ``overlap_length`` samples), smoothed
   with NetEQ's overlap windows -- a splice inside the synthetic signal, the
   same kind NetEQ makes between periods of different lag -- then (c)
   cross-fades the aligned expansion into the scaled new audio with
   ``CrossFade`` over at most 60 * fs_mult samples, the ramp reaching unity
   before (d) the last ``merge_tail_ms`` (2 ms), which are the received
   samples unchanged.
3. Only mono; sample rates 8, 16, 32 and 48 kHz (NetEQ's).

Not ported: the post-decode VAD (off by default in NetEQ), the "Normal after
Expand" path for a late packet (time-aligned frames never arrive late here),
statistics bookkeeping, and the bit-exact int16 rounding of the signal path.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter, lfiltic

from ..dsp import levinson_durbin
from .base import Concealer

# --------------------------------------------------------------------- tables
#: ``RandomVector::kRandomTable`` (Q13), 256 entries.
RANDOM_TABLE = np.array([
    2680, 5532, 441, 5520, 16170, -5146, -1024, -8733, 3115,
    9598, -10380, -4959, -1280, -21716, 7133, -1522, 13458, -3902,
    2789, -675, 3441, 5016, -13599, -4003, -2739, 3922, -7209,
    13352, -11617, -7241, 12905, -2314, 5426, 10121, -9702, 11207,
    -13542, 1373, 816, -5934, -12504, 4798, 1811, 4112, -613,
    201, -10367, -2960, -2419, 3442, 4299, -6116, -6092, 1552,
    -1650, -480, -1237, 18720, -11858, -8303, -8212, 865, -2890,
    -16968, 12052, -5845, -5912, 9777, -5665, -6294, 5426, -4737,
    -6335, 1652, 761, 3832, 641, -8552, -9084, -5753, 8146,
    12156, -4915, 15086, -1231, -1869, 11749, -9319, -6403, 11407,
    6232, -1683, 24340, -11166, 4017, -10448, 3153, -2936, 6212,
    2891, -866, -404, -4807, -2324, -1917, -2388, -6470, -3895,
    -10300, 5323, -5403, 2205, 4640, 7022, -21186, -6244, -882,
    -10031, -3395, -12885, 7155, -5339, 5079, -2645, -9515, 6622,
    14651, 15852, 359, 122, 8246, -3502, -6696, -3679, -13535,
    -1409, -704, -7403, -4007, 1798, 279, -420, -12796, -14219,
    1141, 3359, 11434, 7049, -6684, -7473, 14283, -4115, -9123,
    -8969, 4152, 4117, 13792, 5742, 16168, 8661, -1609, -6095,
    1881, 14380, -5588, 6758, -6425, -22969, -7269, 7031, 1119,
    -1611, -5850, -11281, 3559, -8952, -10146, -4667, -16251, -1538,
    2062, -1012, -13073, 227, -3142, -5265, 20, 5770, -7559,
    4740, -4819, 992, -8208, -7130, -4652, 6725, 7369, -1036,
    13144, -1588, -5304, -2344, -449, -5705, -8894, 5205, -17904,
    -11188, -1022, 4852, 10101, -5255, -4200, -752, 7941, -1543,
    5959, 14719, 13346, 17045, -15605, -1678, -1600, -9230, 68,
    23348, 1172, 7750, 11212, -18227, 9956, 4161, 883, 3947,
    4341, 1014, -4889, -2603, 1246, -5630, -3596, -870, -1298,
    2784, -3317, -6612, -20541, 4166, 4181, -8625, 3562, 12890,
    4761, 3205, -12259, -8579,
], dtype=np.float64)
RANDOM_TABLE_SIZE = 256

#: ``DspHelper::kDownsample{8,16,32,48}kHzTbl`` (Q12), keyed by fs_mult.
_DOWNSAMPLE_TBL = {
    1: np.array([1229, 1638, 1229], dtype=np.float64) / 4096.0,
    2: np.array([614, 819, 1229, 819, 614], dtype=np.float64) / 4096.0,
    4: np.array([584, 512, 625, 667, 625, 512, 584], dtype=np.float64) / 4096.0,
    6: np.array([1019, 390, 427, 440, 427, 390, 1019], dtype=np.float64) / 4096.0,
}

#: ``DspHelper::kMuteFactorStart*`` etc. (Q15): mute start, mute increment,
#: unmute start, unmute increment.
_OVERLAP_WINDOW = {
    1: (27307, -5461, 5461, 5461),
    2: (29789, -2979, 2979, 2979),
    4: (31208, -1560, 1560, 1560),
    6: (31711, -1057, 1057, 1057),
}

#: ``DspHelper::kParabolaCoefficients``.
_PARABOLA = (
    (120, 32, 64), (140, 44, 75), (150, 50, 80), (160, 57, 85),
    (180, 72, 96), (200, 89, 107), (210, 98, 112), (220, 108, 117),
    (240, 128, 128), (260, 150, 139), (270, 162, 144), (280, 174, 149),
    (300, 200, 160), (320, 228, 171), (330, 242, 176), (340, 257, 181),
    (360, 288, 192),
)
_FIT_INDEX = {
    1: (0, 8, 16),
    2: (0, 4, 8, 12, 16),
    4: (0, 2, 4, 6, 8, 10, 12, 14, 16),
    6: (0, 1, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16),
}

# Expand constants (expand.h).
_UNVOICED_LPC_ORDER = 6
_NUM_CORRELATION_CANDIDATES = 3
_DISTORTION_LENGTH = 20
_LPC_ANALYSIS_LENGTH = 160
_MAX_CONSECUTIVE_EXPANDS = 200
_NUM_LAGS = 3
# Merge constants (merge.h).
_EXPAND_DOWNSAMP_LENGTH = 100
_INPUT_DOWNSAMP_LENGTH = 40
_MAX_CORRELATION_LENGTH = 60
# Background noise constants (background_noise.h).
_BGN_LPC_ORDER = 8
_BGN_VEC_LEN = 256
_BGN_RESIDUAL_LENGTH = 64
_BGN_THRESHOLD_INCREMENT = 229  # 0.0035 in Q16
#: Float signals are scaled to int16 units wherever NetEQ compares energies
#: with absolute thresholds (background noise only).
_INT16_SCALE = 32768.0


# ------------------------------------------------------------ DSP helpers
def downsample_fast(x: np.ndarray, start: int, out_len: int, coeffs: np.ndarray,
                    factor: int, delay: int = 0) -> np.ndarray:
    """``WebRtcSpl_DownsampleFast`` with ``data_in = x[start:]``.

    ``y[k] = sum_j c[j] * data_in[delay + k * factor - j]`` (reads up to
    ``len(coeffs) - 1`` samples before ``start``, as the C code does).
    """
    pos = start + delay + factor * np.arange(out_len)
    y = np.zeros(out_len)
    for j, c in enumerate(coeffs):
        y += c * x[pos - j]
    return y


def parabolic_fit(points: np.ndarray, fs_mult: int, index: int) -> tuple[int, float]:
    """``DspHelper::ParabolicFit``: refine a 4 kHz peak to the full rate."""
    s0, s1, s2 = float(points[0]), float(points[1]), float(points[2])
    fit = _FIT_INDEX[fs_mult]
    num = -3.0 * s0 + 4.0 * s1 - s2
    den = s0 - 2.0 * s1 + s2
    temp = num * 120.0
    stp = _PARABOLA[fit[fs_mult]][0] - _PARABOLA[fit[fs_mult - 1]][0]
    strt = (_PARABOLA[fit[fs_mult]][0] + _PARABOLA[fit[fs_mult - 1]][0]) // 2
    if temp < -den * strt:
        lmt = strt - stp
        flag = 1
        while True:
            if flag == fs_mult or temp > -den * lmt:
                row = _PARABOLA[fit[fs_mult - flag]]
                value = (den * row[1] + num * row[2] + s0 * 256.0) / 256.0
                return index * 2 * fs_mult - flag, value
            flag += 1
            lmt -= stp
    elif temp > -den * (strt + stp):
        lmt = strt + 2 * stp
        flag = 1
        while True:
            if flag == fs_mult or temp < -den * lmt:
                row = _PARABOLA[fit[fs_mult + flag]]
                value = (den * row[1] + num * row[2] + s0 * 256.0) / 256.0
                return index * 2 * fs_mult + flag, value
            flag += 1
            lmt += stp
    return index * 2 * fs_mult, s1


def peak_detection(data: np.ndarray, data_length: int, num_peaks: int,
                   fs_mult: int) -> tuple[list[int], list[float]]:
    """``DspHelper::PeakDetection``; ``data`` is modified (peaks zeroed)."""
    indices: list[int] = []
    values: list[float] = []
    for i in range(num_peaks):
        if num_peaks == 1:
            data_length += 1  # the parabola may read one past the end (zero padded)
        idx = int(np.argmax(data[:data_length - 1]))
        min_index = max_index = 0
        if i != num_peaks - 1:
            min_index = max(idx - 2, 0)
            max_index = min(data_length - 1, idx + 2)
        if idx != 0 and idx != data_length - 2:
            pidx, pval = parabolic_fit(data[idx - 1:idx + 2], fs_mult, idx)
        elif idx == data_length - 2:
            if data[idx] > data[idx + 1]:
                pidx, pval = parabolic_fit(data[idx - 1:idx + 2], fs_mult, idx)
            else:
                pval = 0.5 * (data[idx] + data[idx + 1])
                pidx = (idx * 2 + 1) * fs_mult
        else:
            pval = float(data[idx])
            pidx = idx * 2 * fs_mult
        indices.append(int(pidx))
        values.append(float(pval))
        if i != num_peaks - 1:
            data[min_index:max_index + 1] = 0.0
    return indices, values


def min_distortion(x: np.ndarray, pos: int, min_lag: int, max_lag: int,
                   length: int) -> tuple[int, float]:
    """``DspHelper::MinDistortion`` for ``signal = x[pos:]``: best lag in [min_lag, max_lag]."""
    lags = np.arange(min_lag, max_lag + 1)
    seg = x[pos:pos + length]
    # Row r: x[pos - lag_r : pos - lag_r + length].
    windows = sliding_window_view(x[pos - max_lag:pos - min_lag + length], length)[::-1]
    dist = np.abs(seg[None, :] - windows).sum(axis=1)
    best = int(np.argmin(dist))  # first minimum, like the strict '<' in C
    return int(lags[best]), float(dist[best])


def _q14_mul(gain_q14: int, x: np.ndarray) -> np.ndarray:
    return x * (gain_q14 / 16384.0)


# ------------------------------------------------------------ background noise
class BackgroundNoise:
    """``BackgroundNoise``: LPC-8 model of the stationary noise floor (mono)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.initialized = False
        self.energy = 2500.0
        self.max_energy = 0.0
        self.energy_update_threshold = 500000.0
        self.filter = np.zeros(_BGN_LPC_ORDER + 1)
        self.filter[0] = 1.0
        self.filter_state = np.zeros(_BGN_LPC_ORDER)  # oldest first
        self.mute_factor = 0  # Q14
        self.gain = 0.0  # residual RMS / 8192: scales the Q13 random table

    def update(self, signal: np.ndarray) -> None:
        """``BackgroundNoise::Update`` on the last 256 samples (int16 units), no VAD."""
        s = np.asarray(signal[-_BGN_VEC_LEN:], dtype=np.float64)
        n = len(s)
        ac = np.array([np.dot(s[k:], s[:n - k]) for k in range(_BGN_LPC_ORDER + 1)])
        sample_energy = ac[0] / _BGN_VEC_LEN
        if sample_energy < self.energy_update_threshold:
            if ac[0] <= 0:
                return
            self.energy_update_threshold = max(sample_energy, 1.0)
            lpc = levinson_durbin(ac, _BGN_LPC_ORDER)
            if lpc is None:
                return
            start = n - _BGN_RESIDUAL_LENGTH
            residual = lfilter(lpc, [1.0], s[start - _BGN_LPC_ORDER:])[_BGN_LPC_ORDER:]
            residual_energy = float(np.dot(residual, residual))
            # Spectrum flat enough: 5 * residual_energy >= 16 * sample_energy.
            if sample_energy > 0 and 5.0 * residual_energy >= 16.0 * sample_energy:
                self.filter = lpc
                self.filter_state = s[-_BGN_LPC_ORDER:].copy()
                self.energy = max(sample_energy, 1.0)
                self.energy_update_threshold = self.energy
                self.gain = np.sqrt(residual_energy / _BGN_RESIDUAL_LENGTH) / 8192.0
                self.initialized = True
        else:
            # IncrementEnergyThreshold: +0.35 % per update, max energy decays by
            # 1/1024 per update, threshold never below max_energy - 60 dB.
            self.energy_update_threshold += (
                _BGN_THRESHOLD_INCREMENT * self.energy_update_threshold / 65536.0)
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
        self.filter_state = noise[-_BGN_LPC_ORDER:].copy()
        if self.mute_factor < 16384:
            if unmute:
                q20 = (self.mute_factor << 6) + 32 + mute_slope * np.arange(num_samples + 1)
                factors = np.minimum(np.maximum(q20, 0) >> 6, 16384)
                factors[0] = self.mute_factor
                noise = noise * (factors[:num_samples] / 16384.0)
                self.mute_factor = int(factors[num_samples])
            else:
                noise = _q14_mul(self.mute_factor, noise)
        return noise


# ------------------------------------------------------------ the concealer
class NetEqConcealer(Concealer):
    """WebRTC NetEQ's Expand + Merge (see the module docstring for the port and its adaptations).

    Parameters
    ----------
    sample_rate : int
        8000, 16000, 32000 or 48000 Hz (NetEQ's rates).
    frame_ms : int
        Frame length in milliseconds (NetEQ's decision interval is 10 ms).
    history_ms : int
        Played history kept; the analysis needs 32 ms.
    background_noise : bool
        Fade into an estimated background noise as NetEQ's old ``kBgnOn`` mode
        did, instead of into silence as current NetEQ does (default False).
    merge_tail_ms : float
        The last part of the first received frame after a loss that is always
        played unchanged.
    """

    name = "neteq"

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 10, history_ms: int = 200,
                 background_noise: bool = False, merge_tail_ms: float = 2.0) -> None:
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"neteq runs at 8, 16, 32 or 48 kHz, not {sample_rate} Hz")
        self.fs_mult = sample_rate // 8000
        self.overlap_length = 5 * self.fs_mult
        self.background_noise_enabled = bool(background_noise)
        self._signal_length = 256 * self.fs_mult
        history_ms = max(int(history_ms), 40)
        super().__init__(sample_rate, frame_ms, history_ms)
        self.merge_tail = min(int(round(merge_tail_ms * sample_rate / 1000)), self.frame_samples)
        mw0, mwi, uw0, uwi = _OVERLAP_WINDOW[self.fs_mult]
        i = np.arange(self.overlap_length)
        self._mute_window = (mw0 + mwi * i) / 32768.0
        self._unmute_window = (uw0 + uwi * i) / 32768.0

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        super().reset()
        # RandomVector::Reset.
        self._seed = 777
        self._seed_increment = 1
        self._bgn = BackgroundNoise()
        self._expand_reset()
        self._future = np.zeros(0)

    def _expand_reset(self) -> None:
        """``Expand::Reset`` plus the channel-parameter defaults."""
        fm = self.fs_mult
        self._first_expand = True
        self._consecutive_expands = 0
        self._max_lag = 0
        self._expand_lags = [20 * fm] * _NUM_LAGS
        self._lag_index_direction = 0
        self._current_lag_index = 0
        self._stop_muting = False
        self._ev0 = np.zeros(0)
        self._ev1 = np.zeros(0)
        self._mute_factor = 16384  # Q14
        self._ar_filter = np.zeros(_UNVOICED_LPC_ORDER + 1)
        self._ar_filter[0] = 1.0
        self._ar_filter_state = np.zeros(_UNVOICED_LPC_ORDER)  # oldest first
        self._ar_gain = 0.0
        self._voice_mix_factor = 0  # Q14
        self._current_voice_mix_factor = 0  # Q14
        self._onset = False
        self._mute_slope = 0  # Q20
        self._continuation = None  # real-signal continuation for the first smoothing

    def _on_received(self, frame: np.ndarray) -> None:
        if self.background_noise_enabled:
            keep = max(_BGN_VEC_LEN - len(frame), 0)
            buf = np.concatenate([self.history[len(self.history) - keep:], frame])
            self._bgn.update(buf.astype(np.float64) * _INT16_SCALE)

    # ------------------------------------------------------------- random
    def _generate_random(self, length: int) -> np.ndarray:
        """``RandomVector::Generate``."""
        pos = (self._seed + self._seed_increment * np.arange(1, length + 1)) & (RANDOM_TABLE_SIZE - 1)
        self._seed = (self._seed + self._seed_increment * length) & 0xFFFFFFFF
        return RANDOM_TABLE[pos]

    def _increase_seed_increment(self, by: int) -> None:
        self._seed_increment = (self._seed_increment + by) & (RANDOM_TABLE_SIZE - 1)

    def _generate_random_vector(self, seed_increment: int, length: int) -> np.ndarray:
        """``Expand::GenerateRandomVector``."""
        parts = []
        generated = 0
        while generated < length:
            n = min(length - generated, RANDOM_TABLE_SIZE)
            self._increase_seed_increment(seed_increment)
            parts.append(self._generate_random(n))
            generated += n
        return np.concatenate(parts) if parts else np.zeros(0)

    # ------------------------------------------------------------- analysis
    def _initialize_for_an_expand_period(self) -> None:
        self._lag_index_direction = 1
        self._current_lag_index = -1
        self._stop_muting = False
        self._seed_increment = 1
        self._consecutive_expands = 0
        self._current_voice_mix_factor = 16384
        self._mute_factor = 16384
        self._bgn.mute_factor = 0

    def _correlation(self, x: np.ndarray) -> np.ndarray:
        """``Expand::Correlation``: 54 correlation lags (10..63) at 4 kHz."""
        factor = 2 * self.fs_mult
        ds_len = 10 + 54 + 60
        ds = downsample_fast(x, len(x) - ds_len * factor, ds_len, _DOWNSAMPLE_TBL[self.fs_mult], factor)
        seq1 = ds[ds_len - 60:]
        # corr[i] = sum_n ds[64 + n] * ds[54 + n - i], i.e. lag 10 + i.
        windows = sliding_window_view(ds[:ds_len - 10], 60)  # row k = ds[k:k+60]
        return windows[54:0:-1] @ seq1

    def _analyze_signal(self) -> np.ndarray:
        """``Expand::AnalyzeSignal``; returns the random vector for the first period."""
        fm = self.fs_mult
        n = self._signal_length
        x = self.history[-n:].astype(np.float64)
        self._initialize_for_an_expand_period()

        corr = self._correlation(x)
        c_idx, c_val = peak_detection(corr.copy(), 51, _NUM_CORRELATION_CANDIDATES, fm)
        c_idx = [i + 20 * fm for i in c_idx]

        dist_len = _DISTORTION_LENGTH * fm
        d_idx, d_val = [], []
        for ci in c_idx:
            lo = max(20 * fm, ci - 4 * fm)
            hi = min(120 * fm - 1, ci + 4 * fm)
            di, dv = min_distortion(x, n - dist_len, lo, hi, dist_len)
            d_idx.append(di)
            d_val.append(dv)
        best_ratio = -np.inf
        best = 0
        for i in range(_NUM_CORRELATION_CANDIDATES):
            if d_val[i] > 0:
                ratio = c_val[i] / d_val[i]
            elif c_val[i] == 0:
                ratio = 0.0
            else:
                ratio = np.inf
            if ratio > best_ratio:
                best, best_ratio = i, ratio
        distortion_lag = d_idx[best]
        correlation_lag = c_idx[best]
        self._max_lag = max(distortion_lag, correlation_lag)

        # Exact best correlation between the two lags.
        corr_len = max(min(distortion_lag + 10, 120 * fm), 60 * fm)
        start = min(distortion_lag, correlation_lag)
        n_lags = abs(distortion_lag - correlation_lag) + 1
        seg1 = x[n - corr_len:]
        cc = np.array([np.dot(seg1, x[n - corr_len - start - i:n - start - i]) for i in range(n_lags)])
        bi = int(np.argmax(cc))
        max_corr = cc[bi]
        bi += start
        e1 = float(np.dot(seg1, seg1))
        seg2 = x[n - corr_len - bi:n - bi]
        e2 = float(np.dot(seg2, seg2))
        if e1 > 0 and e2 > 0:
            corr_q14 = min(16384, int(max_corr / np.sqrt(e1 * e2) * 16384.0))
        else:
            corr_q14 = 0

        # The two expand vectors.
        ov = self.overlap_length
        exp_len = self._max_lag + ov
        v1 = x[n - exp_len:]
        v2 = x[n - exp_len - distortion_lag:n - distortion_lag]
        e1 = float(np.dot(v1, v1))
        e2 = float(np.dot(v2, v2))
        if e1 / 4 < e2 and e1 > e2 / 4:
            amp = np.sqrt(e1 / e2)
            amplitude_ratio = int(amp * 8192.0)  # Q13
            self._ev0 = v1.copy()
            self._ev1 = v2 * amp
        else:
            self._ev0 = v1.copy()
            self._ev1 = v1.copy()
            amplitude_ratio = 4096 if (e1 / 4 < e2 or e2 == 0) else 16384

        if distortion_lag == correlation_lag:
            self._expand_lags = [distortion_lag] * 3
        else:
            third = ((distortion_lag + correlation_lag - 1) // 2 if distortion_lag > correlation_lag
                     else (distortion_lag + correlation_lag + 1) // 2)
            self._expand_lags = [distortion_lag, (distortion_lag + correlation_lag) // 2, third]

        # LPC of the unvoiced part: auto-correlation of the last 20 ms.
        order = _UNVOICED_LPC_ORDER
        lpc_len = _LPC_ANALYSIS_LENGTH * fm
        seg = x[n - lpc_len:]
        ac = np.array([np.dot(seg[k:], seg[:lpc_len - k]) for k in range(order + 1)])
        if ac[0] > 0:
            a = levinson_durbin(ac, order)
            if a is None:
                a = np.zeros(order + 1)
                a[0] = 1.0
            self._ar_filter = a

        # Noise segment: the start of the table.
        noise_length = 2 * distortion_lag + 30 if distortion_lag < 40 else distortion_lag + 30
        if noise_length <= RANDOM_TABLE_SIZE:
            random_vector = RANDOM_TABLE[:noise_length].copy()
        else:
            self._increase_seed_increment(2)
            random_vector = np.concatenate([
                RANDOM_TABLE, self._generate_random(noise_length - RANDOM_TABLE_SIZE)])

        # Unvoiced filter state and gain (residual RMS of the last 128 samples).
        self._ar_filter_state = x[n - order:].copy()
        residual = lfilter(self._ar_filter, [1.0], x[n - 128 - order:])[order:]
        self._ar_gain = np.sqrt(float(np.dot(residual, residual)) / 128.0) / 8192.0

        # Voice-mix factor from the correlation coefficient (Q14 polynomial).
        if corr_q14 > 7875:
            x1 = corr_q14
            x2 = (x1 * x1) >> 14
            x3 = (x1 * x2) >> 14
            temp_sum = -5179 * 16384 + 19931 * x1 - 16422 * x2 + 5776 * x3
            vmf = min(int(temp_sum / 4096), 16384)
            self._voice_mix_factor = max(vmf, 0)
        else:
            self._voice_mix_factor = 0

        # Muting slope from the amplitude ratio.
        slope = amplitude_ratio
        if slope > 12288:
            denom = min((distortion_lag * slope) >> 8, 32767)
            temp_ratio = ((slope - 8192) << 12) // denom
            if slope > 14746:
                self._mute_slope = (temp_ratio + 1) // 2
            else:
                self._mute_slope = (temp_ratio + 4) // 8
            self._onset = True
        else:
            self._mute_slope = int(((8192 - slope) * 128) / distortion_lag)
            if self._voice_mix_factor <= 13107:
                self._mute_slope = max(5243 // fm, self._mute_slope)
            elif slope > 8028:
                self._mute_slope = 0
            self._onset = False

        # Adaptation 1: the zero-input continuation of the real signal through
        # the unvoiced AR filter, for the first period's overlap smoothing.
        zi = lfiltic([1.0], self._ar_filter, x[::-1][:order])
        cont, _ = lfilter([1.0], self._ar_filter, np.zeros(ov), zi=zi)
        if not np.all(np.isfinite(cont)):
            cont = np.full(ov, x[-1])
        self._continuation = cont
        return random_vector

    def _update_lag_index(self) -> None:
        self._current_lag_index += self._lag_index_direction
        if self._current_lag_index <= 0:
            self._lag_index_direction = 1
        if self._current_lag_index >= _NUM_LAGS - 1:
            self._lag_index_direction = -1

    # -------------------------------------------------------------- expand
    def _process(self) -> np.ndarray:
        """``Expand::Process``: one period; smooths into the pending tail ``self._future``."""
        fm = self.fs_mult
        ov = self.overlap_length
        if self._first_expand:
            random_vector = self._analyze_signal()
            self._first_expand = False
        else:
            random_vector = self._generate_random_vector(2, self._max_lag)
        self._update_lag_index()

        lag = self._expand_lags[self._current_lag_index]
        pos = self._max_lag + ov - lag - ov
        v0 = self._ev0[pos:pos + lag + ov]
        v1 = self._ev1[pos:pos + lag + ov]
        if self._current_lag_index == 0:
            storage = v0.copy()
        elif self._current_lag_index == 1:
            storage = (3.0 * v0 + v1) / 4.0
        else:
            storage = (v0 + v1) / 2.0
        voiced = storage[ov:]

        smooth_start = False
        if self._mute_factor > 819 and self._current_voice_mix_factor > 8192:
            if len(self._future) >= ov:
                tail = self._future[-ov:]
                self._future[-ov:] = (tail * self._mute_window
                                      + _q14_mul(self._mute_factor, storage[:ov]) * self._unmute_window)
            else:
                smooth_start = True  # adaptation 1, applied below

        # Unvoiced part: AR-filtered, scaled random vector.
        scaled = random_vector[:lag] * self._ar_gain
        zi = lfiltic([1.0], self._ar_filter, self._ar_filter_state[::-1])
        unvoiced, _ = lfilter([1.0], self._ar_filter, scaled, zi=zi)
        self._ar_filter_state = unvoiced[-_UNVOICED_LPC_ORDER:].copy()

        # Voiced / unvoiced cross-fade.
        temp_shift = self._max_lag.bit_length() - 5
        mix_increment = 256 >> temp_shift
        if self._stop_muting:
            mix_increment = 0
        temp_length = (self._current_voice_mix_factor - self._voice_mix_factor) >> (8 - temp_shift)
        temp_length = max(0, min(temp_length, lag))
        out = np.empty(lag)
        f = self._current_voice_mix_factor - mix_increment * np.arange(temp_length)
        out[:temp_length] = (f * voiced[:temp_length] + (16384 - f) * unvoiced[:temp_length]) / 16384.0
        self._current_voice_mix_factor -= mix_increment * temp_length
        if temp_length < lag:
            if mix_increment != 0:
                self._current_voice_mix_factor = self._voice_mix_factor
            c = self._current_voice_mix_factor
            out[temp_length:] = (c * voiced[temp_length:] + (16384 - c) * unvoiced[temp_length:]) / 16384.0

        # Muting.
        ce = self._consecutive_expands
        if ce == 3:
            self._mute_slope = max(self._mute_slope, 1049 // fm)
        if ce == 7:
            self._mute_slope = max(self._mute_slope, 2097 // fm)
        if ce != 0 or not self._onset:
            out = _q14_mul(self._mute_factor, out)
            if not self._stop_muting:
                q20 = (16384 << 6) + 32 - self._mute_slope * np.arange(lag)
                out = out * (np.maximum(q20, 0) >> 6) / 16384.0
                gain = 16384 - ((lag * self._mute_slope + 8192) >> 6)
                gain = (max(gain, 0) * self._mute_factor + 8192) >> 14
                if ce > 3 and gain >= self._mute_factor:
                    self._mute_factor = 0
                else:
                    self._mute_factor = gain

        # Background noise (silent unless background_noise=True and estimated).
        if self.background_noise_enabled:
            unmute = not self._stop_muting
            noise = self._bgn.generate(random_vector, lag, self._mute_slope, unmute)
            out = out + noise / _INT16_SCALE

        if smooth_start and self._continuation is not None:
            out[:ov] = self._continuation * self._mute_window + out[:ov] * self._unmute_window

        self._consecutive_expands = min(ce + 1, _MAX_CONSECUTIVE_EXPANDS)
        return out

    def _conceal(self) -> np.ndarray:
        n = self.frame_samples
        if self.lost_frames == 0:
            self._expand_reset()
            self._future = np.zeros(0)
        # NetEqImpl::DoExpand: keep at least overlap_length samples pending.
        while len(self._future) - self.overlap_length < n:
            self._future = np.concatenate([self._future, self._process()])
        out = self._future[:n]
        self._future = self._future[n:].copy()
        return out

    # --------------------------------------------------------------- merge
    def _signal_scaling(self, x: np.ndarray, expanded: np.ndarray) -> int:
        """``Merge::SignalScaling``: Q14 start gain for the new audio."""
        m = min(64 * self.fs_mult, len(x))
        e_exp = float(np.dot(expanded[:m], expanded[:m]))
        e_in = float(np.dot(x[:m], x[:m]))
        if e_in > e_exp:
            return min(16384, int(np.sqrt(e_exp / e_in) * 16384.0))
        return 16384

    def _correlate_and_peak_search(self, x: np.ndarray, expanded: np.ndarray, old_length: int,
                                   expand_period: int) -> int:
        """``Merge::Downsample`` + ``Merge::CorrelateAndPeakSearch``."""
        fm = self.fs_mult
        coeffs = _DOWNSAMPLE_TBL[fm]
        factor = 2 * fm
        offset = len(coeffs) - 1
        input_length = len(x)
        exp_ds = downsample_fast(expanded, offset, _EXPAND_DOWNSAMP_LENGTH, coeffs, factor)
        in_ds = np.zeros(_INPUT_DOWNSAMP_LENGTH)
        length_limit = self.sample_rate // 100
        if input_length <= length_limit:
            temp_len = input_length - offset if input_length > offset else 0
            ds_len = min(temp_len // factor, _INPUT_DOWNSAMP_LENGTH)
            if ds_len > 0:
                in_ds[:ds_len] = downsample_fast(x, offset, ds_len, coeffs, factor)
        else:
            in_ds[:] = downsample_fast(x, offset, _INPUT_DOWNSAMP_LENGTH, coeffs, factor)

        stop = min(_MAX_CORRELATION_LENGTH, self._max_lag // (fm * 2) + 1)
        windows = sliding_window_view(exp_ds, _INPUT_DOWNSAMP_LENGTH)[:stop]
        correlation = windows @ in_ds

        pad = self.overlap_length - 1
        corr16 = np.zeros(2 * pad + _MAX_CORRELATION_LENGTH + 1)
        corr16[pad:pad + stop] = correlation
        tpc = self.sample_rate // 100  # timestamps_per_call_
        start_index = max(old_length, tpc + self.overlap_length)
        start_index = 0 if input_length > start_index else start_index - input_length
        start_ds = start_index // (fm * 2)
        modified_stop = max(1, min(stop, _MAX_CORRELATION_LENGTH + pad - start_ds))
        data = corr16[pad + start_ds:].copy()
        if len(data) < modified_stop + 2:
            data = np.concatenate([data, np.zeros(modified_stop + 2 - len(data))])
        (peak,), _ = peak_detection(data, modified_stop, 1, fm)
        best = peak + start_index
        while (best + input_length < tpc + self.overlap_length) or (best + input_length < old_length):
            best += expand_period
        return best

    def _resume(self, frame: np.ndarray) -> np.ndarray:
        n = self.frame_samples
        ov = self.overlap_length
        fm = self.fs_mult
        x = frame.astype(np.float64)
        if len(self._future) < ov:  # cannot happen through process(); be safe
            self._future = np.concatenate([self._future, np.zeros(ov - len(self._future))])
        old_length = len(self._future)

        # GetExpandedSignal: one more period (lag index 0, muting stopped).
        self._current_lag_index = -1
        self._lag_index_direction = 1
        self._stop_muting = True
        period = self._process()
        expand_period = len(period)
        future = self._future
        required = max(202 * fm, old_length)
        needed = max(required, 2 * (n + self._max_lag + 202 * fm))
        reps = int(np.ceil(max(needed - old_length, 0) / expand_period)) + 1
        expanded = np.concatenate([future, np.tile(period, reps)])

        mute = max(self._mute_factor, self._signal_scaling(x, expanded))
        b = self._correlate_and_peak_search(x, expanded[:required], old_length, expand_period)
        if b + n > len(expanded):
            extra = int(np.ceil((b + n - len(expanded)) / expand_period)) + 1
            expanded = np.concatenate([expanded, np.tile(period, extra)])

        # Adaptation 2: splice from reading the expansion at n to reading it at
        # n + b where the two readings differ least, within one period.
        tail = self.merge_tail
        body = n - tail  # samples in which the transition must be complete
        min_xfade = min(48 * fm // 2, max(body - ov, 1))
        search = max(0, min(expand_period, body - ov - min_xfade))
        if search > 0:
            cand = np.arange(search)
            w0 = sliding_window_view(expanded[:search - 1 + ov], ov)
            w1 = sliding_window_view(expanded[b:b + search - 1 + ov], ov)
            dist = np.abs(w0 - w1).sum(axis=1)
            n0 = int(cand[np.argmin(dist)])
        else:
            n0 = 0
        splice_end = min(n0 + ov, body)
        out = np.empty(n)
        out[:n0] = expanded[:n0]
        k = splice_end - n0
        out[n0:splice_end] = (expanded[n0:splice_end] * self._mute_window[:k]
                              + expanded[b + n0:b + splice_end] * self._unmute_window[:k])

        # Scale the new audio from `mute` up to unity (RampSignal / UnmuteSignal);
        # unity is reached before the tail.
        xfade_start = splice_end
        ramp_len = body - xfade_start
        scaled = x.copy()
        if mute < 16384 and ramp_len > 0:
            inc = max(4194 // fm, -(-((16384 - mute) << 6) // max(ramp_len - 1, 1)))
            q20 = (mute << 6) + 32 + inc * np.arange(ramp_len)
            factors = np.minimum(q20 >> 6, 16384)
            factors[0] = mute
            scaled[xfade_start:body] = x[xfade_start:body] * factors / 16384.0

        # CrossFade from the aligned expansion into the (scaled) new audio.
        m = min(_MAX_CORRELATION_LENGTH * fm, ramp_len)
        if m > 0:
            inc = 16384 // (m + 1)
            f = (16384 - inc) - inc * np.arange(m)
            seg = slice(xfade_start, xfade_start + m)
            out[seg] = (f * expanded[b + xfade_start:b + xfade_start + m]
                        + (16384 - f) * scaled[seg]) / 16384.0
        out[xfade_start + m:body] = scaled[xfade_start + m:body]
        out[body:] = x[body:]

        # Merge is followed by Expand::Reset (NetEqImpl::DoMerge).
        self._expand_reset()
        self._future = np.zeros(0)
        return out

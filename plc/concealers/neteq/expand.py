"""``Expand`` (``expand.cc``): continue the signal through a loss, one pitch period per call.

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
  table (:class:`~.random_vector.RandomVector`, seed 777, seed-increment stepping), the
  voiced/unvoiced cross-fade from ``current_voice_mix_factor`` down to
  ``voice_mix_factor``, the muting (``MuteSignal`` plus the per-period mute
  factor update, the slope bumps at consecutive expands 3 and 7, the guard
  that zeroes a stuck gain) and the background-noise addition
  (:class:`~.background_noise.BackgroundNoise`).

Adaptation to this project's fixed-length, time-aligned frames (*start of a loss*): NetEQ
delays playout by ``overlap_length`` samples (5 per 8 kHz, 10 at 16 kHz) and smooths the first
period into those still-unplayed real samples. Here the history has already been played, so
the smoothing is moved just after it: the first ``overlap_length`` output samples cross-fade
(NetEQ's Q15 mute/unmute windows) from the zero-input continuation of the real signal through
the 6th-order AR filter that AnalyzeSignal has just estimated (the same state NetEQ starts its
unvoiced filter from) into the expansion. Pitch phase is unchanged: the expansion still starts
with the sample one lag back from "now".
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter, lfiltic

from ...dsp import levinson_durbin
from .background_noise import INT16_SCALE, BackgroundNoise
from .dsp_helper import DOWNSAMPLE_TBL, downsample_fast, min_distortion, overlap_windows, peak_detection, q14_mul
from .random_vector import RANDOM_TABLE, RANDOM_TABLE_SIZE, RandomVector

# Expand constants (expand.h).
_UNVOICED_LPC_ORDER = 6
_NUM_CORRELATION_CANDIDATES = 3
_DISTORTION_LENGTH = 20
_LPC_ANALYSIS_LENGTH = 160
_MAX_CONSECUTIVE_EXPANDS = 200
_NUM_LAGS = 3


class Expand:
    """NetEQ's Expand for one mono channel at ``sample_rate`` (8, 16, 32 or 48 kHz).

    Shares the call's :class:`~.random_vector.RandomVector` and
    :class:`~.background_noise.BackgroundNoise` (added under the muted speech only with
    ``background_noise_enabled``). The state that :class:`~.merge.Merge` reads is public:
    :attr:`pending`, :attr:`mute_factor`, :attr:`max_lag`; the analysis results
    (:attr:`expand_lags`, :attr:`voice_mix_factor`, :attr:`mute_slope`, :attr:`onset`) are
    there to be inspected.
    """

    def __init__(self, sample_rate: int, random_vector: RandomVector, background_noise: BackgroundNoise,
                 background_noise_enabled: bool = False) -> None:
        self.fs_mult = sample_rate // 8000
        self.overlap_length = 5 * self.fs_mult
        self.signal_length = 256 * self.fs_mult
        self.mute_window, self.unmute_window = overlap_windows(self.fs_mult)
        self.random_vector = random_vector
        self.background_noise = background_noise
        self.background_noise_enabled = background_noise_enabled
        self.reset()

    def reset(self) -> None:
        """``Expand::Reset`` plus the channel-parameter defaults; nothing pending."""
        fm = self.fs_mult
        self._first_expand = True
        self._consecutive_expands = 0
        self.max_lag = 0
        self.expand_lags = [20 * fm] * _NUM_LAGS
        self._lag_index_direction = 0
        self._current_lag_index = 0
        self._stop_muting = False
        self._ev0 = np.zeros(0)
        self._ev1 = np.zeros(0)
        self.mute_factor = 16384  # Q14
        self._ar_filter = np.zeros(_UNVOICED_LPC_ORDER + 1)
        self._ar_filter[0] = 1.0
        self._ar_filter_state = np.zeros(_UNVOICED_LPC_ORDER)  # oldest first
        self._ar_gain = 0.0
        self.voice_mix_factor = 0  # Q14
        self._current_voice_mix_factor = 0  # Q14
        self.onset = False
        self.mute_slope = 0  # Q20
        self._continuation = None  # real-signal continuation for the first smoothing
        #: Samples made but not yet played (the sync buffer's future in NetEQ): each period smooths into its tail.
        self.pending = np.zeros(0)

    def generate_random_vector(self, seed_increment: int, length: int) -> np.ndarray:
        """``Expand::GenerateRandomVector``."""
        parts = []
        generated = 0
        while generated < length:
            n = min(length - generated, RANDOM_TABLE_SIZE)
            self.random_vector.increase_seed_increment(seed_increment)
            parts.append(self.random_vector.generate(n))
            generated += n
        return np.concatenate(parts) if parts else np.zeros(0)

    def _initialize_for_an_expand_period(self) -> None:
        self._lag_index_direction = 1
        self._current_lag_index = -1
        self._stop_muting = False
        self.random_vector.seed_increment = 1
        self._consecutive_expands = 0
        self._current_voice_mix_factor = 16384
        self.mute_factor = 16384
        self.background_noise.mute_factor = 0

    def _correlation(self, x: np.ndarray) -> np.ndarray:
        """``Expand::Correlation``: 54 correlation lags (10..63) at 4 kHz."""
        factor = 2 * self.fs_mult
        ds_len = 10 + 54 + 60
        ds = downsample_fast(x, len(x) - ds_len * factor, ds_len, DOWNSAMPLE_TBL[self.fs_mult], factor)
        seq1 = ds[ds_len - 60:]
        # corr[i] = sum_n ds[64 + n] * ds[54 + n - i], i.e. lag 10 + i.
        windows = sliding_window_view(ds[:ds_len - 10], 60)  # row k = ds[k:k+60]
        return windows[54:0:-1] @ seq1

    def _analyze_signal(self, history: Optional[np.ndarray]) -> np.ndarray:
        """``Expand::AnalyzeSignal``; returns the random vector for the first period."""
        n = self.signal_length
        if history is None:
            raise ValueError("the first expand of a loss continues the played history: pass it")
        x = history[-n:].astype(np.float64)
        self._initialize_for_an_expand_period()
        distortion_lag, correlation_lag = self._best_lags(x)
        self.max_lag = max(distortion_lag, correlation_lag)
        corr_q14 = self._correlation_coefficient(x, distortion_lag, correlation_lag)
        amplitude_ratio = self._expand_vectors(x, distortion_lag, correlation_lag)
        self._unvoiced_model(x)
        random_vector = self._first_random_vector(distortion_lag)
        self._voice_mix_and_mute_slope(corr_q14, amplitude_ratio, distortion_lag)
        # Adaptation 1: the zero-input continuation of the real signal through
        # the unvoiced AR filter, for the first period's overlap smoothing.
        ov = self.overlap_length
        zi = lfiltic([1.0], self._ar_filter, x[::-1][:_UNVOICED_LPC_ORDER])
        cont, _ = lfilter([1.0], self._ar_filter, np.zeros(ov), zi=zi)
        if not np.all(np.isfinite(cont)):
            cont = np.full(ov, x[-1])
        self._continuation = cont
        return random_vector

    def _best_lags(self, x: np.ndarray) -> tuple[int, int]:
        """The distortion lag and the correlation lag of the best of three pitch candidates: 4 kHz
        correlation peaks, each refined by ``MinDistortion``, chosen by correlation / distortion."""
        fm = self.fs_mult
        n = len(x)
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
        return d_idx[best], c_idx[best]

    def _correlation_coefficient(self, x: np.ndarray, distortion_lag: int, correlation_lag: int) -> int:
        """The best normalised correlation between the two lags, Q14."""
        fm = self.fs_mult
        n = len(x)
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
            return min(16384, int(max_corr / np.sqrt(e1 * e2) * 16384.0))
        return 0

    def _expand_vectors(self, x: np.ndarray, distortion_lag: int, correlation_lag: int) -> int:
        """The two expand vectors (energy-matched) and the three lags; returns the amplitude ratio, Q13."""
        n = len(x)
        exp_len = self.max_lag + self.overlap_length
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
            self.expand_lags = [distortion_lag] * 3
        else:
            third = ((distortion_lag + correlation_lag - 1) // 2 if distortion_lag > correlation_lag
                     else (distortion_lag + correlation_lag + 1) // 2)
            self.expand_lags = [distortion_lag, (distortion_lag + correlation_lag) // 2, third]
        return amplitude_ratio

    def _unvoiced_model(self, x: np.ndarray) -> None:
        """The AR model of the unvoiced part (LPC of the last 20 ms), its filter state and gain
        (residual RMS of the last 128 samples)."""
        n = len(x)
        order = _UNVOICED_LPC_ORDER
        lpc_len = _LPC_ANALYSIS_LENGTH * self.fs_mult
        seg = x[n - lpc_len:]
        ac = np.array([np.dot(seg[k:], seg[:lpc_len - k]) for k in range(order + 1)])
        if ac[0] > 0:
            a = levinson_durbin(ac, order)
            if a is None:
                a = np.zeros(order + 1)
                a[0] = 1.0
            self._ar_filter = a
        self._ar_filter_state = x[n - order:].copy()
        residual = lfilter(self._ar_filter, [1.0], x[n - 128 - order:])[order:]
        self._ar_gain = np.sqrt(float(np.dot(residual, residual)) / 128.0) / 8192.0

    def _first_random_vector(self, distortion_lag: int) -> np.ndarray:
        """The first period's noise: the start of the table (more, if the lag needs it)."""
        noise_length = 2 * distortion_lag + 30 if distortion_lag < 40 else distortion_lag + 30
        if noise_length <= RANDOM_TABLE_SIZE:
            return RANDOM_TABLE[:noise_length].copy()
        self.random_vector.increase_seed_increment(2)
        return np.concatenate([RANDOM_TABLE, self.random_vector.generate(noise_length - RANDOM_TABLE_SIZE)])

    def _voice_mix_and_mute_slope(self, corr_q14: int, amplitude_ratio: int, distortion_lag: int) -> None:
        """The voice-mix factor from the correlation (Q14 polynomial), and the muting slope and
        onset from the amplitude ratio."""
        if corr_q14 > 7875:
            x1 = corr_q14
            x2 = (x1 * x1) >> 14
            x3 = (x1 * x2) >> 14
            temp_sum = -5179 * 16384 + 19931 * x1 - 16422 * x2 + 5776 * x3
            vmf = min(int(temp_sum / 4096), 16384)
            self.voice_mix_factor = max(vmf, 0)
        else:
            self.voice_mix_factor = 0
        slope = amplitude_ratio
        if slope > 12288:
            denom = min((distortion_lag * slope) >> 8, 32767)
            temp_ratio = ((slope - 8192) << 12) // denom
            if slope > 14746:
                self.mute_slope = (temp_ratio + 1) // 2
            else:
                self.mute_slope = (temp_ratio + 4) // 8
            self.onset = True
        else:
            self.mute_slope = int(((8192 - slope) * 128) / distortion_lag)
            if self.voice_mix_factor <= 13107:
                self.mute_slope = max(5243 // self.fs_mult, self.mute_slope)
            elif slope > 8028:
                self.mute_slope = 0
            self.onset = False

    def _update_lag_index(self) -> None:
        self._current_lag_index += self._lag_index_direction
        if self._current_lag_index <= 0:
            self._lag_index_direction = 1
        if self._current_lag_index >= _NUM_LAGS - 1:
            self._lag_index_direction = -1

    def process(self, history: Optional[np.ndarray] = None) -> np.ndarray:
        """``Expand::Process``: one pitch period, continuing the played ``history`` (read at the first
        expand of a loss); smooths into the tail of :attr:`pending`."""
        fm = self.fs_mult
        ov = self.overlap_length
        if self._first_expand:
            random_vector = self._analyze_signal(history)
            self._first_expand = False
        else:
            random_vector = self.generate_random_vector(2, self.max_lag)
        self._update_lag_index()

        lag = self.expand_lags[self._current_lag_index]
        pos = self.max_lag + ov - lag - ov
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
        if self.mute_factor > 819 and self._current_voice_mix_factor > 8192:
            if len(self.pending) >= ov:
                tail = self.pending[-ov:]
                self.pending[-ov:] = (tail * self.mute_window
                                      + q14_mul(self.mute_factor, storage[:ov]) * self.unmute_window)
            else:
                smooth_start = True  # adaptation 1, applied below

        # Unvoiced part: AR-filtered, scaled random vector.
        scaled = random_vector[:lag] * self._ar_gain
        zi = lfiltic([1.0], self._ar_filter, self._ar_filter_state[::-1])
        unvoiced, _ = lfilter([1.0], self._ar_filter, scaled, zi=zi)
        self._ar_filter_state = unvoiced[-_UNVOICED_LPC_ORDER:].copy()

        # Voiced / unvoiced cross-fade.
        temp_shift = self.max_lag.bit_length() - 5
        mix_increment = 256 >> temp_shift
        if self._stop_muting:
            mix_increment = 0
        temp_length = (self._current_voice_mix_factor - self.voice_mix_factor) >> (8 - temp_shift)
        temp_length = max(0, min(temp_length, lag))
        out = np.empty(lag)
        f = self._current_voice_mix_factor - mix_increment * np.arange(temp_length)
        out[:temp_length] = (f * voiced[:temp_length] + (16384 - f) * unvoiced[:temp_length]) / 16384.0
        self._current_voice_mix_factor -= mix_increment * temp_length
        if temp_length < lag:
            if mix_increment != 0:
                self._current_voice_mix_factor = self.voice_mix_factor
            c = self._current_voice_mix_factor
            out[temp_length:] = (c * voiced[temp_length:] + (16384 - c) * unvoiced[temp_length:]) / 16384.0

        # Muting.
        ce = self._consecutive_expands
        if ce == 3:
            self.mute_slope = max(self.mute_slope, 1049 // fm)
        if ce == 7:
            self.mute_slope = max(self.mute_slope, 2097 // fm)
        if ce != 0 or not self.onset:
            out = q14_mul(self.mute_factor, out)
            if not self._stop_muting:
                q20 = (16384 << 6) + 32 - self.mute_slope * np.arange(lag)
                out = out * (np.maximum(q20, 0) >> 6) / 16384.0
                gain = 16384 - ((lag * self.mute_slope + 8192) >> 6)
                gain = (max(gain, 0) * self.mute_factor + 8192) >> 14
                if ce > 3 and gain >= self.mute_factor:
                    self.mute_factor = 0
                else:
                    self.mute_factor = gain

        # Background noise (silent unless background_noise=True and estimated).
        if self.background_noise_enabled:
            unmute = not self._stop_muting
            noise = self.background_noise.generate(random_vector, lag, self.mute_slope, unmute)
            out = out + noise / INT16_SCALE

        if smooth_start and self._continuation is not None:
            out[:ov] = self._continuation * self.mute_window + out[:ov] * self.unmute_window

        self._consecutive_expands = min(ce + 1, _MAX_CONSECUTIVE_EXPANDS)
        return out

    def set_parameters_for_merge_after_expand(self) -> None:
        """``Expand::SetParametersForMergeAfterExpand``: the next period at lag index 0, muting stopped."""
        self._current_lag_index = -1
        self._lag_index_direction = 1
        self._stop_muting = True

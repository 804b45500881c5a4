"""``DspHelper`` (``dsp_helper.cc``): the signal helpers Expand and Merge share.

Downsampling to 4 kHz (with ``WebRtcSpl_DownsampleFast``), peak detection with NetEQ's
parabolic fit, the minimum-distortion lag search, the overlap windows that smooth one signal
into another over ``overlap_length`` samples, and Q14 gains. Tables are NetEQ's, keyed by
``fs_mult`` (the sample rate / 8000).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: ``DspHelper::kDownsample{8,16,32,48}kHzTbl`` (Q12), keyed by fs_mult.
DOWNSAMPLE_TBL = {
    1: np.array([1229, 1638, 1229], dtype=np.float64) / 4096.0,
    2: np.array([614, 819, 1229, 819, 614], dtype=np.float64) / 4096.0,
    4: np.array([584, 512, 625, 667, 625, 512, 584], dtype=np.float64) / 4096.0,
    6: np.array([1019, 390, 427, 440, 427, 390, 1019], dtype=np.float64) / 4096.0,
}

#: ``DspHelper::kMuteFactorStart*`` etc. (Q15): mute start, mute increment,
#: unmute start, unmute increment.
OVERLAP_WINDOW = {
    1: (27307, -5461, 5461, 5461),
    2: (29789, -2979, 2979, 2979),
    4: (31208, -1560, 1560, 1560),
    6: (31711, -1057, 1057, 1057),
}

#: ``DspHelper::kParabolaCoefficients``.
PARABOLA = (
    (120, 32, 64), (140, 44, 75), (150, 50, 80), (160, 57, 85),
    (180, 72, 96), (200, 89, 107), (210, 98, 112), (220, 108, 117),
    (240, 128, 128), (260, 150, 139), (270, 162, 144), (280, 174, 149),
    (300, 200, 160), (320, 228, 171), (330, 242, 176), (340, 257, 181),
    (360, 288, 192),
)
FIT_INDEX = {
    1: (0, 8, 16),
    2: (0, 4, 8, 12, 16),
    4: (0, 2, 4, 6, 8, 10, 12, 14, 16),
    6: (0, 1, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16),
}


def overlap_windows(fs_mult: int) -> tuple[np.ndarray, np.ndarray]:
    """The mute (falling) and unmute (rising) windows of ``overlap_length = 5 * fs_mult`` samples."""
    mw0, mwi, uw0, uwi = OVERLAP_WINDOW[fs_mult]
    i = np.arange(5 * fs_mult)
    return (mw0 + mwi * i) / 32768.0, (uw0 + uwi * i) / 32768.0


def q14_mul(gain_q14: int, x: np.ndarray) -> np.ndarray:
    """``x`` scaled by a Q14 gain."""
    return x * (gain_q14 / 16384.0)


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
    fit = FIT_INDEX[fs_mult]
    num = -3.0 * s0 + 4.0 * s1 - s2
    den = s0 - 2.0 * s1 + s2
    temp = num * 120.0
    stp = PARABOLA[fit[fs_mult]][0] - PARABOLA[fit[fs_mult - 1]][0]
    strt = (PARABOLA[fit[fs_mult]][0] + PARABOLA[fit[fs_mult - 1]][0]) // 2
    if temp < -den * strt:
        lmt = strt - stp
        flag = 1
        while True:
            if flag == fs_mult or temp > -den * lmt:
                row = PARABOLA[fit[fs_mult - flag]]
                value = (den * row[1] + num * row[2] + s0 * 256.0) / 256.0
                return index * 2 * fs_mult - flag, value
            flag += 1
            lmt -= stp
    elif temp > -den * (strt + stp):
        lmt = strt + 2 * stp
        flag = 1
        while True:
            if flag == fs_mult or temp < -den * lmt:
                row = PARABOLA[fit[fs_mult + flag]]
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

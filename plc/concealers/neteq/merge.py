"""``Merge`` (``merge.cc``): the first received frame after a loss, merged into the expansion.

Ported for its parts: ``GetExpandedSignal`` (pending expand samples plus one more period with
lag index 0 and muting stopped, repeated), ``SignalScaling`` (the new audio starts at
``max(expand mute factor, sqrt(E_expanded / E_input))`` and ramps up at
``max(4194 / fs_mult, back-to-full-scale)`` per sample, Q20), ``Downsample`` and
``CorrelateAndPeakSearch`` (4 kHz correlation of the new frame with the expanded signal over
NetEQ's allowed lag range, single peak with parabolic fit), and the linear cross-fade
``DspHelper::CrossFade``.

Adaptation to this project's fixed-length, time-aligned frames: NetEQ inserts the
``best_correlation_index`` samples of expansion before the new frame and lets the jitter
buffer absorb the extra delay; here the frame must keep its length and end on the received
samples. The lag ``b`` that CorrelateAndPeakSearch finds says that the new audio lines up with
the expansion read ``b`` samples ahead. The output therefore (a) plays the expansion, (b) jumps
from reading it at ``n`` to reading it at ``n + b`` at the point of the first pitch period where
the two readings differ least (``MinDistortion`` over ``overlap_length`` samples), smoothed with
NetEQ's overlap windows -- a splice inside the synthetic signal, the same kind NetEQ makes
between periods of different lag -- then (c) cross-fades the aligned expansion into the scaled
new audio with ``CrossFade`` over at most 60 * fs_mult samples, the ramp reaching unity before
(d) the last ``merge_tail`` samples (2 ms by default), which are the received samples unchanged.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .dsp_helper import DOWNSAMPLE_TBL, downsample_fast, peak_detection
from .expand import Expand

# Merge constants (merge.h).
_EXPAND_DOWNSAMP_LENGTH = 100
_INPUT_DOWNSAMP_LENGTH = 40
_MAX_CORRELATION_LENGTH = 60


class Merge:
    """NetEQ's Merge on top of an :class:`~.expand.Expand` (its pending samples and mute factor).

    ``sample_rate`` sets NetEQ's ``timestamps_per_call_`` (10 ms); the last ``merge_tail``
    samples of every merged frame are the received samples unchanged.
    """

    def __init__(self, expand: Expand, sample_rate: int, merge_tail: int) -> None:
        self.expand = expand
        self.sample_rate = sample_rate
        self.merge_tail = merge_tail

    def _signal_scaling(self, x: np.ndarray, expanded: np.ndarray) -> int:
        """``Merge::SignalScaling``: Q14 start gain for the new audio."""
        m = min(64 * self.expand.fs_mult, len(x))
        e_exp = float(np.dot(expanded[:m], expanded[:m]))
        e_in = float(np.dot(x[:m], x[:m]))
        if e_in > e_exp:
            return min(16384, int(np.sqrt(e_exp / e_in) * 16384.0))
        return 16384

    def _correlate_and_peak_search(self, x: np.ndarray, expanded: np.ndarray, old_length: int,
                                   expand_period: int) -> int:
        """``Merge::Downsample`` + ``Merge::CorrelateAndPeakSearch``."""
        fm = self.expand.fs_mult
        coeffs = DOWNSAMPLE_TBL[fm]
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

        stop = min(_MAX_CORRELATION_LENGTH, self.expand.max_lag // (fm * 2) + 1)
        windows = sliding_window_view(exp_ds, _INPUT_DOWNSAMP_LENGTH)[:stop]
        correlation = windows @ in_ds

        pad = self.expand.overlap_length - 1
        corr16 = np.zeros(2 * pad + _MAX_CORRELATION_LENGTH + 1)
        corr16[pad:pad + stop] = correlation
        tpc = self.sample_rate // 100  # timestamps_per_call_
        start_index = max(old_length, tpc + self.expand.overlap_length)
        start_index = 0 if input_length > start_index else start_index - input_length
        start_ds = start_index // (fm * 2)
        modified_stop = max(1, min(stop, _MAX_CORRELATION_LENGTH + pad - start_ds))
        data = corr16[pad + start_ds:].copy()
        if len(data) < modified_stop + 2:
            data = np.concatenate([data, np.zeros(modified_stop + 2 - len(data))])
        (peak,), _ = peak_detection(data, modified_stop, 1, fm)
        best = peak + start_index
        while (best + input_length < tpc + self.expand.overlap_length) or (best + input_length < old_length):
            best += expand_period
        return best

    def process(self, frame: np.ndarray) -> np.ndarray:
        """``Merge::Process`` for the first received ``frame`` after a loss (see the module docstring)."""
        expand = self.expand
        n = len(frame)
        ov = expand.overlap_length
        fm = expand.fs_mult
        x = frame.astype(np.float64)
        if len(expand.pending) < ov:  # cannot happen after an expand; be safe
            expand.pending = np.concatenate([expand.pending, np.zeros(ov - len(expand.pending))])
        old_length = len(expand.pending)

        # GetExpandedSignal: one more period (lag index 0, muting stopped).
        expand.set_parameters_for_merge_after_expand()
        period = expand.process()  # not the first expand of the loss: no history needed
        expand_period = len(period)
        future = expand.pending
        required = max(202 * fm, old_length)
        needed = max(required, 2 * (n + expand.max_lag + 202 * fm))
        reps = int(np.ceil(max(needed - old_length, 0) / expand_period)) + 1
        expanded = np.concatenate([future, np.tile(period, reps)])

        mute = max(expand.mute_factor, self._signal_scaling(x, expanded))
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
        out[n0:splice_end] = (expanded[n0:splice_end] * expand.mute_window[:k]
                              + expanded[b + n0:b + splice_end] * expand.unmute_window[:k])

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
        expand.reset()
        return out

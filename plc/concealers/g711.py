"""ITU-T G.711 Appendix I packet loss concealment, as a zero-delay float port.

G.711 Appendix I (09/99, "A high quality low-complexity algorithm for packet
loss concealment with G.711") is the classic pitch-waveform-replication PLC.
This module follows its reference C code (``lowcfe.c``, class ``LowcFE``)
step by step, in float and vectorised with numpy:

* **Pitch** (``findpitch``): at the first lost 10 ms, the last 20 ms of the
  history are correlated with the history ``pitch`` samples earlier, for
  pitch periods of 5..15 ms (200..66 Hz). The correlation is normalised by
  the energy of the lagged segment only (floored at ``CORRMINPOWER``). A
  coarse search on every second lag using every second sample (2:1
  decimation) is refined by a full-resolution search of the neighbouring
  lags. Ties go to the shorter period in the coarse search and to the first
  lag in the fine search, as in the reference (``>=`` and ``>``).
* **Pitch buffer**: the synthetic signal repeats the last pitch period of
  the history. Its last 1/4 period is overlap-added (triangular weights)
  with the 1/4 period just before the period start, so it loops without a
  click. After 10 ms of erasure the buffer grows to 2 periods, after 20 ms
  to 3 (the reference ``erasecnt == 1 || erasecnt == 2`` branch); each time
  the first 1/4 period read from the new buffer is overlap-added with the
  continuation of the old one.
* **Attenuation** (``scalespeech``): none in the first 10 ms; from the
  second 10 ms a linear ramp of 20 % per 10 ms, per sample, so the gain
  reaches zero at 60 ms; from 60 ms on the output is exactly silent.
* **End of the erasure** (``addtohistory``/``overlapaddatend``): the
  synthetic signal is continued past the erasure, scaled by the gain the
  erasure had reached, and cross-faded into the first good frame over
  1/4 pitch period + 4 ms per extra 10 ms of erasure, at most 10 ms.

All sample counts of the 8 kHz reference are multiplied by ``sample_rate /
8000`` (pitch 80..240 samples, 20 ms correlation, history of 48.75 ms, 4 ms
end-overlap increment at 16 kHz). The coarse search keeps a 2:1 decimation
at both rates. ``CORRMINPOWER`` (250 in 16-bit units over the 80 products of
the 8 kHz coarse search) is scaled to float samples and to the number of
products summed.

Adaptations to this project's streaming interface
-------------------------------------------------
The reference delays its output by ``POVERLAPMAX`` (3.75 ms) so that, when an
erasure starts, it can still rewrite the last 1/4 pitch period of real
signal ``x``: over those ``q`` samples it plays ``lw*x[n] + rw*x[n-P]``,
i.e. the period-ago signal ``x[n-P]`` plus the difference ``x[n] - x[n-P]``
faded out, so that the real signal runs smoothly into the repeated period.
Our interface has zero delay, so those samples have already been played. We
keep the reference's modification of the pitch buffer (the loop junction)
and move the start-of-erasure overlap-add forward in time instead: the first
``q = P/4`` synthetic samples are cross-faded, with the reference's
triangular weights, *from* a continuation of the played signal *into* the
pitch buffer. The continuation is the period repetition ``x[n-P]`` moved by
the last known period difference ``d = x[end-1] - x[end-1-P]``, so it joins
the last played sample; the output is therefore ``x[n-P] + lw[n]*d``, the
zero-delay twin of the reference (the difference signal, held at its last
value, fades out after instead of before the erasure start). Unlike a
mirrored tail (spandsp's choice), it keeps the waveform's course and level
in the first 1/4 period, also for long pitch periods.

The reference works on 10 ms frames. Here the erasure is run in internal
10 ms blocks, so ``frame_ms`` other than 10 (e.g. 20 or 5) gives exactly the
same signal as 10 ms frames; the end-of-erasure cross-fade is done at the
start of the first received frame (capped at its length), and the rest of
that frame is the received samples unchanged.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import Concealer

__all__ = ["G711Concealer"]

#: Full scale of the 16-bit reference, to carry its absolute thresholds over to float samples.
_INT16_SCALE = 32768.0


def _ola_weights(cnt: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference ``overlapadd`` weights: left falls 1-1/cnt .. 0, right rises 1/cnt .. 1."""
    rw = np.arange(1, cnt + 1, dtype=np.float64) / cnt
    return 1.0 - rw, rw


class G711Concealer(Concealer):
    """ITU-T G.711 Appendix I PLC (pitch waveform replication), zero-delay float port.

    Parameters
    ----------
    sample_rate : int
        8000 (the reference) or 16000 (every count of the reference doubled).
    frame_ms : int
        Frame length of the streaming interface; the algorithm itself runs in
        10 ms blocks like the reference, whatever the frame length.

    Attributes
    ----------
    pitch : int
        Pitch period in samples found at the start of the last erasure
        (0 before the first erasure).
    last_resume_overlap : int
        Length in samples of the cross-fade done in the last resume frame.
    """

    name = "g711"

    #: Coarse-search decimation of the correlation (NDEC of the reference).
    NDEC = 2
    #: Gain lost per 10 ms block after the first one (ATTENFAC).
    ATTENFAC = 0.2
    #: Blocks after which the output is silent (the reference's ``erasecnt > 5``).
    SILENT_AFTER_BLOCKS = 6

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 10) -> None:
        if sample_rate not in (8000, 16000):
            raise ValueError(f"g711: sample_rate must be 8000 or 16000 Hz, got {sample_rate}")
        k = sample_rate // 8000
        self.pitch_min = 40 * k                     # 200 Hz
        self.pitch_max = 120 * k                    # 66.7 Hz
        self.pitch_diff = self.pitch_max - self.pitch_min
        self.poverlap_max = self.pitch_max >> 2     # 3.75 ms
        self.history_len = self.pitch_max * 3 + self.poverlap_max   # 48.75 ms
        self.corr_len = 80 * 2 * k                  # 20 ms
        self.corr_buf_len = self.corr_len + self.pitch_max
        # 250 in int16^2 over the reference's 80 coarse products; scaled to float and to our product count.
        self.corr_min_power = 250.0 * (self.corr_len // self.NDEC) / 80.0 / _INT16_SCALE ** 2
        self.eoverlap_incr = 32 * k                 # 4 ms per extra 10 ms of erasure
        self.block = 80 * k                         # FRAMESZ: 10 ms
        self.atten_incr = self.ATTENFAC / self.block
        # the reference history (48.75 ms) fits in 50 ms at both rates
        super().__init__(sample_rate, frame_ms, history_ms=50)

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        super().reset()
        self.pitch = 0
        self.poverlap = 0
        self.last_resume_overlap = 0
        self._pitchbuf = np.zeros(self.history_len, dtype=np.float64)
        self._lastq = np.zeros(0, dtype=np.float64)
        self._pitchblen = 0
        self._poffset = 0
        self._block_index = 0     # 10 ms block of the erasure being played (erasecnt while inside it)
        self._block_pos = 0       # samples of that block already played
        self._fade = None         # signal to fade out of over the first poverlap samples of the block

    @property
    def pitch_buffer_length(self) -> int:
        """Samples in the circular pitch buffer now (1, 2 or 3 pitch periods)."""
        return self._pitchblen

    @property
    def pitch_hz(self) -> float:
        """The last pitch estimate in Hz (0.0 before the first erasure)."""
        return self.sample_rate / self.pitch if self.pitch else 0.0

    # ------------------------------------------------------------------ pitch
    def find_pitch(self, signal: np.ndarray) -> int:
        """Pitch period in samples of the end of ``signal`` (the reference ``findpitch``).

        ``signal`` must hold at least ``corr_buf_len`` samples (35 ms); only
        its last ``corr_buf_len`` are used.
        """
        buf = np.asarray(signal, dtype=np.float64).reshape(-1)
        if len(buf) < self.corr_buf_len:
            raise ValueError(f"find_pitch needs {self.corr_buf_len} samples, got {len(buf)}")
        end = len(buf)
        lseg = buf[end - self.corr_len:]
        # r[j + i] for lags j = 0..pitch_diff (pitch = pitch_max - j), i = 0..corr_len-1
        r = buf[end - self.corr_buf_len:end - self.pitch_min]
        windows = sliding_window_view(r, self.corr_len)

        # coarse search: every NDEC-th lag, every NDEC-th sample; ties -> the later lag (shorter pitch)
        coarse = windows[::self.NDEC, ::self.NDEC]
        corr = coarse @ lseg[::self.NDEC]
        energy = np.einsum("ij,ij->i", coarse, coarse)
        score = corr / np.sqrt(np.maximum(energy, self.corr_min_power))
        best = (len(score) - 1 - int(np.argmax(score[::-1]))) * self.NDEC

        # fine search around it at full resolution; ties -> the first lag
        j0 = max(best - (self.NDEC - 1), 0)
        j1 = min(best + (self.NDEC - 1), self.pitch_diff)
        fine = windows[j0:j1 + 1]
        corr = fine @ lseg
        energy = np.einsum("ij,ij->i", fine, fine)
        score = corr / np.sqrt(np.maximum(energy, self.corr_min_power))
        best = j0 + int(np.argmax(score))
        return self.pitch_max - best

    # ------------------------------------------------------ pitch buffer ops
    def _getfespeech(self, n: int) -> np.ndarray:
        """Next ``n`` samples of the circular pitch buffer (the reference ``getfespeech``)."""
        start = self.history_len - self._pitchblen
        idx = start + (self._poffset + np.arange(n)) % self._pitchblen
        self._poffset = (self._poffset + n) % self._pitchblen
        return self._pitchbuf[idx]

    def _smooth_loop_junction(self) -> None:
        """OLA the saved last 1/4 period with the 1/4 period before the buffer start."""
        q = self.poverlap
        end = self.history_len
        start = end - self._pitchblen
        lw, rw = _ola_weights(q)
        self._pitchbuf[end - q:] = lw * self._lastq + rw * self._pitchbuf[start - q:start]

    def _start_block(self) -> None:
        """Events at the start of 10 ms block ``_block_index`` of an erasure."""
        k = self._block_index
        self._fade = None
        if k == 0:
            # first lost 10 ms: pitch, one-period buffer, loop-junction OLA
            self._pitchbuf = self.history[-self.history_len:].astype(np.float64)
            self.pitch = self.find_pitch(self._pitchbuf)
            self.poverlap = self.pitch >> 2
            self._lastq = self._pitchbuf[-self.poverlap:].copy()
            self._poffset = 0
            self._pitchblen = self.pitch
            self._smooth_loop_junction()
            # zero-delay adaptation of the start-of-erasure OLA: fade from the period repetition
            # moved by the last period difference d = x[n] - x[n-P] (so it joins the last played
            # sample) into the pitch buffer itself, i.e. fade d out over the first 1/4 period
            end = self.history_len
            d = float(self.history[-1]) - self._pitchbuf[end - self.pitch - 1]
            self._fade = self._pitchbuf[end - self.pitch:end - self.pitch + self.poverlap] + d
        elif k in (1, 2):
            # after 10 and 20 ms: one more period in the buffer, OLA old continuation -> new buffer
            saved = self._poffset
            tmp = self._getfespeech(self.poverlap)
            self._poffset = saved
            while self._poffset > self.pitch:
                self._poffset -= self.pitch
            self._pitchblen += self.pitch
            self._smooth_loop_junction()
            self._fade = tmp

    def _synthetic(self, n: int, pos: int) -> np.ndarray:
        """``n`` unscaled synthetic samples from block position ``pos``, pending fade applied."""
        seg = self._getfespeech(n)
        if self._fade is not None and pos < self.poverlap:
            m = min(self.poverlap - pos, n)
            lw, rw = _ola_weights(self.poverlap)
            seg[:m] = lw[pos:pos + m] * self._fade[pos:pos + m] + rw[pos:pos + m] * seg[:m]
        return seg

    # -------------------------------------------------------------- streaming
    def _conceal(self) -> np.ndarray:
        if self.lost_frames == 0:
            self._block_index = 0
            self._block_pos = 0
        out = np.empty(self.frame_samples, dtype=np.float64)
        done = 0
        while done < self.frame_samples:
            if self._block_pos == 0:
                self._start_block()
            k, pos = self._block_index, self._block_pos
            n = min(self.block - pos, self.frame_samples - done)
            if k >= self.SILENT_AFTER_BLOCKS:
                seg = np.zeros(n)
            else:
                seg = self._synthetic(n, pos)
                if k >= 1:   # scalespeech: linear ramp, 20 % per 10 ms from the second block on
                    seg *= 1.0 - (k - 1) * self.ATTENFAC - (pos + np.arange(n)) * self.atten_incr
            out[done:done + n] = seg
            done += n
            self._block_pos += n
            if self._block_pos == self.block:
                self._block_index += 1
                self._block_pos = 0
                self._fade = None
        return out.astype(np.float32)

    def _resume(self, frame: np.ndarray) -> np.ndarray:
        k, pos = self._block_index, self._block_pos
        erasecnt = k + (1 if pos else 0)          # 10 ms blocks (partly) concealed
        olen = self.poverlap + (erasecnt - 1) * self.eoverlap_incr
        olen = max(1, min(olen, self.block, self.frame_samples))
        gain = 1.0 if k == 0 else 1.0 - (k - 1) * self.ATTENFAC - pos * self.atten_incr
        gain = max(gain, 0.0)
        synthetic = self._synthetic(olen, pos)
        lw, rw = _ola_weights(olen)
        out = frame.copy()
        out[:olen] = (gain * lw) * synthetic + rw * frame[:olen].astype(np.float64)
        self.last_resume_overlap = olen
        self._fade = None
        self._block_index = 0
        self._block_pos = 0
        return out

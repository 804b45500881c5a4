"""The sync buffer: audio prepared for playout but not yet played (NetEQ's ``SyncBuffer``).

Decoded frames go through the concealer into this buffer; time-stretching
rewrites what it holds; every tick plays its first 10 ms. Each sample carries
the RTP timestamp it came from, its packet's arrival time (NaN for
concealment), whether it is received audio and whether it is silent
concealment, so that delays and the sample counters are measured at the moment
a sample is played.

Backed by preallocated arrays with a moving start, so a tick allocates nothing.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


class SyncBuffer:
    """Future samples with per-sample source timestamp, arrival time, received and silent flags.

    Parameters
    ----------
    capacity : int
        Most samples held; 4096 (256 ms at 16 kHz) is far more than the
        jitter buffer ever prepares (30 ms plus a stretch).
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = int(capacity)
        self._audio = np.zeros(self.capacity, dtype=np.float32)
        self._ts = np.zeros(self.capacity, dtype=np.float64)
        self._arrival = np.zeros(self.capacity, dtype=np.float64)
        self._real = np.zeros(self.capacity, dtype=bool)
        self._silent = np.zeros(self.capacity, dtype=bool)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def audio(self) -> np.ndarray:
        """The prepared samples (a view, valid until the next change)."""
        return self._audio[self._start:self._end]

    @property
    def timestamps(self) -> np.ndarray:
        return self._ts[self._start:self._end]

    def clear(self) -> None:
        self._start = self._end = 0

    def first_timestamp(self) -> Optional[float]:
        """Source timestamp of the next sample to play, None when empty."""
        return float(self._ts[self._start]) if self._end > self._start else None

    def has_received_audio(self) -> bool:
        return bool(self._real[self._start:self._end].any())

    def _room(self, n: int) -> None:
        if self._end + n <= self.capacity:
            return
        size = len(self)
        if size + n > self.capacity:
            raise OverflowError(f"sync buffer of {self.capacity} samples cannot take {n} more")
        for arr in (self._audio, self._ts, self._arrival, self._real, self._silent):
            arr[:size] = arr[self._start:self._end]
        self._start, self._end = 0, size

    def append(self, audio: np.ndarray, first_ts: float, ts_step: float, arrival_ms: float, received: bool,
               silent: bool = False) -> None:
        """Add samples; sample ``i`` came from timestamp ``first_ts + i * ts_step``. ``silent``: the
        samples are concealment that had gone silent (``silentConcealedSamples``)."""
        n = len(audio)
        self._room(n)
        s, e = self._end, self._end + n
        self._audio[s:e] = audio
        if ts_step:
            self._ts[s:e] = first_ts + np.arange(n) * ts_step
        else:
            self._ts[s:e] = first_ts
        self._arrival[s:e] = arrival_ms
        self._real[s:e] = received
        self._silent[s:e] = silent
        self._end = e

    def replace(self, audio: np.ndarray, index: np.ndarray) -> None:
        """Replace the future by ``audio``, whose sample ``i`` stands for old sample ``index[i]``."""
        s = self._start
        ts = self._ts[s + index]
        arrival = self._arrival[s + index]
        real = self._real[s + index]
        silent = self._silent[s + index]
        n = len(audio)
        self._start = self._end = 0
        self._room(n)
        self._audio[:n] = audio
        self._ts[:n] = ts
        self._arrival[:n] = arrival
        self._real[:n] = real
        self._silent[:n] = silent
        self._end = n

    def pop(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Remove the next ``n`` samples; returns copies of (audio, timestamps, arrivals, received, silent)."""
        n = min(n, len(self))
        s = self._start
        out = (self._audio[s:s + n].copy(), self._ts[s:s + n].copy(),
               self._arrival[s:s + n].copy(), self._real[s:s + n].copy(), self._silent[s:s + n].copy())
        self._start += n
        if self._start == self._end:
            self._start = self._end = 0
        return out

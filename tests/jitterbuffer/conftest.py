"""Shared helpers of the jitter buffer tests (fixtures only: this folder is not a package)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from jitterbuffer.rtp import RtpPacket  # noqa: E402
from plc.codecs import get_codec  # noqa: E402
from plc.codecs.pcm import encode_pcm  # noqa: E402

PCM_PAYLOAD_TYPE = get_codec("pcm").payload_type

SR = 16000
PACKET = 320


def harmonic(seconds: float, f0: float = 180.0, peak: float = 0.5, sr: int = SR) -> np.ndarray:
    """A steady voiced-like signal with a slowly moving pitch."""
    t = np.arange(int(seconds * sr)) / sr
    f = f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = np.sin(phase) + 0.5 * np.sin(2 * phase + 0.3) + 0.25 * np.sin(3 * phase + 1.1)
    return (peak * x / np.max(np.abs(x))).astype(np.float32)


def pcm_packets(x: np.ndarray, seq0: int = 1000, ts0: int = 5000, ssrc: int = 0x1234,
                pt: int = PCM_PAYLOAD_TYPE) -> list[bytes]:
    """20 ms PCM RTP packets of ``x`` (16 kHz), sequence and timestamp wrapping as needed."""
    n = len(x) // PACKET
    return [RtpPacket(pt, (seq0 + k) & 0xFFFF, (ts0 + k * PACKET) & 0xFFFFFFFF, ssrc,
                      encode_pcm(x[k * PACKET:(k + 1) * PACKET])).serialize() for k in range(n)]


def play(jb, arrivals, n_ticks: int, start_ms: float = 0.0, until_done: bool = False) -> np.ndarray:
    """Insert ``arrivals`` (list of (arrival_ms, bytes)) and tick ``n_ticks`` times from ``start_ms``
    (``until_done``: stop earlier, once everything that arrived has been played)."""
    arrivals = sorted(arrivals, key=lambda a: a[0])
    out, i = [], 0
    for k in range(n_ticks):
        now = start_ms + 10.0 * k
        while i < len(arrivals) and arrivals[i][0] <= now:
            jb.insert_packet(arrivals[i][1], arrivals[i][0])
            i += 1
        frame = jb.get_audio(now)
        assert frame.shape == (160,) and frame.dtype == np.float32
        out.append(frame)
        if until_done and i == len(arrivals) and not jb.has_pending_audio:
            break
    return np.concatenate(out)


@pytest.fixture
def helpers():
    """The module's helper functions, as attributes."""
    class H:
        pass

    h = H()
    h.harmonic = harmonic
    h.pcm_packets = pcm_packets
    h.play = play
    h.SR = SR
    h.PACKET = PACKET
    return h

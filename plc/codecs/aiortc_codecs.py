"""PCMU, PCMA and G.722 payloads, decoded by aiortc's own decoders (its public ``aiortc.codecs``).

These reach the jitter buffer only in aiortc calls (:mod:`plc.webrtc`), under the payload type
aiortc negotiated; the decoder is aiortc's, the output resampled to 16 kHz.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..dsp import StreamUpsampler
from .payload import MAX_PACKET_MS, SAMPLE_RATE, PayloadDecoder


class AiortcPayloadDecoder(PayloadDecoder):
    """PCMU, PCMA or G.722 decoded by aiortc's own decoder, resampled to 16 kHz.

    All three use an 8000 Hz RTP clock; one payload byte is one RTP timestamp
    unit (G.722 packs two 16 kHz samples into each byte).
    """

    def __init__(self, mime_type: str, clock_rate: int = 8000, frame_ms: int = 20) -> None:
        del frame_ms  # none of them conceals
        self.mime_type = mime_type
        self.name = mime_type.split("/")[1].lower()
        self.clock_rate = int(clock_rate)
        self._native_rate = 16000 if self.name == "g722" else 8000
        self.reset()

    def reset(self) -> None:
        from aiortc.codecs import get_decoder
        from aiortc.rtcrtpparameters import RTCRtpCodecParameters

        self._decoder = get_decoder(RTCRtpCodecParameters(mimeType=self.mime_type, clockRate=self.clock_rate,
                                                          channels=1))
        self._up = StreamUpsampler(SAMPLE_RATE // self._native_rate) if self._native_rate != SAMPLE_RATE else None

    def duration(self, payload: bytes) -> Optional[int]:
        n = len(payload)
        if n == 0 or n % (self.clock_rate // 100) or n > self.clock_rate * MAX_PACKET_MS // 1000:
            return None
        return n

    def decode(self, payload: bytes) -> Optional[np.ndarray]:
        from aiortc.jitterbuffer import JitterFrame

        n = self.duration(payload)
        if n is None:
            return None
        try:
            frames = self._decoder.decode(JitterFrame(bytes(payload), 0))
        except Exception:  # noqa: BLE001 - an av error: the jitter buffer conceals the packet
            return None
        parts = []
        for f in frames:
            a = f.to_ndarray().astype(np.float32)
            channels = len(f.layout.channels)
            if channels > 1:
                a = a.reshape(channels, -1).mean(axis=0) if f.format.is_planar else a.reshape(-1, channels).mean(axis=1)
            parts.append(a.reshape(-1) / 32768.0)
        x = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        native = n * self._native_rate // self.clock_rate
        x = np.pad(x, (0, max(0, native - len(x))))[:native]
        if self._up is not None:
            x = self._up(x)
        return x.astype(np.float32)

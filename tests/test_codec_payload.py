"""``encode_signal``: a whole signal coded packet by packet as a sender codes it, the encoder's
lookahead flushed out at the end, so the decoded stream (less the lookahead) covers the signal."""

import numpy as np
import pytest

from plc.codecs.opus import OpusDecoder, OpusEncoder
from plc.codecs.payload import encode_signal
from plc.codecs.pcm import PcmDecoder, PcmEncoder

from .conftest import harmonic


def test_pcm_packets_cover_the_signal_and_pad_with_silence():
    x = np.linspace(-0.5, 0.5, 700, dtype=np.float32)
    packets = encode_signal(PcmEncoder(frame_ms=20), x)
    assert len(packets) == 3                       # 700 samples in packets of 320, no lookahead
    decoded = np.concatenate([PcmDecoder().decode(p) for p in packets])
    np.testing.assert_allclose(decoded[:700], x, atol=1 / 32767)
    assert not decoded[700:].any()
    assert len(encode_signal(PcmEncoder(frame_ms=20), x, min_packets=5)) == 5


def test_opus_packets_flush_the_lookahead_and_decode_aligned():
    x = harmonic(180.0, seconds=0.3)
    enc = OpusEncoder(16000, bitrate_bps=24000, frame_ms=20)
    packets = encode_signal(enc, x)
    assert len(packets) * 320 >= len(x) + enc.lookahead > (len(packets) - 1) * 320
    dec = OpusDecoder(16000, 20)
    y = np.concatenate([dec.decode(p) for p in packets])
    assert len(y) >= enc.lookahead + len(x)
    # aligned once the lookahead is dropped: the best lag of the decoded signal is within 2 samples
    lags = np.arange(-40, 41)
    ref = x[800:-100]
    corr = [np.dot(y[enc.lookahead + lag + 800:enc.lookahead + lag + len(x) - 100], ref) for lag in lags]
    assert abs(lags[int(np.argmax(corr))]) <= 2


@pytest.mark.parametrize("min_packets", [0, 40])
def test_deterministic_and_min_packets_only_appends_silence(min_packets):
    x = harmonic(150.0, seconds=0.25) * 0.7
    a = encode_signal(OpusEncoder(16000, 24000, 20), x)
    b = encode_signal(OpusEncoder(16000, 24000, 20), x, min_packets=min_packets)
    assert b[:len(a)] == a and len(b) == max(len(a), min_packets)

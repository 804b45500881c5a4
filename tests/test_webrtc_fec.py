"""Opus in-band FEC in aiortc calls (plc.webrtc_fec, enable_concealment(fec=True)), over real loopback UDP."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

aiortc = pytest.importorskip("aiortc")

from aiortc import RTCConfiguration, RTCPeerConnection  # noqa: E402

from demo.call import ArrayAudioTrack, run_call  # noqa: E402
from plc.audio_io import resample  # noqa: E402
from plc.webrtc import STANDARD_STATS, enable_concealment  # noqa: E402
from plc.webrtc_fec import advertise_inband_fec, enable_opus_fec, fec_opus_encoder  # noqa: E402
from tests.conftest import syllabic  # noqa: E402

#: Isolated losses (20 ms packets) of the call below, each before a packet that aiortc's encoder with
#: FEC gives a copy (libopus' VAD calls it speech; checked offline with the same encoder).
DROPPED = [10, 24, 36, 47, 56, 66, 76, 86, 96, 106, 116, 127, 137]


def test_useinbandfec_is_added_to_every_opus_payload_type_only():
    sdp = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96 0\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
           "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 OPUS/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=0\r\n")
    out = advertise_inband_fec(sdp)
    assert "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n" in out
    assert "a=fmtp:111 minptime=10;useinbandfec=1\r\n" in out
    assert "fmtp:0" not in out and out.count("useinbandfec") == 2
    assert advertise_inband_fec(out) == out


def test_the_aiortc_encoder_with_fec_sends_lbrr_copies():
    import av

    from plc.codecs.opus_fec import has_lbrr

    x = (np.clip(resample(syllabic(2.0), 16000, 48000), -1, 1) * 32767).astype(np.int16)
    encoder = fec_opus_encoder(10)
    packets = []
    for k in range(len(x) // 960):
        frame = av.AudioFrame.from_ndarray(np.repeat(x[k * 960:(k + 1) * 960], 2).reshape(1, -1), format="s16",
                                           layout="stereo")
        frame.sample_rate, frame.pts = 48000, k * 960
        packets += encoder.encode(frame)[0]
    assert sum(has_lbrr(p) for p in packets) > len(packets) // 3   # at aiortc's 96 kbit/s stereo


def test_offers_and_answers_advertise_fec_and_disable_restores():
    async def main():
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(ArrayAudioTrack(np.zeros(48000, np.float32)))
        handle = enable_opus_fec(pc, 15)
        assert enable_opus_fec(pc, 15) is handle
        with pytest.raises(ValueError, match="already on"):
            enable_opus_fec(pc, 5)
        offer = await pc.createOffer()
        assert "useinbandfec=1" in offer.sdp
        await pc.setLocalDescription(offer)
        assert "useinbandfec=1" in pc.localDescription.sdp   # aiortc parses it back
        handle.disable()
        handle.disable()
        assert "createOffer" not in pc.__dict__ and "send" not in pc.getTransceivers()[0].sender.__dict__
        await pc.close()

    asyncio.run(main())
    for bad in (-1, 101, 2.5, True):
        with pytest.raises((ValueError, TypeError)):
            enable_opus_fec(RTCPeerConnection(), bad)


def test_fec_options_are_checked():
    pc = RTCPeerConnection()
    with pytest.raises(ValueError, match="goes with fec"):
        enable_concealment(pc, expected_loss_percent=5)
    handle = enable_concealment(pc, fec=True, expected_loss_percent=5)
    assert handle.fec is not None and handle.fec.expected_loss_percent == 5
    handle.disable()
    assert "createAnswer" not in pc.__dict__
    assert "fecPacketsReceived" in STANDARD_STATS and "fecPacketsDiscarded" in STANDARD_STATS


def test_a_call_with_fec_recovers_isolated_losses_from_the_next_packet():
    audio = resample(syllabic(3.5, seed=5), 16000, 48000).astype(np.float32)

    async def both():
        return await asyncio.gather(*[run_call(audio, "neteq", loss=None, jitter_ms=0.0, seed=1, lost=DROPPED,
                                               tail_s=0.6, fec=fec) for fec in (None, 10)])

    plain, with_fec = asyncio.run(both())
    s, p = with_fec.stats, plain.stats
    assert p["fecPacketsReceived"] == 0 and p["fecPacketsRecovered"] == 0
    assert s["fecPacketsReceived"] > 100                      # most packets of the call carry a copy
    assert s["fecPacketsRecovered"] >= len(DROPPED) - 1       # (one may slip on a busy host: its turn had come)
    assert s["concealedSamples"] < p["concealedSamples"]
    assert s["jitterBufferEmittedCount"] + s["concealedSamples"] == s["totalSamplesReceived"]

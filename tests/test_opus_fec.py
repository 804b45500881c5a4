"""Opus in-band FEC: the encoder's LBRR copies, the flag reader, decode_fec and the offline pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from plc.codecs.opus import OpusDecoder, OpusEncoder
from plc.codecs.opus_fec import fec_samples, has_lbrr, libopus_has_lbrr_check, parse_has_lbrr
from plc.offline import conceal_audio

from .conftest import syllabic


def encode(x: np.ndarray, frame_ms: int = 20, **options) -> list[bytes]:
    enc = OpusEncoder(16000, 24000, frame_ms, **options)
    n = enc.frame_samples
    return [enc.encode(x[k * n:(k + 1) * n]) for k in range(len(x) // n)]


@pytest.mark.parametrize("frame_ms", [10, 20, 40, 60])
def test_fec_encoder_makes_lbrr_copies_and_the_flag_readers_agree(frame_ms):
    x = syllabic()
    with_fec = encode(x, frame_ms, fec=True, expected_loss_percent=10)
    plain = encode(x, frame_ms)
    flags = [has_lbrr(p) for p in with_fec]
    assert sum(flags) > len(flags) // 3          # speech frames carry a copy
    assert not any(has_lbrr(p) for p in plain)   # libopus' default: no FEC
    assert flags == [parse_has_lbrr(p) for p in with_fec]
    assert {fec_samples(p, 16000) for p in with_fec if has_lbrr(p)} == {16 * frame_ms}
    assert not any(has_lbrr(p) for p in encode(x, frame_ms, fec=True, expected_loss_percent=0))


def test_flag_reader_refuses_malformed_and_celt_packets():
    for packet in (b"", b"\x00", bytes([0x0B]), bytes([0x03, 0x00]), bytes([0xF8]) + b"\xff" * 10,
                   bytes([0x4B, 0xFF])):
        assert not has_lbrr(packet) and not parse_has_lbrr(packet)
        assert fec_samples(packet, 16000) is None
    if not libopus_has_lbrr_check():
        pytest.skip("libopus < 1.5: only the parser is there")


def test_encoder_checks_expected_loss():
    for bad in (-1, 101, 2.5):
        with pytest.raises(ValueError, match="percentage"):
            OpusEncoder(16000, 24000, 20, fec=True, expected_loss_percent=bad)


def test_decode_fec_recovers_a_lost_frame_better_than_plc():
    x = syllabic(seed=1)
    packets = encode(x, fec=True)
    clean_dec = OpusDecoder(16000)
    clean = np.concatenate([clean_dec.decode(p) for p in packets])
    lost = [k for k in range(5, len(packets) - 1, 9) if has_lbrr(packets[k + 1])]
    assert len(lost) > 5
    errors = {}
    for mode in ("plc", "fec"):
        dec, out = OpusDecoder(16000), []
        for k, p in enumerate(packets):
            if k in lost:
                out.append(dec.decode_fec(packets[k + 1], 320) if mode == "fec" else dec.decode(None))
            else:
                out.append(dec.decode(p))
        y = np.concatenate(out)
        mask = np.zeros(len(y), bool)
        for k in lost:
            mask[k * 320:(k + 1) * 320] = True
        errors[mode] = float(np.sum((y - clean)[mask] ** 2) / np.sum(clean[mask] ** 2))
    assert errors["fec"] < 0.6 * errors["plc"]
    with pytest.raises(ValueError, match="2.5 ms"):
        OpusDecoder(16000).decode_fec(packets[1], 100)


def test_offline_fec_recovers_every_loss_whose_successor_carries_a_copy():
    x = syllabic(seed=2)
    n = len(x) // 320
    lost = np.zeros(n, bool)
    lost[3::6] = True
    lost[4::12] = True  # some losses in pairs: the first of a pair has no successor to recover from
    packets = encode(np.concatenate([x, np.zeros(320 * 4, np.float32)]), fec=True)
    expected = sum(1 for k in np.flatnonzero(lost) if k + 1 < n and not lost[k + 1] and has_lbrr(packets[k + 1]))
    result = conceal_audio(x, 16000, lost, "zero", codec="opus", fec=True)
    s = result.stats
    assert s["fec_recovered_packets"] == expected > 5
    # the concealer saw only what FEC did not recover (zero: two silent 10 ms frames per packet)
    assert s["concealed_frames"] == 2 * (int(lost.sum()) - expected)
    plc = conceal_audio(x, 16000, lost, "opus", codec="opus", fec=True).stats
    assert plc["concealed_frames"] == s["concealed_frames"] and plc["fec_recovered_packets"] == expected
    # the same bitrate: the copies are coded within it
    plain = conceal_audio(x, 16000, lost, "zero", codec="opus")
    assert plain.stats["fec_recovered_packets"] == 0
    assert abs(s["payload_bitrate_bps"] - plain.stats["payload_bitrate_bps"]) < 0.15 * plain.stats["payload_bitrate_bps"]
    # where FEC recovered, the audio is close to the sender's (zero would leave silence there)
    recovered = [k for k in np.flatnonzero(lost) if k + 1 < n and not lost[k + 1] and has_lbrr(packets[k + 1])]
    mask = np.zeros(len(x), bool)
    for k in recovered:
        mask[k * 320:(k + 1) * 320] = True
    no_loss = np.zeros(n, bool)
    err = lambda y, fec: np.sum((y - conceal_audio(x, 16000, no_loss, "zero", codec="opus", fec=fec).audio)[mask] ** 2)  # noqa: E731
    assert err(result.audio, True) < 0.5 * err(plain.audio, False)


def test_fec_needs_opus():
    with pytest.raises(ValueError, match="Opus"):
        conceal_audio(syllabic(0.5), 16000, np.zeros(25, bool), "zero", codec="pcm", fec=True)


def test_fec_off_is_the_default_pipeline():
    x = syllabic(1.0, seed=3)
    lost = np.zeros(50, bool)
    lost[10] = lost[20] = True
    a = conceal_audio(x, 16000, lost, "neteq", codec="opus")
    b = conceal_audio(x, 16000, lost, "neteq", codec="opus", fec=False)
    assert np.array_equal(a.audio, b.audio) and a.stats["fec_recovered_packets"] == 0


def test_fec_share_counts_lbrr_packets_bitrate_and_modes():
    from eval.fec_share import encode_offline, summarize_packets

    x = syllabic(2.0, seed=6)
    on = summarize_packets(encode_offline(x, 24000, True, 10), 2.0)
    off = summarize_packets(encode_offline(x, 24000, False, 10), 2.0)
    assert on["lbrr_share"] > 0.3 and off["lbrr_share"] == 0.0
    assert 15 < on["kbps"] < 30 and abs(on["kbps"] - off["kbps"]) < 4
    assert on["modes"] == {"SILK": 1.0}

"""plc.concealers.gap_end and its use in codec_concealment: a burst's concealment ends on its way
into the next packet where that packet is already at hand (a jitter buffer)."""

from __future__ import annotations

import numpy as np
import pytest

from plc.concealers.gap_end import GAP_END_MS, backward_extension, end_gap, pitch_period

SR = 16000


def _voiced(n: int, period: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(n)
    return (0.5 * np.sin(2 * np.pi * t / period + phase) + 0.2 * np.sin(6 * np.pi * t / period + 1 + phase)).astype(np.float32)


@pytest.mark.parametrize("period", [50, 97, 160, 230])
def test_the_pitch_period_of_a_periodic_signal_is_found(period):
    assert pitch_period(_voiced(320, period), SR) == period


def test_periodicity_tells_a_vowel_from_noise():
    from plc.concealers.gap_end import periodicity

    assert periodicity(_voiced(320, 97), SR) == (97, pytest.approx(1.0, abs=1e-3))
    assert periodicity(np.random.default_rng(0).standard_normal(320), SR)[1] < 0.5


def test_the_backward_extension_of_a_periodic_signal_is_its_past():
    x = _voiced(1000, 97)
    np.testing.assert_allclose(backward_extension(x[600:920], 250, SR), x[350:600], atol=1e-5)


def test_end_gap_crossfades_the_last_20_ms_into_the_extension_and_refuses_what_it_cannot_use():
    rng = np.random.default_rng(0)
    gap = (0.1 * rng.standard_normal(640)).astype(np.float32)
    x = _voiced(2000, 120)
    ahead = x[1000:1320]
    out = end_gap(gap, ahead, SR)
    n = GAP_END_MS * SR // 1000
    assert out.shape == gap.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[:-n], gap[:-n])                     # only the last 20 ms change
    assert abs(out[-1] - x[999]) < 0.01 < abs(gap[-1] - x[999])           # and lead into the next packet
    assert end_gap(gap, None, SR) is None
    assert end_gap(gap, ahead[:160], SR) is None                          # too short for the period search
    assert end_gap(gap, np.full(320, np.nan, np.float32), SR) is None
    assert end_gap(gap[:0], ahead, SR) is None
    short = end_gap(gap[:100], ahead, SR)                                 # a gap shorter than 20 ms: all of it
    assert short.shape == (100,) and abs(short[-1] - x[999]) < 0.01


def _silk_stream(speech, n_packets):
    from plc.codecs.opus import OpusEncoder

    enc = OpusEncoder(SR, 24000, 20)
    return [enc.encode(speech[i * 320:(i + 1) * 320]) for i in range(n_packets)]


@pytest.mark.parametrize("ends_gaps_ahead", [True, False])
def test_codec_concealment_ends_a_bursts_gap_only_from_its_second_packet_and_leaves_the_decoder_as_it_was(
        speech_16k, ends_gaps_ahead):
    """With the next packet at hand, a concealer that ends gaps ahead gets the codec's PLC with its
    end cross-faded from the loss's second packet on (not on the first); the decoder decodes the
    next packet exactly as without it."""
    from plc.codecs.opus import OpusPayloadDecoder
    from plc.concealers.codec_plc import codec_concealment
    from plc.concealers.neural import NeuralConcealer

    packets = _silk_stream(speech_16k, 40)
    runs = []
    for with_next in (False, True):
        dec = OpusPayloadDecoder()
        concealer = NeuralConcealer(steer_codec=False, end_gaps_ahead=ends_gaps_ahead)
        played = []
        for i, packet in enumerate(packets):
            if i in (20, 21, 22, 30):   # a burst of three, then a single loss
                ahead = (lambda nxt=packets[i + 1]: dec.decode_ahead(nxt)) if with_next and i in (22, 30) else None
                plc = codec_concealment(dec, concealer, 320, ahead)
                concealer.feed_codec_concealment(plc, dec.mode)
                played += [concealer.process(None), concealer.process(None)]
            else:
                y = dec.decode(packet)
                played += [concealer.process(y[:160]), concealer.process(y[160:])]
        runs.append((np.concatenate(played), concealer.stats.gaps_ended_ahead))
    (plain, n_plain), (ahead, n_ahead) = runs
    assert n_plain == 0 and n_ahead == (1 if ends_gaps_ahead else 0)   # the single loss is left as it is
    changed = np.flatnonzero(plain != ahead)
    if ends_gaps_ahead:
        assert changed.min() >= 22 * 320 + 320 - GAP_END_MS * SR // 1000 and changed.max() < 23 * 320
    else:
        assert changed.size == 0


def test_the_opus_decoder_decodes_ahead_without_moving(speech_16k):
    from plc.codecs.opus import OpusPayloadDecoder

    packets = _silk_stream(speech_16k, 12)
    a, b = OpusPayloadDecoder(), OpusPayloadDecoder()
    for p in packets[:10]:
        a.decode(p)
        b.decode(p)
    a.conceal(320)
    b.conceal(320)
    ahead = a.decode_ahead(packets[11])
    assert a.decode_ahead(b"") is None
    np.testing.assert_array_equal(ahead, a.decode(packets[11]))
    np.testing.assert_array_equal(ahead, b.decode(packets[11]))


def test_in_the_jitter_buffer_a_burst_ends_into_the_next_packet_or_into_the_fec_copy_that_follows_it(speech_16k):
    """``plc netsim`` with Opus: the gap end happens with and without in-band FEC (where the audio
    after a burst is the copy of its last packet, decoded ahead from its successor); the jitter
    buffer's counters stay as they were (only what plays at the end of gaps changes, and what the
    model continues from later)."""
    from jitterbuffer.jitter_buffer import JitterBufferConfig
    from jitterbuffer.netsim import simulate
    from jitterbuffer.network import parse_network
    from plc.concealers import make_concealer

    spec = parse_network("delay=40ms jitter=20ms loss=20% burst=3", seed=1)
    arrivals = spec.simulate(int(np.ceil(len(speech_16k) / 320)))
    for fec in (False, True):
        def run(ends):
            return simulate(speech_16k, arrivals, JitterBufferConfig(), method="neural", codec="opus", seed=1,
                            spec=spec, fec=fec, concealer=make_concealer("neural", deadline_ms=None, end_gaps_ahead=ends))
        plain, ended = run(False), run(True)
        assert plain.stats["gapsEndedAhead"] == 0 < ended.stats["gapsEndedAhead"]
        for key in ("concealedSamples", "concealmentEvents", "packetsLate", "fecPacketsRecovered"):
            assert plain.stats[key] == ended.stats[key], key
        assert not np.array_equal(plain.audio, ended.audio)

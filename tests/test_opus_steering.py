"""Decoder in step (plc/codecs/opus_steering.py, plc.concealers.codec_plc.codec_concealment): a
concealer's continuation of a lost SILK packet is Opus-coded at the receiver and decoded in place of
libopus' PLC, so what plays is that continuation and the packet after the loss decodes from it."""

from __future__ import annotations

import numpy as np
import pytest

from plc.codecs.opus import OpusEncoder, OpusPayloadDecoder
from plc.concealers import FallbackConcealer, make_concealer
from plc.concealers.base import Concealer, ConcealmentError
from plc.concealers.codec_plc import codec_concealment
from plc.concealers.neural import NeuralConcealer

from .conftest import harmonic, syllabic

PACKET = 320
FRAME = 160


def snr_db(y: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / (np.sum((y - ref) ** 2) + 1e-12)))


@pytest.fixture(scope="module")
def silk_call(speech_16k):
    """Real speech coded at 24 kbit/s (SILK wideband), its packets and their loss-free decode."""
    enc = OpusEncoder(16000, 24000, 20)
    x = speech_16k[:len(speech_16k) // PACKET * PACKET]
    packets = [enc.encode(x[i * PACKET:(i + 1) * PACKET]) for i in range(len(x) // PACKET)]
    assert {p[0] >> 3 for p in packets} == {9}  # SILK-only wideband, 20 ms
    clean = OpusPayloadDecoder()
    return packets, np.concatenate([clean.decode(p) for p in packets]), enc.lookahead


def test_an_oracle_continuation_is_played_and_the_next_packet_decodes_from_it(silk_call):
    """Steered with the true continuation, the lost packet and the one after it come out close to
    the loss-free decode (>= 10 dB SNR at each of ten losses), far closer than after libopus' PLC."""
    packets, ref, lookahead = silk_call
    gain_lost, gain_next = [], []
    for p in range(10, 140, 13):
        steered, plc = OpusPayloadDecoder(), OpusPayloadDecoder()
        for q in range(p):
            steered.decode(packets[q])
            plc.decode(packets[q])
        n = steered.continuation_samples(PACKET)
        assert n == PACKET + lookahead
        lost, after = ref[p * PACKET:(p + 1) * PACKET], ref[(p + 1) * PACKET:(p + 2) * PACKET]
        y = steered.conceal(PACKET, ref[p * PACKET:p * PACKET + n])
        z = plc.conceal(PACKET)
        y2, z2 = steered.decode(packets[p + 1]), plc.decode(packets[p + 1])
        assert snr_db(y, lost) >= 10 and snr_db(y2, after) >= 10, p
        gain_lost.append(snr_db(y, lost) - snr_db(z, lost))
        gain_next.append(snr_db(y2, after) - snr_db(z2, after))
    assert np.mean(gain_lost) > 5 and np.mean(gain_next) > 5


def test_silk_and_hybrid_with_enough_history_can_be_steered():
    """Not before WARM_PACKETS packets were heard, not after a reset, and not in CELT mode (where
    the model conceals on its own); hybrid (from 48 kHz input at 32 kbit/s) can."""
    from plc.codecs.opus_steering import WARM_PACKETS

    x = syllabic(1.0)
    silk, celt = OpusEncoder(16000, 24000, 20), OpusEncoder(16000, 96000, 20)
    dec = OpusPayloadDecoder()
    assert dec.continuation_samples(PACKET) is None
    for i in range(WARM_PACKETS):
        assert dec.continuation_samples(PACKET) is None
        dec.decode(silk.encode(x[i * PACKET:(i + 1) * PACKET]))
    assert dec.continuation_samples(PACKET) == PACKET + silk.lookahead
    dec.reset()
    assert dec.continuation_samples(PACKET) is None
    for i in range(WARM_PACKETS + 1):
        dec.decode(celt.encode(x[i * PACKET:(i + 1) * PACKET]))
    assert dec.mode == "celt" and dec.continuation_samples(PACKET) is None
    hybrid = OpusEncoder(48000, 32000, 20)
    x48 = np.repeat(x, 3)
    dec.reset()
    for i in range(WARM_PACKETS):
        dec.decode(hybrid.encode(x48[i * 960:(i + 1) * 960]))
    assert dec.mode == "hybrid" and dec.continuation_samples(PACKET) == PACKET + silk.lookahead


def test_a_stream_with_in_band_fec_is_left_to_the_codec(speech_16k):
    """While packets carry LBRR copies (heard within FEC_MEMORY_MS, or a lost packet decoded from
    its successor's copy), the decoder is not steered: libopus' PLC and the copies decide, as
    measured (MODEL.md). A second of packets without copies, or a new stream, and it steers
    again; ``steer_with_fec`` steers regardless."""
    from plc.codecs.opus_fec import has_lbrr
    from plc.codecs.opus_steering import FEC_MEMORY_MS, WARM_PACKETS

    x = speech_16k[:len(speech_16k) // PACKET * PACKET]
    fec = OpusEncoder(16000, 24000, 20, fec=True, expected_loss_percent=20)
    plain = OpusEncoder(16000, 24000, 20)
    packets = [fec.encode(x[i * PACKET:(i + 1) * PACKET]) for i in range(len(x) // PACKET)]
    with_copy = [i for i, p in enumerate(packets) if has_lbrr(p)]
    assert len(with_copy) > len(packets) // 2
    dec, steers_anyway = OpusPayloadDecoder(), OpusPayloadDecoder(steer_with_fec=True)
    for p in packets[:with_copy[WARM_PACKETS]]:
        dec.decode(p)
        steers_anyway.decode(p)
    assert dec.continuation_samples(PACKET) is None and dec.leaves_loss_to_fec
    assert steers_anyway.continuation_samples(PACKET) == PACKET + fec.lookahead
    assert not steers_anyway.leaves_loss_to_fec
    memory_packets = FEC_MEMORY_MS // 20
    for i in range(memory_packets - 1):   # packets without copies: FEC still counts until the memory runs out
        dec.decode(plain.encode(x[i * PACKET:(i + 1) * PACKET]))
        assert dec.continuation_samples(PACKET) is None
    dec.decode(plain.encode(x[memory_packets * PACKET:(memory_packets + 1) * PACKET]))
    assert dec.continuation_samples(PACKET) == PACKET + fec.lookahead and not dec.leaves_loss_to_fec
    dec.decode_fec(packets[with_copy[-1]], 960)   # a loss mended from a copy: the stream has FEC
    assert dec.continuation_samples(PACKET) is None
    dec.reset()
    for i in range(WARM_PACKETS):
        dec.decode(plain.encode(x[i * PACKET:(i + 1) * PACKET]))
    assert dec.continuation_samples(PACKET) == PACKET + fec.lookahead


def test_a_bad_continuation_falls_back_to_libopus_plc(silk_call):
    """A continuation of the wrong length is refused (libopus' PLC plays, bit for bit); NaN or
    out-of-range samples are sanitised, never passed to the encoder."""
    packets, ref, _ = silk_call
    a, b = OpusPayloadDecoder(), OpusPayloadDecoder()
    for q in range(30):
        a.decode(packets[q])
        b.decode(packets[q])
    n = a.continuation_samples(PACKET)
    assert np.array_equal(a.conceal(PACKET, np.zeros(n - 1, np.float32)), b.conceal(PACKET))
    assert not a.steered and not b.steered
    wild = np.full(n, np.nan, np.float32)
    wild[::2] = 40.0
    out = a.conceal(PACKET, wild)
    assert out.shape == (PACKET,) and np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.5 and a.steered
    a.conceal(PACKET)
    assert not a.steered   # libopus' own PLC


class Proposer(Concealer):
    """Proposes a constant continuation (or raises, or returns garbage) and records the calls."""

    name = "proposer"
    uses_codec_concealment = True

    def __init__(self, behaviour="ok", **kw):
        self.behaviour, self.calls = behaviour, []
        super().__init__(**kw)

    def propose_continuation(self, n_samples, mode):
        self.calls.append((self.lost_frames, n_samples, mode))
        if self.behaviour == "raise":
            raise ConcealmentError("scripted failure")
        if self.behaviour == "nan":
            return np.full(n_samples, np.nan, np.float32)
        return np.full(n_samples, 0.01, np.float32)

    def _conceal(self):
        return self.codec_concealment if self.codec_concealment is not None else np.zeros(self.frame_samples, np.float32)


def _silk_decoder(silk_call, packets_heard=20):
    packets, _, _ = silk_call
    dec = OpusPayloadDecoder()
    for q in range(packets_heard):
        dec.decode(packets[q])
    return dec


def test_codec_concealment_asks_only_at_the_start_of_a_loss(silk_call):
    c = Proposer()
    for _ in range(3):
        c.process(np.zeros(FRAME, np.float32))
    dec = _silk_decoder(silk_call)
    out = codec_concealment(dec, c, PACKET)
    assert out.shape == (PACKET,) and len(c.calls) == 1 and c.calls[0][0] == 0 and c.calls[0][2] == "silk"
    assert dec.steered and c.stats.steered_losses == 1
    c.feed_codec_concealment(out, dec.mode)
    c.process(None)
    c.process(None)
    codec_concealment(dec, c, PACKET)       # mid-loss: libopus' PLC, no proposal
    assert len(c.calls) == 1 and not dec.steered and c.stats.steered_losses == 1


def test_the_fallback_holds_proposals_to_its_rules(silk_call):
    """A proposal that raises or is not finite is dropped (the codec's PLC plays) with the reason;
    a late primary is not asked; a good one passes through and is timed."""
    for behaviour, passes in (("ok", True), ("raise", False), ("nan", False)):
        f = FallbackConcealer(Proposer(behaviour), make_concealer("neteq", realtime=False), deadline_ms=5.0)
        f.process(np.zeros(FRAME, np.float32))
        got = f.propose_continuation(400, "silk")
        assert (got is not None) == passes
        if passes:
            assert got.shape == (400,) and len(f.frame_times_ms) == 1
        else:
            assert f.fallback_reason
    f = FallbackConcealer(Proposer(), make_concealer("neteq", realtime=False), deadline_ms=5.0)
    f._recent_ms = 50.0   # a proposal took 50 ms: refused, and asked again once the maximum has decayed
    asked = [f.propose_continuation(400, "silk") is not None for _ in range(6)]
    assert asked[:3] == [False, False, False] and asked[-1] and "deadline" in f.fallback_reason


def test_neural_proposes_its_first_packet_of_a_voiced_loss_only():
    n = PACKET + 104
    c = NeuralConcealer()
    assert c.propose_continuation(n, "silk") is None              # nothing heard yet
    x = harmonic(seconds=0.4)
    for f in range(len(x) // FRAME):
        c.process(x[f * FRAME:(f + 1) * FRAME])
    assert c.propose_continuation(n, "celt") is None              # the model conceals CELT itself
    got = c.propose_continuation(n, "silk")
    assert got is not None and got.shape == (n,) and np.all(np.isfinite(got))
    assert np.sqrt(np.mean(got ** 2)) > 0.3 * np.sqrt(np.mean(x[-PACKET:] ** 2))   # speech, not silence
    assert NeuralConcealer(steer_codec=False).propose_continuation(n, "silk") is None
    quiet = NeuralConcealer()
    noise = (0.01 * np.random.default_rng(0).standard_normal(6400)).astype(np.float32)
    for f in range(len(noise) // FRAME):
        quiet.process(noise[f * FRAME:(f + 1) * FRAME])
    assert quiet.propose_continuation(n, "silk") is None          # unvoiced: libopus' PLC
    c.process(None)
    assert c.propose_continuation(n, "silk") is None              # mid-loss


def test_neural_in_the_silk_path_plays_the_codec_rendering_of_its_continuation(speech_16k):
    """End to end (plc conceal --codec opus at 24 kbit/s): with steering the output differs from
    ``opus`` only from the first steered loss on, every proposal was coded, and lost frames still
    play what the codec made; without it, it is ``opus`` exactly. The stats say so
    (``steered_losses``, ``codec_concealed_frames``)."""
    from plc.offline import conceal_audio

    lost = np.zeros(150, dtype=bool)
    lost[[20, 40, 41, 60, 61, 62, 63, 64, 65, 66, 90, 110]] = True
    made = []

    def factory(**options):
        made.append(NeuralConcealer(**options))
        return made[-1]

    def run(method, factory=None):
        return conceal_audio(speech_16k, 16000, lost, method, codec="opus", bitrate_bps=24000,
                             concealer_factory=factory)

    ref = run("opus").audio
    plain = run("neural", lambda: factory(steer_codec=False))
    assert np.array_equal(plain.audio, ref) and plain.stats["steered_losses"] == 0
    result = run("neural", factory)
    y = result.audio
    assert result.stats["steered_losses"] >= 2 and result.stats["losses_left_to_fec"] == 0
    assert made[-1].stats.codec_concealed_frames == result.stats["codec_concealed_frames"] == 2 * lost.sum()
    first = np.flatnonzero(np.abs(y - ref) > 1e-6)[0]
    assert first >= 20 * PACKET - 200            # nothing changes before the first loss


def test_the_jitter_buffer_steers_the_decoder_at_the_start_of_losses(speech_16k):
    """In ``plc netsim`` with Opus at 24 kbit/s, ``neural`` steers the decoder at voiced loss starts
    and plays the codec's frames for every lost frame; without steering and gap ends it is ``opus``
    exactly."""
    from jitterbuffer.jitter_buffer import JitterBufferConfig
    from jitterbuffer.netsim import simulate
    from jitterbuffer.network import parse_network

    spec = parse_network("delay=40ms jitter=10ms loss=15% burst=2", seed=3)
    arrivals = spec.simulate(int(np.ceil(len(speech_16k) / PACKET)))

    def run(concealer=None, method="neural", fec=False):
        return simulate(speech_16k, arrivals, JitterBufferConfig(), method=method, codec="opus", seed=3,
                        spec=spec, concealer=concealer, fec=fec)

    plain = make_concealer("neural", deadline_ms=None, steer_codec=False, end_gaps_ahead=False)
    assert np.array_equal(run(plain).audio, run(method="opus").audio)
    steered = make_concealer("neural", deadline_ms=None)
    result = run(steered)
    y, stats = result.audio, result.stats
    assert stats["steeredLosses"] > 0 and stats["fallbackFrames"] == 0 and stats["lossesLeftToFec"] == 0
    assert stats["gapsEndedAhead"] > 0
    assert stats["codecConcealedFrames"] == steered.primary.stats.codec_concealed_frames
    assert stats["codecConcealedFrames"] == steered.stats.concealed_frames > 0
    assert not np.array_equal(y, run(method="opus").audio)
    # with in-band FEC the losses FEC cannot mend are left to libopus' PLC (no steering), and the
    # stats say so; without gap ends that is ``opus`` exactly
    result = run(make_concealer("neural", deadline_ms=None, end_gaps_ahead=False), fec=True)
    assert np.array_equal(result.audio, run(method="opus", fec=True).audio)
    assert result.stats["steeredLosses"] == 0 and result.stats["lossesLeftToFec"] > 0
    assert result.stats["gapsEndedAhead"] == 0 and result.stats["fecPacketsRecovered"] > 0


def test_the_concealers_counters_go_on_across_a_switch_of_concealer(speech_16k):
    """``JitterBuffer.replace_concealer`` (a live call switching method) keeps the old concealer's
    counters in ``stats``: steered losses and codec frames do not vanish with it."""
    from jitterbuffer.jitter_buffer import CONCEALER_STATS, JitterBuffer
    from jitterbuffer.rtp import RtpPacket

    enc = OpusEncoder(16000, 24000, 20)
    x = speech_16k[:len(speech_16k) // PACKET * PACKET]
    jb = JitterBuffer(make_concealer("neural", deadline_ms=None))
    rng = np.random.default_rng(0)
    lost = rng.random(len(x) // PACKET) < 0.2
    lost[:8] = False
    for i in range(len(x) // PACKET):
        if i == len(lost) // 2:
            before = jb.stats
            jb.replace_concealer(make_concealer("opus"))
        if not lost[i]:
            payload = enc.encode(x[i * PACKET:(i + 1) * PACKET])
            jb.insert_packet(RtpPacket(payload_type=111, sequence_number=i, timestamp=i * 960, ssrc=1,
                                       payload=payload).serialize(), 20.0 * i)   # payload type 111: opus
        jb.get_audio(20.0 * i)
        jb.get_audio(20.0 * i + 10.0)
    after = jb.stats
    assert before["steeredLosses"] > 0 and before["codecConcealedFrames"] > 0
    for key in CONCEALER_STATS:
        assert after[key] >= before[key], key
    assert after["codecConcealedFrames"] > before["codecConcealedFrames"]   # `opus` plays the codec's PLC


def test_a_preview_of_libopus_plc_is_what_it_plays_and_leaves_the_decoder_untouched(silk_call):
    from plc.codecs.opus import OpusDecoder

    packets, _, _ = silk_call
    previewed, plain = OpusDecoder(), OpusDecoder()
    for i, packet in enumerate(packets[:60]):
        if i in (10, 30):
            preview = previewed.preview_concealment(PACKET + 104)
            twin = OpusDecoder()
            for q in packets[:i]:
                twin.decode(q)
            plc = np.concatenate([twin.decode(None), twin.decode(None)])[:PACKET + 104]
            np.testing.assert_array_equal(preview, plc)
            assert np.abs(preview).max() > 1e-3
        np.testing.assert_array_equal(previewed.decode(packet), plain.decode(packet))


def test_a_decoder_state_snapshot_restores_exactly_and_a_foreign_one_is_refused(silk_call):
    from plc.codecs.opus import OpusDecoder

    packets, _, _ = silk_call
    dec = OpusDecoder()
    for packet in packets[:20]:
        dec.decode(packet)
    saved = dec.snapshot()
    first = [dec.decode(None), dec.decode(packets[21])]
    dec.restore(saved)
    again = [dec.decode(None), dec.decode(packets[21])]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="decoder state is"):
        dec.restore(saved[:-1])

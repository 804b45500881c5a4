"""The codec-concealment capability: concealers that declare ``uses_codec_concealment`` are fed the
codec's own PLC of each lost frame with the codec's coding mode (offline Opus path, jitter buffer);
``neural`` plays it where the codec's mode is one it defers to (Opus SILK and hybrid) and its
model where not (CELT); both resume as the codec does."""

import numpy as np
import pytest

from plc.codecs.opus import OPUS_MODES, OpusEncoder, OpusPayloadDecoder, opus_packet_mode
from plc.concealers import make_concealer
from plc.concealers.base import Concealer
from plc.concealers.codec_plc import CodecPlcConcealer
from plc.offline import conceal_audio, run_concealer

from .conftest import harmonic

FRAME = 160


class Recorder(Concealer):
    """Plays a constant and records what the codec fed it (samples and mode) for each lost frame."""

    name = "recorder"
    uses_codec_concealment = True

    def reset(self):
        super().reset()
        self.seen = []

    def _conceal(self):
        self.seen.append((None if self.codec_concealment is None else self.codec_concealment.copy(), self.codec_mode))
        return np.full(self.frame_samples, 0.5, np.float32)


def test_opus_modes_come_from_the_toc_byte_and_the_decoder_keeps_the_last():
    assert [opus_packet_mode(bytes([c << 3])) for c in (0, 11, 12, 15, 16, 31)] == [
        "silk", "silk", "hybrid", "hybrid", "celt", "celt"]
    assert len(OPUS_MODES) == 32 and opus_packet_mode(b"") is None
    x = harmonic(seconds=0.1)
    for bitrate, mode in ((24000, "silk"), (96000, "celt")):
        enc, dec = OpusEncoder(16000, bitrate_bps=bitrate), OpusPayloadDecoder()
        assert dec.mode is None
        for p in range(5):
            dec.decode(enc.encode(x[p * 320:(p + 1) * 320]))
        assert dec.mode == mode
        dec.conceal(320)
        assert dec.mode == mode  # its concealment continues that mode
        dec.reset()
        assert dec.mode is None


def test_only_declaring_concealers_are_fed_and_the_queue_follows_the_frames():
    with pytest.raises(TypeError, match="codec"):
        make_concealer("neteq").feed_codec_concealment(np.zeros(FRAME))
    c = Recorder()
    c.feed_codec_concealment(np.arange(2 * FRAME, dtype=np.float32), "silk")   # 20 ms, as the jitter buffer feeds it
    for _ in range(3):
        c.process(None)                                                         # the third: nothing left
    assert np.array_equal(c.seen[0][0], np.arange(FRAME)) and np.array_equal(c.seen[1][0], np.arange(FRAME, 2 * FRAME))
    assert c.seen[0][1] == "silk" and c.seen[2][0] is None
    c.process(np.zeros(FRAME, np.float32))                                      # a received frame empties it
    assert c.codec_concealment is None and c.codec_mode is None
    c.process(None)
    assert c.seen[-1] == (None, None)


def test_run_concealer_feeds_each_lost_frame_with_its_mode_before_asking_for_it():
    x = harmonic(seconds=0.1)
    codec = -x
    lost = np.zeros(len(x) // FRAME, dtype=bool)
    lost[[2, 3, 7]] = True
    modes = ["celt"] * 5 + ["silk"] * 5
    rec = Recorder()
    out = run_concealer(x, lost, rec, codec_concealment=codec, codec_modes=modes)
    assert [m for _, m in rec.seen] == ["celt", "celt", "silk"]
    for (seen, _), f in zip(rec.seen, (2, 3, 7)):
        assert np.array_equal(seen, codec[f * FRAME:(f + 1) * FRAME])
    assert np.all(out[2 * FRAME:4 * FRAME] == 0.5)
    run_concealer(x, lost, make_concealer("neteq"), codec_concealment=codec)   # not declaring: never fed


def test_codec_plc_resumes_from_the_unplayed_rest_of_its_concealment():
    """The jitter buffer asks libopus for 20 ms and may play only 10 before the packet comes; the
    decoded frame then continues the end of those 20 ms, so the unplayed 10 ms (which continue what
    was played) are cross-faded into it over 40 samples. Played in full: the frame as decoded."""
    x = harmonic(seconds=0.1)
    c = CodecPlcConcealer()
    for f in range(5):
        c.process(x[f * FRAME:(f + 1) * FRAME])
    plc = x[5 * FRAME:7 * FRAME][::-1].copy()
    c.feed_codec_concealment(plc, "silk")
    assert np.array_equal(c.process(None), plc[:FRAME])
    frame = x[7 * FRAME:8 * FRAME]
    out = c.process(frame)
    assert np.array_equal(out[40:], frame[40:]) and not np.array_equal(out[:40], frame[:40])
    c.feed_codec_concealment(plc, "silk")
    c.process(None)
    c.process(None)
    assert np.array_equal(c.process(frame), frame)
    assert not np.any(CodecPlcConcealer().process(None))                        # nothing fed: silence


@pytest.mark.parametrize("bitrate_bps, mode", [(24000, "silk"), (96000, "celt")])
def test_neural_defers_to_silk_concealment_and_conceals_celt_itself(speech_16k, bitrate_bps, mode):
    """In the Opus path at 24 kbit/s (SILK) ``neural`` plays libopus' PLC and resumes as libopus
    does: without decoder steering (``steer_codec=False``; with it, tests/test_opus_steering.py)
    exactly the ``opus`` method's output, and its model does not run. At 96 kbit/s (CELT) the
    model conceals; with ``defer_to_codec=()`` it conceals SILK too."""
    from plc.concealers.neural import NeuralConcealer

    lost = np.zeros(150, dtype=bool)
    lost[[20, 40, 41, 60, 61, 62, 63, 64, 65, 66]] = True
    made = []

    def factory(**options):
        made.append(NeuralConcealer(**options))
        return made[-1]

    def run(method, factory=None):
        return conceal_audio(speech_16k, 16000, lost, method, codec="opus", bitrate_bps=bitrate_bps,
                             concealer_factory=factory).audio

    y, ref = run("neural", lambda: factory(steer_codec=False)), run("opus")
    if mode == "silk":
        assert np.array_equal(y, ref)
        assert made[0].stats.codec_concealed_frames == 20 and made[0].stats.noise_concealed_frames == 0 and made[0]._signal is None
        y = run("neural", lambda: factory(defer_to_codec=(), steer_codec=False))
        assert made[1].stats.codec_concealed_frames == 0 and not np.array_equal(y, ref)
    else:
        assert made[0].stats.codec_concealed_frames == 0 and made[0]._signal is not None and not np.array_equal(y, ref)
    with pytest.raises(ValueError, match="defer_to_codec"):
        NeuralConcealer(defer_to_codec="silk")


def test_neural_falls_back_when_the_codec_stops_feeding_a_loss_it_deferred():
    from plc.concealers.neural import NeuralConcealer

    c = NeuralConcealer()
    x = harmonic(seconds=0.3)
    for f in range(20):
        c.process(x[f * FRAME:(f + 1) * FRAME])
    c.feed_codec_concealment(np.full(FRAME, 0.1, np.float32), "silk")
    assert np.all(c.process(None) == np.float32(0.1))
    with pytest.raises(Exception, match="stopped"):
        c.process(None)
    wrapped = make_concealer("neural", deadline_ms=None)                        # the registry's: neteq takes over
    for f in range(20):
        wrapped.process(x[f * FRAME:(f + 1) * FRAME])
    wrapped.feed_codec_concealment(np.full(FRAME, 0.1, np.float32), "hybrid")
    wrapped.process(None)
    out = wrapped.process(None)
    assert np.any(out) and wrapped.stats.fallback_frames == 1 and "stopped" in wrapped.fallback_reason


def test_the_jitter_buffer_feeds_declaring_concealers_with_the_mode():
    from jitterbuffer.jitter_buffer import JitterBufferConfig
    from jitterbuffer.netsim import simulate
    from jitterbuffer.network import parse_network

    x = harmonic(seconds=1.0)
    spec = parse_network("delay=40ms loss=20% burst=2", seed=3)
    arrivals = spec.simulate(int(np.ceil(len(x) / 320)))
    rec = Recorder()
    simulate(x, arrivals, JitterBufferConfig(), codec="opus", concealer=rec, spec=spec)
    assert rec.seen and all(s is not None and s.shape == (FRAME,) for s, _ in rec.seen)
    assert {m for _, m in rec.seen} <= set(OPUS_MODES) and "silk" in {m for _, m in rec.seen}  # a tone: CELT at times
    rec = Recorder()
    simulate(x, arrivals, JitterBufferConfig(), codec="pcm", concealer=rec, spec=spec)
    assert rec.seen and all(s is None for s, _ in rec.seen)                     # PCM has no codec concealment


def test_neural_without_its_model_still_plays_the_codecs_concealment_where_it_defers(tmp_path):
    """A model that did not load: SILK-mode losses still play libopus' PLC (no fallback frame,
    nothing lost to the missing model); CELT-mode losses go to the classic concealer, counted."""
    x = harmonic(seconds=0.3)
    c = make_concealer("neural", model_dir=tmp_path / "missing")
    for f in range(20):
        c.process(x[f * FRAME:(f + 1) * FRAME])
    plc = np.full(2 * FRAME, 0.1, np.float32)
    c.feed_codec_concealment(plc, "silk")
    assert np.array_equal(np.concatenate([c.process(None), c.process(None)]), plc)
    assert c.stats.fallback_frames == 0
    c.process(x[:FRAME])
    c.feed_codec_concealment(plc, "celt")
    c.process(None)
    assert c.stats.fallback_frames == 1 and c.fallback_reason

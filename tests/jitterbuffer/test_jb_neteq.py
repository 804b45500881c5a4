"""The JitterBuffer: playout, expand/merge, late and duplicate packets, stream changes,
statistics, concealer failures and output continuity."""

from __future__ import annotations

import numpy as np
import pytest

from jitterbuffer.concealment import CodecPlcConcealer
from jitterbuffer.neteq import JitterBuffer, JitterBufferConfig
from jitterbuffer.payload import OPUS_PAYLOAD_TYPE, encode_pcm
from jitterbuffer.rtp import RtpPacket
from plc.concealers import Concealer, available_methods, make_concealer

GETSTATS = ("jitterBufferDelay", "jitterBufferTargetDelay", "jitterBufferEmittedCount", "concealedSamples",
            "silentConcealedSamples", "concealmentEvents", "insertedSamplesForDeceleration",
            "removedSamplesForAcceleration", "packetsDiscarded", "packetsLost")


def quantized(x: np.ndarray) -> np.ndarray:
    return np.frombuffer(encode_pcm(x), dtype="<i2").astype(np.float32) / 32768.0


def test_clean_stream_fixed_is_bit_exact_after_the_prefetch(helpers):
    x = helpers.harmonic(2.0)
    pk = helpers.pcm_packets(x)
    jb = JitterBuffer(make_concealer("zero"), JitterBufferConfig.from_spec("fixed:80"))
    y = helpers.play(jb, [(20.0 * k + 40, p) for k, p in enumerate(pk)], 12 + 2 * len(pk))
    start = 12 * 160  # first packet at 40 ms + 80 ms prefetch
    np.testing.assert_array_equal(y[:start], 0.0)
    fade = 32  # the first 2 ms of a call fade in
    np.testing.assert_array_equal(y[start + fade:start + len(pk) * 320], quantized(x[fade:len(pk) * 320]))
    s = jb.stats
    assert s["concealedSamples"] == 0 and s["packetsLost"] == 0 and s["packetsDiscarded"] == 0
    assert s["jitterBufferDelay"] / s["jitterBufferEmittedCount"] == pytest.approx(0.080 + 0.020 / 2, abs=0.011)
    assert all(k in s for k in GETSTATS)


def test_adaptive_settles_to_its_target_on_a_clean_network(helpers):
    x = helpers.harmonic(4.0)
    pk = helpers.pcm_packets(x)
    jb = JitterBuffer(make_concealer("zero"), JitterBufferConfig())
    helpers.play(jb, [(20.0 * k + 40, p) for k, p in enumerate(pk)], 350)
    s = jb.stats
    assert s["concealedSamples"] == 0 and s["removedSamplesForAcceleration"] > 0
    assert s["targetDelayMs"] == 20.0  # no jitter: one packet
    assert 20.0 <= jb.last_tick.playout_delay_ms <= 40.0
    assert jb.last_tick.operation.value == "normal"


def test_losses_are_concealed_and_merged(helpers):
    x = helpers.harmonic(2.0)
    pk = helpers.pcm_packets(x)
    lost = {20, 21, 22, 50}
    for mode in ("adaptive", "fixed:80"):
        jb = JitterBuffer(make_concealer("g711"), JitterBufferConfig.from_spec(mode))
        y = helpers.play(jb, [(20.0 * k + 40, p) for k, p in enumerate(pk) if k not in lost], 300, until_done=True)
        s = jb.stats
        assert s["packetsLost"] == 4 and s["operations"]["merge"] == 2 and s["packetsDiscarded"] == 0
        if mode == "fixed:80":  # conceals exactly the lost time
            assert s["concealmentEvents"] == 2 and s["concealedSamples"] == 4 * 320
        else:  # may shorten a gap when above its target; the stream's end may need one more frame
            assert 2 <= s["concealmentEvents"] <= 3 and 2 * 320 <= s["concealedSamples"] <= 5 * 320
        assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0


def test_late_packet_is_discarded_by_fixed_and_waited_for_by_adaptive(helpers):
    x = helpers.harmonic(2.0)
    pk = helpers.pcm_packets(x)
    arrivals = [(20.0 * k + 40 + (150.0 if k == 30 else 0.0), p) for k, p in enumerate(pk)]
    fixed = JitterBuffer(make_concealer("g711"), JitterBufferConfig.from_spec("fixed:80"))
    helpers.play(fixed, arrivals, 200)
    assert fixed.stats["packetsLate"] == 1 and fixed.stats["packetsDiscarded"] == 1
    assert fixed.stats["concealedSamples"] == 320
    # in order (as a queue keeps them): 30 and the packets behind it are held up
    fifo = [(max(20.0 * k + 40, 20.0 * 30 + 190) if k >= 30 else 20.0 * k + 40, p) for k, p in enumerate(pk)]
    adaptive = JitterBuffer(make_concealer("g711"), JitterBufferConfig())
    helpers.play(adaptive, fifo, 250)
    s = adaptive.stats
    assert s["packetsLate"] == 0 and s["packetsDiscarded"] == 0 and s["packetsLost"] == 0
    assert s["concealedSamples"] > 0 and s["removedSamplesForAcceleration"] > 0


def test_duplicates_are_dropped_and_counted(helpers):
    x = helpers.harmonic(1.0)
    pk = helpers.pcm_packets(x)
    arrivals = [(20.0 * k + 40, p) for k, p in enumerate(pk)]
    arrivals += [(20.0 * k + 45, pk[k]) for k in (5, 6)]     # while buffered
    arrivals += [(20.0 * k + 400, pk[k]) for k in (10, 11)]  # long after playout
    jb = JitterBuffer(make_concealer("zero"), JitterBufferConfig.from_spec("fixed:80"))
    y = helpers.play(jb, arrivals, 120)
    s = jb.stats
    assert s["packetsDuplicated"] == 4 and s["packetsLate"] == 0 and s["packetsLost"] == 0
    np.testing.assert_array_equal(y[1920 + 32:1920 + 40 * 320], quantized(x[32:40 * 320]))


def test_malformed_and_unknown_packets_are_counted_not_raised(helpers):
    x = helpers.harmonic(1.0)
    good = helpers.pcm_packets(x)
    jb = JitterBuffer(make_concealer("zero"))
    bad = [b"", b"\x00" * 5, good[0][:11], b"\x40" + good[0][1:],                # short, version 1
           RtpPacket(13, 1, 1, 0x1234, b"ab").serialize(),                      # unknown payload type
           RtpPacket(96, 1, 1, 0x1234, b"abc").serialize(),                     # odd PCM length
           RtpPacket(96, 1, 1, 0x1234, b"").serialize(),                        # empty
           RtpPacket(96, 1, 1, 0x1234, b"\x00" * 100).serialize()]              # not whole 10 ms frames
    for b in bad:
        assert jb.insert_packet(b, 0.0) is False
    assert jb.insert_packet(good[0], float("nan")) is False
    s = jb.stats
    assert s["packetsMalformed"] == 8 and s["packetsUnknownPayloadType"] == 1 and s["packetsReceived"] == 0
    assert s["internalErrors"] == 0


def test_counters_wrapping_mid_stream_play_like_no_wrap(helpers):
    x = helpers.harmonic(2.0)
    plain = helpers.pcm_packets(x, seq0=100, ts0=1000)
    wrapping = helpers.pcm_packets(x, seq0=65530, ts0=2 ** 32 - 320 * 40)
    outs = []
    for pk in (plain, wrapping):
        jb = JitterBuffer(make_concealer("zero"), JitterBufferConfig.from_spec("fixed:60"))
        outs.append(helpers.play(jb, [(20.0 * k + 40, p) for k, p in enumerate(pk) if k != 45], 220))
        assert jb.stats["packetsLost"] == 1 and jb.stats["streamResets"] == 0
    np.testing.assert_array_equal(outs[0], outs[1])


def test_ssrc_change_starts_a_new_stream(helpers):
    x = helpers.harmonic(2.0)
    a = helpers.pcm_packets(x[:16000], ssrc=1)
    b = helpers.pcm_packets(x[16000:], ssrc=2, seq0=7, ts0=999999)
    arrivals = [(20.0 * k + 40, p) for k, p in enumerate(a)] + [(1500 + 20.0 * k + 40, p) for k, p in enumerate(b)]
    jb = JitterBuffer(make_concealer("g711"))
    y = helpers.play(jb, arrivals, 300, until_done=True)
    s = jb.stats
    assert s["streamResets"] == 1 and s["packetsLost"] == 0 and s["packetsLate"] == 0
    played = s["jitterBufferEmittedCount"] + s["removedSamplesForAcceleration"] - s["insertedSamplesForDeceleration"]
    assert abs(played - len(x)) <= 320 and s["packetsFlushed"] == 0  # both streams played in full
    # a new SSRC while the old stream still has packets waiting flushes them (as NetEQ does)
    jb = JitterBuffer(make_concealer("g711"))
    helpers.play(jb, [(20.0 * k + 40, p) for k, p in enumerate(a)] + [(1000.0, b[0])], 150)
    assert jb.stats["packetsFlushed"] > 0 and jb.stats["packetsDiscarded"] >= jb.stats["packetsFlushed"]
    assert np.sqrt(np.mean(y[-8000:] ** 2)) > 0.1


class Flaky(Concealer):
    """A concealer that fails on every third call, in both directions."""

    name = "flaky"

    def reset(self) -> None:
        super().reset()
        self.calls = 0

    def process(self, frame):
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("boom")
        if self.calls % 7 == 0:
            return np.full(self.frame_samples, np.nan, np.float32)  # garbage out counts as a failure too
        return super().process(frame)

    def _conceal(self) -> np.ndarray:
        return self.history[-self.frame_samples:] * 0.5


def test_concealer_failures_fall_back_and_are_counted(helpers):
    x = helpers.harmonic(2.0)
    pk = helpers.pcm_packets(x)
    rng = np.random.default_rng(0)
    keep = rng.random(len(pk)) > 0.2
    jb = JitterBuffer(Flaky(), JitterBufferConfig.from_spec("fixed:60"))
    y = helpers.play(jb, [(20.0 * k + 40, p) for k, p in enumerate(pk) if keep[k]], 220)
    s = jb.stats
    assert s["fallbackFrames"] > 10 and s["internalErrors"] == 0
    assert s["fallbackReason"] in ("RuntimeError: boom", "bad concealer output (shape (160,), not finite or wrong length)")
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    assert np.mean(np.abs(y[2000:]) > 0) > 0.9  # never goes silent for long


def test_neural_concealer_falling_back_inside_a_call_is_counted_with_its_reason(helpers):
    """The model missing its deadline is not a failure the guard sees: the stats still say so."""
    x = helpers.harmonic(2.0)
    pk = helpers.pcm_packets(x)
    keep = np.random.default_rng(1).random(len(pk)) > 0.2
    neural = make_concealer("neural", deadline_ms=1e-6)  # no model can make this deadline
    jb = JitterBuffer(neural, JitterBufferConfig.from_spec("fixed:60"))
    helpers.play(jb, [(20.0 * k + 40, p) for k, p in enumerate(pk) if keep[k]], 220)
    s = jb.stats
    assert s["fallbackFrames"] == neural.stats.fallback_frames > 0
    assert "deadline" in s["fallbackReason"]
    clean = JitterBuffer(make_concealer("neural", deadline_ms=None), JitterBufferConfig.from_spec("fixed:60"))
    helpers.play(clean, [(20.0 * k + 40, p) for k, p in enumerate(pk) if keep[k]], 220)
    assert clean.stats["fallbackFrames"] == 0 and clean.stats["fallbackReason"] is None


def test_get_audio_without_a_clock_ticks_by_itself(helpers):
    x = helpers.harmonic(1.0)
    pk = helpers.pcm_packets(x)
    jb = JitterBuffer(make_concealer("zero"), JitterBufferConfig.from_spec("fixed:40"))
    for k, p in enumerate(pk[:10]):
        jb.insert_packet(p, 20.0 * k)
    frames = [jb.get_audio() for _ in range(30)]
    assert all(f.shape == (160,) for f in frames)
    assert jb.stats["jitterBufferEmittedCount"] == 10 * 320


def test_empty_buffer_plays_silence_without_counting_concealment():
    jb = JitterBuffer(make_concealer("zero"))
    for k in range(5):
        assert np.all(jb.get_audio(10.0 * k) == 0)
    assert jb.stats["concealedSamples"] == 0 and jb.stats["operations"]["silence"] == 5


def _opus_packets(x: np.ndarray) -> list[bytes]:
    from plc.codecs.opus import OpusEncoder

    enc = OpusEncoder(16000, 24000, 20)
    return [RtpPacket(OPUS_PAYLOAD_TYPE, k, 480000 + 960 * k, 77, enc.encode(x[k * 320:(k + 1) * 320])).serialize()
            for k in range(len(x) // 320)]


@pytest.mark.parametrize("method", ["g711", "opus"])
def test_opus_payload_with_losses(helpers, method):
    pytest.importorskip("plc.codecs.opus")
    x = helpers.harmonic(2.0)
    pk = _opus_packets(x)
    concealer = CodecPlcConcealer() if method == "opus" else make_concealer(method)
    jb = JitterBuffer(concealer, JitterBufferConfig.from_spec("fixed:60"))
    y = helpers.play(jb, [(20.0 * k + 40, p) for k, p in enumerate(pk) if k % 10 != 5], 300, until_done=True)
    s = jb.stats
    assert s["decodeErrors"] == 0 and s["packetsLost"] == len(pk) // 10 and s["fallbackFrames"] == 0
    assert s["concealedSamples"] == 2 * 160 * (len(pk) // 10)
    assert np.sqrt(np.mean(y[3000:-2000] ** 2)) > 0.1


def test_corrupt_opus_payload_is_concealed(helpers):
    pytest.importorskip("plc.codecs.opus")
    x = helpers.harmonic(1.0)
    pk = _opus_packets(x)
    bad = RtpPacket(OPUS_PAYLOAD_TYPE, 10, 480000 + 9600, 77, bytes([0x78]) + b"\xff" * 3).serialize()
    arrivals = [(20.0 * k + 40, p) for k, p in enumerate(pk) if k != 10] + [(240.0, bad)]
    jb = JitterBuffer(make_concealer("g711"), JitterBufferConfig.from_spec("fixed:60"))
    y = helpers.play(jb, arrivals, 120)
    assert np.all(np.isfinite(y)) and jb.stats["internalErrors"] == 0


# ------------------------------------------------------------------ continuity
STEP_SLACK = 1.6


def _op_boundaries(ops: list[str]) -> dict[str, list[int]]:
    """Tick indices where each kind of boundary happens."""
    out: dict[str, list[int]] = {"expand": [], "merge": [], "accelerate": [], "preemptive_expand": []}
    for i in range(1, len(ops)):
        a, b = ops[i - 1], ops[i]
        if b == "expand" and a != "expand":
            out["expand"].append(i)
        if a == "expand" and b != "expand":
            out["expand"].append(i)
        if b == "merge":
            out["merge"].append(i)
        if b in ("accelerate", "fast_accelerate"):
            out["accelerate"].append(i)
        if b == "preemptive_expand":
            out["preemptive_expand"].append(i)
    return out


@pytest.mark.parametrize("method", [m for m in ("zero", "repeat", "g711", "neteq") if m in available_methods()])
def test_output_has_no_jumps_at_operation_boundaries(method):
    """Expand, merge, accelerate and preemptive expand all start and end without a step."""
    from jitterbuffer.netsim import simulate
    from jitterbuffer.network import parse_network

    t = np.arange(16000 * 12) / 16000
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.2 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = (0.3 * np.sin(phase) + 0.15 * np.sin(2 * phase + 0.5)).astype(np.float32)
    spec = parse_network("delay=40 jitter=25 dist=pareto loss=4% burst=2 spike=250 spike_at=6 seed=3")
    arr = spec.simulate(len(x) // 320)
    r = simulate(x, arr, JitterBufferConfig(), concealer=make_concealer(method), spec=spec)
    y = r.audio.astype(np.float64)
    limit = STEP_SLACK * float(np.max(np.abs(np.diff(x.astype(np.float64)))))
    bounds = _op_boundaries(r.operations)
    assert all(len(v) >= 2 for v in bounds.values()), {k: len(v) for k, v in bounds.items()}
    for kind, ticks in bounds.items():
        for i in ticks:
            b = 160 * i
            step = abs(y[b] - y[b - 1])
            assert step <= limit, f"{method}: step {step:.3f} > {limit:.3f} at the start of {kind} tick {i}"
            if kind in ("accelerate", "preemptive_expand"):  # the cross-fade lies inside the tick
                inner = np.max(np.abs(np.diff(y[b - 1:b + 160])))
                assert inner <= limit, f"{method}: step {inner:.3f} inside {kind} tick {i}"


def test_replace_concealer_on_a_live_stream_keeps_buffer_and_counters(helpers):
    """A live call switching method: the next loss is the new concealer's; nothing else restarts."""
    x = helpers.harmonic(2.0)
    pk = helpers.pcm_packets(x)
    lost = {20, 21, 60, 61}
    arrivals = [(20.0 * k + 40, p) for k, p in enumerate(pk) if k not in lost]
    jb = JitterBuffer(make_concealer("zero"), JitterBufferConfig.from_spec("fixed:80"))
    first = helpers.play(jb, [a for a in arrivals if a[0] < 40 * 20], 80)  # the first loss, with silence
    before = jb.stats
    assert before["concealmentEvents"] == 1 and before["silentConcealedSamples"] == before["concealedSamples"] > 0
    with pytest.raises(ValueError):
        jb.replace_concealer(make_concealer("neteq", sample_rate=8000))
    jb.replace_concealer(make_concealer("neteq"))
    rest = helpers.play(jb, [a for a in arrivals if a[0] >= 40 * 20], 220, start_ms=800.0, until_done=True)
    after = jb.stats
    assert after["concealmentEvents"] == 2 and after["packetsLost"] == 4
    assert after["silentConcealedSamples"] == before["silentConcealedSamples"]  # the second loss is not silent
    assert after["jitterBufferEmittedCount"] >= before["jitterBufferEmittedCount"] + 0.9 * len(rest)  # not restarted
    assert after["fallbackFrames"] == 0 and np.abs(rest).max() > 0.1 and len(first) == 80 * 160


def test_replace_concealer_keeps_counting_the_old_concealers_fallback_frames(helpers):
    x = helpers.harmonic(2.0)
    pk = helpers.pcm_packets(x)
    keep = np.random.default_rng(0).random(len(pk)) > 0.2
    arrivals = [(20.0 * k + 40, p) for k, p in enumerate(pk) if keep[k]]
    jb = JitterBuffer(Flaky(), JitterBufferConfig.from_spec("fixed:60"))
    helpers.play(jb, arrivals[:40], 100)
    failed = jb.stats["fallbackFrames"]
    assert failed > 5
    jb.replace_concealer(make_concealer("g711"))
    helpers.play(jb, arrivals[40:], 120, start_ms=1000.0)
    assert jb.stats["fallbackFrames"] == failed and jb.stats["concealmentEvents"] > 5

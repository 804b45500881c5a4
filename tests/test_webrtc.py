"""plc.webrtc (concealment in aiortc calls) and ``plc demo call``, over real loopback UDP.

Every call here is real time: aiortc peer connections in this process, ICE on
127.0.0.1, and for the impaired ones the demo's UDP relay in between.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
import soundfile as sf

aiortc = pytest.importorskip("aiortc")

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, VideoStreamTrack  # noqa: E402
from aiortc.jitterbuffer import JitterBuffer as AiortcJitterBuffer  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from demo.call import (  # noqa: E402
    ArrayAudioTrack, NetworkImpairment, UdpRelay, connect, estimate_lag, frame_to_mono, run_call,
)
from plc import aiortc_compat  # noqa: E402
from plc.cli import main  # noqa: E402
from plc.webrtc import (  # noqa: E402
    STANDARD_STATS, ReceiverConcealment, disable_concealment, enable_concealment, get_concealment_stats,
    is_concealment_enabled,
)

REQUIRED_STATS = ("jitterBufferDelay", "jitterBufferTargetDelay", "jitterBufferEmittedCount", "concealedSamples",
                  "silentConcealedSamples", "concealmentEvents", "insertedSamplesForDeceleration",
                  "removedSamplesForAcceleration", "packetsDiscarded", "packetsLost")
#: RTP packets the relay drops in the end-to-end calls (20 ms each): four bursts inside the signal
DROPPED = [30, 31, 32, 33, 75, 76, 77, 120, 121, 122, 123, 124, 160]
SECONDS = 4.0
TAIL_S = 1.0


def voice(seconds: float, sample_rate: int = 48000, seed: int = 0, level: float = 0.15) -> np.ndarray:
    """A voiced, never-repeating signal: harmonics of a gliding pitch, slowly modulated."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 150 + 30 * np.sin(2 * np.pi * 0.5 * t) + 15 * np.sin(2 * np.pi * 1.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    x = sum(np.sin(k * phase + rng.uniform(0, 6.28)) / k for k in range(1, 8))
    return (level * (0.6 + 0.4 * np.sin(2 * np.pi * 2.3 * t)) * x).astype(np.float32)


def clean_alignment(sent: np.ndarray, received: np.ndarray, start_s: float, span_s: float = 1.0,
                    window_s: float = 0.2) -> tuple[float, float]:
    """Delay (s) and normalised correlation of the sent audio in the received, from the
    best-matching of the ``window_s`` windows that tile ``span_s`` from ``start_s``.

    The jitter buffer stretches and shrinks time as it adapts (a few ms each time, more often on
    a loaded host), and any such operation inside a window decorrelates the rest of it: over one
    window of a second the correlation came out anywhere from 0.1 to 0.9 on the same call. A
    short window without such an operation correlates at about 0.93, and one is always there.
    """
    n = int(round(span_s / window_s))
    found = [estimate_lag(sent, received, 48000, start_s + k * window_s, window_s=window_s, max_lag_s=0.5)
             for k in range(n)]
    return max(found, key=lambda lag_corr: lag_corr[1])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def run(coro):
    return asyncio.run(coro)


# ------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def calls():
    """The same lossy, jittery network, received with `none` and with `neteq` (run side by side)."""
    audio = voice(SECONDS)

    async def both():
        return await asyncio.gather(*[
            run_call(audio, method, loss=None, jitter_ms=15.0, seed=3, lost=DROPPED, tail_s=TAIL_S,
                     options={"log_ticks": 4000})
            for method in ("none", "neteq")])

    none, neteq = run(both())
    return audio, {"none": none, "neteq": neteq}


@pytest.mark.parametrize("method", ["none", "neteq"])
def test_call_has_the_sent_duration_without_gaps_or_jumps(calls, method):
    audio, results = calls
    r = results[method]
    n_expected = int(np.ceil(len(audio) / 960 + TAIL_S / 0.02))
    assert r.frames == n_expected and r.pts_gaps == 0
    assert r.sample_rate == 48000 and len(r.received) == 960 * r.frames
    assert r.relay["rtp_dropped"] == len(DROPPED) and r.relay["rtp_reordered"] > 0
    # the sent signal is found at the same delay at the start and at the end: no time gap, no jump
    lag_start, c_start = clean_alignment(audio, r.received, 0.3)
    lag_end, c_end = clean_alignment(audio, r.received, SECONDS - 1.3)
    assert c_start > 0.8 and c_end > 0.8, (c_start, c_end)
    buffering_s = 0.3
    assert 0.0 <= lag_start <= buffering_s and 0.0 <= lag_end <= buffering_s, (lag_start, lag_end)
    assert abs(lag_end - lag_start) < 0.1, (lag_start, lag_end)


def _deep_expand_frames(result) -> list[int]:
    """Output frames entirely inside a concealment: both ticks and the two ticks before are expands.

    The whole previous frame must be concealment too: when a loss starts mid-frame, the short
    fade-out of the last real audio (no click), delayed by the 16 -> 48 kHz resampler's filter,
    reaches about 2 ms into the next output frame.
    """
    ops: dict[int, list[str]] = {}
    for k, op in result.timeline:
        ops.setdefault(k, []).append(op)
    return [k for k in ops if ops[k] == ["expand", "expand"] and ops.get(k - 1) == ["expand", "expand"]
            and k < result.frames and k * 0.02 < SECONDS - 0.1]


def test_concealment_events_are_counted_and_gaps_are_silent_only_without_concealer(calls):
    audio, results = calls
    for method, r in results.items():
        s = r.stats
        assert set(REQUIRED_STATS) <= set(s), method
        assert s["concealmentEvents"] >= 4, (method, s["concealmentEvents"])
        assert s["packetsLost"] >= len(DROPPED) - 1
        # Each of the four losses is concealed for at least a frame. Not for all of its 20 ms
        # packets: when the buffer is above its target delay (a host that fell behind and then
        # caught up), the decision logic conceals one frame and jumps over the rest of the gap,
        # as NetEQ does with a future packet in hand.
        assert s["concealedSamples"] >= 160 * 4
        assert s["jitterBufferEmittedCount"] > 0 and s["jitterBufferDelay"] > 0
        assert s["framesEmitted"] >= r.frames
        # where the concealment came from: these classics make their own frames, steer nothing
        assert s["codecConcealedFrames"] == s["steeredLosses"] == s["lossesLeftToFec"] == 0
    frames = {m: r.received.reshape(-1, 960) for m, r in results.items()}
    deep_none = _deep_expand_frames(results["none"])
    deep_neteq = _deep_expand_frames(results["neteq"])
    assert len(deep_none) >= 4 and len(deep_neteq) >= 4
    level = rms(audio)
    # none: silence in the gaps; neteq: the gaps are filled with signal
    assert max(rms(frames["none"][k]) for k in deep_none) < 1e-3
    assert np.median([rms(frames["neteq"][k]) for k in deep_neteq]) > 0.2 * level
    s_none, s_neteq = results["none"].stats, results["neteq"].stats
    assert s_none["silentConcealedSamples"] > 0.5 * s_none["concealedSamples"]
    assert s_neteq["silentConcealedSamples"] < 0.5 * s_neteq["concealedSamples"]


# --------------------------------------------- several tracks, video, data, RTCP
class SmallVideo(VideoStreamTrack):
    async def recv(self):
        import av

        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(np.full((96, 128, 3), 90, np.uint8), format="bgr24")
        frame.pts, frame.time_base = pts, time_base
        return frame


async def _record(track, seconds: float, frames: list, timeout: float = 5.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            frames.append(await asyncio.wait_for(track.recv(), timeout))
        except (asyncio.TimeoutError, MediaStreamError):
            return


def test_several_audio_tracks_video_data_and_rtcp_work_and_other_connections_are_untouched():
    async def scenario():
        config = RTCConfiguration(iceServers=[])
        # patched pair: Opus + PCMU audio, video and a data channel
        pc1, pc2 = RTCPeerConnection(config), RTCPeerConnection(config)
        handle = enable_concealment(pc2, method="neteq")
        pc1.addTrack(ArrayAudioTrack(voice(4.0, seed=1)))
        pcmu = pc1.addTransceiver(ArrayAudioTrack(voice(4.0, seed=2)), direction="sendonly")
        pcmu.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("audio").codecs
                                  if c.mimeType == "audio/PCMU"])
        pc1.addTrack(SmallVideo())
        channel = pc1.createDataChannel("chat")
        echoed = asyncio.get_running_loop().create_future()
        received: dict[str, list] = {}
        tasks = []

        @pc2.on("track")
        def on_track(track):
            received[track.id] = [track.kind]
            tasks.append(asyncio.ensure_future(_record(track, 2.5, received[track.id])))

        @pc2.on("datachannel")
        def on_datachannel(dc):
            dc.on("message", lambda msg: dc.send("echo:" + msg))

        channel.on("message", lambda msg: echoed.done() or echoed.set_result(msg))
        channel.on("open", lambda: channel.send("hello"))

        # plain pair in the same process, through a relay that drops packets
        pc3, pc4 = RTCPeerConnection(config), RTCPeerConnection(config)
        pc3.addTrack(ArrayAudioTrack(voice(4.0, seed=3)))
        plain: list = []

        @pc4.on("track")
        def on_plain(track):
            tasks.append(asyncio.ensure_future(_record(track, 2.5, plain)))

        relay = await UdpRelay(NetworkImpairment(lost=[20, 21, 22, 50, 51, 80])).start()
        await asyncio.gather(connect(pc1, pc2), connect(pc3, pc4, relay))
        assert await asyncio.wait_for(echoed, 10) == "echo:hello"
        await asyncio.sleep(0.2)
        await asyncio.gather(*tasks)
        report1 = await pc1.getStats()
        report2 = await pc2.getStats()
        patched_receivers = [t.receiver for t in pc2.getTransceivers()]
        plain_receiver = pc4.getTransceivers()[0].receiver
        per_track = {tid: get_concealment_stats(t.receiver.track) for tid in received
                     for t in pc2.getTransceivers() if t.receiver.track.id == tid}
        checks = dict(
            stats=handle.stats, per_track=per_track,
            patched_tap=[type(aiortc_compat.jitter_buffer(r)).__name__ for r in patched_receivers],
            kinds=[r.track.kind for r in patched_receivers],
            codecs=[sorted(c.mimeType for c in aiortc_compat.negotiated_codecs(r).values())
                    for r in patched_receivers if r.track.kind == "audio"],
            plain_jb=aiortc_compat.jitter_buffer(plain_receiver),
            plain_dict=dict(vars(plain_receiver)), plain_enabled=is_concealment_enabled(plain_receiver.track),
            plain_stats=get_concealment_stats(plain_receiver.track),
        )
        for pc in (pc1, pc2, pc3, pc4):
            await pc.close()
        relay.close()
        handle.disable()
        return received, plain, report1, report2, checks

    received, plain, report1, report2, checks = run(scenario())

    audio = [frames[1:] for frames in received.values() if frames[0] == "audio"]
    video = [frames[1:] for frames in received.values() if frames[0] == "video"]
    assert len(audio) == 2 and len(video) == 1
    assert len(video[0]) >= 10  # video frames still decoded by aiortc
    for frames in audio:  # both audio tracks (Opus and PCMU): a continuous 20 ms frame stream with signal
        assert len(frames) >= 100
        assert all(f.sample_rate == 48000 and f.samples == 960 and f.format.name == "s16" for f in frames)
        pts = [f.pts for f in frames]
        assert np.all(np.diff(pts) == 960)
        x = np.concatenate([frame_to_mono(f) for f in frames[20:]])
        assert rms(x) > 0.03
    # the patched receivers: audio tapped, video left alone; stats with WebRTC names everywhere
    kinds = checks["kinds"]
    assert [t for t, k in zip(checks["patched_tap"], kinds) if k == "audio"] == ["_PacketTap", "_PacketTap"]
    assert [t for t, k in zip(checks["patched_tap"], kinds) if k == "video"] == ["JitterBuffer"]
    assert ["audio/PCMU"] in checks["codecs"] and any("audio/opus" in c for c in checks["codecs"])
    assert checks["stats"]["tracks"] == 2 and set(REQUIRED_STATS) <= set(checks["stats"])
    assert all(s is not None and s["jitterBufferEmittedCount"] > 0 for s in checks["per_track"].values()
               if s is not None) and sum(s is not None for s in checks["per_track"].values()) == 2
    inbound = [s for s in report2.values() if s.type == "inbound-rtp"]
    assert {s.kind for s in inbound} == {"audio", "video"}
    for s in inbound:
        assert all(hasattr(s, name) for name in STANDARD_STATS) == (s.kind == "audio")
    # RTCP still flows: the sender got receiver reports for its streams
    assert any(s.type == "remote-inbound-rtp" for s in report1.values())
    # the plain connection is aiortc as it is: its jitter buffer, no override, frames skip the lost packets
    assert isinstance(checks["plain_jb"], AiortcJitterBuffer) and "getStats" not in checks["plain_dict"]
    assert not checks["plain_enabled"] and checks["plain_stats"] is None
    assert len(plain) >= 50
    assert all(f.sample_rate == 48000 and f.samples == 960 and f.layout.name == "stereo" for f in plain)
    assert np.any(np.diff([f.pts for f in plain]) > 960)  # aiortc: a lost packet is a time gap


def test_enable_on_a_live_call_then_disable_gives_the_stream_back_to_aiortc():
    async def scenario():
        config = RTCConfiguration(iceServers=[])
        pc1, pc2 = RTCPeerConnection(config), RTCPeerConnection(config)
        pc1.addTrack(ArrayAudioTrack(voice(4.0)))
        frames: list = []
        tasks = []
        pc2.on("track", lambda track: tasks.append(asyncio.ensure_future(_record(track, 2.4, frames))))
        await connect(pc1, pc2)
        await asyncio.sleep(0.8)
        n_before = len(frames)
        receiver = pc2.getTransceivers()[0].receiver
        original = aiortc_compat.jitter_buffer(receiver)
        handle = enable_concealment(pc2, method="g711")
        assert enable_concealment(pc2, method="g711") is handle  # idempotent
        await asyncio.sleep(0.8)
        n_enabled = len(frames)
        stats = handle.stats
        handle.disable()
        handle.disable()
        restored = aiortc_compat.jitter_buffer(receiver)
        await asyncio.gather(*tasks)
        await pc1.close()
        await pc2.close()
        return frames, n_before, n_enabled, stats, original, restored

    frames, n_before, n_enabled, stats, original, restored = run(scenario())
    assert n_before >= 20
    assert stats["packetsTapped"] > 20 and stats["framesEmitted"] >= 0.8 * (n_enabled - n_before) > 20
    assert restored is original
    assert len(frames) - n_enabled >= 20  # aiortc's own path plays again after disable
    pts = [f.pts for f in frames]
    assert np.all(np.diff(pts) > 0)


# ------------------------------------------------------------------- API
def test_api_validation_idempotence_and_disable_before_negotiation():
    async def scenario():
        pc = RTCPeerConnection()
        audio_t = pc.addTransceiver("audio")
        video_t = pc.addTransceiver("video")
        with pytest.raises(ValueError, match="unknown concealment method"):
            enable_concealment(pc, method="nope")
        with pytest.raises(ValueError, match="unknown option"):
            enable_concealment(pc, method="neteq", bogus=1)
        with pytest.raises(ValueError):
            enable_concealment(pc, method="neteq", buffer="sideways")
        with pytest.raises(ValueError, match="audio"):
            enable_concealment(video_t.receiver, method="neteq")
        with pytest.raises(TypeError):
            enable_concealment(object())
        handle = enable_concealment(pc, method="none")
        assert enable_concealment(pc, method="none") is handle
        with pytest.raises(ValueError, match="already enabled"):
            enable_concealment(pc, method="neteq")
        with pytest.raises(ValueError, match="already enabled"):
            enable_concealment(audio_t.receiver, method="neteq")
        jb_audio = aiortc_compat.jitter_buffer(audio_t.receiver)
        jb_video = aiortc_compat.jitter_buffer(video_t.receiver)
        assert type(jb_audio).__name__ == "_PacketTap" and isinstance(jb_video, AiortcJitterBuffer)
        assert is_concealment_enabled(audio_t.receiver) and not is_concealment_enabled(video_t.receiver)
        stats = handle.stats
        assert set(REQUIRED_STATS) <= set(stats) and stats["concealmentEvents"] == 0
        assert get_concealment_stats(audio_t.receiver)["method"] == "none"
        disable_concealment(pc)
        assert isinstance(aiortc_compat.jitter_buffer(audio_t.receiver), AiortcJitterBuffer)
        assert "getStats" not in vars(audio_t.receiver) and not is_concealment_enabled(audio_t.receiver)
        assert pc.listeners("track") == []
        # a single receiver, then a different method after disable
        h2 = enable_concealment(audio_t.receiver, method="neural", layout="mono", threaded=False)
        assert h2.receivers[0].layout == "mono" and h2.stats["method"] == "neural"
        h2.disable()
        assert isinstance(aiortc_compat.jitter_buffer(audio_t.receiver), AiortcJitterBuffer)
        await pc.close()

    run(scenario())


# ------------------------------------------------------------------- demo
def test_demo_call_help_and_user_errors(capsys, tmp_path):
    assert main(["demo", "call", "--help"]) == 0  # main returns the status, also for --help
    text = capsys.readouterr().out
    for option in ("--input", "--method", "--compare", "--loss", "--jitter-ms", "--seconds", "--out"):
        assert option in text
    for argv in (["--seconds", "0"], ["--jitter-ms", "-5"], ["--loss", "gilbert:2"],
                 ["--input", str(tmp_path / "missing.wav")], ["--buffer", "sideways"]):
        assert main(["demo", "call", *argv, "--out", str(tmp_path / "o")]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err


def test_demo_call_compare_writes_audio_stats_and_table(tmp_path, capsys):
    wav = tmp_path / "in.wav"
    sf.write(wav, voice(2.0, 16000), 16000, subtype="PCM_16")
    out = tmp_path / "call"
    assert main(["demo", "call", "--input", str(wav), "--compare", "--loss", "gilbert:0.15,3", "--jitter-ms", "10",
                 "--seconds", "2", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "PLCMOS" in table and "concealed ms" in table
    stats = json.loads((out / "stats.json").read_text())
    assert list(stats["runs"]) == ["none", "neteq", "opus", "neural"]
    dropped = {r["network"]["rtp_dropped"] for r in stats["runs"].values()}
    assert len(dropped) == 1  # the same network for every method
    for method, r in stats["runs"].items():
        y, sr = sf.read(out / f"received_{method}.wav")
        assert sr == 48000 and abs(len(y) / sr - 3.0) < 0.03  # 2 s + 1 s tail, as 20 ms frames
        assert r["pts_gaps"] == 0 and 1.0 <= r["plcmos"] <= 5.0
        assert set(REQUIRED_STATS) <= set(r["receiver_stats"])
        assert method in table


def test_demo_call_says_how_its_opus_losses_began():
    from demo.call import _steering_note

    assert _steering_note({"steeredLosses": 0, "lossesLeftToFec": 0}) == "" == _steering_note({})
    assert _steering_note({"steeredLosses": 3}) == ", 3 losses began with the model's packet in the decoder"
    assert "2 losses left to libopus' PLC (the stream carries FEC)" in _steering_note({"lossesLeftToFec": 2})
    assert _steering_note({"gapsEndedAhead": 4}) == ", 4 bursts ended into the next packet"


@pytest.mark.parametrize("mime", ["audio/PCMU", "audio/PCMA", "audio/G722"])
def test_g711_and_g722_payloads_decode_to_16k_through_aiortc_decoders(mime):
    import fractions

    import av
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from plc.codecs import codec_for_mime

    codec = RTCRtpCodecParameters(mimeType=mime, clockRate=8000, channels=1, payloadType=0)
    encoder, fmt = get_encoder(codec), codec_for_mime(codec.mimeType)
    decoder = fmt.decoder()
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000) * 32767).astype(np.int16)
    out = []
    for i in range(50):
        frame = av.AudioFrame.from_ndarray(x[i * 960:(i + 1) * 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * 960, fractions.Fraction(1, 48000)
        for payload in encoder.encode(frame)[0]:
            assert fmt.clock_rate == 8000 and decoder.duration(payload) == 160
            out.append(decoder.decode(payload))
    y = np.concatenate(out)
    assert all(len(o) == 320 for o in out)
    seg = y[4000:4000 + 8000]
    assert abs(rms(seg) - 0.3 / np.sqrt(2)) < 0.02
    assert abs(np.argmax(np.abs(np.fft.rfft(seg))) * 16000 / len(seg) - 440) < 4

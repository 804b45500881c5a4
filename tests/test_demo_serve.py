"""``plc demo serve`` without a browser: aiortc peers as the page, the server in this process.

Bad requests, live method switching, the receive-path network, and 50 calls in
a row that leave no peer connection, task or thread behind. The browser itself
is tested in ``tests/test_browser.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
import weakref

import numpy as np
import pytest

pytest.importorskip("aiohttp")

from demo.call import ArrayAudioTrack, SEND_RATE  # noqa: E402
from plc.concealers import default_method  # noqa: E402
from demo.serve import DemoServer, ReceivePathNetwork  # noqa: E402
from plc.audio_io import resample  # noqa: E402
from plc.cli import main  # noqa: E402
from tests.conftest import harmonic  # noqa: E402

LOSSY = {"method": "neteq", "loss": "gilbert:0.1,3", "jitter_ms": 20, "seed": 0}


def _voice(seconds: float) -> np.ndarray:
    """A vowel-like signal at 48 kHz, for the aiortc peer to send."""
    return resample(harmonic(140.0, seconds, 16000), 16000, SEND_RATE)


@contextlib.asynccontextmanager
async def running_server(**options):
    from aiohttp import web

    server = DemoServer(**options)
    runner = web.AppRunner(server.make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield server, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


class Peer:
    """An aiortc peer connection in the page's place: sends a track, records the echo's frames."""

    def __init__(self, seconds: float = 30.0, track=None) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = track or ArrayAudioTrack(_voice(seconds))
        self.pc.addTrack(self.track)
        self.frames = 0
        self.id = None
        self._reader = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track) -> None:
        async def read() -> None:
            from aiortc.mediastreams import MediaStreamError

            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    self.frames += 1

        self._reader = asyncio.ensure_future(read())

    async def offer(self) -> dict:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return {"sdp": self.pc.localDescription.sdp, "type": "offer"}

    async def call(self, session, base: str, settings: dict) -> "Peer":
        from aiortc import RTCSessionDescription

        async with session.post(f"{base}/offer", json={**await self.offer(), **settings}) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        self.id = body["id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
        return self

    async def wait_frames(self, n: int, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.frames < n:
            assert time.monotonic() < deadline, f"only {self.frames} echo frames in {timeout_s} s"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


async def _stats(session, base: str, call_id: str) -> dict:
    async with session.get(f"{base}/calls/{call_id}/stats") as resp:
        assert resp.status == 200
        return await resp.json()


async def _until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def test_bad_requests_get_a_clear_4xx_and_leave_the_other_call_alone():
    import aiohttp

    async def run() -> None:
        async with running_server(max_calls=2) as (server, base), aiohttp.ClientSession() as s:
            good = await Peer().call(s, base, LOSSY)
            await good.wait_frames(10)
            frames_before = good.frames
            offerer, refused = Peer(1.0), Peer(1.0)  # offers only, never connected
            offer = await offerer.offer()
            cases = [
                ("post", "/offer", {"json": {"sdp": "v=0\r\nthis is no SDP\r\n", "type": "offer"}}, 400,
                 "the offer sends no audio"),
                ("post", "/offer", {"json": {"sdp": "v=0\r\nm=audio notaport RTP/AVP 0\r\n", "type": "offer"}}, 400,
                 "malformed SDP offer: it could not be parsed"),
                ("post", "/offer", {"json": {"sdp": offer["sdp"].replace("a=ice-ufrag", "a=x"), "type": "offer"}}, 400,
                 "malformed SDP offer: ICE username fragment"),
                ("post", "/offer", {"json": {"sdp": "hello", "type": "offer"}}, 400, "starting with v=0"),
                ("post", "/offer", {"json": {**offer, "type": "answer"}}, 400, "type must be 'offer'"),
                ("post", "/offer", {"json": {**offer, "method": "magic"}}, 400, "unknown concealment method"),
                ("post", "/offer", {"json": {**offer, "loss": "gilbert:2,3"}}, 400, "loss rate"),
                ("post", "/offer", {"json": {**offer, "jitter_ms": -5}}, 400, "jitter_ms"),
                ("post", "/offer", {"json": {**offer, "seed": "x"}}, 400, "seed"),
                ("post", "/offer", {"json": {**offer, "colour": 1}}, 400, "unknown field"),
                ("post", "/offer", {"json": {**offer, "sdp": offer["sdp"] + "a=x-pad:" + "z" * 70000 + "\r\n"}},
                 413, "larger than 64 KiB"),
                ("post", "/offer", {"data": "v=0", "headers": {"Content-Type": "text/plain"}}, 415, "send JSON"),
                ("post", "/offer", {"data": "{not json", "headers": {"Content-Type": "application/json"}}, 400,
                 "not valid JSON"),
                ("post", "/offer", {"json": [1, 2]}, 400, "JSON object"),
                ("get", "/offer", {}, 405, "GET is not allowed on /offer"),
                ("put", "/calls/x/settings", {}, 405, "PUT is not allowed"),
                ("get", "/calls/nosuchcall/stats", {}, 404, "no such call"),
                ("post", f"/calls/{good.id}/settings", {"json": {"method": "magic"}}, 400,
                 "unknown concealment method"),
                ("post", f"/calls/{good.id}/settings", {"json": {"loss": "pareto:1"}}, 400, "bad loss spec"),
                ("get", "/nowhere", {}, 404, "no such page"),
            ]
            for verb, path, kwargs, status, message in cases:
                async with s.request(verb, base + path, **kwargs) as resp:
                    body = await resp.json()
                    assert resp.status == status, (path, kwargs.get("json", {}).keys(), body)
                    assert message in body["error"], body
            # a second good call fits; a third is refused with 503
            second = await Peer(5.0).call(s, base, LOSSY)
            async with s.post(f"{base}/offer", json={**await refused.offer(), **LOSSY}) as resp:
                assert resp.status == 503 and "try again" in (await resp.json())["error"]
            # none of that disturbed the first call, and no bad offer left a call behind
            await good.wait_frames(frames_before + 50)
            stats = await _stats(s, base, good.id)
            assert stats["connectionState"] == "connected" and stats["method"] == "neteq"
            assert set(server.calls) == {good.id, second.id}
            for peer in (second, good, offerer, refused):
                await peer.close()
            await _until(lambda: not server.calls, 10, "closed peers must end their calls")

    asyncio.run(run())


def test_method_and_network_switch_on_the_live_call():
    import aiohttp

    async def run() -> None:
        async with running_server() as (server, base), aiohttp.ClientSession() as s:
            peer = await Peer(20.0).call(s, base, LOSSY)
            await peer.wait_frames(75)
            before = await _stats(s, base, peer.id)
            assert before["receiver"]["concealmentEvents"] > 0 and before["network"]["dropped"] > 0
            rc = server.calls[peer.id].handle.receivers[0]
            jitter_buffer = rc.jitter_buffer
            for method in ("neural", "opus", "none", "neteq"):
                async with s.post(f"{base}/calls/{peer.id}/settings", json={"method": method}) as resp:
                    assert resp.status == 200, await resp.json()
                    assert (await resp.json())["method"] == method
                frames = peer.frames
                await peer.wait_frames(frames + 25)
                assert rc.method == method and rc.jitter_buffer is jitter_buffer  # same buffer, same call
            after = await _stats(s, base, peer.id)
            assert after["id"] == peer.id and after["connectionState"] == "connected"
            assert after["receiver"]["concealmentEvents"] > before["receiver"]["concealmentEvents"]
            assert after["receiver"]["jitterBufferEmittedCount"] > before["receiver"]["jitterBufferEmittedCount"]
            # the network: no loss from now on
            async with s.post(f"{base}/calls/{peer.id}/settings", json={"loss": "none", "jitter_ms": 0}) as resp:
                assert resp.status == 200
            dropped = (await _stats(s, base, peer.id))["network"]["dropped"]
            await peer.wait_frames(peer.frames + 50)
            later = await _stats(s, base, peer.id)
            assert later["network"]["dropped"] == dropped and later["network"]["loss"] == "none"
            assert later["echo"]["levelDbfs"] > -40  # the echo carries the peer's audio
            async with s.post(f"{base}/calls/{peer.id}/close") as resp:
                assert resp.status == 200
            assert not server.calls
            await peer.close()

    asyncio.run(run())


def test_page_config_and_status_are_served():
    import aiohttp

    async def run() -> None:
        async with running_server() as (_, base), aiohttp.ClientSession() as s:
            for path, kind, text in (("/", "text/html", "client.js"), ("/client.js", "text/javascript", "plcDemo"),
                                     ("/recorder.js", "text/javascript", "registerProcessor")):
                async with s.get(base + path) as resp:
                    assert resp.status == 200 and resp.content_type == kind and text in await resp.text()
            async with s.get(base + "/config") as resp:
                config = await resp.json()
            assert config["defaultMethod"] == default_method() and config["methods"][0] == "none"
            assert {"neteq", "opus", "neural"} <= set(config["methods"]) and config["defaultLoss"] == "gilbert:0.1,3"
            async with s.get(base + "/status") as resp:
                assert await resp.json() == {"calls": 0}

    asyncio.run(run())


def test_stats_are_plain_json():
    from demo.serve import _plain

    assert _plain({"a": float("nan"), "b": np.int64(3), "c": [np.float32(0.5), None, "x"], "d": np.bool_(True)}) == {
        "a": None, "b": 3, "c": [0.5, None, "x"], "d": True}


class _Packet:
    def __init__(self, seq: int) -> None:
        self.sequence_number = seq & 0xFFFF


def test_receive_path_network_is_seeded_by_packet_index_across_wraparound():
    first = ReceivePathNetwork("gilbert:0.1,3", 20.0, seed=3)
    again = ReceivePathNetwork("gilbert:0.1,3", 20.0, seed=3)
    other = ReceivePathNetwork("gilbert:0.1,3", 20.0, seed=4)
    seqs = [65000 + i for i in range(2000)]  # wraps past 65535
    fates = [first(_Packet(q)) for q in seqs]
    assert fates == [again(_Packet(q + 7)) for q in seqs]  # same index, same fate, wherever the stream starts
    assert fates != [other(_Packet(q)) for q in seqs]
    assert 0.06 < first.dropped / first.packets < 0.14
    delays = [d for d in fates if d is not None]
    assert 12 < np.mean(delays) < 28 and min(delays) >= 0
    clean = ReceivePathNetwork(None, 0.0, seed=0)
    assert all(clean(_Packet(q)) == 0.0 for q in seqs) and clean.dropped == 0


def _plc_threads() -> set:
    return {t for t in threading.enumerate() if t is not threading.main_thread()}


def test_fifty_connects_and_disconnects_leave_no_peer_connection_task_or_thread():
    import aiohttp

    async def run() -> None:
        async with running_server() as (server, base), aiohttp.ClientSession() as s:
            await _warm_up(s, base, server)
            tasks_before = {t for t in asyncio.all_tasks() if not t.done()}
            threads_before = _plc_threads()
            gc.collect()
            pcs_before.update(_peer_connections())  # other tests' leftovers are not this test's business
            for i in range(50):
                peer = await Peer(2.0).call(s, base, LOSSY)
                await peer.wait_frames(3)
                if i % 2 == 0:  # the page says goodbye (its pagehide beacon, or Hang up): the server hangs up ...
                    async with s.post(f"{base}/calls/{peer.id}/close") as resp:
                        assert resp.status == 200
                    await _until(lambda: peer.pc.connectionState == "closed", 10,
                                 f"call {i}: the server did not close its peer connection")
                await peer.close()  # ... or the page just closes its peer connection
                await _until(lambda: not server.calls, 10, f"call {i} was not ended")
                del peer
            await _until(lambda: {t for t in asyncio.all_tasks() if not t.done()} <= tasks_before | {
                asyncio.current_task()}, 10, "tasks left behind: " + repr(
                {t for t in asyncio.all_tasks() if not t.done()} - tasks_before))
        return threads_before

    pcs_before = weakref.WeakSet()
    threads_before = asyncio.run(run())
    deadline = time.monotonic() + 10
    while _plc_threads() - threads_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _plc_threads() - threads_before, [t.name for t in _plc_threads() - threads_before]
    gc.collect()
    assert not [pc for pc in _peer_connections() if pc not in pcs_before]


def _peer_connections() -> list:
    from aiortc import RTCPeerConnection

    return [o for o in gc.get_objects() if type(o) is RTCPeerConnection]


async def _warm_up(session, base: str, server) -> None:
    """One call first, so imports and lazily made process-wide things are not counted as leaks."""
    peer = await Peer(2.0).call(session, base, LOSSY)
    await peer.wait_frames(3)
    await peer.close()
    await _until(lambda: not server.calls, 10, "the warm-up call was not ended")


def test_a_peer_that_vanishes_is_ended_when_its_packets_stop():
    import aiohttp
    from aiortc.mediastreams import MediaStreamTrack

    class Stalls(MediaStreamTrack):
        """Sends one second of audio, then nothing (a tab frozen or gone without a word)."""

        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.inner = ArrayAudioTrack(_voice(1.0))

        async def recv(self):
            if self.inner.frames_sent >= 50:
                await asyncio.sleep(3600)
            return await self.inner.recv()

    async def run() -> None:
        async with running_server(idle_timeout_s=1.0) as (server, base), aiohttp.ClientSession() as s:
            peer = await Peer(track=Stalls()).call(s, base, {**LOSSY, "loss": "none"})
            await peer.wait_frames(10)
            await _until(lambda: not server.calls, 10, "the silent call was not ended")
            await peer.close()

    asyncio.run(run())


@pytest.mark.parametrize("argv, message", [  # number options: tests/test_argtypes.py
    (["--cert-file", "x.pem"], "go together"),
    (["--cert-file", "/nonexistent.pem", "--key-file", "/nonexistent.key"], "--cert-file/--key-file"),
])
def test_serve_cli_errors(argv, message, capsys):
    assert main(["demo", "serve", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("plc demo: error:") and message in err[0]


def test_browser_test_says_why_it_skips_without_chromium(monkeypatch, tmp_path):
    from demo import headless

    monkeypatch.setattr(headless, "CHROMIUM", tmp_path / "no-chromium")
    assert "apt-get install chromium" in headless.chromium_missing()
    monkeypatch.setattr(headless, "CHROMIUM", tmp_path)  # a folder is no browser either
    assert "is missing" in headless.chromium_missing()

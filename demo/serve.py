"""``plc demo serve``: a web page that calls this server, so you hear the concealment on your own voice.

The shape of aiortc's own ``examples/server``: aiohttp serves one page
(``demo/browser/``); the page sends its microphone to the server over WebRTC
(``POST /offer`` with the browser's SDP offer, answered with the server's SDP),
and the server sends what it would play back to the browser (an echo): the
browser's audio after a lossy network and this project's jitter buffer and
concealment (:func:`plc.webrtc.enable_concealment`). Method and network can be
changed on the live call from the page (``POST /calls/ID/settings``); the page
polls ``GET /calls/ID/stats`` and plots them.

Where the loss is applied, and why there
----------------------------------------
On the server's receive path, in front of the jitter buffer: every RTP packet
aiortc receives from the browser goes through
:attr:`plc.webrtc.ReceiverConcealment.impairment`, which drops or delays it
as :class:`demo.call.NetworkImpairment` says (the loss models and exponential
jitter of ``plc demo call``; the fate of the n-th packet depends only on the
seed and n, so two calls with the same seed lose the same packets). The
alternative, a UDP relay between browser and server as ``plc demo call``
uses, would need the ICE candidates of both sides rewritten and a relay per
call, and settings could not change without reconnecting. On the receive path
the concealment still gets the browser's real RTP (its own Opus encoder,
packetisation and timing), and a relay would add nothing the server's
concealment sees. What it changes: aiortc counts packets for its RTCP
receiver reports before the impairment, so the browser hears of no loss and
does not react to it (its Opus encoder does not add in-band FEC for it); the
concealment alone hides the loss, which is what the page is for.

``none`` means what it means in :func:`plc.webrtc.enable_concealment` and
``plc demo call``: the same jitter buffer, silence in the gaps.

Endpoints: ``GET /`` (the page), ``GET /config``, ``GET /status``,
``POST /offer``, ``GET /calls/ID/stats``, ``POST /calls/ID/settings``,
``POST /calls/ID/close``. Bad requests get a 4xx status with a JSON
``{"error": "..."}`` and touch no other call. A call ends when the browser
closes it (``close``, also sent by the page when the tab goes away), when its
DTLS or ICE transport closes or fails, or when no packet has come for
``idle_timeout_s``.

Loopback only by default (``--host 127.0.0.1``, ICE candidates on
127.0.0.1); ``--host`` with another address serves the network, and browsers
only give the microphone to a page from another machine over HTTPS
(``--cert-file``, ``--key-file``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import logging
import math
import secrets
import signal
import ssl
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

logger = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).resolve().parent / "browser"
PAGE_FILES = {"/": ("index.html", "text/html"), "/client.js": ("client.js", "text/javascript"),
              "/recorder.js": ("recorder.js", "text/javascript")}
#: Largest accepted request body (an SDP offer is a few KiB).
MAX_BODY_BYTES = 64 * 1024
DEFAULT_LOSS = "gilbert:0.1,3"
DEFAULT_JITTER_MS = 20.0
MAX_JITTER_MS = 1000.0
DEFAULT_MAX_CALLS = 8
DEFAULT_IDLE_TIMEOUT_S = 15.0
DEFAULT_CONNECT_TIMEOUT_S = 30.0
#: What the page offers, in this order; ``none`` first for comparison.
PAGE_METHODS = ("none", "neteq", "opus", "neural", "g711", "repeat")


class RequestError(Exception):
    """A bad request: ``status`` (4xx) and a one-line message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def page_methods() -> list[str]:
    """The concealment methods this installation can run, as the page lists them."""
    from plc.concealers import available_methods

    installed = set(available_methods()) | {"none"}
    return [m for m in PAGE_METHODS if m in installed]


# ------------------------------------------------------------ the network
class ReceivePathNetwork:
    """Seeded loss and jitter on the server's receive path (``ReceiverConcealment.impairment``).

    Packet n (in RTP sequence order from the first packet) meets
    :meth:`demo.call.NetworkImpairment.fate` ``(n)``; :meth:`configure` starts
    a new network on a live call (the index keeps counting, so a seed
    reproduces the same pattern from where the change happened only when set
    at connect time).
    """

    def __init__(self, loss: Optional[str], jitter_ms: float, seed: int) -> None:
        from jitterbuffer.rtp import SequenceUnwrapper

        self._unwrap = SequenceUnwrapper()
        self._first: Optional[int] = None
        self.packets = 0
        self.dropped = 0
        self.delayed = 0
        self._delay_sum_ms = 0.0
        self.configure(loss, jitter_ms, seed)

    def configure(self, loss: Optional[str], jitter_ms: float, seed: int) -> None:
        from .call import NetworkImpairment

        self.loss, self.jitter_ms, self.seed = loss, float(jitter_ms), int(seed)
        self._impairment = NetworkImpairment(loss, jitter_ms, seed)

    def __call__(self, packet) -> Optional[float]:
        """None (dropped) or the extra delay of this packet in ms."""
        ext = self._unwrap.unwrap(packet.sequence_number)
        if self._first is None:
            self._first = ext
        self.packets += 1
        index = (ext - self._first) % len(self._impairment.lost)
        dropped, delay_ms = self._impairment.fate(index)
        if dropped:
            self.dropped += 1
            return None
        if delay_ms > 0:
            self.delayed += 1
            self._delay_sum_ms += delay_ms
        return delay_ms

    def as_dict(self) -> dict:
        passed = self.packets - self.dropped
        return {"loss": self.loss or "none", "jitterMs": self.jitter_ms, "seed": self.seed,
                "packets": self.packets, "dropped": self.dropped, "delayed": self.delayed,
                "meanExtraDelayMs": self._delay_sum_ms / passed if passed else 0.0}


# ------------------------------------------------------------------ a call
def _echo_track_class():
    from aiortc.mediastreams import MediaStreamTrack

    from .call import frame_to_mono

    class EchoTrack(MediaStreamTrack):
        """Sends back the frames of the concealed remote track, measuring their level."""

        kind = "audio"

        def __init__(self, source) -> None:
            super().__init__()
            self.source = source
            self.frames = 0
            self.mean_square = 0.0  # over about the last second
            self.peak_mean_square = 0.0

        async def recv(self):
            frame = await self.source.recv()
            x = frame_to_mono(frame)
            self.mean_square += 0.05 * (float(np.mean(x.astype(np.float64) ** 2)) - self.mean_square)
            self.peak_mean_square = max(self.peak_mean_square, self.mean_square)
            self.frames += 1
            return frame

    return EchoTrack


def _dbfs(mean_square: float) -> Optional[float]:
    return round(10.0 * math.log10(mean_square), 1) if mean_square > 1e-10 else None


class BrowserCall:
    """One browser's call: its peer connection, concealment, network and echo."""

    def __init__(self, server: "DemoServer", method: str, loss: Optional[str], jitter_ms: float, seed: int) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        from plc.webrtc import enable_concealment

        self.server = server
        self.id = secrets.token_urlsafe(12)
        self.created = time.monotonic()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.handle = enable_concealment(self.pc, method=method)
        self.network = ReceivePathNetwork(loss, jitter_ms, seed)
        self.echo = None
        self.closed = False
        self._watchdog: Optional[asyncio.Task] = None
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def _on_track(self, track) -> None:
        if track.kind != "audio" or self.echo is not None:
            return
        rc = self.handle.concealment_for(track)
        if rc is not None:
            rc.impairment = self.network
        self.echo = _echo_track_class()(track)
        self.pc.addTrack(self.echo)

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed") and not self.closed:
            asyncio.ensure_future(self.close(f"connection {self.pc.connectionState}"))

    async def answer(self, sdp: str) -> str:
        """Take the browser's offer; the server's answer (SDP). RequestError on a bad offer."""
        from aiortc import RTCSessionDescription

        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # noqa: BLE001 - aiortc raises many kinds on a bad SDP
            raise RequestError(400, f"malformed SDP offer: {str(exc) or 'it could not be parsed'}") from None
        if self.echo is None:
            raise RequestError(400, "the offer sends no audio track (add the microphone to the peer connection)")
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._watchdog = asyncio.ensure_future(self._watch())
        return self.pc.localDescription.sdp

    async def _watch(self) -> None:
        """Ends the call when it never connects or its packets stop (a tab that vanished)."""
        last_packets, last_change = -1, time.monotonic()
        while not self.closed:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            if self.network.packets != last_packets:
                last_packets, last_change = self.network.packets, now
            if self.pc.connectionState != "connected" and now - self.created > self.server.connect_timeout_s:
                asyncio.ensure_future(self.close("never connected"))
                return
            if now - last_change > self.server.idle_timeout_s:
                asyncio.ensure_future(self.close(f"no audio for {self.server.idle_timeout_s:g} s"))
                return

    async def set_settings(self, settings: dict) -> None:
        """Apply ``method`` and the network (``loss``, ``jitter_ms``, ``seed``) on the live call."""
        if "method" in settings and settings["method"] != self.handle.method:
            loop = asyncio.get_running_loop()
            # building a concealer (the neural model) takes a moment: not on the event loop
            await loop.run_in_executor(self.server.switch_executor, self.handle.set_method, settings["method"])
        if {"loss", "jitter_ms", "seed"} & set(settings):
            n = self.network
            self.network.configure(settings.get("loss", n.loss), settings.get("jitter_ms", n.jitter_ms),
                                   settings.get("seed", n.seed))

    @property
    def stats(self) -> dict:
        receiver = dict(self.handle.stats)
        echo = self.echo
        return {
            "id": self.id,
            "connectionState": self.pc.connectionState,
            "method": self.handle.method,
            "uptimeS": round(time.monotonic() - self.created, 2),
            "network": self.network.as_dict(),
            "receiver": receiver,
            "echo": {"frames": echo.frames if echo else 0,
                     "levelDbfs": _dbfs(echo.mean_square) if echo else None,
                     "peakLevelDbfs": _dbfs(echo.peak_mean_square) if echo else None},
        }

    async def close(self, reason: str = "closed") -> None:
        """End the call and free everything it holds (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.server.calls.pop(self.id, None)
        logger.info("call %s ended: %s", self.id, reason)
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not asyncio.current_task() and not watchdog.done():
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        if self.echo is not None:
            self.echo.stop()
        await self.pc.close()
        self.handle.disable()


# ---------------------------------------------------------------- requests
def _settings(body: dict, partial: bool) -> dict:
    """Validated call settings from a request body; RequestError on a bad value."""
    from plc.concealers import default_method

    out: dict[str, Any] = {}
    if "method" in body or not partial:
        method = body.get("method", default_method())
        if not isinstance(method, str) or method.lower() not in page_methods():
            raise RequestError(400, f"unknown concealment method {method!r}; choose from "
                                    f"{', '.join(page_methods())}")
        out["method"] = method.lower()
    if "loss" in body or not partial:
        loss = body.get("loss", DEFAULT_LOSS)
        if loss is not None and not isinstance(loss, str):
            raise RequestError(400, "loss must be a string: none, bernoulli:RATE or gilbert:RATE,MEAN_BURST_PACKETS")
        loss = None if loss is None or loss.strip().lower() in ("", "none", "0") else loss.strip()
        if loss:
            from plc.loss_models import TraceError, parse_loss_spec

            try:
                parse_loss_spec(loss)
            except TraceError as exc:
                raise RequestError(400, str(exc)) from None
        out["loss"] = loss
    if "jitter_ms" in body or not partial:
        jitter = body.get("jitter_ms", DEFAULT_JITTER_MS)
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not (
                math.isfinite(jitter) and 0 <= jitter <= MAX_JITTER_MS):
            raise RequestError(400, f"jitter_ms must be a number from 0 to {MAX_JITTER_MS:g}")
        out["jitter_ms"] = float(jitter)
    if "seed" in body or not partial:
        seed = body.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
            raise RequestError(400, "seed must be an integer from 0 to 2**32 - 1")
        out["seed"] = seed
    unknown = set(body) - {"method", "loss", "jitter_ms", "seed", "sdp", "type"}
    if unknown:
        raise RequestError(400, f"unknown field(s) {', '.join(sorted(unknown))}")
    return out


async def _json_body(request) -> dict:
    from aiohttp import web

    if request.content_type != "application/json":
        raise RequestError(415, f"send JSON (Content-Type: application/json), not {request.content_type or 'nothing'}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestError(413, f"the request body is larger than {MAX_BODY_BYTES // 1024} KiB") from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object")
    return body


def _json(data: Any, status: int = 200):
    from aiohttp import web

    return web.json_response(_plain(data), status=status, dumps=lambda o: json.dumps(o, allow_nan=False))


def _plain(o):
    """``o`` with numpy numbers as Python's and non-finite floats as None (JSON has no NaN)."""
    if isinstance(o, dict):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (int, np.integer)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    return o if o is None or isinstance(o, str) else str(o)


def _error_middleware():
    """Every 4xx as JSON ``{"error": ...}`` with a message that says what to do."""
    from aiohttp import web

    @web.middleware
    async def errors(request, handler):
        try:
            return await handler(request)
        except RequestError as exc:
            return _json({"error": exc.message}, exc.status)
        except web.HTTPMethodNotAllowed as exc:
            return _json({"error": f"{request.method} is not allowed on {request.path}; use "
                                   f"{', '.join(sorted(exc.allowed_methods))}"}, 405)
        except web.HTTPNotFound:
            return _json({"error": f"no such page: {request.path}"}, 404)
        except web.HTTPRequestEntityTooLarge:
            return _json({"error": f"the request body is larger than {MAX_BODY_BYTES // 1024} KiB"}, 413)
    return errors


# ------------------------------------------------------------------ server
class DemoServer:
    """The calls and the aiohttp application of ``plc demo serve``.

    Parameters
    ----------
    max_calls : int
        Calls at the same time; more get 503.
    idle_timeout_s, connect_timeout_s : float
        A call with no packet for ``idle_timeout_s``, or not connected after
        ``connect_timeout_s``, is ended.
    loopback_only : bool
        ICE candidates on 127.0.0.1 only (the server is not reachable from
        elsewhere anyway).
    """

    def __init__(self, max_calls: int = DEFAULT_MAX_CALLS, idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S, loopback_only: bool = True) -> None:
        self.max_calls = int(max_calls)
        self.idle_timeout_s = float(idle_timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.loopback_only = loopback_only
        self.calls: dict[str, BrowserCall] = {}
        self.switch_executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._stack = contextlib.ExitStack()

    def make_app(self):
        """The aiohttp application."""
        from aiohttp import web

        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_error_middleware()])
        for path in PAGE_FILES:
            app.router.add_get(path, self._page)
        app.router.add_get("/config", self._config)
        app.router.add_get("/status", self._status)
        app.router.add_post("/offer", self._offer)
        app.router.add_get("/calls/{id}/stats", self._stats)
        app.router.add_post("/calls/{id}/settings", self._set)
        app.router.add_post("/calls/{id}/close", self._close)
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _startup(self, app) -> None:
        if self.loopback_only:
            from .call import loopback_candidates

            self._stack.enter_context(loopback_candidates())
        self.switch_executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="plc-switch")

    async def _shutdown(self, app) -> None:
        await self.close_all()
        if self.switch_executor is not None:
            self.switch_executor.shutdown(wait=True)
            self.switch_executor = None
        self._stack.close()

    async def close_all(self) -> None:
        await asyncio.gather(*(call.close("server shutdown") for call in list(self.calls.values())))

    # ---------------------------------------------------------- handlers
    async def _page(self, request):
        from aiohttp import web

        name, content_type = PAGE_FILES[request.path]
        return web.Response(body=(PAGE_DIR / name).read_bytes(), content_type=content_type,
                            headers={"Cache-Control": "no-store"})

    async def _config(self, request):
        from plc.concealers import default_method

        return _json({"methods": page_methods(), "defaultMethod": default_method(), "defaultLoss": DEFAULT_LOSS,
                      "defaultJitterMs": DEFAULT_JITTER_MS, "maxCalls": self.max_calls})

    async def _status(self, request):
        return _json({"calls": len(self.calls)})

    def _call(self, request) -> BrowserCall:
        call = self.calls.get(request.match_info["id"])
        if call is None:
            raise RequestError(404, "no such call (it ended, or never existed)")
        return call

    async def _offer(self, request):
        body = await _json_body(request)
        sdp, kind = body.get("sdp"), body.get("type")
        if kind != "offer":
            raise RequestError(400, f"type must be 'offer', not {kind!r}")
        if not isinstance(sdp, str) or not sdp.lstrip().startswith("v=0"):
            raise RequestError(400, "sdp must be an SDP offer (a string starting with v=0)")
        settings = _settings(body, partial=False)
        if len(self.calls) >= self.max_calls:
            raise RequestError(503, f"the server has {self.max_calls} calls already; try again later")
        call = BrowserCall(self, settings["method"], settings["loss"], settings["jitter_ms"], settings["seed"])
        self.calls[call.id] = call
        try:
            answer = await call.answer(sdp)
        except BaseException:
            await call.close("bad offer")
            raise
        logger.info("call %s: %s, loss %s, jitter %g ms, seed %d", call.id, settings["method"],
                    settings["loss"] or "none", settings["jitter_ms"], settings["seed"])
        return _json({"sdp": answer, "type": "answer", "id": call.id})

    async def _stats(self, request):
        return _json(self._call(request).stats)

    async def _set(self, request):
        call = self._call(request)
        settings = _settings(await _json_body(request), partial=True)
        await call.set_settings(settings)
        return _json(call.stats)

    async def _close(self, request):
        # no body needed: the page also sends this with navigator.sendBeacon when the tab goes away
        call = self._call(request)
        await call.close("closed by the page")
        return _json({"closed": call.id})


# --------------------------------------------------------------------- CLI
def add_serve_parser(demo_sub: argparse._SubParsersAction) -> None:
    """Register ``plc demo serve``."""
    from plc import argtypes

    p = demo_sub.add_parser(
        "serve", help="a web page that calls this server: hear the concealment on your own voice",
        description="Serve a page that sends your microphone to this server over WebRTC; the server passes it "
                    "through a lossy network and the chosen concealment and sends it back, so you hear it live. "
                    "Loopback only unless --host says otherwise.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 serves the network, "
                        "and then browsers need HTTPS for the microphone: --cert-file, --key-file)")
    p.add_argument("--port", type=argtypes.int_range(0, 65535), default=8080,
                   help="port (default 8080; 0 picks a free one)")
    p.add_argument("--cert-file", metavar="PEM", help="TLS certificate, to serve HTTPS")
    p.add_argument("--key-file", metavar="PEM", help="TLS private key, to serve HTTPS")
    p.add_argument("--max-calls", type=argtypes.int_range(1, 1000), default=DEFAULT_MAX_CALLS,
                   help=f"calls at the same time (default {DEFAULT_MAX_CALLS})")
    p.add_argument("--verbose", action="store_true", help="log each call")
    p.set_defaults(func=run_serve_command)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve_command(args: argparse.Namespace) -> int:
    from plc.cli import UserError

    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise UserError("plc demo serve needs aiohttp: pip install 'plc[demo]'") from None
    if bool(args.cert_file) != bool(args.key_file):
        raise UserError("--cert-file and --key-file go together")
    ssl_context = None
    if args.cert_file:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ssl_context.load_cert_chain(args.cert_file, args.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise UserError(f"--cert-file/--key-file: {exc}") from None
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # the page polls stats every second
    server = DemoServer(max_calls=args.max_calls, loopback_only=_is_loopback(args.host))
    try:
        asyncio.run(_serve(server, args.host, args.port, ssl_context))
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
    return 0


async def _serve(server: DemoServer, host: str, port: int, ssl_context) -> None:
    from aiohttp import web

    runner = web.AppRunner(server.make_app(), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        bound = runner.addresses[0]
        scheme = "https" if ssl_context else "http"
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
        print(f"Serving the browser demo on {scheme}://{shown}:{bound[1]}/ (Ctrl-C to stop)", flush=True)
        if not server.loopback_only:
            print("Reachable from the network: anyone who can reach this address can make calls.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()

"""``plc demo serve``'s page in a real browser: Debian's headless Chromium driven by selenium.

Chromium's fake capture device plays a speech file as the microphone
(``--use-file-for-fake-audio-capture``, looped), so the page sends real speech
through the browser's own WebRTC stack (its Opus encoder, RTP and RTCP). Used
by ``tests/test_browser.py`` and to take the README's screenshot::

    python -m demo.headless --screenshot docs/browser_demo.png

selenium is pointed at ``/usr/bin/chromedriver`` and ``/usr/bin/chromium``
(``apt-get install chromium chromium-driver``), so Selenium Manager never
tries to download a browser or a driver.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: What headless Chromium needs here (as root, on a machine that reaches nothing outside).
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
)
REPO = Path(__file__).resolve().parents[1]


def chromium_missing() -> Optional[str]:
    """Why the browser cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.is_file():
            return f"{path} is missing (apt-get install {package}; `make setup` does it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


def write_speech_wav(path: Path, seconds: float = 30.0) -> Path:
    """The built-in LibriVox speech (``demo.call.load_input``) as a 48 kHz mono 16-bit WAV for the fake capture."""
    from plc.audio_io import resample, write_audio

    from .call import SEND_RATE, load_input

    speech = load_input(None, seconds).audio
    write_audio(path, resample(speech, 16000, SEND_RATE), SEND_RATE, "PCM_16")
    return path


@contextlib.contextmanager
def demo_server(port: int = 0, timeout_s: float = 60.0) -> Iterator[str]:
    """``plc demo serve`` in a subprocess on 127.0.0.1; yields its URL, stops it (SIGTERM) after."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "plc.cli", "demo", "serve", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # "Serving the browser demo on http://127.0.0.1:PORT/ ..."
        url = next((w for w in line.split() if w.startswith("http")), None)
        if url is None:
            proc.kill()
            raise RuntimeError(f"plc demo serve did not start: {line!r} {proc.stderr.read()[-2000:]!r}")
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def headless_chromium(audio_wav: Path, width: int = 1000, height: int = 900) -> Iterator:
    """A selenium WebDriver on headless Chromium whose microphone plays ``audio_wav``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    reason = chromium_missing()
    if reason:
        raise RuntimeError(reason)
    profile = tempfile.mkdtemp(prefix="plc-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--use-file-for-fake-audio-capture={audio_wav}")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.set_script_timeout(120)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, url: str, timeout_s: float = 20.0) -> None:
    """Load the page and wait until it has its settings from the server."""
    driver.get(url)
    deadline = time.monotonic() + timeout_s
    while driver.execute_script("return document.body.dataset.ready") != "true":
        if time.monotonic() > deadline:
            raise RuntimeError(f"the page at {url} did not get ready")
        time.sleep(0.05)


def record_echoes(driver, settings: list[dict], seconds: float, settle_s: float = 2.0) -> list[dict]:
    """Calls from the open page, all at once on one microphone; each one's echo and stats.

    One call per entry of ``settings`` (``method``, ``loss``, ``jitter_ms``,
    ``seed``). The calls connect first and send nothing; then the microphone
    opens (the fake capture starts its file from the beginning) and all
    calls start sending it at once, so packet n of every call, in every run,
    carries the same speech and meets the same network for a given seed.
    After ``settle_s`` each records ``seconds`` of its echo (48 kHz). Voice
    processing is off, so the server gets the file as it is. Returns, per
    call: ``id``, ``echo`` (float32 array), ``stats`` (the server's, at the
    end), ``browser`` (the page's ``inbound-rtp`` audio stats); the calls stay
    open.
    """
    import base64

    result = driver.execute_async_script("""
        const [settings, seconds, settleMs, done] = arguments;
        (async () => {
          const calls = settings.map(s => new plcDemo.Call(s));
          await Promise.all(calls.map(c => c.start(null, {play: false})));
          await Promise.all(calls.map(c => c.connected()));
          const mic = await plcDemo.openMicrophone(false);
          await Promise.all(calls.map(c => c.send(mic)));
          await new Promise(r => setTimeout(r, settleMs));
          const echoes = await Promise.all(calls.map(c => c.recordEcho(seconds)));
          const out = [];
          for (let i = 0; i < calls.length; i++) {
            const report = await calls[i].pc.getStats();
            let inbound = null;
            report.forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'audio') inbound = r; });
            out.push({id: calls[i].id, echo: plcDemo.int16Base64(echoes[i]), stats: await calls[i].stats(),
                      browser: inbound});
          }
          return out;
        })().then(done, e => done({error: String(e && e.stack || e)}));
    """, settings, seconds, int(settle_s * 1000))
    if isinstance(result, dict) and "error" in result:
        raise RuntimeError(f"the page failed: {result['error']}")
    for r in result:
        r["echo"] = np.frombuffer(base64.b64decode(r["echo"]), dtype="<i2").astype(np.float32) / 32768.0
    return result


def take_screenshot(out: Path, seconds: float = 24.0) -> Path:
    """The page during a call with the page's default network, ``none`` for the first third and
    the default method after (switched on the live call), as a PNG."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with tempfile.TemporaryDirectory() as tmp, demo_server() as url:
        wav = write_speech_wav(Path(tmp) / "speech.wav")
        with headless_chromium(wav, width=1000, height=1130) as driver:
            open_page(driver, url)
            method = Select(driver.find_element(By.ID, "method"))
            default = method.first_selected_option.get_attribute("value")
            method.select_by_value("none")
            driver.find_element(By.ID, "voiceProcessing").click()  # a file, not a room: no echo to cancel
            driver.find_element(By.ID, "connect").click()
            deadline = time.monotonic() + 30
            while "connected" != driver.find_element(By.ID, "state").text:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the call did not connect: {driver.find_element(By.ID, 'error').text}")
                time.sleep(0.2)
            time.sleep(seconds / 3)
            method.select_by_value(default)
            time.sleep(seconds * 2 / 3)
            out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(out))
            driver.find_element(By.ID, "hangup").click()
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo.headless", description=__doc__.splitlines()[0])
    p.add_argument("--screenshot", metavar="PNG", required=True, help="where to write the page's screenshot")
    p.add_argument("--seconds", type=float, default=24.0, help="call time before the screenshot (default 24)")
    args = p.parse_args(argv)
    reason = chromium_missing()
    if reason:
        print(f"python -m demo.headless: error: {reason}", file=sys.stderr)
        return 2
    print(f"Wrote {take_screenshot(Path(args.screenshot), args.seconds)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``plc demo serve`` against a real browser: Debian's headless Chromium, driven by selenium.

Chromium's fake microphone plays LibriVox speech; its own WebRTC stack (Opus
encoder, RTP, RTCP, jitter buffer) talks to the server, which nobody here
wrote. Skips, with the reason, where chromium, chromium-driver or selenium is
missing (``make test`` installs them).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("aiohttp")

from demo import headless  # noqa: E402

#: Set by .ci/run: CI must run this test, so a missing browser or speech file fails it there.
REQUIRED = os.environ.get("PLC_REQUIRE_BROWSER") == "1"


def _skip(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"PLC_REQUIRE_BROWSER=1 but the browser test cannot run: {reason}")
    pytest.skip(reason)

RECORD_S = 20.0   # per call; scored as two 10 s windows (PLCMOS is stable on 8-12 s clips)
WINDOW_S = 10.0
SEEDS = (0, 1)
BURSTY = {"loss": "gilbert:0.1,3", "jitter_ms": 20.0, "seed": 0}


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    from plc.cli import UserError

    try:
        return headless.write_speech_wav(tmp_path_factory.mktemp("speech") / "speech48k.wav")
    except UserError as exc:
        _skip(str(exc))


@pytest.fixture(scope="module")
def server_url():
    with headless.demo_server() as url:
        yield url


@pytest.fixture(scope="module")
def driver(speech_wav):
    reason = headless.chromium_missing()
    if reason:
        _skip(reason)
    with headless.headless_chromium(speech_wav) as d:
        yield d


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _log_mel(x: np.ndarray) -> np.ndarray:
    """10 ms frames of 40 log-mel bands at 16 kHz, each band standardised."""
    import librosa

    m = np.log(librosa.feature.melspectrogram(y=np.asarray(x, np.float32), sr=16000, n_fft=512, hop_length=160,
                                              n_mels=40) + 1e-6)
    return (m - m.mean(axis=1, keepdims=True)) / (m.std(axis=1, keepdims=True) + 1e-9)


def _speech_match(echo16: np.ndarray, source16: np.ndarray) -> float:
    """How well the echo's log-mel spectrogram matches the (looped) source's at the best lag.

    0.29-0.9 for 10 s of the echo (0.29 seen on a host at load 5) (lower where the jitter buffers' time stretching shifted the
    speech within the window), 0.16-0.19 for other speech.
    """
    src, e = _log_mel(np.tile(source16, 2)), _log_mel(echo16)
    n = e.shape[1]
    size = 1 << int(np.ceil(np.log2(src.shape[1] + n)))
    corr = np.fft.irfft(np.fft.rfft(src, size, axis=1) * np.conj(np.fft.rfft(e, size, axis=1)), size, axis=1)
    return float(np.max(corr.sum(axis=0)[: src.shape[1] - n + 1]) / e.size)


def test_browser_calls_echo_concealed_audio_that_beats_none(driver, server_url, speech_wav):
    """Calls from the page on one microphone: the default method, libopus' PLC and none, on two seeds.

    Checks that each call connected, that the server got the browser's audio
    and concealed the loss (stats), that the browser got the echo (the speech
    it sent), and scores the echo with PLCMOS v2 in 10 s windows, paired with
    ``none`` on the same seed (same packets lost, same speech in them).
    """
    import soundfile as sf

    from plc.concealers import default_method
    from eval.metrics import plcmos, to_16k

    default = default_method()
    methods = list(dict.fromkeys([default, "neteq", "none"]))
    headless.open_page(driver, server_url)
    calls = headless.record_echoes(
        driver, [{"method": m, **BURSTY, "seed": seed} for seed in SEEDS for m in methods], RECORD_S)
    source, rate = sf.read(str(speech_wav), dtype="float32")
    source16 = to_16k(source, rate)
    window = int(WINDOW_S * 16000)
    scores = {}
    for call in calls:
        s, browser, echo = call["stats"], call["browser"], call["echo"]
        name = s["method"]
        # the call connected, and the server got the browser's audio (Opus over RTP) ...
        assert s["connectionState"] == "connected" and s["id"] == call["id"]
        assert s["network"]["packets"] >= 0.9 * 50 * RECORD_S and s["receiver"]["packetsReceived"] > 0
        assert 0.05 < s["network"]["dropped"] / s["network"]["packets"] < 0.2, s["network"]
        assert s["echo"]["peakLevelDbfs"] > -35, s["echo"]
        # ... concealed the loss (the stats say so) ...
        r = s["receiver"]
        assert r["concealmentEvents"] >= 20 and r["concealedSamples"] > 0, r
        if name == "none":
            assert r["silentConcealedSamples"] >= 0.9 * r["concealedSamples"], r
        else:
            assert r["silentConcealedSamples"] < 0.5 * r["concealedSamples"], r
            assert r["fallbackFrames"] == 0, (r["fallbackReason"], r)
        # ... and the browser received the echo: the speech it sent, with the gaps concealed
        assert browser["packetsReceived"] >= 0.9 * 50 * RECORD_S, browser
        assert len(echo) == int(RECORD_S * 48000)
        echo16 = to_16k(echo, 48000)
        assert 10 * np.log10(np.mean(echo16.astype(np.float64) ** 2) + 1e-12) > -40
        windows = [echo16[a:a + window] for a in range(0, len(echo16) - window + 1, window)]
        assert min(_speech_match(w, source16) for w in windows) > 0.25  # other speech: 0.16-0.19
        scores[name, s["network"]["seed"]] = [plcmos(w, 16000, seed=0) for w in windows]
        print(f"{name} seed {s['network']['seed']}: PLCMOS {np.round(scores[name, s['network']['seed']], 2)}, "
              f"late ticks {r['lateTicks']}, clock skips {r['clockSkips']}, codec mode {r.get('codecMode')}, concealed "
              f"{r['concealedSamples'] / 16000:.2f} s, browser concealed {browser.get('concealedSamples')}")
    gains = {m: np.array([np.subtract(scores[m, seed], scores["none", seed]) for seed in SEEDS])
             for m in methods if m != "none"}
    for m, g in gains.items():
        print(f"PLCMOS gain over none of the browser's echo ({BURSTY['loss']}, {BURSTY['jitter_ms']:g} ms "
              f"jitter), {m}: {g.mean():+.2f} (seeds {SEEDS}, 10 s windows: {np.round(g, 2).tolist()})")
    # The default (libopus' PLC, the best-measured concealment of an Opus stream) beats none by the
    # issue's 0.5 (12 runs: +0.65 to +0.97); neteq clearly (12 runs: +0.10 to +0.93, README).
    assert gains[default].mean() >= 0.5, gains[default]
    assert gains["neteq"].mean() >= 0.2, gains["neteq"]
    driver.execute_script("for (const c of [...plcDemo.calls]) c.close();")
    _wait(lambda: _get(server_url + "status")["calls"] == 0, 10, "hanging up must end the calls")


def test_page_controls_connect_and_switch_method_without_reconnecting(driver, server_url):
    from selenium.webdriver.common.by import By

    from plc.concealers import default_method
    from selenium.webdriver.support.ui import Select

    headless.open_page(driver, server_url)
    driver.find_element(By.ID, "voiceProcessing").click()
    driver.find_element(By.ID, "connect").click()
    _wait(lambda: driver.find_element(By.ID, "state").text == "connected", 20,
          f"not connected: {driver.find_element(By.ID, 'error').text}")
    call_id = driver.execute_script("return plcDemo.ui.call.id")

    def shown(label: str) -> str:  # read in one script: the page rebuilds the table every second
        rows = driver.execute_script(
            "return [...document.querySelectorAll('#stats tr')].map(r => [...r.cells].map(c => c.textContent))")
        return next((cells[1] for cells in rows if len(cells) == 2 and cells[0] == label), "")

    _wait(lambda: shown("concealment events").isdigit() and int(shown("concealment events")) > 0, 20,
          "the page shows no concealment")
    assert shown("method") == default_method()
    frames = _get(f"{server_url}calls/{call_id}/stats")["echo"]["frames"]
    Select(driver.find_element(By.ID, "method")).select_by_value("neural")
    _wait(lambda: shown("method") == "neural", 10, "the page did not switch the method")
    time.sleep(1.0)
    s = _get(f"{server_url}calls/{call_id}/stats")
    assert s["method"] == "neural" and s["connectionState"] == "connected" and s["id"] == call_id
    assert s["echo"]["frames"] >= frames + 40  # the echo went on through the switch
    assert driver.find_element(By.ID, "error").text == ""
    driver.find_element(By.ID, "hangup").click()
    _wait(lambda: _get(server_url + "status")["calls"] == 0, 10, "Hang up must end the call")


def test_closing_the_tab_ends_its_call(driver, server_url):
    from selenium.webdriver.common.by import By

    first = driver.current_window_handle
    driver.switch_to.new_window("tab")
    headless.open_page(driver, server_url)
    driver.find_element(By.ID, "connect").click()
    _wait(lambda: driver.find_element(By.ID, "state").text == "connected", 20, "not connected")
    assert _get(server_url + "status")["calls"] == 1
    driver.close()
    driver.switch_to.window(first)
    _wait(lambda: _get(server_url + "status")["calls"] == 0, 10, "a closed tab must end its call")

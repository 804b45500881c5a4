"""The contract every PCM concealer keeps (see plc/concealers/base.py), and the registry's capabilities."""

import numpy as np
import pytest

from plc.concealers import (
    MethodInfo, available_methods, check_method, make_concealer, method_info, register, registered_methods,
)
from plc.concealers.simple import RepeatConcealer
from plc.dsp import raised_cosine_fade

from .conftest import harmonic

#: Every concealer that runs without a codec's own concealment: the registry's, not a list kept here.
PCM_METHODS = available_methods(codec="pcm")
FRAME = 160


def run(method, x, lost_frames, **kw):
    c = make_concealer(method, **kw)
    out = np.concatenate([c.process(None if lost else x[i * FRAME:(i + 1) * FRAME])
                          for i, lost in enumerate(lost_frames)])
    return out, c


def test_all_methods_registered():
    assert {"zero", "repeat", "g711", "neteq", "neural"} <= set(PCM_METHODS)
    assert set(available_methods()) == set(PCM_METHODS) | {"opus"}
    assert [i.name for i in registered_methods() if i.needs_codec] == ["opus"]


def test_capabilities_not_names_decide():
    """``opus`` plays the codec's concealment: it is built like any method, and refused without a codec
    that conceals; ``neural`` has a deadline, which offline use drops."""
    opus = make_concealer("opus")
    assert opus.uses_codec_concealment and opus.process(None).shape == (FRAME,)
    assert "opus" not in available_methods(codec="pcm") and "opus" in available_methods(codec="opus")
    with pytest.raises(ValueError, match="codec's own concealment: use it with --codec opus"):
        check_method("opus", "pcm")
    assert method_info("neural").realtime_deadline and not method_info("neteq").realtime_deadline
    assert make_concealer("neural", realtime=False).deadline_ms is None
    assert make_concealer("neural").deadline_ms is not None


def test_one_default_for_every_entry_point(monkeypatch, capsys):
    """The default is the first usable method of PREFERRED_METHODS (neural, where onnxruntime is
    installed; neteq otherwise), and every entry point that takes a method defaults to it."""
    import inspect

    from plc import concealers
    from plc.cli import main
    from plc.webrtc import enable_concealment

    assert concealers.default_method() == "neural" == concealers.PREFERRED_METHODS[0]
    assert inspect.signature(enable_concealment).parameters["method"].default is None   # resolved to it
    main(["methods"])
    assert "(the default)" in next(line for line in capsys.readouterr().out.splitlines() if line.startswith("neural"))
    monkeypatch.setitem(concealers._METHODS, "neural", MethodInfo(
        "neural", "without onnxruntime", ".neural:NeuralConcealer", requires=("no_such_module_x",)))
    assert concealers.default_method() == "neteq"


def test_a_method_that_cannot_be_used_says_why(monkeypatch):
    """An optional concealer whose dependency is missing is listed as unavailable with the reason,
    and building it is a clear error (it used to vanish from the registry without a word)."""
    from plc.concealers import _METHODS

    info = MethodInfo("needs-nothing-here", "a test entry", ".simple:ZeroConcealer", requires=("no_such_module_x",))
    monkeypatch.setitem(_METHODS, info.name, info)
    assert info.name not in available_methods()
    assert "no_such_module_x" in info.missing()
    with pytest.raises(ValueError, match="unavailable: needs no_such_module_x"):
        make_concealer(info.name)
    broken = MethodInfo("broken-import", "a test entry", ".no_such_module:Concealer")
    monkeypatch.setitem(_METHODS, broken.name, broken)
    assert "ModuleNotFoundError" in broken.missing()
    with pytest.raises(ValueError, match="registered already"):
        register(MethodInfo("neteq", "again", ".neteq:NetEqConcealer"))


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown concealment method"):
        make_concealer("magic")


@pytest.mark.parametrize("method", PCM_METHODS)
def test_contract_on_harmonic_signal(method):
    x = harmonic(seconds=1.5)
    n = len(x) // FRAME
    lost = np.zeros(n, dtype=bool)
    lost[40:44] = True      # 40 ms burst
    lost[70:90] = True      # 200 ms burst
    out, c = run(method, x, lost)
    assert out.dtype == np.float32 and out.shape == (n * FRAME,)
    assert np.all(np.isfinite(out)) and np.abs(out).max() <= 1.0
    # Received frames that do not follow a loss pass through bit-exactly.
    after_loss = np.concatenate([[False], lost[:-1]]) & ~lost
    for i in np.flatnonzero(~lost & ~after_loss):
        assert np.array_equal(out[i * FRAME:(i + 1) * FRAME], x[i * FRAME:(i + 1) * FRAME]), i
    assert c.stats.concealed_frames == lost.sum()
    assert c.stats.concealment_events == 2
    assert c.stats.received_frames == n - lost.sum()


@pytest.mark.parametrize("method", ["repeat", "g711", "neteq"])
def test_long_losses_fade_out(method):
    x = harmonic(seconds=1.5)
    lost = np.zeros(len(x) // FRAME, dtype=bool)
    lost[20:90] = True  # 700 ms
    out, _ = run(method, x, lost)
    tail = out[80 * FRAME:90 * FRAME]
    assert np.sqrt(np.mean(tail ** 2)) < 0.01 * np.sqrt(np.mean(x ** 2))


@pytest.mark.parametrize("method", ["repeat", "g711", "neteq"])
def test_concealment_is_not_silent_at_first(method):
    x = harmonic(seconds=1.0)
    lost = np.zeros(len(x) // FRAME, dtype=bool)
    lost[30:32] = True
    out, _ = run(method, x, lost)
    first = out[30 * FRAME:31 * FRAME]
    assert np.sqrt(np.mean(first ** 2)) > 0.3 * np.sqrt(np.mean(x ** 2))


def test_zero_is_silent_and_counts_it():
    x = harmonic(seconds=0.5)
    lost = np.zeros(len(x) // FRAME, dtype=bool)
    lost[10:13] = True
    out, c = run("zero", x, lost)
    assert not np.any(out[10 * FRAME:13 * FRAME])
    assert c.stats.silent_concealed_samples == 3 * FRAME


def test_repeat_attenuates_each_frame():
    x = harmonic(seconds=0.5)
    lost = np.zeros(len(x) // FRAME, dtype=bool)
    lost[10:16] = True
    out, _ = run("repeat", x, lost)
    rms = [np.sqrt(np.mean(out[i * FRAME:(i + 1) * FRAME] ** 2)) for i in range(10, 16)]
    assert all(b < a for a, b in zip(rms, rms[1:]))
    assert RepeatConcealer().step_gain == pytest.approx(10 ** (-3 / 20))


def test_wrong_frame_length_is_rejected():
    c = make_concealer("zero")
    with pytest.raises(ValueError, match="expected a frame of 160"):
        c.process(np.zeros(100, np.float32))


def test_nan_input_never_reaches_the_output():
    c = make_concealer("neteq")
    bad = np.full(FRAME, np.nan, np.float32)
    assert np.all(np.isfinite(c.process(bad)))
    assert np.all(np.isfinite(c.process(None)))


def test_raised_cosine_fade_is_complementary():
    w = raised_cosine_fade(64)
    assert np.allclose(w + w[::-1], 1.0, atol=1e-6)
    assert np.all(np.diff(w) > 0)

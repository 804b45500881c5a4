"""The neural concealer's runtime: ONNX graphs equal the torch model, fade-out, fallbacks, deadline."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from plc.concealers import make_concealer  # noqa: E402
from plc.concealers.neural import NeuralConcealer  # noqa: E402
from plc.neural.features import FeatureConfig  # noqa: E402
from training.export import export_model  # noqa: E402
from training.model import ModelConfig, PLCModel  # noqa: E402

from .conftest import harmonic  # noqa: E402

FRAME = 160


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = PLCModel(ModelConfig())
    d = tmp_path_factory.mktemp("neural")
    export_model(model, {"features": FeatureConfig().as_dict(), "train_data_sha256": "0" * 64}, d)
    return d, model


def run(concealer, x, lost):
    return np.concatenate([concealer.process(None if l else x[i * FRAME:(i + 1) * FRAME]) for i, l in enumerate(lost)])


def test_model_json_has_what_the_runtime_needs(model_dir):
    info = json.loads((model_dir[0] / "model.json").read_text())
    for key in ("sample_rate", "features", "model", "params", "model_bytes", "onnx_sha256", "train_data_sha256",
                "format_version", "start_history_samples"):
        assert key in info
    assert sorted(p.name for p in model_dir[0].glob("*.onnx")) == sorted(info["files"])
    assert info["sample_rate"] == 16000 and info["params"] < 1_000_000


def test_runtime_conceals_exactly_as_the_torch_model_trains(model_dir):
    """The first concealed frame from onnxruntime equals PLCModel.forward on the same loss event:
    features, pitch, level, warm-up and the in-graph step loop agree between training and runtime."""
    from plc.neural.features import effective_lag, frame_gain, log_mel_frames, pitch_lag
    from training.data import DataConfig

    d, model = model_dir
    cfg, dcfg, fcfg = model.cfg, DataConfig(), FeatureConfig()
    x = harmonic(f0_hz=170.0, seconds=0.6, seed=3)
    n_before = 30
    c = NeuralConcealer(model_dir=d)
    c._rng = np.random.default_rng(7)
    for i in range(n_before):
        c.process(x[i * FRAME:(i + 1) * FRAME])
    first = c.process(None)
    second = c.process(None)

    ctx, hop = dcfg.context_frames, FRAME
    seg = x[(n_before - ctx - 1) * hop:n_before * hop]
    past = seg[hop:]
    mel = np.concatenate([log_mel_frames(seg, fcfg)[1:], np.zeros((3, fcfg.n_mels), np.float32)])
    lost = np.concatenate([np.zeros(ctx), np.ones(3)]).astype(np.float32)
    lag, voicing = pitch_lag(past, fcfg)
    rng = np.random.default_rng(7)
    noise = np.concatenate([rng.standard_normal(((dcfg.warmup_frames + 1) * 4, 40), dtype=np.float32),
                            rng.standard_normal((4, 40), dtype=np.float32)])
    audio = np.concatenate([past, np.zeros(3 * hop, np.float32)])
    t = lambda a: torch.from_numpy(np.asarray(a))[None]  # noqa: E731
    with torch.no_grad():
        _, gen = model(t(mel), t(lost), t(audio), torch.tensor([effective_lag(lag, cfg.lag_reach)]),
                       torch.tensor([voicing], dtype=torch.float32),
                       torch.tensor([frame_gain(past, fcfg)], dtype=torch.float32), t(noise),
                       ctx, dcfg.warmup_frames, 2)
    gen = gen[0].numpy()
    assert np.abs(gen).max() > 1e-3
    np.testing.assert_allclose(first, np.clip(gen[:hop], -1, 1), atol=2e-4)
    np.testing.assert_allclose(second, np.clip(gen[hop:], -1, 1), atol=5e-4)


def test_passes_received_audio_and_fades_out_by_120_ms(model_dir):
    x = harmonic(seconds=1.0)
    lost = np.zeros(len(x) // FRAME, dtype=bool)
    lost[30:55] = True  # 250 ms
    c = make_concealer("neural", realtime=False, model_dir=model_dir[0])
    out = run(c, x, lost)
    assert np.array_equal(out[:30 * FRAME], x[:30 * FRAME])
    assert np.array_equal(out[57 * FRAME:], x[57 * FRAME:])
    assert np.any(out[30 * FRAME:31 * FRAME])            # it does make audio
    assert not np.any(out[42 * FRAME:55 * FRAME])         # silent from 120 ms of loss on
    assert c.stats.fallback_frames == 0 and c.stats.concealed_frames == 25 and c.fallback_reason is None
    assert np.all(np.isfinite(out)) and np.abs(out).max() <= 1.0


def test_unvoiced_audio_is_continued_by_noise_and_silent_by_120_ms(model_dir):
    """After voiced audio the model continues at full level for 60 ms; after noise-like audio
    LPC-shaped noise does (or the model, with ``unvoiced="model"``), fading from 40 ms; both are
    silent from 120 ms of loss on. A fade that would outlast 120 ms is refused."""
    lost = np.zeros(60, dtype=bool)
    lost[30:45] = True  # 150 ms
    voiced = harmonic(seconds=0.6)
    noise = (0.1 * np.random.default_rng(0).standard_normal(len(voiced))).astype(np.float32)
    for x, unvoiced, noise_frames in ((voiced, "noise", 0), (noise, "noise", 15), (noise, "model", 0)):
        c = make_concealer("neural", realtime=False, model_dir=model_dir[0], unvoiced=unvoiced)
        out = run(c, x, lost)
        assert not np.any(out[42 * FRAME:45 * FRAME])
        assert np.any(out[41 * FRAME:42 * FRAME])
        assert c.stats.fallback_frames == 0
        assert c.primary.stats.noise_concealed_frames == c.stats.noise_concealed_frames == noise_frames
        if noise_frames:  # the noise has the level of what was played, not the model's
            assert 0.5 < np.std(out[30 * FRAME:32 * FRAME]) / np.std(x[28 * FRAME:30 * FRAME]) < 1.4
    c = NeuralConcealer(model_dir=model_dir[0])
    assert np.all(c._gain(5) == 1.0)  # voiced: full level to 60 ms
    c._fade = (c.unvoiced_fade_start_ms, c.unvoiced_fade_end_ms)
    assert c._gain(3)[-1] == 1.0 and c._gain(4)[-1] < 1.0  # unvoiced: fading from 40 ms
    with pytest.raises(ValueError, match="120 ms"):
        NeuralConcealer(model_dir=model_dir[0], fade_end_ms=200.0)
    with pytest.raises(ValueError, match="unvoiced"):
        NeuralConcealer(model_dir=model_dir[0], unvoiced="lpc")


def test_deterministic(model_dir):
    x = harmonic(seconds=0.6)
    lost = np.zeros(len(x) // FRAME, dtype=bool)
    lost[20:24] = True
    a = run(NeuralConcealer(model_dir=model_dir[0]), x, lost)
    b = run(NeuralConcealer(model_dir=model_dir[0]), x, lost)
    assert np.array_equal(a, b)


def test_noise_scale_zero_makes_the_seed_irrelevant(model_dir):
    x = harmonic(seconds=0.6)
    lost = np.zeros(len(x) // FRAME, dtype=bool)
    lost[20:24] = True

    def conceal(seed, scale):
        return run(NeuralConcealer(model_dir=model_dir[0], seed=seed, noise_scale=scale), x, lost)

    assert np.array_equal(conceal(1, 0.0), conceal(2, 0.0))
    assert not np.array_equal(conceal(1, 1.0), conceal(2, 1.0))
    with pytest.raises(ValueError, match="noise_scale"):
        NeuralConcealer(model_dir=model_dir[0], noise_scale=-1.0)


def test_load_prewarms_the_loss_path_without_leaving_state(model_dir):
    """The first loss of a call must not pay for the mel filterbank or onnxruntime's first-run
    allocations (hundreds of ms), and warming up must not change what is played."""
    from plc.neural import features

    features._mel_basis.cache_clear()
    c = NeuralConcealer(model_dir=model_dir[0])
    assert features._mel_basis.cache_info().currsize == 1 and c.load_error is None
    x = harmonic(seconds=0.6)
    lost = np.zeros(len(x) // FRAME, dtype=bool)
    lost[20:24] = True
    a = run(c, x, lost)
    twice = NeuralConcealer(model_dir=model_dir[0])
    twice._prewarm_loss_path()
    assert np.array_equal(a, run(twice, x, lost))


def test_missing_or_corrupt_model_falls_back_to_neteq(model_dir, tmp_path):
    x = harmonic(seconds=0.6)
    lost = np.zeros(len(x) // FRAME, dtype=bool)
    lost[20:24] = True
    from plc.concealers import make_concealer

    expected = run(make_concealer("neteq"), x, lost)
    missing = make_concealer("neural", model_dir=tmp_path / "nothing-here")
    assert "unusable" in missing.primary.load_error
    assert np.array_equal(run(missing, x, lost), expected)
    assert missing.stats.fallback_frames == 4 and missing.fallback_reason == missing.primary.load_error
    corrupt = tmp_path / "corrupt"
    shutil.copytree(model_dir[0], corrupt)
    (corrupt / "generate.onnx").write_bytes(b"\x08\x01garbage")
    broken = make_concealer("neural", model_dir=corrupt)
    assert broken.primary.model is None
    assert np.array_equal(run(broken, x, lost), expected)
    older = tmp_path / "older"
    shutil.copytree(model_dir[0], older)
    info = json.loads((older / "model.json").read_text())
    (older / "model.json").write_text(json.dumps(dict(info, format_version=2)))
    old = make_concealer("neural", model_dir=older)
    assert "format 2" in old.primary.load_error and "plc export" in old.primary.load_error
    assert np.array_equal(run(old, x, lost), expected)


@pytest.mark.parametrize("graph, fallback_frames", [("start", 4), ("generate", 3)])
def test_model_exception_mid_call_falls_back(model_dir, graph, fallback_frames):
    """A graph that raises at the start of a loss, or later in it: the rest of the loss is neteq's."""
    x = harmonic(seconds=0.6)
    lost = np.zeros(len(x) // FRAME, dtype=bool)
    lost[20:24] = True
    c = make_concealer("neural", realtime=False, model_dir=model_dir[0])

    class Boom:
        def run(self, *a, **k):
            raise RuntimeError("boom")

    setattr(c.primary.model, graph, Boom())
    out = run(c, x, lost)
    assert c.stats.fallback_frames == fallback_frames
    assert c.fallback_reason == "the model raised RuntimeError: boom"
    for f in range(24 - fallback_frames, 24):  # the fallback frames are not silent
        assert np.any(out[f * FRAME:(f + 1) * FRAME])
    if graph == "start":  # neteq continues the real audio
        assert np.sqrt(np.mean(out[20 * FRAME:21 * FRAME] ** 2)) > 0.1 * np.sqrt(np.mean(x ** 2))


def test_deadline_miss_falls_back_and_is_counted(model_dir):
    x = harmonic(seconds=1.0)
    lost = np.zeros(len(x) // FRAME, dtype=bool)
    lost[20:26] = True
    c = make_concealer("neural", model_dir=model_dir[0], deadline_ms=1e-6)  # no model can make this deadline
    out = run(c, x, lost)
    assert c.stats.fallback_frames == 5  # the first frame shows the model is too slow; the rest fall back
    assert "deadline" in c.fallback_reason
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("kind", ["silence", "full_scale_square", "loud_noise", "impulses", "dc"])
def test_shipped_model_stays_bounded_on_extreme_input(kind):
    """Whatever was received, the shipped model's concealment is finite, in range, silent by
    120 ms, and never needs the fallback."""
    rng = np.random.default_rng(1)
    n = 16000
    x = {"silence": np.zeros(n), "full_scale_square": np.sign(np.sin(2 * np.pi * 200 * np.arange(n) / 16000)),
         "loud_noise": np.clip(rng.standard_normal(n), -1, 1), "impulses": (np.arange(n) % 997 == 0) * 1.0,
         "dc": np.full(n, 0.9)}[kind].astype(np.float32)
    lost = np.zeros(n // FRAME, dtype=bool)
    lost[30:34] = lost[50:70] = True
    c = make_concealer("neural", realtime=False)
    assert c.primary.load_error is None
    out = run(c, x, lost)
    assert np.all(np.isfinite(out)) and np.abs(out).max() <= 1.0
    assert not np.any(out[62 * FRAME:70 * FRAME])
    assert c.stats.fallback_frames == 0


def test_resume_cross_fades_over_merge_samples_only(model_dir):
    """Back from a loss, only the first ``merge_samples`` of the received frame are mixed with the
    continuation; the rest is the real audio. A merge that does not fit in a frame is refused."""
    x = harmonic(seconds=0.5)
    lost = np.zeros(len(x) // FRAME, dtype=bool)
    lost[20:22] = True
    for merge in (40, 112):
        out = run(NeuralConcealer(model_dir=model_dir[0], merge_samples=merge), x, lost)
        resume = slice(22 * FRAME, 23 * FRAME)
        assert np.array_equal(out[resume][merge:], x[resume][merge:])
        assert not np.array_equal(out[resume][:merge], x[resume][:merge])
    with pytest.raises(ValueError, match="fit"):
        NeuralConcealer(model_dir=model_dir[0], max_align_lag=100, merge_samples=100)


def test_a_long_loss_goes_on_as_the_background_noise(model_dir):
    """With ``comfort_noise`` (the default) the call's background noise fills in as the
    concealment fades: past 120 ms of loss what plays is that noise, at about its level, not
    digital silence, and nothing louder (the generated speech is gone). Without it, silence; and
    with no quiet stretch seen yet, silence too."""
    rng = np.random.default_rng(4)
    background = (0.004 * rng.standard_normal(16000)).astype(np.float32)
    x = background.copy()
    x[8000:] += harmonic(seconds=0.5)                     # 0.5 s of background, then a vowel
    lost = np.zeros(len(x) // FRAME, dtype=bool)
    lost[70:95] = True                                    # 250 ms, starting 200 ms into the vowel
    on = run(NeuralConcealer(model_dir=model_dir[0]), x, lost)
    off = run(NeuralConcealer(model_dir=model_dir[0], comfort_noise=False), x, lost)
    tail = slice(82 * FRAME, 95 * FRAME)                  # from 120 ms of loss on
    assert not np.any(off[tail])
    level_db = 20 * np.log10(np.std(on[tail]) / np.std(background))
    assert -6 < level_db < 8
    assert np.array_equal(on[:70 * FRAME], x[:70 * FRAME]) and np.array_equal(on[96 * FRAME:], x[96 * FRAME:])
    quiet = run(NeuralConcealer(model_dir=model_dir[0]), harmonic(seconds=1.0), lost)
    assert not np.any(quiet[tail])                        # no background estimated: silence

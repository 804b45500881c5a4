"""Training: a few steps, exact resume, DistributedDataParallel on 2 CPU processes, ONNX export."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from training.data import DataConfig, SpeechCorpus, gilbert_frames, loss_length, make_batch  # noqa: E402
from training.model import ModelConfig  # noqa: E402
from plc.neural.features import FeatureConfig  # noqa: E402

from .conftest import harmonic, write_manifest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory):
    window = np.hanning(int(1.2 * 16000)).astype(np.float32)
    return write_manifest(tmp_path_factory.mktemp("speech"),
                          [harmonic(f0, seconds=1.2, seed=i) * window for i, f0 in enumerate([110, 140, 180, 220])])


def _free_port() -> int:
    """A TCP port nothing listens on now (a fixed one collides with a concurrent test run)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(args, env_extra=None, nproc=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if nproc:
        cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", str(nproc), "--master_port",
               str(_free_port()), str(Path(sys.executable).with_name("plc")), "train", *args]
    else:
        cmd = [sys.executable, "-m", "plc.cli", "train", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r


def test_batches_are_well_formed_and_seeded(tiny_manifest):
    from training.data import read_clip_list

    corpus = SpeechCorpus(read_clip_list(tiny_manifest))
    cfg, reach = DataConfig(), ModelConfig().lag_reach
    b1 = make_batch(corpus, np.random.default_rng(0), 3, cfg, FeatureConfig(), reach)
    b2 = make_batch(corpus, np.random.default_rng(0), 3, cfg, FeatureConfig(), reach)
    frames = cfg.context_frames + cfg.max_lost_frames + 1
    assert b1["mel"].shape == (3, frames, 32) and b1["audio"].shape == (3, frames * 160)
    assert b1["lost"].shape == (3, frames) and np.all(b1["lost"][:, cfg.context_frames:] == 1)
    assert np.all(b1["lost"][:, cfg.context_frames - cfg.warmup_frames:cfg.context_frames] == 0)
    assert np.all((b1["n_lost"] >= 1) & (b1["n_lost"] <= cfg.max_lost_frames))
    assert np.all(b1["lag"] >= reach) and np.all(b1["gain"] > 0)
    assert all(np.array_equal(b1[k], b2[k]) for k in b1)


def test_worker_processes_make_each_step_once_and_in_order(tiny_manifest):
    """``--workers N``: the batches are those of steps start, start+1, ... exactly as made in the
    main process, whatever the number of worker processes (a GPU run needs several)."""
    from training.data import read_clip_list
    from training.train import _Batches

    batches = _Batches([Path(p) for p in read_clip_list(tiny_manifest)], 7, 0, 5, 2, DataConfig(), FeatureConfig(),
                       ModelConfig())
    expected = [batches.batch(step) for step in range(5, 10)]
    for workers in (0, 2):
        loader = iter(torch.utils.data.DataLoader(batches, batch_size=None, num_workers=workers))
        got = [next(loader) for _ in range(5)]
        for e, g in zip(expected, got):
            assert set(e) == set(g)
            for k in e:
                assert np.array_equal(e[k], np.asarray(g[k])), (workers, k)
        del loader


def test_min_voicing_keeps_only_losses_after_voiced_audio(tmp_path):
    """``--min-voicing``: a corpus of a vowel and of noise gives only vowel losses."""
    rng = np.random.default_rng(3)
    vowel = harmonic(150.0, seconds=2.0, seed=1)
    noise = (0.1 * rng.standard_normal(len(vowel))).astype(np.float32)
    paths = []
    for name, x in (("vowel", vowel), ("noise", noise)):
        sf.write(tmp_path / f"{name}.flac", x, 16000)
        paths.append(tmp_path / f"{name}.flac")
    corpus, reach = SpeechCorpus(paths), ModelConfig().lag_reach
    everything = make_batch(corpus, np.random.default_rng(0), 16, DataConfig(), FeatureConfig(), reach,
                            augment_audio=False)
    voiced = make_batch(corpus, np.random.default_rng(0), 16, DataConfig(min_voicing=0.7), FeatureConfig(), reach,
                        augment_audio=False)
    assert everything["voicing"].min() < 0.5            # the noise clip is drawn too
    assert voiced["voicing"].min() >= 0.7 and len(voiced["voicing"]) == 16


def test_codec_prob_opus_codes_context_and_target_alike_and_aligned(tiny_manifest, speech_16k):
    """``--codec-prob``: coded examples are the SILK rendering of the same audio, time-aligned
    (the encoder's lookahead removed) and mel computed from it; 0 leaves the batches unchanged."""
    from training.data import opus_roundtrip, read_clip_list

    x = speech_16k
    y = opus_roundtrip(x, 24000)
    assert y.shape == x.shape and y.dtype == np.float32
    corr = [float(np.dot(x[800:-800], np.roll(y, -lag)[800:-800])) for lag in range(-3, 4)]
    assert int(np.argmax(corr)) == 3                    # aligned at lag 0
    assert 0.8 < np.sqrt(np.mean(y[800:] ** 2) / np.mean(x[800:] ** 2)) < 1.2
    assert not np.allclose(x, y, atol=1e-3)              # coded, not copied

    corpus, reach = SpeechCorpus(read_clip_list(tiny_manifest)), ModelConfig().lag_reach
    plain = make_batch(corpus, np.random.default_rng(0), 4, DataConfig(), FeatureConfig(), reach)
    again = make_batch(corpus, np.random.default_rng(0), 4, DataConfig(codec_prob=0.0), FeatureConfig(), reach)
    assert all(np.array_equal(plain[k], again[k]) for k in plain)
    coded = make_batch(corpus, np.random.default_rng(0), 4, DataConfig(codec_prob=1.0), FeatureConfig(), reach)
    coded2 = make_batch(corpus, np.random.default_rng(0), 4, DataConfig(codec_prob=1.0), FeatureConfig(), reach)
    assert all(np.array_equal(coded[k], coded2[k]) for k in coded)   # still a function of the seed
    assert coded["audio"].shape == plain["audio"].shape and np.all(np.isfinite(coded["audio"]))
    from plc.neural.features import log_mel_frames
    fc = FeatureConfig()
    # the mel frames are those of the coded audio the model conditions on
    mel = log_mel_frames(np.concatenate([np.zeros(fc.win_samples - fc.hop_samples, np.float32), coded["audio"][0]]), fc)
    frames = coded["mel"].shape[1]
    assert np.allclose(mel[1:1 + frames][2:], coded["mel"][0][2:], atol=1e-3)


def test_pitch_of_the_training_audio_is_found():
    """The long-term predictor's lag: a 160 Hz vowel has a 100-sample period."""
    from plc.neural.features import effective_lag, pitch_lag

    lag, voicing = pitch_lag(harmonic(160.0, seconds=0.1), FeatureConfig())
    assert lag in (99, 100, 101) and voicing > 0.9
    assert effective_lag(35, 42) == 70 and effective_lag(100, 42) == 100


def test_training_losses_are_bursty():
    cfg = DataConfig()
    rng = np.random.default_rng(0)
    lost = gilbert_frames(rng, 100_000, cfg)
    assert abs(lost.mean() - cfg.loss_rate) < 0.02
    from plc.loss_models import burst_lengths

    assert abs(burst_lengths(lost).mean() - cfg.mean_burst_packets * cfg.packet_frames) < 1.0
    lengths = np.array([loss_length(rng, cfg) for _ in range(5000)])
    assert abs((lengths == 1).mean() - cfg.single_frame_prob) < 0.03     # lone late 10 ms frames
    assert np.all(lengths[lengths > 1] % 2 == 0) and lengths.max() == cfg.max_lost_frames  # 20 ms packets


def test_train_resume_is_exact(tiny_manifest, tmp_path):
    common = ["--data", str(tiny_manifest), "--dev", str(tiny_manifest), "--batch-size", "2", "--val-every", "2",
              "--plcmos-clips", "0", "--threads", "1"]
    _train([*common, "--out", str(tmp_path / "a"), "--steps", "4"])   # batches from a worker process
    _train([*common, "--out", str(tmp_path / "b"), "--steps", "2", "--workers", "0"])
    _train([*common, "--out", str(tmp_path / "b"), "--steps", "4", "--resume", "--workers", "0"])
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["args"]["steps"] == 4 and len(config["train_data_sha256"]) == 64
    from plc.neural.contract import TRAINING_FADE_MS
    from training.train import LossConfig

    assert config["loss"]["teacher_forced_weight"] == LossConfig().teacher_forced_weight  # the weights are recorded
    assert config["loss"]["fade_ms"] == list(TRAINING_FADE_MS)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4] and all(np.isfinite(r["val_loss"]) for r in log)


def test_adversarial_fine_tuning_resumes_exactly_with_its_discriminator(tiny_manifest, tmp_path):
    common = ["--data", str(tiny_manifest), "--dev", str(tiny_manifest), "--batch-size", "2", "--val-every", "2",
              "--plcmos-clips", "0", "--threads", "1", "--workers", "0"]
    _train([*common, "--out", str(tmp_path / "base"), "--steps", "2"])
    init = ["--init", str(tmp_path / "base" / "last.pt"), "--adversarial", "1"]
    _train([*common, *init, "--out", str(tmp_path / "a"), "--steps", "4"])
    _train([*common, *init, "--out", str(tmp_path / "b"), "--steps", "2"])
    _train([*common, "--adversarial", "1", "--out", str(tmp_path / "b"), "--steps", "4", "--resume"])
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    base = torch.load(tmp_path / "base" / "last.pt", weights_only=False)
    for part in ("model", "discriminator"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert any(not torch.equal(a["model"][k], base["model"][k]) for k in a["model"])   # it trained
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite([r["adv"], r["feature_matching"], r["disc_loss"]]).all() for r in log)
    # a checkpoint without a discriminator cannot be resumed adversarially: it says so
    r = subprocess.run([sys.executable, "-m", "plc.cli", "train", *common, "--adversarial", "1", "--out",
                        str(tmp_path / "base"), "--steps", "4", "--resume"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "without a discriminator" in r.stderr


@pytest.mark.parametrize("fft_sizes,periods", [((64, 128, 256, 512), ()), ((), (2, 3, 5))],
                         ids=["spectrograms", "periods"])
def test_discriminator_learns_to_tell_real_from_muffled_speech(fft_sizes, periods):
    """The adversarial loss has a signal: a few steps separate real from low-passed audio, for the
    spectrogram sub-discriminators and for the waveform (period) ones alike."""
    from training.discriminator import MultiResolutionDiscriminator, discriminator_loss, generator_adversarial_loss

    torch.manual_seed(0)
    real = torch.from_numpy(np.stack([harmonic(f0, seconds=0.2, seed=i) for i, f0 in
                                      enumerate([100, 130, 170, 210])])) * 10
    kernel = torch.ones(1, 1, 9) / 9
    fake = torch.nn.functional.conv1d(real[:, None], kernel, padding=4)[:, 0]   # muffled
    disc = MultiResolutionDiscriminator(fft_sizes=fft_sizes, periods=periods)
    assert len(disc.discriminators) == len(fft_sizes) + len(periods)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    first = None
    for _ in range(30):
        loss = discriminator_loss(disc, real, fake)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    adv_fake, _ = generator_adversarial_loss(disc, real, fake)
    adv_real, fm_real = generator_adversarial_loss(disc, real, real)
    assert adv_fake.item() > adv_real.item() and fm_real.item() == 0.0
    assert all(p.requires_grad for p in disc.parameters())   # restored after the generator pass


def test_ddp_two_cpu_processes(tiny_manifest, tmp_path):
    _train(["--data", str(tiny_manifest), "--dev", str(tiny_manifest), "--batch-size", "2", "--val-every", "2",
            "--plcmos-clips", "0", "--out", str(tmp_path / "ddp"), "--steps", "2"], nproc=2)
    state = torch.load(tmp_path / "ddp" / "last.pt", weights_only=False)
    assert state["step"] == 2 and len(state["rng"]) == 2
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["world_size"] == 2


def test_resume_without_checkpoint_is_a_clear_error(tiny_manifest, tmp_path):
    r = subprocess.run([sys.executable, "-m", "plc.cli", "train", "--data", str(tiny_manifest), "--dev",
                        str(tiny_manifest), "--out", str(tmp_path / "none"), "--resume"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_validation_conceals_dev_clips_through_the_runtime_for_plcmos(tiny_manifest, tmp_path):
    _train(["--data", str(tiny_manifest), "--dev", str(tiny_manifest), "--batch-size", "2", "--val-every", "2",
            "--plcmos-clips", "1", "--threads", "1", "--workers", "0", "--out", str(tmp_path / "p"), "--steps", "2"])
    record = json.loads((tmp_path / "p" / "log.jsonl").read_text().splitlines()[-1])
    assert "dev_plcmos_error" not in record, record
    assert 1.0 <= record["dev_plcmos"] <= 5.0 and 1.0 <= record["dev_plcmos_neteq"] <= 5.0
    assert (tmp_path / "p" / "export" / "generate.onnx").is_file()  # exported, then run by onnxruntime


def test_init_from_an_adversarial_checkpoint_continues_its_discriminator(tiny_manifest, tmp_path):
    common = ["--data", str(tiny_manifest), "--dev", str(tiny_manifest), "--batch-size", "2", "--val-every", "2",
              "--plcmos-clips", "0", "--threads", "1", "--workers", "0", "--steps", "2"]
    _train([*common, "--adversarial", "1", "--out", str(tmp_path / "stage2")])
    stage2 = torch.load(tmp_path / "stage2" / "last.pt", weights_only=False)
    # a zero learning rate keeps the weights exactly as loaded, so the new run's checkpoint shows what --init took
    _train([*common, "--adversarial", "1", "--lr", "0", "--init", str(tmp_path / "stage2" / "last.pt"),
            "--out", str(tmp_path / "stage3")])
    stage3 = torch.load(tmp_path / "stage3" / "last.pt", weights_only=False)
    for part in ("model", "discriminator"):
        for k in stage2[part]:
            assert torch.equal(stage2[part][k], stage3[part][k]), (part, k)
    assert stage3["step"] == 2  # a new run: its own step count and optimisers


def test_init_adds_period_discriminators_to_a_spectral_one(tiny_manifest, tmp_path):
    """``--init`` from a spectrogram-only adversarial checkpoint (as v3) with ``--disc-periods``
    keeps its spectrogram sub-discriminators, starts the period ones fresh, and a resume with
    other periods is a clear error."""
    common = ["--data", str(tiny_manifest), "--dev", str(tiny_manifest), "--batch-size", "2", "--val-every", "2",
              "--plcmos-clips", "0", "--threads", "1", "--workers", "0", "--steps", "2", "--adversarial", "1"]
    _train([*common, "--out", str(tmp_path / "spectral")])
    spectral = torch.load(tmp_path / "spectral" / "last.pt", weights_only=False)["discriminator"]
    _train([*common, "--lr", "0", "--disc-periods", "2,3", "--init", str(tmp_path / "spectral" / "last.pt"),
            "--out", str(tmp_path / "periods")])
    state = torch.load(tmp_path / "periods" / "last.pt", weights_only=False)
    disc = state["discriminator"]
    for k in spectral:
        assert torch.equal(spectral[k], disc[k]), k
    added = sorted({k.split(".")[1] for k in disc} - {k.split(".")[1] for k in spectral})
    assert added == ["4", "5"]   # one waveform sub-discriminator per period, after the four spectrogram ones
    assert tuple(state["config"]["args"]["disc_periods"]) == (2, 3)
    r = subprocess.run([sys.executable, "-m", "plc.cli", "train", *common, "--steps", "4", "--out",
                        str(tmp_path / "periods"), "--resume"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "--disc-periods" in r.stderr
    # nor can --init drop period sub-discriminators the checkpoint has
    r = subprocess.run([sys.executable, "-m", "plc.cli", "train", *common, "--init", str(tmp_path / "periods" / "last.pt"),
                        "--out", str(tmp_path / "fewer")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "--disc-periods" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("bad", ["1", "2,2", "2,x"])
def test_bad_discriminator_periods_are_a_usage_error(tiny_manifest, tmp_path, bad):
    r = subprocess.run([sys.executable, "-m", "plc.cli", "train", "--data", str(tiny_manifest), "--dev",
                        str(tiny_manifest), "--out", str(tmp_path / "x"), "--disc-periods", bad],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "--disc-periods" in r.stderr


def test_several_training_manifests_are_pooled_and_kept_checkpoints(tiny_manifest, tmp_path):
    window = np.hanning(16000).astype(np.float32)
    (tmp_path / "extra").mkdir()
    extra = write_manifest(tmp_path / "extra", [harmonic(f0, seconds=1.0, seed=9 + i) * window
                                                for i, f0 in enumerate([120, 260])])
    common = ["--dev", str(tiny_manifest), "--batch-size", "2", "--val-every", "2", "--plcmos-clips", "0",
              "--threads", "1", "--workers", "0", "--steps", "2"]
    _train(["--data", str(tiny_manifest), "--data", str(extra), *common, "--out", str(tmp_path / "both")])
    config = json.loads((tmp_path / "both" / "config.json").read_text())
    assert config["train_clips"] == 4 + 2
    assert config["args"]["data"] == [str(tiny_manifest), str(extra)]
    _train(["--data", str(tiny_manifest), *common, "--out", str(tmp_path / "one"), "--keep-every", "2"])
    one = json.loads((tmp_path / "one" / "config.json").read_text())
    assert one["train_clips"] == 4 and one["train_data_sha256"] != config["train_data_sha256"]
    kept = torch.load(tmp_path / "one" / "ckpt_2.pt", weights_only=False)   # --keep-every: the step's weights
    last = torch.load(tmp_path / "one" / "last.pt", weights_only=False)
    assert kept["step"] == 2 and all(torch.equal(kept["model"][k], last["model"][k]) for k in last["model"])
    assert not list((tmp_path / "both").glob("ckpt_*.pt"))
    r = subprocess.run([sys.executable, "-m", "plc.cli", "train", "--data", str(tiny_manifest), *common,
                        "--keep-every", "3", "--out", str(tmp_path / "y")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "multiple of --val-every" in r.stderr
    # a missing one of them is a usage error naming it
    r = subprocess.run([sys.executable, "-m", "plc.cli", "train", "--data", str(tiny_manifest), "--data",
                        str(tmp_path / "nope.csv"), *common, "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "nope.csv: no such manifest" in r.stderr


def test_the_first_packet_loss_weighs_only_the_first_packet_and_is_recorded(tiny_manifest, tmp_path):
    from training.data import read_clip_list
    from training.train import LossConfig, batch_loss, loss_event_batch

    corpus, model_cfg, data_cfg = SpeechCorpus(read_clip_list(tiny_manifest)), ModelConfig(), DataConfig()
    batch = {k: torch.from_numpy(v) for k, v in loss_event_batch(corpus, np.random.default_rng(0), 4, data_cfg,
                                                                 FeatureConfig(), model_cfg).items()}
    batch["n_lost"] = torch.full_like(batch["n_lost"], data_cfg.max_lost_frames)   # every loss long enough
    hop, ctx, warm = model_cfg.frame_samples, data_cfg.context_frames, data_cfg.warmup_frames

    class Echo(torch.nn.Module):   # plays the real audio, with an error in a chosen stretch
        def __init__(self, start, stop):
            super().__init__()
            self.start, self.stop = start, stop

        def forward(self, mel, lost, audio, lag, voicing, gain, noise, ctx_, warm_, gen_frames):
            gen = audio[:, ctx * hop:(ctx + gen_frames) * hop].clone()
            gen[:, self.start:self.stop] += 0.3 * gain[:, None] * torch.sin(torch.arange(self.stop - self.start) * 0.7)
            return audio[:, (ctx - warm) * hop:ctx * hop], gen

    def loss(model, weight):
        return float(batch_loss(model, batch, data_cfg, model_cfg, LossConfig(first_packet_weight=weight))[0])

    early, late = Echo(100, 300), Echo(900, 1100)
    assert loss(early, 2.0) > loss(early, 0.0) + 0.1          # an error in the first packet costs more
    assert loss(late, 2.0) == pytest.approx(loss(late, 0.0), abs=1e-6)   # one after it, no more
    common = ["--data", str(tiny_manifest), "--dev", str(tiny_manifest), "--batch-size", "2", "--val-every", "1",
              "--plcmos-clips", "0", "--threads", "1", "--workers", "0", "--steps", "1"]
    _train([*common, "--first-packet-weight", "1.5", "--out", str(tmp_path / "fp")])
    assert json.loads((tmp_path / "fp" / "config.json").read_text())["loss"]["first_packet_weight"] == 1.5
    r = subprocess.run([sys.executable, "-m", "plc.cli", "train", *common, "--first-packet-weight", "-1",
                        "--out", str(tmp_path / "bad")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "--first-packet-weight" in r.stderr

"""``plc train``: teacher-forced training with checkpoints, exact resume and validation.

Runs on one CPU, one GPU, or under ``torchrun --nproc_per_node N`` with
DistributedDataParallel (gloo on CPU, nccl on GPU): every rank draws its own
batches from a rank-specific seed; rank 0 validates, logs and checkpoints.

Each step draws a batch of loss events (``training/data.py``) as a pure
function of ``(seed, rank, step)``, so a resumed run sees exactly the batches
the uninterrupted run would have; a worker process prepares the next batches
while the model trains on this one.

The loss is what a listener hears of the concealment: the free-running output
over the lost frames and the frame after (faded out as the runtime did when v3 was
trained, 40 to 120 ms of loss, :data:`plc.neural.contract.TRAINING_FADE_MS`; the runtime
has since held voiced audio at full level to 60 ms; normalised by the level before the
loss) against the real audio, with a multi-resolution STFT loss (spectral convergence
+ log magnitude) and an L1 waveform loss that weighs the first milliseconds (the seam)
most; plus the same losses, down-weighted, on the teacher-forced one-step predictions
over the warm-up audio. Its weights are :class:`LossConfig`.

A run folder holds ``config.json`` (every setting, the loss weights included), ``log.jsonl`` (one line
per validation), ``last.pt`` (model, optimiser, discriminator, step and RNG
state, for exact resume), ``best.pt`` and, with ``--keep-every``, ``ckpt_STEP.pt``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from plc.neural.contract import TRAINING_FADE_MS, fade_gains
from plc.neural.features import FeatureConfig

from .data import DataConfig, SpeechCorpus, data_list_hash, make_batch, read_clip_list
from .discriminator import MultiResolutionDiscriminator, discriminator_loss, generator_adversarial_loss
from .model import ModelConfig, PLCModel, count_parameters



@dataclass(frozen=True)
class LossConfig:
    """The training loss's weights (each run's ``config.json`` records them under ``loss``)."""

    #: FFT sizes of the multi-resolution STFT loss.
    stft_sizes: tuple[int, ...] = (64, 128, 256, 512)
    #: Weight of the teacher-forced predictions over the warm-up audio against the free-running output.
    teacher_forced_weight: float = 0.25
    #: Weight of the L1 waveform loss at the seam.
    onset_weight: float = 4.0
    #: E-folding length of the seam weight, samples (5 ms).
    onset_samples: int = 80
    #: The fade (start, silent) in ms of loss that weights the free-running output.
    fade_ms: tuple[float, float] = TRAINING_FADE_MS
    #: Weight of an extra STFT + L1 loss on the first packet of the loss and the codec's lookahead
    #: (``first_packet_samples``): in SILK-mode Opus only that part of the model's continuation is
    #: coded into the decoder (``plc.codecs.opus_steering``); 0: off (v4 and before).
    first_packet_weight: float = 0.0
    #: 20 ms and the SILK encoder's 104-sample lookahead at 16 kHz.
    first_packet_samples: int = 424
    #: FFT sizes of the first packet's STFT loss (it is short).
    first_packet_stft_sizes: tuple[int, ...] = (64, 128, 256)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the neural concealer",
                       description="Teacher-forced training of the WaveRNN-style concealer. Resumable; "
                                   "also runs under torchrun for DistributedDataParallel.")
    p.add_argument("--data", required=True, action="append", metavar="CSV",
                   help="training manifest (e.g. ../shared/data/train.csv); repeat to train on several "
                        "(e.g. --data ../shared/data/train.csv --data ../shared/data/train_extra.csv)")
    p.add_argument("--dev", required=True, metavar="CSV", help="development manifest for validation")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (e.g. runs/NAME)")
    p.add_argument("--steps", type=int, default=20000, help="total optimisation steps (default 20000)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--resume", action="store_true", help="continue from DIR/last.pt exactly")
    p.add_argument("--init", metavar="CHECKPOINT",
                   help="start from these weights (new optimisers; with --adversarial, its discriminator too "
                        "if it has one)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores / ranks)")
    p.add_argument("--val-every", type=int, default=250, help="steps between validations and checkpoints")
    p.add_argument("--keep-every", type=int, default=0, metavar="STEPS",
                   help="also keep the weights at every multiple of STEPS (a validation step) as DIR/ckpt_STEP.pt, "
                        "to choose a checkpoint on a tuning split afterwards (default 0: only last.pt and best.pt)")
    p.add_argument("--plcmos-clips", type=int, default=4, help="dev clips concealed for PLCMOS at validation")
    p.add_argument("--max-minutes", type=float, default=0, help="stop (with a checkpoint) after this long")
    p.add_argument("--workers", type=int, default=1, help="batch-preparing worker processes (0: in the main process)")
    p.add_argument("--adversarial", type=float, default=0.0, metavar="W",
                   help="weight of the adversarial + feature-matching losses (0: off; fine-tuning, e.g. with "
                        "--init CHECKPOINT --adversarial 1)")
    p.add_argument("--disc-periods", type=_periods, default=(), metavar="P,P,...",
                   help="with --adversarial: also judge the waveform with HiFi-GAN period sub-discriminators "
                        "at these periods, e.g. 2,3,5,7,11 (default: none, spectrograms only, as v3)")
    p.add_argument("--min-voicing", type=float, default=-1.0, metavar="CORR",
                   help="train only on losses after audio whose pitch correlation is at least CORR, e.g. 0.7 "
                        "(the runtime continues the rest with noise, from 0.75); default: every loss")
    p.add_argument("--codec-prob", type=float, default=0.0, metavar="P",
                   help="share of the loss events Opus-coded in SILK mode (12-32 kbit/s) and decoded, context "
                        "and target alike, as the Opus path's receiver hears its history; default 0")
    p.add_argument("--first-packet-weight", type=float, default=0.0, metavar="W",
                   help="weight of an extra loss on the first 20 ms of each loss (and the SILK encoder's "
                        "lookahead), the part SILK-mode Opus codes into its decoder; default 0")
    p.set_defaults(func=run)


def _periods(text: str) -> tuple[int, ...]:
    """``"2,3,5"`` -> ``(2, 3, 5)``: the periods of ``--disc-periods`` (each 2..64)."""
    try:
        periods = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(not 2 <= p <= 64 for p in periods) or len(set(periods)) != len(periods):
        raise argparse.ArgumentTypeError(f"periods must be distinct integers from 2 to 64, got {text!r}")
    return periods


def _dist_info() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def loss_event_batch(corpus: SpeechCorpus, rng: np.random.Generator, batch_size: int, data_cfg: DataConfig,
                     feat_cfg: FeatureConfig, model_cfg: ModelConfig, augment_audio: bool = True) -> dict:
    """:func:`make_batch` plus the model's standard-normal noise for every warm-up and generated step."""
    b = make_batch(corpus, rng, batch_size, data_cfg, feat_cfg, model_cfg.lag_reach, augment_audio=augment_audio)
    steps = (data_cfg.warmup_frames + data_cfg.max_lost_frames + 1) * model_cfg.steps_per_frame
    b["noise"] = rng.standard_normal((batch_size, steps, model_cfg.subframe)).astype(np.float32)
    return b


class _Batches(torch.utils.data.IterableDataset):
    """Batches for steps ``start, start+1, ...``, each a pure function of (seed, rank, step)."""

    def __init__(self, paths: list[Path], seed: int, rank: int, start: int, batch_size: int,
                 data_cfg: DataConfig, feat_cfg: FeatureConfig, model_cfg: ModelConfig) -> None:
        self.paths, self.seed, self.rank, self.start = paths, seed, rank, start
        self.batch_size, self.data_cfg, self.feat_cfg, self.model_cfg = batch_size, data_cfg, feat_cfg, model_cfg
        self.corpus: SpeechCorpus | None = None

    def batch(self, step: int) -> dict[str, np.ndarray]:
        if self.corpus is None:
            self.corpus = SpeechCorpus(self.paths)
        rng = np.random.default_rng([self.seed, self.rank, step])
        return loss_event_batch(self.corpus, rng, self.batch_size, self.data_cfg, self.feat_cfg, self.model_cfg)

    def __iter__(self):
        # With N worker processes, worker i makes steps start+i, start+i+N, ...: the DataLoader
        # takes their batches round-robin, so the sequence is start, start+1, ... whatever N
        # (without this every worker would make every step, and each batch would come N times).
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        step = self.start + worker
        while True:
            yield self.batch(step)
            step += n_workers


@dataclass
class _Run:
    """One rank's view of a training run: its settings, data, models and optimisers."""

    args: argparse.Namespace
    rank: int
    world: int
    device: torch.device
    out: Path
    config: dict
    feat_cfg: FeatureConfig
    model_cfg: ModelConfig
    data_cfg: DataConfig
    loss_cfg: LossConfig
    train_paths: list
    dev_paths: list
    model: PLCModel
    opt: torch.optim.Optimizer
    disc: Optional[MultiResolutionDiscriminator] = None
    opt_d: Optional[torch.optim.Optimizer] = None
    ddp_model: Optional[torch.nn.Module] = None
    ddp_disc: Optional[torch.nn.Module] = None


def run(args: argparse.Namespace) -> int:
    rank, world, local_rank = _dist_info()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    r = _setup(args, rank, world, _device(args, world, local_rank))
    step, best = _restore(args, r.out / "last.pt", r.model, r.opt, r.disc, r.opt_d, rank)
    r.ddp_model, r.ddp_disc = r.model, r.disc
    if world > 1:
        ids = [local_rank] if r.device.type == "cuda" else None
        r.ddp_model = torch.nn.parallel.DistributedDataParallel(r.model, device_ids=ids)
        if r.disc is not None:
            r.ddp_disc = torch.nn.parallel.DistributedDataParallel(r.disc, device_ids=ids)
    _train(r, step, best)
    if world > 1:
        dist.destroy_process_group()
    return 0


def _setup(args: argparse.Namespace, rank: int, world: int, device: torch.device) -> _Run:
    """Check the inputs, write ``config.json`` (rank 0, new runs) and build the models."""
    out = Path(args.out)
    _check_inputs(args, out / "last.pt")
    feat_cfg, model_cfg, data_cfg = FeatureConfig(), ModelConfig(), DataConfig(min_voicing=args.min_voicing,
                                                                  codec_prob=args.codec_prob)
    loss_cfg = LossConfig(first_packet_weight=args.first_packet_weight)
    train_paths = [path for manifest in args.data for path in read_clip_list(manifest)]
    dev_paths = read_clip_list(args.dev)
    if not train_paths:
        raise _user_error(f"{', '.join(args.data)}: no clips")
    config = {
        "args": {k: v for k, v in vars(args).items() if k != "func"},
        "features": feat_cfg.as_dict(), "model": model_cfg.as_dict(), "data": asdict(data_cfg),
        "loss": asdict(loss_cfg),
        "train_clips": len(train_paths), "train_data_sha256": data_list_hash(train_paths),
        "world_size": world, "torch": torch.__version__,
    }
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if not args.resume:
            (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    torch.manual_seed(args.seed + rank)
    model = PLCModel(model_cfg).to(device)
    r = _Run(args, rank, world, device, out, config, feat_cfg, model_cfg, data_cfg, loss_cfg, train_paths, dev_paths,
             model, torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-5))
    if args.adversarial > 0:
        r.disc = MultiResolutionDiscriminator(periods=args.disc_periods).to(device)
        r.opt_d = torch.optim.AdamW(r.disc.parameters(), lr=args.lr, betas=(0.8, 0.99), weight_decay=1e-5)
    return r


def _train(r: _Run, step: int, best: float) -> None:
    """Optimise from ``step`` to ``--steps`` (or ``--max-minutes``), validating and saving on the way."""
    from tqdm import tqdm

    args = r.args
    val_batches = None
    if r.rank == 0:
        dev_corpus = SpeechCorpus(r.dev_paths[: max(40, args.plcmos_clips)])
        vrng = np.random.default_rng(999)
        val_batches = [loss_event_batch(dev_corpus, vrng, 32, r.data_cfg, r.feat_cfg, r.model_cfg, augment_audio=False)
                       for _ in range(4)]
        print(f"model: {count_parameters(r.model):,} parameters; {len(r.train_paths)} training clips; "
              f"world size {r.world}; device {r.device}", flush=True)
    batches = _Batches(r.train_paths, args.seed, r.rank, step, args.batch_size, r.data_cfg, r.feat_cfg, r.model_cfg)
    loader = iter(torch.utils.data.DataLoader(batches, batch_size=None, num_workers=args.workers,
                                              prefetch_factor=4 if args.workers else None,
                                              persistent_workers=False))
    bar = tqdm(total=args.steps, initial=step, desc="train", unit="step", disable=r.rank != 0, dynamic_ncols=True)
    started = time.time()
    running = None
    while step < args.steps:
        batch = {k: v.to(r.device) for k, v in next(loader).items()}
        for o in (r.opt, r.opt_d) if r.opt_d is not None else (r.opt,):
            for g in o.param_groups:
                g["lr"] = _lr_at(args, step)
        loss, adversarial = _train_step(r, batch)
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.update()
        bar.set_postfix(loss=f"{running:.3f}")
        out_of_time = args.max_minutes and (time.time() - started) / 60 > args.max_minutes
        if step % args.val_every == 0 or step == args.steps or out_of_time:
            log = {"step": step, "train_loss": running, "lr": _lr_at(args, step),
                   "elapsed_s": round(time.time() - started, 1),
                   **{k: round(v.item(), 4) for k, v in adversarial.items()}}
            best = _validate_and_save(r, step, best, val_batches, log, bar)
        if out_of_time:
            break
    bar.close()


def _validate_and_save(r: _Run, step: int, best: float, val_batches: Optional[list], log: dict, bar) -> float:
    """Validate, checkpoint and log (rank 0; every rank's RNG state goes into the checkpoint);
    returns the best validation loss so far."""
    rngs = [{"torch": torch.get_rng_state(), "rank": r.rank}]
    if r.world > 1:
        gathered = [None] * r.world
        dist.all_gather_object(gathered, rngs[0])
        rngs = gathered
    if r.rank == 0:
        val, val_parts = _validate(r.model, val_batches, r.device, r.data_cfg, r.model_cfg, r.loss_cfg)
        record = {"step": log["step"], "train_loss": log["train_loss"], "val_loss": val, **val_parts,
                  **{k: v for k, v in log.items() if k not in ("step", "train_loss")}}
        _save(r.out, r.model, r.opt, r.disc, r.opt_d, step, min(best, val), rngs, r.config, val < best,
              keep=r.args.keep_every > 0 and step % r.args.keep_every == 0)
        best = min(best, val)
        if r.args.plcmos_clips > 0:
            record.update(_dev_plcmos(r.out, r.model, r.dev_paths[: r.args.plcmos_clips], r.config))
        with open(r.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        bar.write(json.dumps(record))
    if r.world > 1:
        dist.barrier()
    return best


def _save(out: Path, model: PLCModel, opt, disc, opt_d, step: int, best: float, rngs: list, config: dict,
          is_best: bool, keep: bool = False) -> None:
    """``last.pt`` (everything an exact resume needs, written atomically); if ``is_best``, ``best.pt``;
    if ``keep``, ``ckpt_STEP.pt`` (the weights, as ``best.pt``)."""
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "best": best, "rng": rngs,
             "config": config}
    if disc is not None:
        state.update(discriminator=disc.state_dict(), optimizer_d=opt_d.state_dict())
    torch.save(state, out / "last.tmp")
    os.replace(out / "last.tmp", out / "last.pt")
    weights = {"model": model.state_dict(), "step": step, "config": config}
    if is_best:
        torch.save(weights, out / "best.pt")
    if keep:
        torch.save(weights, out / f"ckpt_{step}.pt")


def _user_error(message: str) -> Exception:
    from plc.cli import UserError

    return UserError(message)


def _device(args: argparse.Namespace, world: int, local_rank: int) -> torch.device:
    """This rank's device (and, on CPU, its share of the threads)."""
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise _user_error("--device cuda but no CUDA device is available")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        return device
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // world))
    return torch.device("cpu")


def _check_inputs(args: argparse.Namespace, ckpt_path: Path) -> None:
    if args.resume and not ckpt_path.is_file():
        raise _user_error(f"--resume: {ckpt_path} does not exist")
    for manifest in (*args.data, args.dev):
        if not Path(manifest).is_file():
            raise _user_error(f"{manifest}: no such manifest")
    if not 0 <= args.first_packet_weight < float("inf"):
        raise _user_error(f"--first-packet-weight {args.first_packet_weight}: want a finite weight of at least 0")
    if args.keep_every < 0 or (args.keep_every and args.keep_every % args.val_every):
        raise _user_error(f"--keep-every {args.keep_every}: want 0 or a multiple of --val-every ({args.val_every}), "
                          "as checkpoints are written at validations")


def _restore(args: argparse.Namespace, ckpt_path: Path, model: PLCModel, opt, disc, opt_d,
             rank: int) -> tuple[int, float]:
    """Start from ``--init`` or resume from ``last.pt``; returns the step and the best validation loss."""
    step, best = 0, float("inf")
    if args.init and not args.resume:
        state = torch.load(args.init, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        if disc is not None and "discriminator" in state:  # continue an adversarial stage
            try:
                fresh = disc.load_spectral_state(state["discriminator"])  # new period sub-discriminators start fresh
            except RuntimeError as exc:
                raise _user_error(f"--init: {args.init}: {exc} (pass the --disc-periods it was trained with, "
                                  "or more)") from None
            if fresh and rank == 0:
                print(f"--init: {len(fresh)} period-discriminator tensors start from scratch", flush=True)
    if args.resume:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise _user_error(f"--resume: {ckpt_path} is a different model ({str(exc).splitlines()[0]})") from None
        opt.load_state_dict(state["optimizer"])
        if disc is not None:
            if "discriminator" not in state:
                raise _user_error(f"--resume --adversarial: {ckpt_path} was trained without a discriminator "
                                  "(start a new run with --init)")
            try:
                disc.load_state_dict(state["discriminator"])
            except RuntimeError:
                raise _user_error(f"--resume: {ckpt_path}'s discriminator has other sub-discriminators "
                                  "(resume with the --disc-periods it was trained with)") from None
            opt_d.load_state_dict(state["optimizer_d"])
        step, best = state["step"], state.get("best", best)
    return step, best


def _lr_at(args: argparse.Namespace, step: int) -> float:
    """Learning rate at ``step``: warm-up, then a cosine to 10%."""
    warm = 200
    if step < warm:
        return args.lr * (step + 1) / warm
    frac = min(1.0, (step - warm) / max(1, args.steps - warm))
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac)))


def _train_step(r: _Run, batch: dict) -> tuple[torch.Tensor, dict]:
    """One optimisation step of the generator (and the discriminator, when adversarial); returns
    the generator's loss and the adversarial losses (tensors) for the log."""
    r.ddp_model.train()
    loss, _, (real, fake) = batch_loss(r.ddp_model, batch, r.data_cfg, r.model_cfg, r.loss_cfg)
    if r.disc is not None:
        adv, fm = generator_adversarial_loss(r.disc, real, fake)
        loss = loss + r.args.adversarial * (adv + fm)
    r.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(r.model.parameters(), 1.0)
    r.opt.step()
    if r.disc is None:
        return loss, {}
    d_loss = discriminator_loss(r.ddp_disc, real, fake)
    r.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    torch.nn.utils.clip_grad_norm_(r.disc.parameters(), 1.0)
    r.opt_d.step()
    return loss, {"adv": adv.detach(), "feature_matching": fm.detach(), "disc_loss": d_loss.detach()}


def fade_gain(n_samples: int, fade_ms: tuple[float, float], sample_rate: int = 16000) -> np.ndarray:
    """The fade over the first ``n_samples`` of a loss (:func:`plc.neural.contract.fade_gains`)."""
    return fade_gains(np.arange(n_samples) * 1000.0 / sample_rate, fade_ms).astype(np.float32)


def stft_loss(pred: torch.Tensor, target: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1, over FFT ``sizes``."""
    total = pred.new_zeros(())
    for n_fft in sizes:
        win = torch.hann_window(n_fft, device=pred.device)
        kw = dict(n_fft=n_fft, hop_length=n_fft // 4, window=win, return_complex=True)
        p = torch.stft(pred, **kw).abs()
        t = torch.stft(target, **kw).abs()
        sc = torch.linalg.norm(t - p) / (torch.linalg.norm(t) + 1e-3)
        mag = (torch.log(p + 1e-2) - torch.log(t + 1e-2)).abs().mean()
        total = total + sc + mag
    return total / len(sizes)


def batch_loss(model: torch.nn.Module, batch: dict, data_cfg: DataConfig, model_cfg: ModelConfig,
               loss_cfg: LossConfig = LossConfig()):
    """The training loss of a batch of loss events, its parts (floats) for the log, and
    ``(real, fake)``: the last real audio before the loss followed by the real audio or by the
    concealment as heard (faded, level-normalised), for the discriminator."""
    hop = model_cfg.frame_samples
    ctx, warm, gen_frames = data_cfg.context_frames, data_cfg.warmup_frames, data_cfg.max_lost_frames + 1
    tf, gen = model(batch["mel"], batch["lost"], batch["audio"], batch["lag"], batch["voicing"], batch["gain"],
                    batch["noise"], ctx, warm, gen_frames)
    gain = batch["gain"].unsqueeze(-1)
    audio = batch["audio"]
    n = gen.shape[1]
    fade = torch.from_numpy(fade_gain(n, loss_cfg.fade_ms)).to(gen.device)
    valid = (torch.arange(n, device=gen.device)[None, :] < ((batch["n_lost"] + 1) * hop)[:, None]).float()
    weight = fade[None, :] * valid
    p = gen * weight / gain
    t = audio[:, ctx * hop:ctx * hop + n] * weight / gain
    onset = torch.exp(-torch.arange(n, device=gen.device, dtype=torch.float32) / loss_cfg.onset_samples)
    onset_l1 = ((p - t).abs() * onset).sum(-1).mean() / onset.sum()
    free = stft_loss(p, t, loss_cfg.stft_sizes) + loss_cfg.onset_weight * onset_l1
    if loss_cfg.first_packet_weight > 0:
        k = min(loss_cfg.first_packet_samples, n)
        first = stft_loss(p[:, :k], t[:, :k], loss_cfg.first_packet_stft_sizes) + (p[:, :k] - t[:, :k]).abs().mean()
        free = free + loss_cfg.first_packet_weight * first
    t_tf = audio[:, (ctx - warm) * hop:ctx * hop] / gain
    teacher = stft_loss(tf / gain, t_tf, loss_cfg.stft_sizes) + (tf / gain - t_tf).abs().mean()
    loss = free + loss_cfg.teacher_forced_weight * teacher
    parts = {"free": float(free.detach()), "onset_l1": float(onset_l1.detach()),
             "teacher_forced": float(teacher.detach())}
    return loss, parts, (torch.cat([t_tf, t], dim=1), torch.cat([t_tf, p], dim=1))


@torch.no_grad()
def _validate(model: PLCModel, batches: list[dict], device: torch.device, data_cfg: DataConfig,
              model_cfg: ModelConfig, loss_cfg: LossConfig) -> tuple[float, dict]:
    model.eval()
    losses, parts = [], []
    for b in batches:
        loss, p, _ = batch_loss(model, {k: torch.from_numpy(v).to(device) for k, v in b.items()}, data_cfg, model_cfg,
                                loss_cfg)
        losses.append(loss.item())
        parts.append(p)
    return float(np.mean(losses)), {f"val_{k}": round(float(np.mean([p[k] for p in parts])), 4) for k in parts[0]}


def _dev_plcmos(out: Path, model: PLCModel, paths: list[Path], config: dict) -> dict:
    """Export the current weights and conceal a few dev clips through the real runtime."""
    try:
        from eval.metrics import plcmos
        from plc.concealers import make_concealer
        from plc.offline import conceal_audio

        from .export import export_model

        export_dir = out / "export"
        export_model(model, config, export_dir)
        scores, base = [], []
        for i, p in enumerate(paths):
            import soundfile as sf

            x, sr = sf.read(str(p), dtype="float32")
            lost = np.random.default_rng(i).random(len(x) // 320 + 1) < 0.15
            y = conceal_audio(x, sr, lost, "neural", concealer_factory=lambda: make_concealer(
                "neural", realtime=False, model_dir=export_dir)).audio
            scores.append(plcmos(y, sr, seed=i))
            base.append(plcmos(conceal_audio(x, sr, lost, "neteq").audio, sr, seed=i))
        return {"dev_plcmos": round(float(np.mean(scores)), 3), "dev_plcmos_neteq": round(float(np.mean(base)), 3)}
    except Exception as exc:  # validation extras must never stop training
        return {"dev_plcmos_error": f"{type(exc).__name__}: {exc}"}

"""``plc train``: teacher-forced training with checkpoints, exact resume and validation.

Runs on one CPU, one GPU, or under ``torchrun --nproc_per_node N`` with
DistributedDataParallel (gloo on CPU, nccl on GPU): every rank draws its own
batches from a rank-specific seed; rank 0 validates, logs and checkpoints.

A run folder holds ``config.json`` (every setting), ``log.jsonl`` (one line
per validation), ``last.pt`` (model, optimiser, step and all RNG states, for
exact resume) and ``best.pt``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from plc.neural.features import FeatureConfig

from .data import DataConfig, SpeechCorpus, data_list_hash, make_batch, read_clip_list
from .model import ModelConfig, PLCModel, count_parameters


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the neural concealer",
                       description="Teacher-forced training of the WaveRNN-style concealer. Resumable; "
                                   "also runs under torchrun for DistributedDataParallel.")
    p.add_argument("--data", required=True, metavar="CSV", help="training manifest (e.g. ../shared/data/train.csv)")
    p.add_argument("--dev", required=True, metavar="CSV", help="development manifest for validation")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (e.g. runs/NAME)")
    p.add_argument("--steps", type=int, default=20000, help="total optimisation steps (default 20000)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--resume", action="store_true", help="continue from DIR/last.pt exactly")
    p.add_argument("--init", metavar="CHECKPOINT", help="start from these weights (new optimiser)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores / ranks)")
    p.add_argument("--val-every", type=int, default=250, help="steps between validations and checkpoints")
    p.add_argument("--plcmos-clips", type=int, default=4, help="dev clips concealed for PLCMOS at validation")
    p.add_argument("--max-minutes", type=float, default=0, help="stop (with a checkpoint) after this long")
    p.set_defaults(func=run)


def _dist_info() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _rng_state(rng: np.random.Generator) -> dict:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def run(args: argparse.Namespace) -> int:
    from plc.cli import UserError

    rank, world, local_rank = _dist_info()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda but no CUDA device is available")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // world))
    out = Path(args.out)
    ckpt_path = out / "last.pt"
    if args.resume and not ckpt_path.is_file():
        raise UserError(f"--resume: {ckpt_path} does not exist")
    for manifest in (args.data, args.dev):
        if not Path(manifest).is_file():
            raise UserError(f"{manifest}: no such manifest")

    feat_cfg, model_cfg, data_cfg = FeatureConfig(), ModelConfig(), DataConfig()
    train_paths = read_clip_list(args.data)
    dev_paths = read_clip_list(args.dev)
    config = {
        "args": {k: v for k, v in vars(args).items() if k != "func"},
        "features": feat_cfg.as_dict(), "model": model_cfg.as_dict(), "data": asdict(data_cfg),
        "train_clips": len(train_paths), "train_data_sha256": data_list_hash(train_paths),
        "world_size": world, "torch": torch.__version__,
    }
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if not args.resume:
            (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    torch.manual_seed(args.seed + rank)
    rng = np.random.default_rng([args.seed, rank])
    model = PLCModel(model_cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-5)
    step, best = 0, float("inf")
    if args.init and not args.resume:
        state = torch.load(args.init, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
    if args.resume:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, best = state["step"], state.get("best", best)
        rng.bit_generator.state = state["rng"][rank]["numpy"] if rank < len(state["rng"]) else rng.bit_generator.state
        if rank < len(state["rng"]):
            torch.set_rng_state(state["rng"][rank]["torch"])
    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)

    corpus = SpeechCorpus(train_paths)
    dev_corpus = SpeechCorpus(dev_paths[: max(40, args.plcmos_clips)]) if rank == 0 else None
    val_batches = None
    if rank == 0:
        vrng = np.random.default_rng(999)
        val_batches = [make_batch(dev_corpus, vrng, 16, data_cfg, feat_cfg, augment_audio=False) for _ in range(4)]
        print(f"model: {count_parameters(model):,} parameters; {len(train_paths)} training clips; "
              f"world size {world}; device {device}", flush=True)

    def lr_at(s: int) -> float:  # warm-up then cosine to 10%
        warm = 200
        if s < warm:
            return args.lr * (s + 1) / warm
        frac = min(1.0, (s - warm) / max(1, args.steps - warm))
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac)))

    from tqdm import tqdm

    bar = tqdm(total=args.steps, initial=step, desc="train", unit="step", disable=rank != 0, dynamic_ncols=True)
    started = time.time()
    running = None
    while step < args.steps:
        batch = make_batch(corpus, rng, args.batch_size, data_cfg, feat_cfg)
        mel = torch.from_numpy(batch["mel"]).to(device)
        lost = torch.from_numpy(batch["lost"]).to(device)
        q = torch.from_numpy(batch["q"]).to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        ddp_model.train()
        logits = ddp_model(mel, lost, q)
        loss = F.cross_entropy(logits.reshape(-1, model_cfg.levels), q[:, model_cfg.frame_samples:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.update()
        bar.set_postfix(loss=f"{running:.3f}")
        out_of_time = args.max_minutes and (time.time() - started) / 60 > args.max_minutes
        if step % args.val_every == 0 or step == args.steps or out_of_time:
            rngs = [_rng_state(rng)]
            if world > 1:
                gathered = [None] * world
                dist.all_gather_object(gathered, rngs[0])
                rngs = gathered
            if rank == 0:
                val = _validate(model, val_batches, device, model_cfg)
                record = {"step": step, "train_loss": running, "val_loss": val, "lr": lr_at(step),
                          "elapsed_s": round(time.time() - started, 1)}
                state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                         "best": min(best, val), "rng": rngs, "config": config}
                torch.save(state, out / "last.tmp")
                os.replace(out / "last.tmp", ckpt_path)
                if val < best:
                    best = val
                    torch.save({"model": model.state_dict(), "step": step, "config": config}, out / "best.pt")
                if args.plcmos_clips > 0:
                    record.update(_dev_plcmos(out, model, dev_paths[: args.plcmos_clips], config))
                with open(out / "log.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                bar.write(json.dumps(record))
            if world > 1:
                dist.barrier()
        if out_of_time:
            break
    bar.close()
    if world > 1:
        dist.destroy_process_group()
    return 0


@torch.no_grad()
def _validate(model: PLCModel, batches: list[dict], device: torch.device, cfg: ModelConfig) -> float:
    model.eval()
    losses = []
    for b in batches:
        q = torch.from_numpy(b["q"]).to(device)
        logits = model(torch.from_numpy(b["mel"]).to(device), torch.from_numpy(b["lost"]).to(device), q)
        losses.append(F.cross_entropy(logits.reshape(-1, cfg.levels), q[:, cfg.frame_samples:].reshape(-1)).item())
    return float(np.mean(losses))


def _dev_plcmos(out: Path, model: PLCModel, paths: list[Path], config: dict) -> dict:
    """Export the current weights and conceal a few dev clips through the real runtime."""
    try:
        from eval.metrics import plcmos
        from plc.concealers.neural import NeuralConcealer
        from plc.offline import conceal_audio

        from .export import export_model

        export_dir = out / "export"
        export_model(model, config, export_dir)
        scores, base = [], []
        for i, p in enumerate(paths):
            import soundfile as sf

            x, sr = sf.read(str(p), dtype="float32")
            lost = np.random.default_rng(i).random(len(x) // 320 + 1) < 0.15
            y = conceal_audio(x, sr, lost, "neural", concealer_factory=lambda: NeuralConcealer(
                model_dir=export_dir, fallback_on_deadline=False)).audio
            scores.append(plcmos(y, sr, seed=i))
            base.append(plcmos(conceal_audio(x, sr, lost, "neteq").audio, sr, seed=i))
        return {"dev_plcmos": round(float(np.mean(scores)), 3), "dev_plcmos_neteq": round(float(np.mean(base)), 3)}
    except Exception as exc:  # validation extras must never stop training
        return {"dev_plcmos_error": f"{type(exc).__name__}: {exc}"}

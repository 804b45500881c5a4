"""``plc export``: turn a checkpoint into the ONNX graphs and JSON the runtime loads.

Three graphs, each one onnxruntime call:

* ``start.onnx``: everything the first lost frame of a loss needs, in one call
  (the start of a loss is the worst case of the real-time budget): the
  conditioning network over the context frames, the autoregressive GRU
  teacher-forced over the last real audio (one ONNX ``GRU`` node over all its
  sub-frames, the per-step inputs gathered from the played audio inside the
  graph), and the first frame of free-running generation.
* ``cond.onnx``: one conditioning step (or a run of them) for later lost frames.
* ``generate.onnx``: one 10 ms frame of free-running generation, its four
  sub-frame steps unrolled inside the graph (the pitch window is gathered from
  the signal made so far inside the graph too), so the autoregressive loop
  never runs in Python.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from plc.neural import contract

from .model import ConditioningNet, ModelConfig, PLCModel, count_parameters

OPSET = 17


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX for the runtime",
                       description="Write start.onnx, cond.onnx, generate.onnx and model.json to --out.")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt file written by plc train")
    p.add_argument("--out", default="plc/assets/neural", metavar="DIR", help="output folder (default plc/assets/neural)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from plc.cli import UserError

    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise UserError(f"{ckpt}: no such checkpoint")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        config = state["config"]
        model = PLCModel(ModelConfig(**config["model"]))
        model.load_state_dict(state["model"])
    except Exception as exc:
        raise UserError(f"{ckpt}: not a plc checkpoint ({type(exc).__name__}: {exc})") from None
    config = dict(config, step=state.get("step"))
    info = export_model(model, config, Path(args.out))
    print(f"exported step {state.get('step')} to {args.out}: {info['params']:,} parameters, "
          f"{info['model_bytes']:,} bytes")
    return 0


class _CondGraph(nn.Module):
    def __init__(self, cond: ConditioningNet) -> None:
        super().__init__()
        self.cond = cond

    def forward(self, mel: torch.Tensor, lost: torch.Tensor, h0: torch.Tensor):
        return self.cond(mel, lost, h0)


class _StartGraph(nn.Module):
    """The first lost frame: conditioning over the context, warm-up on the last real audio, one frame."""

    def __init__(self, model: PLCModel, context_frames: int, warmup_frames: int) -> None:
        super().__init__()
        self.model, self.context_frames, self.warmup_frames = model, context_frames, warmup_frames

    def forward(self, mel: torch.Tensor, lost: torch.Tensor, history: torch.Tensor, lag: torch.Tensor,
                voicing: torch.Tensor, gain: torch.Tensor, noise: torch.Tensor):
        """``mel`` (1, context_frames, n_mels), ``lost`` (1, context_frames) of the frames before the
        loss; ``history`` (1, start_history_samples) the audio played before it; ``lag`` (1,) int64,
        ``voicing``, ``gain`` (1, 1); ``noise`` (warm-up steps + steps_per_frame, subframe).

        Returns the first lost frame (1, frame_samples), the autoregressive state, the frame's
        conditioning (1, 1, C) and the conditioning network's state (to step on from)."""
        m, ctx, warm = self.model, self.context_frames, self.warmup_frames
        cond, cond_h = m.cond(mel, lost)
        n_warm = warm * m.cfg.steps_per_frame
        _, h = m.warm_up(history, history.shape[1], lag, m.warm_up_conditioning(cond, ctx, warm), voicing, gain,
                         noise[None, :n_warm], predictions=False)
        first_cond = cond[:, ctx - 1:ctx]
        frame, h, _ = m.run_free(history[:, -m.cfg.history_samples:], h, lag, first_cond, voicing, gain,
                                 noise[None, n_warm:])
        return frame, h, first_cond, cond_h


class _GenerateGraph(nn.Module):
    """One frame of free-running generation, the sub-frame steps unrolled."""

    def __init__(self, model: PLCModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, h: torch.Tensor, history: torch.Tensor, lag: torch.Tensor, cond: torch.Tensor,
                voicing: torch.Tensor, gain: torch.Tensor, noise: torch.Tensor):
        """``h`` (1, 1, H); ``history`` (1, history_samples) the signal so far (unfaded);
        ``lag`` (1,) int64 effective pitch lag; ``cond`` (1, C); ``voicing``, ``gain`` (1, 1);
        ``noise`` (steps, subframe). Returns the frame (1, frame_samples) and the new state."""
        frame, h, _ = self.model.run_free(history, h, lag, cond[:, None], voicing, gain, noise[None])
        return frame, h


def start_history_samples(cfg: ModelConfig, warmup_frames: int) -> int:
    """Played samples ``start.onnx`` reads: the warm-up audio and a generator history before it."""
    return warmup_frames * cfg.frame_samples + cfg.history_samples


def export_model(model: PLCModel, config: dict, out_dir: Path) -> dict:
    """Write the three graphs and ``model.json`` to ``out_dir``; returns the JSON."""
    cfg = model.cfg
    model = model.cpu().eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    hc, h = cfg.cond_hidden, cfg.ar_hidden
    kw = dict(opset_version=OPSET, dynamo=False)
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated but exports GRUs as single ONNX GRU nodes, which we want.
        warnings.simplefilter("ignore")
        cond = contract.COND
        torch.onnx.export(_CondGraph(model.cond), (torch.zeros(1, 8, cfg.n_mels), torch.zeros(1, 8), torch.zeros(1, 1, hc)),
                          str(out_dir / cond.file), input_names=list(cond.inputs), output_names=list(cond.outputs),
                          dynamic_axes={"mel": {1: "frames"}, "lost": {1: "frames"}, "cond": {1: "frames"}}, **kw)
        sub, one = cfg.subframe, torch.ones(1, 1)
        data = config.get("data") or {}
        ctx = int(data.get("context_frames", contract.CONTEXT_FRAMES))
        warm = int(data.get("warmup_frames", contract.WARMUP_FRAMES))
        n_hist = start_history_samples(cfg, warm)
        torch.onnx.export(_StartGraph(model, ctx, warm),
                          (torch.zeros(1, ctx, cfg.n_mels), torch.zeros(1, ctx), torch.zeros(1, n_hist),
                           torch.tensor([100]), one * 0.5, one * 0.1,
                           torch.zeros((warm + 1) * cfg.steps_per_frame, sub)),
                          str(out_dir / contract.START.file), input_names=list(contract.START.inputs),
                          output_names=list(contract.START.outputs), **kw)
        torch.onnx.export(_GenerateGraph(model),
                          (torch.zeros(1, 1, h), torch.zeros(1, cfg.history_samples), torch.tensor([100]),
                           torch.zeros(1, cfg.cond_dim), one * 0.5, one * 0.1, torch.zeros(cfg.steps_per_frame, sub)),
                          str(out_dir / contract.GENERATE.file), input_names=list(contract.GENERATE.inputs),
                          output_names=list(contract.GENERATE.outputs), **kw)
    files = list(contract.GRAPH_FILES)
    for stale in out_dir.glob("*.onnx"):  # graphs of an older format must not linger beside these
        if stale.name not in files:
            stale.unlink()
    digest = hashlib.sha256()
    for f in files:
        digest.update((out_dir / f).read_bytes())
    info = {
        "format_version": contract.FORMAT_VERSION,
        "sample_rate": config["features"]["sample_rate"],
        "architecture": "conditioning GRU on log-mel + sub-frame autoregressive GRU with a pitch predictor",
        "features": config["features"],
        "model": cfg.as_dict(),
        "start_history_samples": n_hist,
        "params": count_parameters(model),
        "model_bytes": sum((out_dir / f).stat().st_size for f in files),
        "files": files,
        "onnx_sha256": digest.hexdigest(),
        "data": config.get("data"),
        "train_data_sha256": config.get("train_data_sha256"),
        "train_clips": config.get("train_clips"),
        "step": config.get("step"),
        "torch": torch.__version__,
    }
    (out_dir / "model.json").write_text(json.dumps(info, indent=2) + "\n")
    return info

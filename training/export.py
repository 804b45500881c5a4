"""``plc export``: turn a checkpoint into the ONNX graphs and JSON the runtime loads.

Three graphs, each one onnxruntime call:

* ``cond.onnx``: the conditioning network over a run of frames.
* ``warmup.onnx``: the autoregressive GRU teacher-forced over recent real audio
  (one ONNX ``GRU`` node over all its sub-frames), giving the state to
  generate from.
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

from .model import AutoregressiveNet, ConditioningNet, ModelConfig, PLCModel, count_parameters

FORMAT_VERSION = 2
OPSET = 17


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX for the runtime",
                       description="Write cond.onnx, warmup.onnx, generate.onnx and model.json to --out.")
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


class _WarmupGraph(nn.Module):
    def __init__(self, ar: AutoregressiveNet) -> None:
        super().__init__()
        self.ar = ar

    def forward(self, prev: torch.Tensor, lag_win: torch.Tensor, noise: torch.Tensor, cond: torch.Tensor,
                voicing: torch.Tensor, gain: torch.Tensor, h0: torch.Tensor):
        """Per-step ``prev``, ``lag_win``, ``noise``, ``cond`` (1, S, .); ``voicing``, ``gain`` (1, 1)."""
        steps = prev.shape[1]
        v = voicing.unsqueeze(1).expand(1, steps, 1)
        g = gain.unsqueeze(1).expand(1, steps, 1)
        _, h = self.ar(self.ar.make_input(prev, lag_win, noise, cond, v, g), h0)
        return h


class _GenerateGraph(nn.Module):
    """One frame of free-running generation, the sub-frame steps unrolled."""

    def __init__(self, ar: AutoregressiveNet, cfg: ModelConfig) -> None:
        super().__init__()
        self.ar, self.cfg = ar, cfg

    def forward(self, h: torch.Tensor, history: torch.Tensor, lag: torch.Tensor, cond: torch.Tensor,
                voicing: torch.Tensor, gain: torch.Tensor, noise: torch.Tensor):
        """``h`` (1, 1, H); ``history`` (1, history_samples) the signal so far (unfaded);
        ``lag`` (1,) int64 effective pitch lag; ``cond`` (1, C); ``voicing``, ``gain`` (1, 1);
        ``noise`` (steps, subframe). Returns the frame (1, frame_samples) and the new state."""
        buf = history
        outs = []
        for s in range(self.cfg.steps_per_frame):
            out, h, buf = self.ar.free_step(buf, h, lag, noise[s:s + 1], cond, voicing, gain)
            outs.append(out)
        return torch.cat(outs, dim=1), h


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
        torch.onnx.export(_CondGraph(model.cond), (torch.zeros(1, 8, cfg.n_mels), torch.zeros(1, 8), torch.zeros(1, 1, hc)),
                          str(out_dir / "cond.onnx"), input_names=["mel", "lost", "h0"], output_names=["cond", "h"],
                          dynamic_axes={"mel": {1: "frames"}, "lost": {1: "frames"}, "cond": {1: "frames"}}, **kw)
        steps, sub = 8, cfg.subframe
        one = torch.ones(1, 1)
        torch.onnx.export(_WarmupGraph(model.ar),
                          (torch.zeros(1, steps, sub), torch.zeros(1, steps, cfg.lag_window), torch.zeros(1, steps, sub),
                           torch.zeros(1, steps, cfg.cond_dim), one * 0.5, one * 0.1, torch.zeros(1, 1, h)),
                          str(out_dir / "warmup.onnx"),
                          input_names=["prev", "lag_win", "noise", "cond", "voicing", "gain", "h0"], output_names=["h"],
                          dynamic_axes={k: {1: "steps"} for k in ("prev", "lag_win", "noise", "cond")}, **kw)
        torch.onnx.export(_GenerateGraph(model.ar, cfg),
                          (torch.zeros(1, 1, h), torch.zeros(1, cfg.history_samples), torch.tensor([100]),
                           torch.zeros(1, cfg.cond_dim), one * 0.5, one * 0.1, torch.zeros(cfg.steps_per_frame, sub)),
                          str(out_dir / "generate.onnx"),
                          input_names=["h0", "history", "lag", "cond", "voicing", "gain", "noise"],
                          output_names=["frame", "h"], **kw)
    files = ["cond.onnx", "warmup.onnx", "generate.onnx"]
    digest = hashlib.sha256()
    for f in files:
        digest.update((out_dir / f).read_bytes())
    info = {
        "format_version": FORMAT_VERSION,
        "sample_rate": config["features"]["sample_rate"],
        "architecture": "conditioning GRU on log-mel + sub-frame autoregressive GRU with a pitch predictor",
        "features": config["features"],
        "model": cfg.as_dict(),
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

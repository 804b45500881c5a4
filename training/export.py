"""``plc export``: turn a checkpoint into the ONNX graphs and JSON the runtime loads.

Three graphs, each one onnxruntime call:

* ``cond.onnx``: the conditioning network over a run of frames.
* ``warmup.onnx``: the autoregressive GRU teacher-forced over recent real audio
  (one ONNX ``GRU`` node), giving the state to generate from.
* ``generate.onnx``: one 10 ms frame of free-running generation, the whole
  per-step loop unrolled inside the graph (40 bunched steps of 4 samples),
  with the embedding and input projections folded into one lookup table per
  step so that each step is a handful of nodes. Sampling is Gumbel-max with a
  temperature; the runtime passes the Gumbel noise in.
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

FORMAT_VERSION = 1
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

    def forward(self, prev: torch.Tensor, cond: torch.Tensor, h0: torch.Tensor):
        x = torch.cat([self.ar.embed_bunches(prev), cond], dim=-1)
        _, h = self.ar.gru(x, h0)
        return h


class _GenerateGraph(nn.Module):
    """One frame of free-running generation with the step loop unrolled."""

    def __init__(self, ar: AutoregressiveNet, cfg: ModelConfig) -> None:
        super().__init__()
        self.steps = cfg.frame_samples // cfg.bunch
        self.bunch, self.levels, self.hidden = cfg.bunch, cfg.levels, cfg.ar_hidden
        w_ih = ar.gru.weight_ih_l0.detach()            # (3H, bunch*E + C)
        e = cfg.embed_dim
        emb = ar.embed.weight.detach()                  # (bunch*levels, E)
        table = torch.cat([emb[k * cfg.levels:(k + 1) * cfg.levels] @ w_ih[:, k * e:(k + 1) * e].T
                           for k in range(cfg.bunch)])  # (bunch*levels, 3H)
        self.register_buffer("table", table)
        self.register_buffer("w_cond", w_ih[:, cfg.bunch * e:].T.contiguous())
        self.register_buffer("b_ih", ar.gru.bias_ih_l0.detach().clone())
        self.register_buffer("w_hh", ar.gru.weight_hh_l0.detach().T.contiguous())
        self.register_buffer("b_hh", ar.gru.bias_hh_l0.detach().clone())
        self.register_buffer("offsets", torch.arange(cfg.bunch) * cfg.levels)
        self.fc = ar.fc
        self.out = ar.out

    def forward(self, h: torch.Tensor, prev: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor,
                inv_temperature: torch.Tensor):
        """``h`` (1, H), ``prev`` (bunch,) int64, ``cond`` (1, C), ``noise`` (steps, bunch, levels)."""
        H = self.hidden
        gi_cond = cond @ self.w_cond + self.b_ih
        outs = []
        for t in range(self.steps):
            gi = self.table[prev + self.offsets].sum(0, keepdim=True) + gi_cond
            gh = h @ self.w_hh + self.b_hh
            r = torch.sigmoid(gi[:, :H] + gh[:, :H])
            z = torch.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = torch.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            h = (1.0 - z) * n + z * h
            logits = self.out(torch.relu(self.fc(h))).view(self.bunch, self.levels)
            prev = torch.argmax(logits * inv_temperature + noise[t], dim=-1)
            outs.append(prev)
        return torch.cat(outs), h


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
        torch.onnx.export(_WarmupGraph(model.ar),
                          (torch.zeros(1, 8, cfg.bunch, dtype=torch.long), torch.zeros(1, 8, cfg.cond_dim), torch.zeros(1, 1, h)),
                          str(out_dir / "warmup.onnx"), input_names=["prev", "cond", "h0"], output_names=["h"],
                          dynamic_axes={"prev": {1: "steps"}, "cond": {1: "steps"}}, **kw)
        steps = cfg.frame_samples // cfg.bunch
        torch.onnx.export(_GenerateGraph(model.ar, cfg),
                          (torch.zeros(1, h), torch.zeros(cfg.bunch, dtype=torch.long), torch.zeros(1, cfg.cond_dim),
                           torch.zeros(steps, cfg.bunch, cfg.levels), torch.tensor(1.0)),
                          str(out_dir / "generate.onnx"),
                          input_names=["h0", "prev", "cond", "noise", "inv_temperature"], output_names=["q", "h"], **kw)
    files = ["cond.onnx", "warmup.onnx", "generate.onnx"]
    digest = hashlib.sha256()
    for f in files:
        digest.update((out_dir / f).read_bytes())
    info = {
        "format_version": FORMAT_VERSION,
        "sample_rate": config["features"]["sample_rate"],
        "features": config["features"],
        "model": cfg.as_dict(),
        "params": count_parameters(model),
        "model_bytes": sum((out_dir / f).stat().st_size for f in files),
        "files": files,
        "onnx_sha256": digest.hexdigest(),
        "train_data_sha256": config.get("train_data_sha256"),
        "train_clips": config.get("train_clips"),
        "step": config.get("step"),
        "torch": torch.__version__,
    }
    (out_dir / "model.json").write_text(json.dumps(info, indent=2) + "\n")
    return info

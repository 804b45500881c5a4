"""The WaveRNN-style concealment model (torch; training and export only).

Two networks, as in WaveNetEQ:

* :class:`ConditioningNet` reads the log-mel spectrogram of the recent past,
  one 10 ms frame at a time, plus a flag that says the frame was lost (its
  mel is then zero: during a loss the network must extrapolate). Its output
  for frame ``f`` depends on frames ``< f`` only, so at a loss it predicts the
  conditioning of the frames to come.
* :class:`AutoregressiveNet` is a GRU that makes the waveform from its own
  previous samples and that conditioning. It runs in *bunches* of
  ``bunch`` samples (4 = 0.25 ms): each step reads the previous bunch (8-bit
  mu-law of pre-emphasised audio, one embedding per sample) and outputs a
  256-way softmax for each sample of the next bunch. Bunching cuts the
  number of sequential steps by 4, which is what makes real-time inference in
  onnxruntime possible (see ``plc bench``).

Training is teacher forced: the GRU sees the real previous bunch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class ModelConfig:
    n_mels: int = 32
    cond_hidden: int = 128
    cond_dim: int = 64
    bunch: int = 4
    embed_dim: int = 32
    ar_hidden: int = 128
    fc_hidden: int = 128
    levels: int = 256
    frame_samples: int = 160

    def as_dict(self) -> dict:
        return asdict(self)


class ConditioningNet(nn.Module):
    """Causal frame-rate network: (mel, lost flag) of frames ``< f`` -> conditioning of frame ``f``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(cfg.n_mels + 1, cfg.cond_hidden)
        self.gru = nn.GRU(cfg.cond_hidden, cfg.cond_hidden, batch_first=True)
        self.out = nn.Linear(cfg.cond_hidden, cfg.cond_dim)

    def forward(self, mel: torch.Tensor, lost: torch.Tensor, h0: torch.Tensor | None = None):
        """``mel`` (B, T, n_mels), ``lost`` (B, T) -> (conditioning (B, T, cond_dim), h (1, B, H)).

        Output ``t`` has seen inputs ``0..t``: it is the conditioning of frame ``t + 1``.
        """
        x = torch.cat([mel * (1.0 - lost.unsqueeze(-1)), lost.unsqueeze(-1)], dim=-1)
        y, h = self.gru(torch.tanh(self.inp(x)), h0)
        return torch.tanh(self.out(y)), h


class AutoregressiveNet(nn.Module):
    """Bunched sample-rate GRU with a mu-law softmax per sample."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.levels * cfg.bunch, cfg.embed_dim)  # one table per bunch position
        self.gru = nn.GRU(cfg.embed_dim * cfg.bunch + cfg.cond_dim, cfg.ar_hidden, batch_first=True)
        self.fc = nn.Linear(cfg.ar_hidden, cfg.fc_hidden)
        self.out = nn.Linear(cfg.fc_hidden, cfg.levels * cfg.bunch)
        self.register_buffer("offsets", torch.arange(cfg.bunch) * cfg.levels, persistent=False)

    def embed_bunches(self, prev: torch.Tensor) -> torch.Tensor:
        """``prev`` (B, S, bunch) mu-law classes -> (B, S, bunch * embed_dim)."""
        e = self.embed(prev + self.offsets)
        return e.flatten(-2)

    def forward(self, prev: torch.Tensor, cond: torch.Tensor, h0: torch.Tensor | None = None):
        """``prev`` (B, S, bunch) previous-bunch classes, ``cond`` (B, S, cond_dim) per step.

        Returns logits (B, S, bunch, levels) and the final state (1, B, H).
        """
        x = torch.cat([self.embed_bunches(prev), cond], dim=-1)
        y, h = self.gru(x, h0)
        logits = self.out(torch.relu(self.fc(y)))
        return logits.view(*logits.shape[:2], self.cfg.bunch, self.cfg.levels), h


class PLCModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.cond = ConditioningNet(cfg)
        self.ar = AutoregressiveNet(cfg)

    def forward(self, mel: torch.Tensor, lost: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits.

        ``mel``, ``lost``: (B, T) frames; ``q``: (B, T * frame_samples) mu-law classes of the
        same audio. Frame ``f`` is predicted with the conditioning of frames ``< f``, so the
        first frame has no prediction: the logits cover samples ``frame_samples ..`` and
        predict ``q[:, frame_samples:]``.
        """
        cfg = self.cfg
        cond, _ = self.cond(mel, lost)                      # (B, T, C): cond[:, t] is for frame t+1
        cond = cond[:, :-1]                                 # frames 1..T-1
        steps_per_frame = cfg.frame_samples // cfg.bunch
        cond_steps = cond.repeat_interleave(steps_per_frame, dim=1)
        bunches = q.view(q.shape[0], -1, cfg.bunch)        # (B, T*spf, bunch)
        prev = bunches[:, steps_per_frame - 1:-1]           # previous bunch of each target step
        logits, _ = self.ar(prev, cond_steps)
        return logits


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

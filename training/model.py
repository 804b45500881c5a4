"""The WaveRNN-style concealment model (torch; training and export only).

Two networks, as in WaveNetEQ:

* :class:`ConditioningNet` reads the log-mel spectrogram of the recent past,
  one 10 ms frame at a time, plus a flag that says the frame was lost (its
  mel is then zero: during a loss the network must extrapolate). Its output
  for frame ``f`` depends on frames ``< f`` only, so at a loss it predicts the
  conditioning of the frames to come.
* :class:`AutoregressiveNet` is a GRU that makes the waveform from its own
  previous output and that conditioning, one *sub-frame* of ``subframe``
  samples (40 = 2.5 ms) per step, as FARGAN (Opus 1.5's PLC) does. Each step
  reads the previous sub-frame, a window of the signal one pitch period back
  (the long-term predictor of speech codecs) and a little noise, all divided
  by the level of the last real audio; it outputs a 5-tap pitch predictor and
  a residual, which together are the next sub-frame. The output is a point
  estimate trained with waveform and multi-resolution spectral losses, not a
  sampled softmax: an under-trained softmax turns uncertainty into broadband
  noise (model v1, see ``plc/assets/MODEL.md``).

Training (``training/train.py``) is what the runtime does at a loss: the GRU is
teacher forced over the last real audio before the loss (and scored on its
one-step predictions there), then runs free on its own output through the
loss and one frame more, scored against the real audio as it would be played
(with the runtime's fade-out).
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
    subframe: int = 40            # samples per autoregressive step (2.5 ms)
    lag_context: int = 2          # pitch window extends this far each side (5 taps)
    ar_hidden: int = 256
    fc_hidden: int = 256
    frame_samples: int = 160
    history_samples: int = 384    # signal the generator keeps for its pitch window
    output_limit: float = 12.0    # soft limit of the normalised output

    @property
    def steps_per_frame(self) -> int:
        return self.frame_samples // self.subframe

    @property
    def lag_window(self) -> int:
        return self.subframe + 2 * self.lag_context

    @property
    def lag_reach(self) -> int:
        """How far past a step's start the pitch window reaches (see ``effective_lag``)."""
        return self.subframe + self.lag_context

    @property
    def ar_input(self) -> int:
        return self.subframe + self.lag_window + self.subframe + self.cond_dim + 2

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
    """Sub-frame GRU: previous sub-frame, pitch window, noise, conditioning -> next sub-frame."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.gru = nn.GRU(cfg.ar_input, cfg.ar_hidden, batch_first=True)
        self.fc = nn.Linear(cfg.ar_hidden + cfg.ar_input, cfg.fc_hidden)
        self.taps = nn.Linear(cfg.fc_hidden, 2 * cfg.lag_context + 1)
        self.residual = nn.Linear(cfg.fc_hidden, cfg.subframe)
        n_taps = 2 * cfg.lag_context + 1
        self.register_buffer("tap_index", torch.arange(n_taps)[:, None] + torch.arange(cfg.subframe)[None, :],
                             persistent=False)
        with torch.no_grad():  # start as "half of one period back": a sensible concealer from step 0
            self.taps.weight.mul_(0.1)
            self.taps.bias.zero_()
            self.taps.bias[cfg.lag_context] = 0.5
            self.residual.weight.mul_(0.1)
            self.residual.bias.zero_()

    def make_input(self, prev: torch.Tensor, lag_win: torch.Tensor, noise: torch.Tensor, cond: torch.Tensor,
                   voicing: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """Per-step input ``(..., ar_input)``.

        ``prev`` (..., subframe) and ``lag_win`` (..., lag_window) are raw samples; ``noise``
        (..., subframe) is standard normal; ``cond`` (..., cond_dim); ``voicing`` and ``gain``
        (..., 1): the pitch correlation and level of the last real audio.
        """
        level = (torch.log10(gain) + 2.0) * 0.5
        return torch.cat([prev / gain, lag_win / gain, noise, cond, voicing, level], dim=-1)

    def output(self, y: torch.Tensor, x: torch.Tensor, lag_win: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """GRU output ``y`` and step input ``x`` -> the sub-frame's samples (..., subframe)."""
        cfg = self.cfg
        f = torch.tanh(self.fc(torch.cat([y, x], dim=-1)))
        taps = self.taps(f).unsqueeze(-2)                               # (..., 1, taps)
        shifted = (lag_win / gain)[..., self.tap_index]                 # (..., taps, subframe)
        pitch = (taps @ shifted).squeeze(-2)                            # the 5-tap pitch predictor
        out = pitch + self.residual(f)
        return cfg.output_limit * torch.tanh(out / cfg.output_limit) * gain

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None):
        """Run the GRU over step inputs ``x`` (B, S, ar_input) -> (outputs (B, S, H), h (1, B, H))."""
        return self.gru(x, h0)

    def free_step(self, buf: torch.Tensor, h: torch.Tensor, lag: torch.Tensor, noise: torch.Tensor,
                  cond: torch.Tensor, voicing: torch.Tensor, gain: torch.Tensor):
        """One free-running step, as training and ``generate.onnx`` both run it.

        ``buf`` (B, history_samples) is the signal made so far (rolling); ``lag`` (B,) the
        effective pitch lag; ``noise`` (B, subframe); ``cond`` (B, C); ``voicing``, ``gain``
        (B, 1). Returns the sub-frame (B, subframe), the new state and the buffer moved on.
        """
        cfg = self.cfg
        win = gather_window(buf, cfg.history_samples - lag - cfg.lag_context, cfg.lag_window)
        x = self.make_input(buf[:, -cfg.subframe:], win, noise, cond, voicing, gain)
        y, h = self(x.unsqueeze(1), h)
        out = self.output(y[:, 0], x, win, gain)
        return out, h, torch.cat([buf[:, cfg.subframe:], out], dim=1)


def gather_window(buf: torch.Tensor, start: torch.Tensor, length: int) -> torch.Tensor:
    """``buf[b, start[b] : start[b] + length]`` for each row -> (B, length)."""
    idx = start.unsqueeze(-1) + torch.arange(length, device=buf.device)
    return torch.gather(buf, 1, idx)


class PLCModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.cond = ConditioningNet(cfg)
        self.ar = AutoregressiveNet(cfg)

    def forward(self, mel: torch.Tensor, lost: torch.Tensor, audio: torch.Tensor, lag: torch.Tensor,
                voicing: torch.Tensor, gain: torch.Tensor, noise: torch.Tensor, context_frames: int,
                warmup_frames: int, generate_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One loss event per example, as the runtime conceals it.

        ``mel``, ``lost`` (B, F): frames; ``audio`` (B, F * frame_samples): the real audio; the
        loss starts at frame ``context_frames``. ``lag`` (B,) int64 is the effective pitch lag,
        ``voicing``, ``gain`` (B,) the pitch correlation and level of the audio before the loss;
        ``noise`` (B, S, subframe) standard normal for the ``S`` warm-up and generated steps.

        Returns ``(teacher_forced, generated)``: the one-step predictions of the
        ``warmup_frames`` frames before the loss (B, warmup_frames * frame_samples) and the
        free-running output of ``generate_frames`` frames from the loss on.
        """
        cfg = self.cfg
        spf = cfg.steps_per_frame
        cond, _ = self.cond(mel, lost)          # cond[:, f] conditions frame f + 1
        voicing, gain = voicing.unsqueeze(-1), gain.unsqueeze(-1)
        start = context_frames * cfg.frame_samples
        n_warm = warmup_frames * spf
        teacher_forced, h = self.warm_up(audio, start, lag, self.warm_up_conditioning(cond, context_frames, warmup_frames),
                                         voicing, gain, noise[:, :n_warm])
        # Free running from the loss on: the pitch window and previous sub-frame come from the
        # signal made so far, kept in a rolling buffer exactly as the runtime keeps it.
        buf = audio[:, start - cfg.history_samples:start]
        generated, _, _ = self.run_free(buf, h, lag, cond[:, context_frames - 1:context_frames - 1 + generate_frames],
                                        voicing, gain, noise[:, n_warm:n_warm + generate_frames * spf])
        return teacher_forced, generated

    def warm_up_conditioning(self, cond: torch.Tensor, context_frames: int, warmup_frames: int) -> torch.Tensor:
        """The conditioning of each warm-up step (B, warmup_frames * steps_per_frame, C).

        ``cond`` (B, F, C) is the conditioning network's output over the frames (``cond[:, f]``
        conditions frame ``f + 1``); the loss starts at frame ``context_frames``.
        """
        spf = self.cfg.steps_per_frame
        frame_of_step = (context_frames - warmup_frames) + torch.arange(warmup_frames * spf, device=cond.device) // spf
        return cond[:, frame_of_step - 1]

    def warm_up(self, audio: torch.Tensor, start: int, lag: torch.Tensor, cond: torch.Tensor, voicing: torch.Tensor,
                gain: torch.Tensor, noise: torch.Tensor, predictions: bool = True):
        """Teacher forcing over the sub-frames just before sample ``start`` of ``audio`` (B, N).

        Every step's input is real audio. ``cond`` (B, S, C) and ``noise`` (B, S, subframe) are per
        step; ``lag`` (B,) int64; ``voicing``, ``gain`` (B, 1). Returns the one-step predictions
        (B, S * subframe; ``None`` unless ``predictions``) and the GRU state after the last step.
        """
        cfg = self.cfg
        sub, (batch, n_warm) = cfg.subframe, cond.shape[:2]
        t = start - n_warm * sub + sub * torch.arange(n_warm, device=audio.device)       # step starts (S,)
        prev = audio[:, (t[:, None] - sub + torch.arange(sub, device=audio.device)).reshape(-1)]
        prev = prev.view(batch, n_warm, sub)
        win_start = t[None, :] - lag[:, None] - cfg.lag_context                       # (B, S)
        idx = win_start.unsqueeze(-1) + torch.arange(cfg.lag_window, device=audio.device)
        lag_win = torch.gather(audio, 1, idx.reshape(batch, -1)).view(batch, n_warm, -1)
        g = gain.unsqueeze(1).expand(-1, n_warm, -1)
        v = voicing.unsqueeze(1).expand(-1, n_warm, -1)
        x = self.ar.make_input(prev, lag_win, noise, cond, v, g)
        y, h = self.ar(x)
        if not predictions:
            return None, h
        return self.ar.output(y, x, lag_win, g).reshape(batch, -1), h

    def run_free(self, buf: torch.Tensor, h: torch.Tensor, lag: torch.Tensor, cond: torch.Tensor,
                 voicing: torch.Tensor, gain: torch.Tensor, noise: torch.Tensor):
        """Free-running generation of ``cond.shape[1]`` frames from the signal ``buf`` (B, history_samples).

        ``cond`` (B, frames, C) is each frame's conditioning, ``noise`` (B, frames * steps_per_frame,
        subframe). Returns the samples (B, frames * frame_samples), the state and the buffer.
        """
        spf = self.cfg.steps_per_frame
        outs = []
        for s in range(noise.shape[1]):
            out, h, buf = self.ar.free_step(buf, h, lag, noise[:, s], cond[:, s // spf], voicing, gain)
            outs.append(out)
        return torch.cat(outs, dim=1), h, buf


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

"""Packet loss models and loss traces.

A trace is a boolean array, one entry per packet, ``True`` = lost. On disk it
is the Interspeech 2022 Audio Deep PLC Challenge format: one line per packet,
``1`` lost, ``0`` received.

Models (``--loss`` specs):

* ``bernoulli:P`` -- independent losses with probability P.
* ``gilbert:P,B`` -- Gilbert-Elliott two-state Markov chain with loss rate P
  and mean burst length B packets: every packet in the bad state is lost, the
  chain leaves the bad state with probability 1/B, and enters it with
  probability P/(B(1-P)), so the stationary loss rate is P.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


#: The longest mean loss burst a spec may ask for, packets (20 s of 20 ms packets).
MAX_MEAN_BURST_PACKETS = 1000.0


class TraceError(ValueError):
    """A loss trace or loss spec is malformed. The message is one line for users."""


@dataclass(frozen=True)
class LossModel:
    """A packet loss process: ``kind`` is ``bernoulli`` or ``gilbert``."""

    kind: str
    loss_rate: float
    mean_burst_packets: float = 1.0

    @property
    def spec(self) -> str:
        if self.kind == "bernoulli":
            return f"bernoulli:{self.loss_rate:g}"
        return f"gilbert:{self.loss_rate:g},{self.mean_burst_packets:g}"

    def generate(self, n_packets: int, rng: np.random.Generator) -> np.ndarray:
        """Draw a trace of ``n_packets`` packets (``True`` = lost)."""
        if n_packets <= 0:
            return np.zeros(0, dtype=bool)
        u = rng.random(n_packets)
        if self.kind == "bernoulli":
            return u < self.loss_rate
        p, b = self.loss_rate, self.mean_burst_packets
        if p <= 0:
            return np.zeros(n_packets, dtype=bool)
        leave_bad = 1.0 / b
        enter_bad = p * leave_bad / (1.0 - p)
        lost = np.empty(n_packets, dtype=bool)
        bad = rng.random() < p  # start in the stationary distribution
        for i in range(n_packets):
            lost[i] = bad
            bad = (u[i] >= leave_bad) if bad else (u[i] < enter_bad)
        return lost


def parse_loss_spec(spec: str) -> LossModel:
    """Parse ``bernoulli:0.1`` or ``gilbert:0.1,3`` into a :class:`LossModel`."""
    kind, _, args = spec.strip().partition(":")
    kind = kind.lower()
    try:
        values = [float(v) for v in args.split(",")] if args else []
    except ValueError:
        raise TraceError(f"bad loss spec {spec!r}: parameters must be numbers") from None
    if kind == "bernoulli" and len(values) == 1:
        model = LossModel("bernoulli", values[0])
    elif kind == "gilbert" and len(values) == 2:
        model = LossModel("gilbert", values[0], values[1])
    else:
        raise TraceError(f"bad loss spec {spec!r}: use bernoulli:RATE or gilbert:RATE,MEAN_BURST_PACKETS")
    if not all(math.isfinite(v) for v in values):
        raise TraceError(f"bad loss spec {spec!r}: parameters must be finite numbers")
    if not 0.0 <= model.loss_rate < 1.0:
        raise TraceError(f"bad loss spec {spec!r}: loss rate must be in [0, 1)")
    if model.kind == "gilbert" and not 1.0 <= model.mean_burst_packets <= MAX_MEAN_BURST_PACKETS:
        raise TraceError(f"bad loss spec {spec!r}: mean burst must be from 1 to {MAX_MEAN_BURST_PACKETS:g} packets")
    if model.kind == "gilbert" and model.loss_rate > model.mean_burst_packets * (1 - model.loss_rate):
        raise TraceError(f"bad loss spec {spec!r}: loss rate too high for that burst length")
    return model


def read_trace(path: str | os.PathLike) -> np.ndarray:
    """Read a trace file (``0``/``1`` per line); raises :class:`TraceError` on any other symbol."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(f"{path}: no such loss trace") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise TraceError(f"{path}: cannot read loss trace ({type(exc).__name__})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise TraceError(f"{path}: loss trace is empty")
    values = np.empty(len(lines), dtype=bool)
    for i, line in enumerate(lines):
        token = line.strip()
        if token not in ("0", "1"):
            raise TraceError(f"{path}:{i + 1}: expected 0 or 1, found {token[:20]!r}")
        values[i] = token == "1"
    return values


def write_trace(path: str | os.PathLike, lost: np.ndarray) -> None:
    """Write a trace in the challenge format."""
    Path(path).write_text("".join("1\n" if v else "0\n" for v in np.asarray(lost, dtype=bool)))


def burst_lengths(lost: np.ndarray) -> np.ndarray:
    """Lengths of the runs of consecutive lost packets."""
    lost = np.asarray(lost, dtype=np.int8)
    edges = np.diff(np.concatenate([[0], lost, [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)

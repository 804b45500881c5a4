"""Network model for ``plc netsim``: when (and whether) each packet arrives.

A :class:`NetworkSpec` is read from a readable SPEC string or a small TOML
file (:func:`parse_network`) and turned into per-packet arrivals, seeded
(:meth:`NetworkSpec.simulate`). Recorded traces are read and written as CSV
with the columns ``seq,send_ms,arrival_ms`` (:func:`read_arrivals_csv`); an
empty ``arrival_ms`` means the packet never arrived, a ``seq`` listed twice
is a duplicated packet.

SPEC syntax: ``key=value`` pairs separated by commas or spaces, optionally
after a preset name, e.g. ``heavy``, ``heavy,seed=3`` or
``delay=40ms jitter=30ms spike=300ms spike_every=10s loss=5% burst=3``.

========================  =============================================================
key (default)             meaning
========================  =============================================================
``delay`` (40 ms)         base one-way delay
``jitter`` (0 ms)         standard deviation of the extra queueing delay per packet (as
                          in netem's ``delay 40ms 30ms``; the extra delay is >= 0)
``dist`` (pareto)         its distribution: ``pareto`` (Lomax, heavy tail), ``lognormal``,
                          ``exponential``, ``uniform``, ``none``
``shape`` (3 / 1)         Pareto tail index (> 2; smaller: heavier tail) / lognormal sigma
``fifo`` (1)              1: the network keeps packet order (a delayed packet holds up
                          the next ones, as a queue does), except reordered packets
``spike`` (0 ms)          delay spike height: the packet sent at a spike waits this
                          long and the ones sent during it queue behind it
``spike_every`` (0 s)     mean time between spikes (Poisson); 0 = none
``spike_at`` ()           spike times in seconds, ``;``-separated (``spike_at=5;20``)
``loss`` (0)              mean loss rate, Gilbert-Elliott (``5%`` or ``0.05``)
``burst`` (1 packet)      mean length of a loss burst (bad-state sojourn)
``loss_good`` (0)         loss probability in the good state (Elliott's k)
``loss_bad`` (1)          loss probability in the bad state (Elliott's h)
``reorder`` (0)           probability that a packet is held back and overtaken
``reorder_delay`` (40ms)  how long a reordered packet is held back (mean)
``dup`` (0)               probability that a packet arrives twice
``drift`` (0)             sender clock drift (``+1%``: the sender's clock runs 1% fast,
                          so 1% more audio arrives per second than is played); |drift| <= 5%
``seed`` (0)              random seed
========================  =============================================================

Limits (:meth:`NetworkSpec.validate`; beyond them a SPEC describes no network): ``delay``,
``jitter`` and ``reorder_delay`` up to 10 s, ``spike`` up to 60 s, ``spike_every`` 0 or at
least 0.1 s, ``burst`` up to 10000 packets, ``shape`` within (2, 100] for Pareto and
(0.01, 3] for lognormal, ``seed`` from 0 to 2**32 - 1.

Presets: ``clean`` (40 ms, no jitter), ``heavy`` (the README's heavy-tailed
network: 40 ms base, 30 ms Pareto jitter, 300 ms spikes every 10 s on
average, 5% loss in bursts of 3, 0.5% reordering and duplication),
``spike500`` (one 500 ms spike at 5 s over 5 ms of jitter), ``wifi``
(20 ms base, 15 ms jitter, 1% loss).
"""

from __future__ import annotations

import csv
import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

import numpy as np


class NetworkError(ValueError):
    """A malformed SPEC, TOML file or arrivals CSV (one line for the user)."""


DISTRIBUTIONS = ("pareto", "lognormal", "exponential", "uniform", "none")
#: The sender's clock drift a SPEC may set (fraction).
MAX_DRIFT = 0.05
#: Limits of the times a SPEC may set, ms: above them it no longer describes a network.
MAX_DELAY_MS = 10_000.0
MAX_SPIKE_MS = 60_000.0
#: Packets arriving later than this after the last one could have been sent (at the slowest
#: sender clock) are not waited for by ``plc netsim``, ms: above any delay plus spike a SPEC sets.
MAX_TRANSIT_MS = 75_000.0
#: Spikes come at most this often on average, s (more often is jitter, not spikes).
MIN_SPIKE_EVERY_S = 0.1
#: The longest mean loss burst, packets.
MAX_BURST = 10_000.0
#: Shape ranges: Pareto tail index (a variance needs > 2), lognormal sigma.
SHAPE_RANGE = {"pareto": (2.0, 100.0), "lognormal": (0.01, 3.0)}

PRESETS = {
    "clean": "delay=40ms",
    "heavy": "delay=40ms jitter=30ms dist=pareto spike=300ms spike_every=10s loss=5% burst=3 "
             "reorder=0.5% dup=0.5%",
    "spike500": "delay=40ms jitter=5ms dist=exponential spike=500ms spike_at=5",
    "wifi": "delay=20ms jitter=15ms dist=pareto loss=1% burst=1.5",
}


@dataclass
class Arrival:
    """One packet's fate: sent at ``send_ms``, arrived at ``arrival_ms`` (None: never)."""

    seq: int
    send_ms: float
    arrival_ms: Optional[float]


@dataclass
class NetworkSpec:
    """The network model's parameters (see the module docstring); times in ms."""

    delay: float = 40.0
    jitter: float = 0.0
    dist: str = "pareto"
    shape: Optional[float] = None
    fifo: bool = True
    spike: float = 0.0
    spike_every: float = 0.0          # seconds
    spike_at: tuple[float, ...] = ()  # seconds
    loss: float = 0.0
    burst: float = 1.0
    loss_good: float = 0.0
    loss_bad: float = 1.0
    reorder: float = 0.0
    reorder_delay: float = 40.0
    dup: float = 0.0
    drift: float = 0.0
    seed: int = 0
    #: Spike (start send time ms, height ms) of the last :meth:`simulate`.
    spikes: list[tuple[float, float]] = field(default_factory=list, compare=False, repr=False)

    def validate(self) -> "NetworkSpec":
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise NetworkError(msg)

        for name, limit in (("delay", MAX_DELAY_MS), ("jitter", MAX_DELAY_MS), ("reorder_delay", MAX_DELAY_MS),
                            ("spike", MAX_SPIKE_MS)):
            v = getattr(self, name)
            need(math.isfinite(v) and 0 <= v <= limit,
                 f"network {name} must be a time from 0 to {limit / 1000:g} s, got {v:g} ms")
        need(self.spike_every == 0 or (math.isfinite(self.spike_every) and MIN_SPIKE_EVERY_S <= self.spike_every
                                       <= 1e6),
             f"network spike_every must be 0 (no spikes) or from {MIN_SPIKE_EVERY_S:g} s to 1e6 s, "
             f"got {self.spike_every:g} s")
        need(self.dist in DISTRIBUTIONS, f"network dist must be one of {', '.join(DISTRIBUTIONS)}, got {self.dist!r}")
        if self.shape is not None:
            lo, hi = SHAPE_RANGE.get(self.dist, (0.0, math.inf))
            need(math.isfinite(self.shape) and lo < self.shape <= hi,
                 f"network shape for {self.dist} must be above {lo:g}" + (f" and at most {hi:g}" if hi < math.inf else "")
                 + f", got {self.shape:g}")
        for name in ("loss", "loss_good", "loss_bad", "reorder", "dup"):
            v = getattr(self, name)
            need(0.0 <= v <= 1.0, f"network {name} must be a probability (0..1 or 0%..100%), got {v}")
        need(self.loss < 1.0, "network loss must be below 100%")
        need(1.0 <= self.burst <= MAX_BURST,
             f"network burst is a mean burst length in packets (1 to {MAX_BURST:g}), got {self.burst:g}")
        need(abs(self.drift) <= MAX_DRIFT, f"network drift must be within -5%..+5%, got {self.drift:+.2%}")
        need(all(math.isfinite(t) and t >= 0 for t in self.spike_at), "network spike_at times must be >= 0 s")
        need(isinstance(self.seed, int) and 0 <= self.seed < 2 ** 32,
             f"network seed must be an integer from 0 to {2 ** 32 - 1}, got {self.seed}")
        return self

    # ----------------------------------------------------------- simulate
    def simulate(self, n_packets: int, packet_ms: float = 20.0) -> list[Arrival]:
        """Arrivals of ``n_packets`` packets of ``packet_ms`` media each (duplicates included).

        The sender's clock runs ``1 + drift`` times as fast as real time, so
        packet ``k`` leaves at ``k * packet_ms / (1 + drift)`` ms.
        """
        self.validate()
        rng = np.random.default_rng(self.seed)
        send = np.arange(n_packets) * packet_ms / (1.0 + self.drift)
        delay = np.full(n_packets, self.delay, dtype=np.float64) + self._jitter(rng, n_packets)
        # delay spikes: the packet sent at the spike start waits `spike` ms, later ones queue behind it
        self.spikes = []
        if self.spike > 0 and n_packets:
            times = [t * 1000.0 for t in self.spike_at]
            if self.spike_every > 0:
                t = rng.exponential(self.spike_every * 1000.0)
                while t < send[-1]:
                    times.append(t)
                    t += self.spike + rng.exponential(self.spike_every * 1000.0)
            for t0 in sorted(times):
                inside = (send >= t0) & (send < t0 + self.spike)
                if np.any(inside):
                    delay[inside] += self.spike - (send[inside] - t0)
                    self.spikes.append((float(t0), float(self.spike)))
        reordered = rng.random(n_packets) < self.reorder
        hold = rng.exponential(self.reorder_delay, n_packets) * reordered
        arrival = send + delay
        if self.fifo:  # a queue: no packet overtakes the one before it (reordered ones excepted)
            last = -np.inf
            for k in range(n_packets):
                if not reordered[k]:
                    arrival[k] = last = max(arrival[k], last)
        arrival = arrival + hold
        lost = self._losses(rng, n_packets)
        dup = rng.random(n_packets) < self.dup
        dup_extra = rng.uniform(0.0, 10.0, n_packets)
        out = []
        for k in range(n_packets):
            a = None if lost[k] else float(arrival[k])
            out.append(Arrival(k, float(send[k]), a))
            if a is not None and dup[k]:
                out.append(Arrival(k, float(send[k]), a + float(dup_extra[k])))
        return out

    def _jitter(self, rng: np.random.Generator, n: int) -> np.ndarray:
        sd = self.jitter  # every distribution is scaled to this standard deviation
        if sd <= 0 or self.dist == "none":
            return np.zeros(n)
        if self.dist == "pareto":  # Lomax(a, scale): sd = scale * sqrt(a / (a - 2)) / (a - 1)
            a = self.shape or 3.0
            return rng.pareto(a, n) * sd * (a - 1.0) / math.sqrt(a / (a - 2.0))
        if self.dist == "lognormal":  # sd^2 = (e^(s^2) - 1) e^(2 mu + s^2)
            s = self.shape or 1.0
            mu = math.log(sd / math.sqrt(math.exp(s * s) - 1.0)) - s * s / 2.0
            return rng.lognormal(mu, s, n)
        if self.dist == "exponential":
            return rng.exponential(sd, n)
        return rng.uniform(0.0, sd * math.sqrt(12.0), n)

    def _losses(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Gilbert-Elliott: bad-state sojourn mean ``burst`` packets, stationary bad share set so
        that the mean loss rate is ``loss`` (with the default k=0, h=1)."""
        if self.loss <= 0 or n == 0:
            return np.zeros(n, dtype=bool)
        h, k = self.loss_bad, self.loss_good
        if h <= k:
            return rng.random(n) < self.loss
        p_bad = min(max((self.loss - k) / (h - k), 0.0), 0.999)
        r = 1.0 / self.burst                   # bad -> good
        p = r * p_bad / (1.0 - p_bad)          # good -> bad
        p = min(p, 1.0)
        u = rng.random(n)
        v = rng.random(n)
        lost = np.zeros(n, dtype=bool)
        bad = rng.random() < p_bad
        for i in range(n):
            lost[i] = v[i] < (h if bad else k)
            bad = (u[i] >= r) if bad else (u[i] < p)
        return lost


# ------------------------------------------------------------------- parsing
_PROB_KEYS = {"loss", "loss_good", "loss_bad", "reorder", "dup", "drift"}
_MS_KEYS = {"delay", "jitter", "spike", "reorder_delay"}
_S_KEYS = {"spike_every"}
_KEYS = {f.name for f in fields(NetworkSpec)} - {"spikes"}


def _number(key: str, text: str, unit: str) -> float:
    """Parse ``text`` as a number in ``unit`` (ms, s or prob), accepting ms/s/% suffixes."""
    m = re.fullmatch(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(ms|s|%)?\s*", text, re.IGNORECASE)
    if not m:
        raise NetworkError(f"network {key}={text!r}: not a number")
    value, suffix = float(m.group(1)), (m.group(2) or "").lower()
    if unit == "prob":
        if suffix == "%":
            return value / 100.0
        if suffix:
            raise NetworkError(f"network {key}={text!r}: a probability takes % or nothing")
        if abs(value) > 1.0:
            raise NetworkError(f"network {key}={text!r}: write a probability as 0.05 or 5%")
        return value
    if suffix == "%":
        raise NetworkError(f"network {key}={text!r}: a time takes ms or s")
    if unit == "ms":
        return value * 1000.0 if suffix == "s" else value
    return value / 1000.0 if suffix == "ms" else value  # seconds


def _set(spec: NetworkSpec, key: str, value) -> None:
    key = key.strip().lower().replace("-", "_")
    if key not in _KEYS:
        raise NetworkError(f"unknown network parameter {key!r}; known: {', '.join(sorted(_KEYS))}")
    text = str(value).strip() if not isinstance(value, (list, tuple)) else value
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key in _PROB_KEYS:
        if numeric and abs(value) > 1.0:
            raise NetworkError(f"network {key}={value}: write a probability as 0.05 or '5%'")
        setattr(spec, key, float(value) if numeric else _number(key, str(text), "prob"))
    elif key in _MS_KEYS:
        setattr(spec, key, float(value) if numeric else _number(key, text, "ms"))
    elif key in _S_KEYS:
        setattr(spec, key, float(value) if numeric else _number(key, text, "s"))
    elif key == "spike_at":
        items = value if isinstance(value, (list, tuple)) else [t for t in re.split(r"[;+]", text) if t.strip()]
        spec.spike_at = tuple(float(t) if isinstance(t, (int, float)) else _number(key, str(t), "s") for t in items)
    elif key == "dist":
        spec.dist = str(text).lower()
    elif key in ("burst", "shape"):
        try:
            setattr(spec, key, float(text))
        except ValueError:
            raise NetworkError(f"network {key}={text!r}: not a number") from None
    elif key == "fifo":
        if str(text).lower() in ("1", "true", "yes", "on"):
            spec.fifo = True
        elif str(text).lower() in ("0", "false", "no", "off"):
            spec.fifo = False
        else:
            raise NetworkError(f"network fifo={text!r}: use 1 or 0")
    elif key == "seed":
        try:
            spec.seed = int(str(text))
        except ValueError:
            raise NetworkError(f"network seed={text!r}: not an integer") from None


def parse_network(text: str, seed: Optional[int] = None) -> NetworkSpec:
    """A :class:`NetworkSpec` from a SPEC string, a preset name or a ``.toml`` file path.

    ``seed`` (if given) overrides the spec's own. Raises :class:`NetworkError`.
    """
    text = (text or "").strip()
    if not text:
        raise NetworkError("empty network SPEC; e.g. --network 'delay=40ms jitter=30ms loss=5%' or --network heavy")
    spec = NetworkSpec()
    if text.lower().endswith(".toml"):
        path = Path(text)
        if not path.is_file():
            raise NetworkError(f"{path}: no such network TOML file")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise NetworkError(f"{path}: not valid TOML ({' '.join(str(exc).split())})") from None
        if isinstance(data.get("network"), dict):
            data = data["network"]
        preset = data.pop("preset", None)
        if preset is not None:
            spec = parse_network(str(preset))
        for key, value in data.items():
            if isinstance(value, dict):
                raise NetworkError(f"{path}: unexpected table [{key}]")
            _set(spec, key, value)
    else:
        tokens = [t for t in re.split(r"[,\s]+", text) if t]
        for i, tok in enumerate(tokens):
            if "=" not in tok:
                if i == 0 and tok.lower() in PRESETS:
                    spec = parse_network(PRESETS[tok.lower()])
                    continue
                raise NetworkError(f"network SPEC item {tok!r} is not key=value (presets: {', '.join(PRESETS)})")
            key, _, value = tok.partition("=")
            if not value:
                raise NetworkError(f"network SPEC item {tok!r} has no value")
            _set(spec, key, value)
    if seed is not None:
        spec.seed = int(seed)
    return spec.validate()


# --------------------------------------------------------------------- CSV
def read_arrivals_csv(path: str | Path) -> list[Arrival]:
    """Read a ``seq,send_ms,arrival_ms`` trace. Raises :class:`NetworkError` with the line at fault."""
    path = Path(path)
    if not path.is_file():
        raise NetworkError(f"{path}: no such arrivals CSV file")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise NetworkError(f"{path}: not a text CSV file") from None
    rows = list(csv.reader(text.splitlines()))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise NetworkError(f"{path}: empty arrivals CSV (expected a seq,send_ms,arrival_ms header)")
    header = [c.strip().lower() for c in rows[0]]
    try:
        i_seq, i_send, i_arr = header.index("seq"), header.index("send_ms"), header.index("arrival_ms")
    except ValueError:
        raise NetworkError(f"{path}: the header must name the columns seq,send_ms,arrival_ms, "
                           f"got {','.join(rows[0])}") from None
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) < len(header):
            row = row + [""] * (len(header) - len(row))
        try:
            seq = int(row[i_seq].strip())
            send = float(row[i_send].strip())
            arr_text = row[i_arr].strip()
            arrival = float(arr_text) if arr_text else None
        except ValueError:
            raise NetworkError(f"{path}:{line}: expected an integer seq and numbers in ms, "
                               f"got {','.join(row)}") from None
        if seq < 0 or not math.isfinite(send) or (arrival is not None and not math.isfinite(arrival)):
            raise NetworkError(f"{path}:{line}: seq must be >= 0 and times finite")
        out.append(Arrival(seq, send, arrival))
    if not out:
        raise NetworkError(f"{path}: no packets in the arrivals CSV")
    return out


def write_arrivals_csv(path: str | Path, arrivals: list[Arrival]) -> None:
    """Write arrivals as ``seq,send_ms,arrival_ms`` (empty arrival = lost)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seq", "send_ms", "arrival_ms"])
        for a in arrivals:
            w.writerow([a.seq, f"{a.send_ms:.3f}", "" if a.arrival_ms is None else f"{a.arrival_ms:.3f}"])

"""Aggregate per-clip results: means with 95% bootstrap intervals and paired differences.

WER is aggregated the way ASR papers do (total word errors over total reference
words), and bootstrapped over clips like the other metrics.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from typing import Iterable, Optional

import numpy as np

from .metrics import signal_metric_names
from .runner import split_variant

BASELINE = "neteq"
#: Every method is paired against each of these that the condition has: WebRTC's NetEQ
#: concealment, and libopus' own PLC (Opus pipeline only).
BASELINES = (BASELINE, "opus")


def paired_scores(scores: np.ndarray, ref_index: int) -> list[dict]:
    """Means and paired differences of per-clip (PLCMOS, PESQ) ``scores`` shaped (clips, variants, 2).

    For each variant: its mean PLCMOS and PESQ, and its per-clip differences to variant
    ``ref_index`` on the same clips: mean PLCMOS difference with the half-width of a normal 95%
    interval, and mean PESQ difference. For quick paired sweeps; ``plc eval`` bootstraps.
    """
    ref = scores[:, ref_index]
    out = []
    for k in range(scores.shape[1]):
        d = scores[:, k, 0] - ref[:, 0]
        half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        out.append({"plcmos": float(scores[:, k, 0].mean()), "pesq": float(scores[:, k, 1].mean()),
                    "d_plcmos": float(d.mean()), "d_plcmos_half95": float(half),
                    "d_pesq": float((scores[:, k, 1] - ref[:, 1]).mean())})
    return out


def paired_line(name: str, r: dict, ref_name: str, note: str = "") -> str:
    """One printed line of a quick sweep: ``name`` (padded by the caller), then a
    :func:`paired_scores` row ``r`` against ``ref_name``, and ``note`` in brackets if given."""
    line = (f"{name} PLCMOS {r['plcmos']:.3f}  PESQ {r['pesq']:.3f}  | vs {ref_name}: dPLCMOS "
            f"{r['d_plcmos']:+.3f} +-{r['d_plcmos_half95']:.3f}  dPESQ {r['d_pesq']:+.3f}")
    return f"{line}  ({note})" if note else line


def _rows_by(rows: Iterable[dict], *keys: str) -> dict:
    groups: dict = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in keys)].append(r)
    return groups


def _finite(values: Iterable) -> np.ndarray:
    arr = np.array([np.nan if v is None or v == "" else float(v) for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def bootstrap_mean(values: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> dict:
    """Mean and 95% percentile-bootstrap interval of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return {"mean": None, "ci95": [None, None], "n": 0}
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(values.mean()), "ci95": [float(lo), float(hi)], "n": int(len(values))}


def bootstrap_wer(errors: np.ndarray, words: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> dict:
    """Corpus WER (sum of errors / sum of words) with a 95% bootstrap interval over clips."""
    if len(words) == 0 or words.sum() == 0:
        return {"mean": None, "ci95": [None, None], "n": 0}
    idx = rng.integers(0, len(words), size=(n_boot, len(words)))
    wers = errors[idx].sum(axis=1) / np.maximum(words[idx].sum(axis=1), 1)
    lo, hi = np.percentile(wers, [2.5, 97.5])
    return {"mean": float(errors.sum() / words.sum()), "ci95": [float(lo), float(hi)], "n": int(len(words))}


def _wer_arrays(rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [r for r in rows if r.get("ref_words") not in (None, "", 0, "0")]
    errors = np.array([int(r["substitutions"]) + int(r["deletions"]) + int(r["insertions"]) for r in rows], float)
    words = np.array([int(r["ref_words"]) for r in rows], float)
    inserts = np.array([int(r["insertions"]) for r in rows], float)
    return errors, words, inserts


def summarize(rows: list[dict], baselines: tuple[str, ...] = BASELINES, seed: int = 0) -> dict:
    """``{condition: {method: {metric: {mean, ci95, n}, ...}}}`` plus paired differences.

    Each method gets ``diff_vs_<b>`` for every baseline ``b`` of ``baselines`` present in
    the condition (not itself); a ``METHOD+fec`` variant (``plc eval --fec``) also gets
    ``diff_vs_nofec``, paired against ``METHOD``, and Opus rows add up ``lost_packets``,
    ``fec_recovered`` and the mean ``payload_kbps``. With rows of more than one corpus, ``by_corpus`` holds the
    same summary per corpus. Every statistic draws its bootstrap from its own RNG, seeded
    from ``seed`` and what it is, so a figure does not depend on which other methods ran.
    """
    rows = [r for r in rows if not r.get("error")]
    out: dict = {"baseline": baselines[0], "baselines": list(baselines),
                 "conditions": _summarize_conditions(rows, baselines, seed)}
    corpora = sorted({r.get("corpus") or "" for r in rows})
    if len(corpora) > 1:
        out["by_corpus"] = {c: _summarize_conditions([r for r in rows if (r.get("corpus") or "") == c],
                                                     baselines, seed) for c in corpora}
    return out


def _rng(seed: int, *key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("|".join(key).encode())])


def _summarize_conditions(rows: list[dict], baselines: tuple[str, ...], seed: int) -> dict:
    conditions: dict = {}
    for (condition,), cond_rows in sorted(_rows_by(rows, "condition").items()):
        methods = _rows_by(cond_rows, "method")
        cond_out: dict = {}
        for (method,), m_rows in methods.items():
            entry: dict = {}
            for metric in signal_metric_names():
                entry[metric] = bootstrap_mean(_finite(r.get(metric) for r in m_rows),
                                               _rng(seed, condition, method, metric))
            errors, words, inserts = _wer_arrays(m_rows)
            entry["wer"] = bootstrap_wer(errors, words, _rng(seed, condition, method, "wer"))
            entry["insertions"] = int(inserts.sum())
            entry["clips"] = len(m_rows)
            for base in baselines:
                base_by_clip = {r["clip"]: r for r in methods.get((base,), [])}
                if base_by_clip and method != base:
                    entry["diff_vs_" + base] = _paired(m_rows, base_by_clip, _rng(seed, condition, method, base))
            plain, fec = split_variant(method)
            if fec and (plain,) in methods:
                entry["diff_vs_nofec"] = _paired(m_rows, {r["clip"]: r for r in methods[(plain,)]},
                                                 _rng(seed, condition, method, "nofec"))
            entry.update(_coding_totals(m_rows))
            cond_out[method] = entry
        conditions[condition] = cond_out
    return conditions


def _coding_totals(rows: list[dict]) -> dict:
    """Packets lost and recovered from FEC (sums) and the mean payload bitrate, where rows have them."""
    out: dict = {}
    for key in ("lost_packets", "fec_recovered"):
        values = _finite(r.get(key) for r in rows)
        if len(values):
            out[key] = int(values.sum())
    kbps = _finite(r.get("payload_kbps") for r in rows)
    if len(kbps):
        out["payload_kbps"] = float(kbps.mean())
    return out


def _paired(m_rows: list[dict], base_by_clip: dict, rng: np.random.Generator) -> dict:
    """Per-clip paired differences (method - baseline) with bootstrap intervals."""
    pairs = [(r, base_by_clip[r["clip"]]) for r in m_rows if r["clip"] in base_by_clip]
    diff: dict = {}
    for metric in signal_metric_names():
        d = _finite(float(a[metric]) - float(b[metric]) if _ok(a[metric]) and _ok(b[metric]) else np.nan
                    for a, b in pairs)
        diff[metric] = bootstrap_mean(d, rng)
    ea, wa, _ = _wer_arrays([a for a, _ in pairs])
    eb, wb, _ = _wer_arrays([b for _, b in pairs])
    if len(ea) and len(ea) == len(eb) and wa.sum() > 0:
        idx = rng.integers(0, len(ea), size=(2000, len(ea)))
        d = (ea[idx].sum(1) - eb[idx].sum(1)) / wa[idx].sum(1).clip(min=1)
        lo, hi = np.percentile(d, [2.5, 97.5])
        diff["wer"] = {"mean": float((ea.sum() - eb.sum()) / wa.sum()), "ci95": [float(lo), float(hi)],
                       "n": int(len(ea))}
    return diff


def _ok(v) -> bool:
    try:
        return v is not None and v != "" and np.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def fmt_ci(entry: Optional[dict], digits: int = 2, percent: bool = False) -> str:
    """``mean [lo, hi]`` for tables; an em dash when there is no data."""
    if not entry or entry.get("mean") is None:
        return "—"
    k = 100.0 if percent else 1.0
    m, (lo, hi) = entry["mean"] * k, entry["ci95"]
    return f"{m:.{digits}f} [{lo * k:.{digits}f}, {hi * k:.{digits}f}]"

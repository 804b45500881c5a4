"""The evaluation report: results.csv, summary.json, report.md and its plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Optional

import numpy as np

from .metrics import HEADLINE_METRICS, SIGNAL_METRICS, WER_LABEL, signal_metric
from .runner import FEC_SUFFIX, split_variant
from .summary import fmt_ci

RESULT_COLUMNS = [
    "clip", "corpus", "condition", "method", "codec", "loss_rate", "max_burst", *(m.name for m in SIGNAL_METRICS),
    "wer", "substitutions", "deletions", "insertions", "hits", "ref_words", "hypothesis", "fallback_frames",
    "delay_ms", "lost_packets", "fec_recovered", "payload_kbps", "error",
]
METRIC_LABELS = {m.name: m.label for m in SIGNAL_METRICS} | {"wer": WER_LABEL}


def write_results_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in sorted(rows, key=lambda r: (r["condition"], r["method"], r["clip"])):
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in RESULT_COLUMNS})


def write_summary_json(path: Path, summary: dict) -> None:
    path.write_text(json.dumps(summary, indent=2) + "\n")


def method_order(methods: list[str]) -> list[str]:
    """Reference first, then the classic baselines, then the rest in given order; a ``+fec``
    variant right after its method."""
    preferred = ["reference", "zero", "repeat", "g711", "neteq", "opus", "neural"]
    plain = list(dict.fromkeys(split_variant(m)[0] for m in methods))
    ordered = [m for m in preferred if m in plain] + [m for m in plain if m not in preferred]
    return [v for m in ordered for v in (m, m + FEC_SUFFIX) if v in methods]


def fec_table(cond: dict) -> str:
    """Each method with and without in-band FEC (``plc eval --fec``) in one condition: PLCMOS
    and PESQ, their paired differences, the losses FEC recovered and the coded bitrates."""
    lines = ["| method | PLCMOS without FEC | PLCMOS with FEC | Δ PLCMOS, FEC − none (95%) | "
             "Δ PESQ (95%) | lost packets recovered by FEC | kbit/s without → with FEC |",
             "|" + "---|" * 7]
    for method in method_order(list(cond)):
        plain, fec = split_variant(method)
        if not fec or plain not in cond:
            continue
        e, p = cond[method], cond[plain]
        d = e.get("diff_vs_nofec", {})
        lost, got = e.get("lost_packets"), e.get("fec_recovered")
        share = f"{got} of {lost} ({100.0 * got / lost:.0f}%)" if lost and got is not None else "—"
        rate = (f"{p['payload_kbps']:.1f} → {e['payload_kbps']:.1f}"
                if "payload_kbps" in p and "payload_kbps" in e else "—")
        lines.append(f"| {plain} | {fmt_ci(p['plcmos'])} | {fmt_ci(e['plcmos'])} | {fmt_ci(d.get('plcmos'))} | "
                     f"{fmt_ci(d.get('pesq'))} | {share} | {rate} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _diff_header(bases: list[str]) -> str:
    return " | ".join(" | ".join(f"Δ{signal_metric(m).short} vs {b}" for m in HEADLINE_METRICS) for b in bases)


def _diff_cells(entry: dict, bases: list[str]) -> str:
    """The paired differences of one method's ``entry`` to each baseline, on the headline metrics."""
    return " | ".join(" | ".join(fmt_ci(entry.get("diff_vs_" + b, {}).get(m)) for m in HEADLINE_METRICS)
                      for b in bases)


def _metric_cells(entry: dict, metrics) -> str:
    """One method's metrics with their intervals, then its WER."""
    return " | ".join([fmt_ci(entry[m.name], m.digits) for m in metrics] + [fmt_ci(entry["wer"], 1, percent=True)])


def baselines_in(summary: dict, cond: dict) -> list[str]:
    """The baselines of ``summary`` that condition ``cond`` (``{method: entry}``) was paired against."""
    return [b for b in summary.get("baselines", [summary["baseline"]])
            if any("diff_vs_" + b in e for e in cond.values())]


def markdown_table(summary: dict, condition: str) -> str:
    """One condition's table: metrics with 95% intervals and paired differences to each baseline."""
    cond = summary["conditions"][condition]
    bases = baselines_in(summary, cond) or [summary["baseline"]]
    labels = [m.label for m in SIGNAL_METRICS] + [WER_LABEL]
    header = f"| method | {' | '.join(labels)} | inserted words | " + _diff_header(bases) + " |"
    lines = [header, "|" + "---|" * (2 + len(labels) + len(HEADLINE_METRICS) * len(bases))]
    for method in method_order(list(cond)):
        e = cond[method]
        lines.append(f"| {method} | {_metric_cells(e, SIGNAL_METRICS)} | {e['insertions']} | {_diff_cells(e, bases)} |")
    return "\n".join(lines)


def corpus_table(summary: dict, condition: str) -> str:
    """Per corpus, one condition: each method's PLCMOS, PESQ and WER and its paired PLCMOS
    and PESQ differences to each baseline (a domain where a method loses shows here)."""
    by_corpus = summary.get("by_corpus", {})
    conds = {c: v[condition] for c, v in by_corpus.items() if condition in v}
    bases = baselines_in(summary, {(c, m): e for c, cond in conds.items() for m, e in cond.items()})
    headline = [signal_metric(m) for m in HEADLINE_METRICS]
    labels = [m.label for m in headline] + [WER_LABEL]
    header = f"| corpus | clips | method | {' | '.join(labels)} | " + _diff_header(bases) + " |"
    lines = [header, "|" + "---|" * (3 + len(labels) + len(HEADLINE_METRICS) * len(bases))]
    for corpus, cond in conds.items():
        for method in method_order(list(cond)):
            e = cond[method]
            lines.append(f"| {corpus or '—'} | {e['clips']} | {method} | {_metric_cells(e, headline)} | "
                         f"{_diff_cells(e, bases)} |")
    return "\n".join(lines)


def plot_metrics(summary: dict, path: Path) -> None:
    """Bars of each metric by method, one group per condition, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = [c for c in summary["conditions"] if c != "none"] or list(summary["conditions"])
    methods = method_order(sorted({m for c in conditions for m in summary["conditions"][c]}))
    metrics = [m.name for m in SIGNAL_METRICS] + ["wer"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6))
    width = 0.8 / max(1, len(methods))
    colors = plt.get_cmap("tab10")
    for ax, metric in zip(axes, metrics):
        for j, method in enumerate(methods):
            means, errs = [], [[], []]
            for c in conditions:
                e = summary["conditions"][c].get(method, {}).get(metric, {})
                k = 100.0 if metric == "wer" else 1.0
                m = e.get("mean")
                means.append(np.nan if m is None else m * k)
                lo, hi = e.get("ci95", [None, None])
                errs[0].append(0 if m is None or lo is None else (m - lo) * k)
                errs[1].append(0 if m is None or hi is None else (hi - m) * k)
            x = np.arange(len(conditions)) + (j - (len(methods) - 1) / 2) * width
            ax.bar(x, means, width, yerr=errs, capsize=2, label=method, color=colors(j % 10))
        ax.set_xticks(np.arange(len(conditions)))
        ax.set_xticklabels(conditions, rotation=15, fontsize=8)
        ax.set_title(METRIC_LABELS[metric])
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_spectrograms(signals: dict[str, np.ndarray], lost: np.ndarray, sample_rate: int, packet_ms: int,
                      path: Path, title: str, window_s: tuple[float, float]) -> None:
    """Spectrograms of the same stretch of one clip for every method; lost packets shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import spectrogram

    names = list(signals)
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.7 * len(names) + 0.6), sharex=True)
    axes = np.atleast_1d(axes)
    t0, t1 = window_s
    specs = {}
    for name in names:
        x = signals[name][int(t0 * sample_rate):int(t1 * sample_rate)]
        f, t, s = spectrogram(x, fs=sample_rate, nperseg=320, noverlap=240)
        specs[name] = 10 * np.log10(s + 1e-12)
    vmax = float(np.percentile(specs[names[0]], 99.5))  # the first signal (the reference) sets the scale
    for ax, name in zip(axes, names):
        ax.pcolormesh(t + t0, f / 1000, specs[name], shading="auto", vmin=vmax - 70, vmax=vmax, cmap="magma")
        for p in np.flatnonzero(lost):
            a, b = p * packet_ms / 1000, (p + 1) * packet_ms / 1000
            if b > t0 and a < t1:
                ax.axvspan(max(a, t0), min(b, t1), ymin=0.93, ymax=1.0, color="cyan", alpha=0.9)
        ax.set_ylabel(f"{name}\nkHz", fontsize=8)
    axes[-1].set_xlabel("time (s); cyan marks = lost packets")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report_md(path: Path, summary: dict, args_line: str, asr_backend: Optional[str], n_clips: int,
                    images: list[str], wall_s: float, notes: Optional[list[str]] = None) -> str:
    """Write report.md; returns the tables as Markdown (also printed by the CLI)."""
    tables = []
    for condition in summary["conditions"]:
        if condition == "none":
            continue
        tables.append(f"### {condition}\n\n" + markdown_table(summary, condition))
        fec = fec_table(summary["conditions"][condition])
        if fec:
            tables.append(f"#### {condition}: with and without Opus in-band FEC\n\n" + fec)
        if summary.get("by_corpus"):
            tables.append(f"#### {condition}, per corpus\n\n" + corpus_table(summary, condition))
    if "none" in summary["conditions"]:
        for ref in ("reference", "reference" + FEC_SUFFIX):
            e = summary["conditions"]["none"].get(ref)
            if e is None:
                continue
            scores = [f"{m.label} {fmt_ci(e.get(m.name), m.digits)}" for m in SIGNAL_METRICS]
            tables.append(
                f"### no loss ({ref}, the codec alone{' with in-band FEC' if ref != 'reference' else ''})\n\n"
                + ", ".join(scores + [f"WER {fmt_ci(e.get('wer'), 1, percent=True)} %"])
                + (f"; {e['payload_kbps']:.1f} kbit/s" if "payload_kbps" in e else "")
                + (f"; Δ PLCMOS against no FEC {fmt_ci(e['diff_vs_nofec']['plcmos'])}, Δ PESQ "
                   f"{fmt_ci(e['diff_vs_nofec']['pesq'])}" if "diff_vs_nofec" in e else ""))
    body = "\n\n".join(tables)
    text = (
        "# PLC evaluation report\n\n"
        f"`{args_line}`\n\n"
        f"{n_clips} clips; ASR: {asr_backend or 'off'}; wall time {wall_s:.0f} s. Values are means with 95% "
        "bootstrap intervals over clips; Δ columns are paired per-clip differences to each baseline on the "
        "same loss traces (or the same network). WER is corpus-level (all word errors / all reference words) over "
        "clips with a transcript."
        + "".join(" " + n for n in notes or [])
        + (f" {summary['reused_rows']} rows were reused from {', '.join(f'`{p}`' for p in summary['reused_from'])} "
           "(same seeds, same code for those methods) instead of recomputed." if summary.get("reused_rows") else "")
        + (f" **{summary['failed_rows']} rows failed** and are left out of every figure: their reasons are in "
           "the `error` column of results.csv." if summary.get("failed_rows") else "")
        + "\n\n"
        + body + "\n\n## Plots\n\n" + "\n\n".join(f"![{Path(i).stem}]({i})" for i in images) + "\n"
    )
    path.write_text(text)
    return body

"""The headline of several ``plc eval`` runs: one method's paired differences per path and condition.

``python -m eval.headline RESULTS.csv ... [--method neural] [--out FILE.md]`` pools the rows of
the runs (PCM, Opus, jitter buffer and live-call conditions, any manifests), labels each
condition with its path (``PCM``, ``Opus``, ``jitter buffer (Opus)``, ``live call``), and
writes Markdown tables of the method's paired differences to ``opus`` (libopus' PLC), ``neteq``
and ``g711`` (where the condition has them) with 95% bootstrap intervals
(:func:`eval.summary.summarize`): pooled over every clip, then per corpus, so a domain where the
method loses shows.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path
from typing import Optional

from plc.codecs import get_codec

from .live_call import PREFIX as LIVE_PREFIX
from .network_eval import PREFIX as NETWORK_PREFIX
from .runner import NO_LOSS
from .summary import fmt_ci, summarize

#: What the method is paired against, by default: libopus' PLC (Opus paths), WebRTC's NetEQ, and
#: ITU-T G.711 Appendix I (PCM).
HEADLINE_BASELINES = ("opus", "neteq", "g711")


#: The bitrate of a run whose ``summary.json`` does not say (``plc eval --bitrate``'s default).
DEFAULT_BITRATE_BPS = 24000


def path_label(row: dict, bitrate_bps: int = DEFAULT_BITRATE_BPS) -> str:
    """Which path a result row's audio took (a lossy codec's offline path with its bitrate)."""
    if row["condition"].startswith(LIVE_PREFIX):
        return "live call (aiortc, Opus)"
    if row["condition"].startswith(NETWORK_PREFIX):
        return f"jitter buffer ({get_codec(row['codec']).label})"
    codec = get_codec(row["codec"])
    return f"{codec.label} {bitrate_bps // 1000:g} kbit/s" if codec.lossy else codec.label


def run_bitrate_bps(results_csv: str) -> int:
    """The Opus bitrate of the run that wrote ``results_csv`` (its ``summary.json``, else the default)."""
    summary = Path(results_csv).with_name("summary.json")
    try:
        return int(json.loads(summary.read_text(encoding="utf-8")).get("bitrate_bps") or DEFAULT_BITRATE_BPS)
    except (OSError, ValueError):
        return DEFAULT_BITRATE_BPS


#: Between the path and the condition in a label.
SEP = " / "


def read_rows(paths: list[str]) -> list[dict]:
    """The rows of ``results.csv`` files, conditions relabelled ``path / condition``, no-loss rows left out.

    The seeds of a live call are pooled: ``seed=N`` moves from the condition to the clip, so
    each (clip, seed) is one paired sample of the condition.
    """
    rows = []
    for path in paths:
        bitrate_bps = run_bitrate_bps(path)
        with open(path, newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                if r["condition"] == NO_LOSS:
                    continue
                cond, clip = r["condition"], r["clip"]
                if cond.startswith(LIVE_PREFIX):
                    seed = re.search(r"\s*\bseed=(\S+)", cond)
                    if seed:
                        cond, clip = cond.replace(seed.group(0), ""), f"{clip}#seed={seed.group(1)}"
                cond = cond.removeprefix(LIVE_PREFIX).removeprefix(NETWORK_PREFIX)
                rows.append(dict(r, condition=f"{path_label(r, bitrate_bps)}{SEP}{cond}", clip=clip))
    return rows


def _cell(entry: Optional[dict], key: str, metric: str) -> str:
    return fmt_ci((entry or {}).get(key, {}).get(metric)) if entry else "—"


def headline_table(conditions: dict, method: str, baselines: tuple[str, ...] = HEADLINE_BASELINES) -> str:
    """Per condition: clips, each baseline's and the method's PLCMOS, and the paired PLCMOS and
    PESQ differences of the method to each baseline."""
    head = (f"| path | condition | clips | " + " | ".join(f"{b} PLCMOS" for b in baselines)
            + f" | {method} PLCMOS | "
            + " | ".join(f"Δ {method} − {b}, PLCMOS (95%)" for b in baselines) + " | "
            + " | ".join(f"Δ {method} − {b}, PESQ" for b in baselines) + " |")
    lines = [head, "|" + "---|" * (4 + 3 * len(baselines))]
    for label, cond in conditions.items():
        entry = cond.get(method)
        if entry is None:
            continue
        path, _, name = label.partition(SEP)
        plcmos = " | ".join(fmt_ci(cond[b]["plcmos"]) if b in cond else "—" for b in baselines)
        lines.append(f"| {path} | {name} | {entry['clips']} | {plcmos} | {fmt_ci(entry['plcmos'])} | "
                     + " | ".join(_cell(entry, "diff_vs_" + b, "plcmos") for b in baselines) + " | "
                     + " | ".join(_cell(entry, "diff_vs_" + b, "pesq") for b in baselines) + " |")
    return "\n".join(lines)


def corpus_matrix(by_corpus: dict, method: str, baseline: str) -> str:
    """Corpora by condition: the method's paired PLCMOS difference to ``baseline`` (clips in brackets)."""
    labels = sorted({label for conds in by_corpus.values() for label, cond in conds.items()
                     if "diff_vs_" + baseline in cond.get(method, {})})
    if not labels:
        return ""
    lines = ["| corpus | " + " | ".join(labels) + " |", "|" + "---|" * (1 + len(labels))]
    for corpus, conds in by_corpus.items():
        cells = []
        for label in labels:
            d = conds.get(label, {}).get(method, {}).get("diff_vs_" + baseline, {}).get("plcmos")
            cells.append(f"{fmt_ci(d)} ({d['n']})" if d and d.get("mean") is not None else "—")
        lines.append(f"| {corpus} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_differences(conditions: dict, method: str, path: Path,
                     baselines: tuple[str, ...] = HEADLINE_BASELINES) -> None:
    """A forest plot: the method's paired PLCMOS difference to each baseline, one row per condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label, cond in conditions.items() if method in cond]
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(labels) + 1.2))
    for j, base in enumerate(baselines):
        for i, label in enumerate(labels):
            d = conditions[label][method].get("diff_vs_" + base, {}).get("plcmos")
            if not d or d.get("mean") is None:
                continue
            y = i + (j - (len(baselines) - 1) / 2) * 0.3
            lo, hi = d["ci95"]
            ax.errorbar(d["mean"], y, xerr=[[d["mean"] - lo], [hi - d["mean"]]], fmt="o", capsize=3,
                        color=f"C{j}", label=f"{method} − {base}")
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("paired PLCMOS v2 difference (95% bootstrap interval)")
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="best")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def headline(paths: list[str], method: str = "neural", seed: int = 0, plot: Optional[Path] = None,
             baselines: tuple[str, ...] = HEADLINE_BASELINES) -> str:
    """The Markdown of :func:`headline_table` pooled and per corpus, and the corpus matrices
    (and with ``plot``, :func:`plot_differences` of the pooled clips there)."""
    summary = summarize(read_rows(paths), baselines=baselines, seed=seed)
    if plot is not None:
        plot_differences(summary["conditions"], method, plot, baselines)
    parts = ["### All held-out clips pooled\n\n" + headline_table(summary["conditions"], method, baselines)]
    by_corpus = summary.get("by_corpus", {})
    for base in baselines:
        matrix = corpus_matrix(by_corpus, method, base)
        if matrix:
            parts.append(f"### Δ {method} − {base}, PLCMOS, per corpus (clips)\n\n" + matrix)
    for corpus, conds in by_corpus.items():
        parts.append(f"### {corpus}\n\n" + headline_table(conds, method, baselines))
    return "\n\n".join(parts) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.headline", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", metavar="RESULTS_CSV", help="results.csv files of plc eval runs")
    p.add_argument("--method", default="neural", help="the method to pair against the baselines (default neural)")
    p.add_argument("--baselines", default=",".join(HEADLINE_BASELINES), metavar="M1,M2",
                   help=f"what to pair the method against (default {','.join(HEADLINE_BASELINES)})")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--out", metavar="MD", help="also write the tables to this file")
    p.add_argument("--plot", metavar="PNG", help="also plot the pooled differences (a forest plot) to this file")
    args = p.parse_args(argv)
    missing = [r for r in args.results if not Path(r).is_file()]
    if missing:
        print(f"eval.headline: error: {missing[0]}: no such results file", file=sys.stderr)
        return 2
    baselines = tuple(b.strip() for b in args.baselines.split(",") if b.strip())
    text = headline(args.results, args.method, args.seed, Path(args.plot) if args.plot else None, baselines)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

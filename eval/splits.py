"""Which clips may choose something, and which only report: a deterministic split by speaker.

Every runtime constant and checkpoint of a concealer is to be chosen on one split (the
training clips, or the ``tune`` split of a development manifest) and reported on another
that chose nothing (the ``report`` split, and corpora no one has tuned on), per corpus, so
that a domain where the concealer loses shows.

A speaker's split depends only on its corpus and speaker id (a SHA-1 hash of
``corpus/speaker``), so it is the same on every machine, for every run and whatever else
the manifest holds, and no speaker is on both sides. Speakers that a training manifest
also holds go to ``tune`` whatever their hash: the model has heard them (``shared/data``'s
LJSpeech speaker is in both ``train.csv`` and ``dev.csv``).

``python -m eval.splits --manifest ../shared/data/dev.csv --out out/splits`` writes
``dev_tune.csv`` and ``dev_report.csv`` (same columns, paths relative to the new files);
``plc eval --split report`` selects the same clips in memory.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

SPLITS = ("tune", "report")
#: Share of the speakers (by hash) in the tune split.
TUNE_SHARE = 0.5


class SplitError(ValueError):
    """The manifest cannot be split (no speaker column, unreadable training manifest)."""


def speaker_split(corpus: str, speaker: str, tune_share: float = TUNE_SHARE) -> str:
    """``tune`` or ``report`` for a speaker, from the hash of ``corpus/speaker`` alone."""
    digest = hashlib.sha1(f"{corpus}/{speaker}".encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    return "tune" if u < tune_share else "report"


def default_training_manifests(manifest: str | os.PathLike) -> list[Path]:
    """The ``train*.csv`` files beside ``manifest`` (``shared/data``: train.csv, train_extra.csv)."""
    manifest = Path(manifest)
    return sorted(p for p in manifest.parent.glob("train*.csv") if p.resolve() != manifest.resolve())


def training_speakers(manifests: Iterable[str | os.PathLike]) -> frozenset[tuple[str, str]]:
    """The (corpus, speaker) pairs of training manifests."""
    out = set()
    for path in manifests:
        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames or "speaker" not in reader.fieldnames:
                    raise SplitError(f"{path}: a training manifest needs a 'speaker' column")
                out.update(((r.get("corpus") or ""), r["speaker"]) for r in reader)
        except OSError as exc:
            raise SplitError(f"{path}: cannot read ({exc.strerror})") from None
    return frozenset(out)


def split_of_row(row: dict, trained: frozenset[tuple[str, str]] = frozenset()) -> str:
    """The split of one manifest row (a dict with ``corpus`` and ``speaker``)."""
    key = ((row.get("corpus") or ""), row["speaker"])
    return "tune" if key in trained else speaker_split(*key)


def select_split(rows: Sequence[dict], split: str, trained: frozenset[tuple[str, str]] = frozenset(),
                 source: str = "manifest") -> list[dict]:
    """The rows of ``split``; raises :class:`SplitError` without a speaker column."""
    if split not in SPLITS:
        raise SplitError(f"unknown split {split!r}; choose {' or '.join(SPLITS)}")
    if rows and "speaker" not in rows[0]:
        raise SplitError(f"{source}: splitting needs a 'speaker' column")
    return [r for r in rows if split_of_row(r, trained) == split]


def spread(rows: Sequence, n: Optional[int]) -> list:
    """``n`` items spread evenly over ``rows`` in their order (all of them when ``n`` is None or larger)."""
    if n is None or not 0 < n < len(rows):
        return list(rows)
    idx = np.unique(np.linspace(0, len(rows) - 1, n).round().astype(int))
    return [rows[i] for i in idx]


def spread_per_corpus(rows: Sequence[dict], n: Optional[int]) -> list[dict]:
    """At most ``n`` rows of each corpus, spread over its rows; the manifest's order is kept."""
    if n is None:
        return list(rows)
    by_corpus: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_corpus.setdefault(r.get("corpus") or "", []).append(i)
    keep = sorted(i for idx in by_corpus.values() for i in spread(idx, n))
    return [rows[i] for i in keep]


def skip_per_corpus(rows: Sequence[dict], n: Optional[int]) -> list[dict]:
    """The rows :func:`spread_per_corpus` would *not* take with ``n``: a replication set, disjoint
    from an earlier run's ``--limit-per-corpus n`` clips (all rows when ``n`` is None)."""
    if n is None:
        return list(rows)
    taken = {id(r) for r in spread_per_corpus(rows, n)}
    return [r for r in rows if id(r) not in taken]


def write_split_manifests(manifest: str | os.PathLike, out_dir: str | os.PathLike,
                          train_manifests: Optional[Sequence[str | os.PathLike]] = None) -> dict[str, Path]:
    """Write ``<name>_tune.csv`` and ``<name>_report.csv`` of ``manifest`` into ``out_dir``.

    Paths are rewritten relative to ``out_dir``; the columns are kept. ``train_manifests``
    defaults to the ``train*.csv`` files beside ``manifest``. Returns the two paths.
    """
    manifest = Path(manifest)
    try:
        with open(manifest, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
    except OSError as exc:
        raise SplitError(f"{manifest}: cannot read ({exc.strerror})") from None
    if "path" not in fields or "speaker" not in fields:
        raise SplitError(f"{manifest}: a manifest to split needs 'path' and 'speaker' columns")
    if train_manifests is None:
        train_manifests = default_training_manifests(manifest)
    trained = training_speakers(train_manifests)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in SPLITS:
        path = out_dir / f"{manifest.stem}_{split}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for r in select_split(rows, split, trained, str(manifest)):
                src = (manifest.parent / r["path"]).resolve()
                w.writerow(dict(r, path=os.path.relpath(src, out_dir.resolve())))
        written[split] = path
    return written


def describe(manifest: str | os.PathLike, trained: frozenset[tuple[str, str]] = frozenset()) -> str:
    """Per corpus: clips and speakers on each side (a few lines for the terminal)."""
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    lines = []
    for corpus in sorted({r.get("corpus") or "" for r in rows}):
        parts = []
        for split in SPLITS:
            sel = [r for r in rows if (r.get("corpus") or "") == corpus and split_of_row(r, trained) == split]
            parts.append(f"{split} {len(sel)} clips / {len({r['speaker'] for r in sel})} speakers")
        lines.append(f"  {corpus or '(no corpus)'}: " + ", ".join(parts))
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.splits", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, metavar="CSV", help="manifest with path, corpus and speaker columns")
    p.add_argument("--train", action="append", metavar="CSV",
                   help="training manifest whose speakers go to tune (repeatable; default: the train*.csv "
                        "files beside --manifest)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for NAME_tune.csv and NAME_report.csv")
    args = p.parse_args(argv)
    try:
        written = write_split_manifests(args.manifest, args.out, args.train)
        trained = training_speakers(args.train if args.train is not None
                                    else default_training_manifests(args.manifest))
    except SplitError as exc:
        print(f"eval.splits: error: {exc}", file=sys.stderr)
        return 2
    print(describe(args.manifest, trained))
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

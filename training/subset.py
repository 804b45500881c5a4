"""``python -m training.subset``: a FLAC subset of a manifest that fits a size budget.

A GPU machine lent through the ``device`` tool receives only the checkout (64 MiB in all),
not ``../shared/data`` (about 210 MB of FLAC). This copies whole clips, drawn at random but in
the corpus proportions of the manifest, into an ignored folder (``data_subset/`` by default)
until the next clip would pass ``--max-mb``, and writes a manifest of those rows beside them
(the same columns and relative paths), so ``plc train --data data_subset/train/manifest.csv`` works there
as on the full data here. ``--first N`` takes the manifest's first N clips instead (the
validation set of ``plc train`` is made from the first clips of ``--dev``).

The files are copied byte for byte (FLAC is already compressed); the data hash that
``plc export`` records then names exactly the clips the run saw.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path
from typing import Optional

import numpy as np


def choose_clips(rows: list[dict], sizes: list[int], max_bytes: int, seed: int,
                 first: Optional[int] = None) -> list[int]:
    """Indices of the rows to keep, in manifest order.

    Parameters
    ----------
    rows : manifest rows (``corpus`` is used for the proportions, when present).
    sizes : bytes of each row's file.
    max_bytes : the budget; a clip that would pass it is skipped (smaller ones may still fit).
    seed : the draw's seed.
    first : if given, the first ``first`` rows (within the budget) instead of a draw.
    """
    if first is not None:
        order = list(range(min(first, len(rows))))
    else:
        # Interleave the corpora in proportion: each clip gets a random key within its corpus,
        # scaled by the corpus' size, so any prefix of the order has the corpus mix.
        rng = np.random.default_rng(seed)
        by_corpus: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            by_corpus.setdefault(row.get("corpus", ""), []).append(i)
        keys = np.empty(len(rows))
        for members in by_corpus.values():
            perm = rng.permutation(len(members))
            keys[members] = (perm + rng.uniform(size=len(members))) / len(members)
        order = [int(i) for i in np.argsort(keys, kind="stable")]
    kept, total = [], 0
    for i in order:
        if total + sizes[i] <= max_bytes:
            kept.append(i)
            total += sizes[i]
    return sorted(kept)


def write_subset(manifest: Path, out: Path, max_mb: float, seed: int = 0, first: Optional[int] = None) -> dict:
    """Copy the chosen clips of ``manifest`` under ``out`` and write ``out/manifest.csv``.

    Returns a summary (clips, bytes, seconds of audio, clips per corpus). Raises ``ValueError``
    for a manifest without a ``path`` column, a missing clip, or a budget no clip fits in.
    """
    manifest = Path(manifest)
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    if "path" not in fields:
        raise ValueError(f"{manifest}: no 'path' column")
    outside = [row["path"] for row in rows if Path(row["path"]).is_absolute() or ".." in Path(row["path"]).parts]
    if outside:
        raise ValueError(f"{manifest}: paths must be relative and inside its folder, e.g. {outside[0]!r}")
    sources = [manifest.parent / row["path"] for row in rows]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise ValueError(f"{manifest}: {len(missing)} clips do not exist, e.g. {missing[0]}")
    sizes = [p.stat().st_size for p in sources]
    kept = choose_clips(rows, sizes, int(max_mb * 1024 * 1024), seed, first)
    if not kept:
        raise ValueError(f"no clip of {manifest} fits in {max_mb:g} MB")
    if out.exists():
        if any(out.iterdir()) and not (out / "manifest.csv").is_file():
            raise ValueError(f"{out} exists and is not a subset folder (no manifest.csv): choose another --out")
        shutil.rmtree(out)  # a subset is rebuilt whole, never mixed with an older one
    out.mkdir(parents=True)
    corpora: dict[str, int] = {}
    seconds = 0.0
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for i in kept:
            row = rows[i]
            dest = out / row["path"]  # the same relative path: the manifest's rows are unchanged
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sources[i], dest)
            writer.writerow(row)
            corpora[row.get("corpus", "")] = corpora.get(row.get("corpus", ""), 0) + 1
            try:
                seconds += float(row.get("duration_s") or 0)
            except ValueError:
                pass
    return {"clips": len(kept), "of": len(rows), "bytes": sum(sizes[i] for i in kept), "seconds": seconds,
            "corpora": corpora}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.subset", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, metavar="CSV", help="e.g. ../shared/data/train.csv")
    p.add_argument("--out", required=True, metavar="DIR", help="e.g. data_subset/train (git-ignored)")
    p.add_argument("--max-mb", type=float, required=True, help="size budget of the copied FLAC files (MiB)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first", type=int, default=None, metavar="N", help="the first N clips instead of a draw")
    args = p.parse_args(argv)
    if args.max_mb <= 0 or (args.first is not None and args.first < 1):
        p.error("--max-mb and --first must be positive")
    try:
        summary = write_subset(Path(args.manifest), Path(args.out), args.max_mb, args.seed, args.first)
    except (OSError, ValueError) as exc:
        p.exit(2, f"python -m training.subset: error: {exc}\n")
    mix = ", ".join(f"{k or '?'} {v}" for k, v in sorted(summary["corpora"].items()))
    print(f"{summary['clips']} of {summary['of']} clips, {summary['bytes'] / 2**20:.1f} MiB, "
          f"{summary['seconds'] / 60:.1f} min of audio ({mix}) -> {Path(args.out) / 'manifest.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

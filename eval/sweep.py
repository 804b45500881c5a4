"""What the paired quick sweeps share (``eval.fade_sweep``, ``eval.opus_plc_probe``, ``eval.loss_breakdown``).

Each scores several variants of the same concealment on every N-th clip of a manifest (tuning
runs on *training* clips, so the dev set stays untouched for ``plc eval``), under one loss trace
per clip, seeded by the clip's position (``1000 + index``) so that every variant and every run
meets the same losses.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence

import numpy as np

PACKET_MS = 20


def add_clip_arguments(p: argparse.ArgumentParser, clips: int) -> None:
    """``--manifest``, ``--clips``, ``--every``, ``--loss`` and ``--jobs``."""
    p.add_argument("--manifest", required=True, help="clip list (path,... CSV), e.g. ../shared/data/train.csv")
    p.add_argument("--clips", type=int, default=clips, help=f"how many clips (default {clips})")
    p.add_argument("--every", type=int, default=7, help="take every N-th clip of the manifest (default 7)")
    p.add_argument("--loss", default="gilbert:0.1,3", help="loss model (default gilbert:0.1,3)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")


def sweep_paths(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The clips of ``args``: every ``--every``-th of ``--manifest``, at most ``--clips``
    (exits through ``p.error`` on a bad manifest)."""
    from .runner import ManifestError, read_manifest

    try:
        return [clip.path for clip in read_manifest(args.manifest)][::args.every][:args.clips]
    except ManifestError as exc:
        p.error(str(exc))
        raise  # not reached: p.error exits


def loss_trace(n_samples: int, sample_rate: int, loss_spec: str, index: int) -> np.ndarray:
    """Lost flags of the 20 ms packets covering ``n_samples``: clip ``index``'s trace."""
    from plc.loss_models import parse_loss_spec

    n_packets = -(-n_samples * 1000 // (sample_rate * PACKET_MS))
    return parse_loss_spec(loss_spec).generate(n_packets, np.random.default_rng(1000 + index))


def map_clips(score_clip: Callable, jobs: Sequence, n_jobs: int) -> list:
    """``score_clip`` over ``jobs`` in ``n_jobs`` processes (one thread each), in order."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with ProcessPoolExecutor(max(1, n_jobs)) as ex:
        return list(ex.map(score_clip, jobs))

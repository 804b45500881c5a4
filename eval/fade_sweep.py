"""Sweep the neural concealer's fade-out: paired PLCMOS / PESQ of fade settings on the same losses.

The fade is a runtime choice (``NeuralConcealer``'s ``fade_*`` parameters), tuned
with this script on *training* clips so that the dev set stays untouched for
``plc eval``. Each variant is ``VOICED_START,VOICED_END,UNVOICED_START,UNVOICED_END``
in ms, optionally followed by ``,THRESHOLD`` (the voicing threshold) and ``,noise`` or
``,model`` (what continues unvoiced audio), and ``,merge=N`` / ``,lag=N`` (the
cross-fade back into the real audio, samples), ``,temp=F`` (the generator's noise
scale), ``,model=DIR`` (another exported model, e.g. a new checkpoint's: two models
paired on the same losses), ``,cn=0|1`` (comfort noise off / on) and
``,steer=0|1`` (decoder in step: the model's first packet of a voiced loss coded into
a steerable codec, ``NeuralConcealer(steer_codec=...)``) and
``,defer=MODE+MODE|none`` (the codec modes whose own concealment plays instead of
the model, e.g. ``defer=none`` to run the model in SILK-mode Opus too); the first
variant is the reference the others are paired against. ``--codec opus`` runs them
in the Opus pipeline (``--bitrate 96000``: CELT mode)::

    python -m eval.fade_sweep --manifest ../shared/data/train.csv --every 7 --clips 40 \\
        --loss gilbert:0.1,3 --jobs 2 --variant 40,120,40,120 --variant 60,120,0,60
    python -m eval.fade_sweep --manifest ../shared/data/train.csv --every 7 --clips 40 \\
        --loss bernoulli:0.1 --jobs 2 --variant 60,120,40,120 --variant 60,120,40,120,model=runs/new/export

Prints one line per variant: mean PLCMOS and PESQ-WB, and the paired differences
to the reference with a normal 95% interval.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional

import numpy as np

from plc.concealers.neural import DEFAULT_VOICED_THRESHOLD, check_model_dir
from plc.codecs import codec_names

from .sweep import add_clip_arguments, loss_trace, map_clips, sweep_paths


@dataclass(frozen=True)
class Fade:
    voiced_start_ms: float
    voiced_end_ms: float
    unvoiced_start_ms: float
    unvoiced_end_ms: float
    voiced_threshold: float = DEFAULT_VOICED_THRESHOLD
    unvoiced: str = "noise"
    merge_samples: Optional[int] = None   # None: the concealer's default
    max_align_lag: Optional[int] = None
    noise_scale: Optional[float] = None
    model_dir: Optional[str] = None       # None: ``--neural-model`` (default: the shipped model)
    comfort_noise: Optional[bool] = None  # None: the concealer's default
    defer_to_codec: Optional[tuple[str, ...]] = None
    steer_codec: Optional[bool] = None    # None: the concealer's default

    @classmethod
    def parse(cls, spec: str) -> "Fade":
        from plc.concealers.neural import UNVOICED_CHOICES

        fields = spec.split(",")
        extra = {}
        while fields and "=" in fields[-1]:   # merge=N, lag=N (the merge back), temp=F, model=DIR
            key, _, value = fields.pop().partition("=")
            if key == "model":
                if not value:
                    raise argparse.ArgumentTypeError(f"{spec!r}: model= needs a folder")
                extra["model_dir"] = value
                continue
            if key in ("cn", "steer"):
                if value not in ("0", "1"):
                    raise argparse.ArgumentTypeError(f"{spec!r}: bad {key}={value} (want {key}=0 or {key}=1)")
                extra["comfort_noise" if key == "cn" else "steer_codec"] = value == "1"
                continue
            if key == "defer":
                modes = () if value == "none" else tuple(value.split("+"))
                if not all(modes):
                    raise argparse.ArgumentTypeError(f"{spec!r}: bad defer={value} (want MODE+MODE or none)")
                extra["defer_to_codec"] = modes
                continue
            if key == "temp":
                try:
                    extra["noise_scale"] = float(value)
                except ValueError:
                    raise argparse.ArgumentTypeError(f"{spec!r}: bad temp={value} (want a number)") from None
                continue
            if key not in MERGE_KEYS or not value.isdigit():
                raise argparse.ArgumentTypeError(
                    f"{spec!r}: unknown or bad {key}={value} (want merge=N, lag=N, temp=F, model=DIR, cn=0|1, "
                    "steer=0|1 or defer=MODE+MODE|none)")
            extra[MERGE_KEYS[key]] = int(value)
        unvoiced = fields.pop() if fields and fields[-1] in UNVOICED_CHOICES else "noise"
        try:
            parts = [float(v) for v in fields]
        except ValueError:
            parts = []
        if len(parts) not in (4, 5):
            raise argparse.ArgumentTypeError(
                f"{spec!r}: want VOICED_START,VOICED_END,UNVOICED_START,UNVOICED_END[,THRESHOLD][,noise|model]"
                "[,merge=N][,lag=N][,temp=F][,model=DIR][,cn=0|1][,steer=0|1][,defer=MODE+MODE|none]")
        if len(parts) == 4:
            parts.append(DEFAULT_VOICED_THRESHOLD)
        return cls(*parts, unvoiced=unvoiced, **extra)

    def check(self) -> None:
        """Raise ``ValueError`` for a fade the concealer refuses (silent by 120 ms), a merge that
        does not fit in a frame, a noise scale out of range or a model folder that does not load
        (which the concealer would silently replace by its fallback)."""
        from plc.concealers.neural import DEFAULT_MAX_ALIGN_LAG, DEFAULT_MERGE_SAMPLES, check_merge, check_noise_scale
        from plc.neural.contract import check_fades

        check_fades((self.voiced_start_ms, self.voiced_end_ms), (self.unvoiced_start_ms, self.unvoiced_end_ms))
        merge = self.merge_kwargs()
        check_merge(merge.get("max_align_lag", DEFAULT_MAX_ALIGN_LAG), merge.get("merge_samples", DEFAULT_MERGE_SAMPLES))
        if self.noise_scale is not None:
            check_noise_scale(self.noise_scale)
        if self.model_dir is not None:
            check_model_dir(self.model_dir)

    def merge_kwargs(self) -> dict:
        return {k: v for k, v in (("merge_samples", self.merge_samples), ("max_align_lag", self.max_align_lag))
                if v is not None}

    def kwargs(self) -> dict:
        extra = self.merge_kwargs()
        if self.noise_scale is not None:
            extra["noise_scale"] = self.noise_scale
        if self.comfort_noise is not None:
            extra["comfort_noise"] = self.comfort_noise
        if self.defer_to_codec is not None:
            extra["defer_to_codec"] = self.defer_to_codec
        if self.steer_codec is not None:
            extra["steer_codec"] = self.steer_codec
        return dict(fade_start_ms=self.voiced_start_ms, fade_end_ms=self.voiced_end_ms,
                    unvoiced_fade_start_ms=self.unvoiced_start_ms, unvoiced_fade_end_ms=self.unvoiced_end_ms,
                    voiced_threshold=self.voiced_threshold, unvoiced=self.unvoiced, **extra)

    def label(self) -> str:
        merge = "".join(f", {k} {v}" for k, v in self.merge_kwargs().items())
        if self.noise_scale is not None:
            merge += f", noise scale {self.noise_scale:g}"
        if self.model_dir is not None:
            merge += f", model {self.model_dir}"
        if self.comfort_noise is not None:
            merge += f", comfort noise {'on' if self.comfort_noise else 'off'}"
        if self.steer_codec is not None:
            merge += f", decoder in step {'on' if self.steer_codec else 'off'}"
        if self.defer_to_codec is not None:
            merge += f", defers to {'+'.join(self.defer_to_codec) or 'none'}"
        return (f"voiced {self.voiced_start_ms:g}->{self.voiced_end_ms:g} ms, unvoiced {self.unvoiced_start_ms:g}->"
                f"{self.unvoiced_end_ms:g} ms ({self.unvoiced}), threshold {self.voiced_threshold:g}{merge}")


#: Variant keys for the merge back into the real audio, and the concealer parameters they set.
MERGE_KEYS = {"merge": "merge_samples", "lag": "max_align_lag"}


def _score_clip(args: tuple[str, str, int, list[Fade], Optional[str], str, int]) -> list[tuple[float, float]]:
    """(PLCMOS, PESQ-WB) of every fade on clip number ``index``, on one loss trace (seed 1000 + index),
    through the ``codec`` pipeline (PESQ against the original clip, as ``plc eval`` scores it)."""
    path, loss_spec, index, fades, model_dir, codec, bitrate_bps = args
    from plc.audio_io import load_audio
    from plc.concealers import Concealer, make_concealer
    from plc.offline import conceal_audio

    from .metrics import pesq_wb, plcmos

    audio, sr = load_audio(path)
    x = audio.mean(axis=1)
    lost = loss_trace(len(x), sr, loss_spec, index)
    scores = []
    for fade in fades:
        def factory(fade: Fade = fade) -> Concealer:
            return make_concealer("neural", realtime=False, model_dir=fade.model_dir or model_dir, **fade.kwargs())

        y = conceal_audio(x, sr, lost, "neural", codec=codec, bitrate_bps=bitrate_bps, concealer_factory=factory).audio
        scores.append((plcmos(y, sr, seed=index), pesq_wb(x, y, sr)))
    return scores


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.fade_sweep", description=__doc__.split("\n\n")[0])
    add_clip_arguments(p, clips=40)
    p.add_argument("--variant", type=Fade.parse, action="append", required=True,
                   help="VOICED_START,VOICED_END,UNVOICED_START,UNVOICED_END[,THRESHOLD][,noise|model] (ms); "
                        "repeat; the first is the reference")
    p.add_argument("--codec", choices=codec_names(), default="pcm",
                   help="pipeline: pcm, or opus (the concealer replaces libopus' PLC in the decoded audio)")
    p.add_argument("--bitrate", type=int, default=24000, metavar="BPS",
                   help="Opus bitrate (default 24000: SILK mode for speech; 96000: CELT)")
    p.add_argument("--neural-model", default=None, metavar="DIR", help="model folder (default: the shipped one)")
    args = p.parse_args(argv)
    from .summary import paired_line, paired_scores

    try:
        for fade in args.variant:  # refuse bad fades before spending minutes
            fade.check()
        if args.neural_model is not None:
            check_model_dir(args.neural_model)
    except ValueError as exc:
        p.error(str(exc))
    paths = sweep_paths(p, args)
    jobs = [(path, args.loss, i, args.variant, args.neural_model, args.codec, args.bitrate)
            for i, path in enumerate(paths)]
    rows = np.array(map_clips(_score_clip, jobs, args.jobs))        # (clips, variants, 2)
    for fade, r in zip(args.variant, paired_scores(rows, 0)):
        codec = args.codec if args.codec == "pcm" else f"{args.codec} {args.bitrate // 1000} kbit/s"
        print(paired_line(f"{fade.label()}:", r, "first", f"{len(rows)} clips, {args.loss}, {codec}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

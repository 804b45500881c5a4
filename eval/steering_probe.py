"""Who should make which packets of a loss in SILK-mode Opus, with the decoder kept in step?

The exploration behind ``NeuralConcealer(steer_codec=True)`` (MODEL.md, "Decoder in step"). Each
clip is coded at 24 kbit/s from 16 kHz (SILK, as ``plc eval --codec opus``) and received packet by
packet; on each loss the lost packets are made by one variant (``--variant``, repeatable; the first
is the reference the others are paired against):

* ``opus``: libopus' own PLC.
* ``model[:k=N][:voiced][:vt=F][:rate=BPS][:warm=N][:att=F][:mix=F][:ramp=F][:gain=F][:pick=WHERE][:raw][:dir=DIR]``: the model's
  continuation of the played audio (``NeuralConcealer`` run on its own, ``voiced_threshold=vt``,
  the exported model in ``dir``, default the shipped one) coded into the
  decoder (:class:`plc.codecs.opus_steering.OpusSteering`, encoder at ``rate``, warmed on ``warm``
  packets) for the first ``k`` packets of the loss (default: all of them), only after voiced
  audio with ``voiced`` (libopus' PLC otherwise); libopus' PLC for the rest of the loss, scaled
  by ``att`` per packet; ``raw``: the model's own samples played for its packets (cross-faded over
  2.5 ms into the decoder's next one), the decoder coded alongside.
  ``mix=F``: the continuation blended with what libopus' PLC would play there
  (:meth:`plc.codecs.opus.OpusDecoder.preview_concealment`), ``(1 - F) * model + F * PLC``, then coded;
  ``ramp=F``: blended the same way with a weight rising linearly from 0 to F across it;
  ``gain=F``: the continuation scaled by F before it is coded. ``pick=packet`` / ``pick=burst``
  (an oracle, for headroom): on each loss the model's packet plays only where it brings the output
  closer (log-mel distance) to the loss-free decode than libopus' PLC does, over the first packet
  or over the whole burst and the packet after it (both branches run on copies of the decoder).
* ``interp=N`` (any variant): a jitter buffer often holds the packet after a burst when the burst's
  last packet is due; its decoded audio (decoded ahead on a copy of the decoder state) is extended
  backwards by its first pitch period, and the burst's last ``N`` samples are cross-faded into that
  extension, so the gap ends on its way into the next packet (:mod:`plc.concealers.gap_end`; the
  runtime does ``interp=320:min_burst=2`` in the jitter buffer); ``min_burst=B``: only at the
  end of bursts of ``B`` packets or more; ``corr=F``: only where the next packet's audio is
  periodic, its normalised autocorrelation at the pitch lag at least ``F``.
* ``oracle[:k=N]``: the loss-free decoded audio coded into the decoder (the most this can give).
* ``replc``: libopus' PLC (from a twin decoder replaying the last 25 packets) coded into the
  decoder: the cost of the coding itself.

Prints mean PLCMOS and PESQ-WB per variant and the paired differences to the first with a normal
95% interval. Tune on training clips::

    python -m eval.steering_probe --manifest ../shared/data/train.csv --every 7 --clips 40 \\
        --loss gilbert:0.2,6 --jobs 2 --variant opus --variant model:k=1:voiced --variant oracle
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .sweep import add_clip_arguments, loss_trace, map_clips, sweep_paths

SAMPLE_RATE = 16000
PACKET = 320
BITRATE_BPS = 24000
#: Cross-fade from a raw model packet into the decoder's next one, samples.
RAW_CROSSFADE = 40
#: Packets a twin decoder replays before running libopus' PLC (``replc``).
REPLAY_PACKETS = 25
#: Oracle choices between the model's packet and libopus' PLC, per loss (``pick=``): by which is
#: closer to the loss-free decode over the first packet, or over the burst and the packet after it.
PICKS = ("packet", "burst")


@dataclass(frozen=True)
class Variant:
    kind: str                              # opus, model, oracle, replc
    options: dict = field(default_factory=dict)

    KINDS = ("opus", "model", "oracle", "replc")
    KEYS = {"k": int, "vt": float, "rate": int, "warm": int, "att": float, "voiced": bool, "raw": bool, "dir": str,
            "mix": float, "gain": float, "pick": str, "ramp": float, "interp": int, "min_burst": int, "corr": float}

    @classmethod
    def parse(cls, spec: str) -> "Variant":
        kind, *opts = spec.split(":")
        if kind not in cls.KINDS:
            raise argparse.ArgumentTypeError(f"{spec!r}: want one of {', '.join(cls.KINDS)}, then :KEY=VALUE options")
        options: dict = {}
        for opt in opts:
            key, eq, value = opt.partition("=")
            kind_of = cls.KEYS.get(key)
            try:
                if kind_of is None or (kind_of is bool) == bool(eq) or (eq and not value):
                    raise ValueError
                options[key] = True if kind_of is bool else kind_of(value)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{spec!r}: bad option {opt!r} (k=N, vt=F, rate=BPS, warm=N, "
                                                 "att=F, mix=F, ramp=F, gain=F, pick=WHERE, interp=N, min_burst=B, corr=F, voiced, raw, dir=DIR)") from None
        if options.get("pick", "packet") not in PICKS:
            raise argparse.ArgumentTypeError(f"{spec!r}: pick must be one of {', '.join(PICKS)}")
        if options.get("k", 1) < 1 or options.get("warm", 1) < 1 or options.get("interp", 1) < 1 or options.get("min_burst", 1) < 1 \
                or ("min_burst" in options or "corr" in options) and "interp" not in options or not 0 < options.get("att", 1.0) <= 1 \
                or not 0 <= options.get("mix", 0.0) <= 1 or not 0 <= options.get("ramp", 0.0) <= 1 or not 0 < options.get("gain", 1.0) <= 4:
            raise argparse.ArgumentTypeError(f"{spec!r}: k, warm, interp and min_burst must be at least 1 (min_burst and corr with interp), att within (0, 1], mix and ramp within [0, 1], gain within (0, 4]")
        return cls(kind, options)


def receive(x: np.ndarray, lost: np.ndarray, variant: Variant) -> np.ndarray:
    """What the receiver plays of ``x`` (16 kHz) coded at 24 kbit/s with ``lost`` packets, aligned with ``x``."""
    from plc.codecs.opus import OpusDecoder, OpusEncoder, opus_packet_mode
    from plc.codecs.payload import encode_signal
    from plc.codecs.opus_steering import STEERING_BITRATE_BPS, WARM_PACKETS, OpusSteering
    from plc.concealers.neural import NeuralConcealer
    from plc.concealers.gap_end import backward_extension, periodicity
    from plc.dsp import raised_cosine_fade

    o = variant.options
    enc = OpusEncoder(SAMPLE_RATE, bitrate_bps=BITRATE_BPS, frame_ms=20)
    payloads = encode_signal(enc, x, min_packets=len(lost))
    n_packets = len(payloads)
    lost = np.concatenate([lost, np.zeros(n_packets - len(lost), bool)])
    clean = None
    if variant.kind == "oracle" or "pick" in o:
        clean_dec = OpusDecoder(SAMPLE_RATE, 20)
        clean = np.concatenate([clean_dec.decode(pl) for pl in payloads] + [np.zeros(PACKET, np.float32)])
    dec = OpusDecoder(SAMPLE_RATE, 20)
    steering = OpusSteering(SAMPLE_RATE, PACKET, ("silk",), o.get("rate", STEERING_BITRATE_BPS), o.get("warm", WARM_PACKETS))
    concealer = None
    if variant.kind == "model":
        concealer = NeuralConcealer(model_dir=o.get("dir"), defer_to_codec=(),
                                    **({"voiced_threshold": o["vt"]} if "vt" in o else {}))
    history: list[Optional[bytes]] = []   # what the decoder decoded (None: its PLC), for replc's twin
    out = np.zeros(n_packets * PACKET, np.float32)
    fade_in = raised_cosine_fade(RAW_CROSSFADE)
    pending: Optional[np.ndarray] = None  # a raw packet's continuation, to cross-fade into the next

    def play(p: int, y: np.ndarray, packet: Optional[bytes], listen: bool) -> None:
        nonlocal pending
        y = y.copy()
        if pending is not None:
            y[:RAW_CROSSFADE] = (1 - fade_in) * pending[:RAW_CROSSFADE] + fade_in * y[:RAW_CROSSFADE]
            pending = None
        out[p * PACKET:(p + 1) * PACKET] = y
        history.append(packet)
        if listen and concealer is not None:
            for h in range(2):
                concealer.process(y[h * 160:(h + 1) * 160].copy())

    p, mode = 0, None
    while p < n_packets:
        if not lost[p]:
            y = dec.decode(payloads[p])
            steering.observe(y, payloads[p])
            mode = opus_packet_mode(payloads[p])
            play(p, y, payloads[p], True)
            p += 1
            continue
        burst = int(np.argmin(np.append(lost[p:], False)))   # lost packets from p on
        ours = 0 if variant.kind == "opus" else min(burst, o.get("k", burst))
        continuation = None
        if ours and steering.samples_needed(mode) is not None:
            need = ours * PACKET + steering.lookahead
            continuation = _continuation(variant, concealer, clean, payloads, history, p, need)
        if continuation is None:
            ours = 0
        elif "mix" in o:   # blended with what libopus' PLC would play (decoder state untouched)
            continuation = (1 - o["mix"]) * continuation + o["mix"] * dec.preview_concealment(len(continuation))
        if continuation is not None and "ramp" in o:   # model at the start, towards libopus' PLC by the end
            w = np.linspace(0, o["ramp"], len(continuation), dtype=np.float32)
            continuation = (1 - w) * continuation + w * dec.preview_concealment(len(continuation))
        if continuation is not None and o.get("pick") == "packet":   # per-loss oracle choice: model or PLC
            truth = clean[p * PACKET:(p + 1) * PACKET]
            if _log_spectral_distance(continuation[:PACKET], truth) > \
                    _log_spectral_distance(dec.preview_concealment(PACKET), truth):
                continuation, ours = None, 0
        if continuation is not None and "gain" in o:
            continuation = continuation * np.float32(o["gain"])
        if continuation is not None and o.get("pick") == "burst":   # per-loss oracle over the whole burst
            end = min(p + burst + 1, n_packets)
            truth = clean[p * PACKET:end * PACKET]
            saved = dec.snapshot()
            tries = []
            for steer in (True, False):
                dec.restore(saved)
                trial = copy.copy(steering)   # observe() replaces its history, leaving the original's as it was
                ys = []
                for k in range(p, end):
                    if steer and k == p:
                        y = trial.decode(dec, continuation[:PACKET + trial.lookahead])
                    else:
                        y = dec.decode(payloads[k] if k >= p + burst else None)
                    trial.observe(y)
                    ys.append(y)
                tries.append(_log_spectral_distance(np.concatenate(ys), truth))
            dec.restore(saved)
            if tries[0] > tries[1]:
                continuation, ours = None, 0
        for k in range(ours):
            segment = continuation[k * PACKET:k * PACKET + PACKET + steering.lookahead]
            y = steering.decode(dec, segment)
            steering.observe(y)
            if o.get("raw"):
                y, pending = continuation[k * PACKET:(k + 1) * PACKET], continuation[(k + 1) * PACKET:]
            play(p + k, y, None, False)   # the steered packet is not in replc's replay
        for k in range(ours, burst):
            y = dec.decode(None)
            steering.observe(y)
            play(p + k, y * np.linspace(o.get("att", 1.0) ** (k - ours), o.get("att", 1.0) ** (k - ours + 1),
                                        PACKET, dtype=np.float32), None, False)
        if o.get("interp") and p + burst < n_packets and burst >= o.get("min_burst", 1):
            with dec.state_kept():   # the next packet is here: end the gap on its way into it
                ahead = dec.decode(payloads[p + burst])
            if periodicity(ahead, SAMPLE_RATE)[1] >= o.get("corr", -1.0):
                n = min(o["interp"], burst * PACKET)
                end = (p + burst) * PACKET
                w = raised_cosine_fade(n)
                out[end - n:end] = (1 - w) * out[end - n:end] + w * backward_extension(ahead, n, SAMPLE_RATE)
        p += burst
    return out[enc.lookahead:enc.lookahead + len(x)]


def _log_spectral_distance(y: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute log-mel distance (dB) between two equal-length 16 kHz segments."""
    import librosa

    def logmel(v):
        m = librosa.feature.melspectrogram(y=v.astype(np.float32), sr=SAMPLE_RATE, n_fft=256, hop_length=80, n_mels=32, center=False)
        return 10 * np.log10(m + 1e-8)

    return float(np.mean(np.abs(logmel(y) - logmel(truth))))


def _continuation(variant: Variant, concealer, clean, payloads, history, p: int, need: int) -> Optional[np.ndarray]:
    """The variant's ``need`` samples from packet ``p`` on, or None (libopus' PLC plays)."""
    from plc.codecs.opus import OpusDecoder

    if variant.kind == "oracle":
        return clean[p * PACKET:p * PACKET + need]
    if variant.kind == "replc":
        twin = OpusDecoder(SAMPLE_RATE, 20)
        for packet in history[-REPLAY_PACKETS:]:
            twin.decode(packet)
        return np.concatenate([twin.decode(None) for _ in range(-(-need // PACKET))])[:need]
    frames = [concealer.process(None) for _ in range(-(-need // concealer.frame_samples))]
    if variant.options.get("voiced") and concealer._noise is not None:   # after unvoiced audio
        return None
    return np.concatenate(frames)[:need]


def _score_clip(args: tuple[str, str, int, tuple[Variant, ...]]) -> list[tuple[float, float]]:
    path, loss_spec, index, variants = args
    from .metrics import pesq_wb, plcmos
    from .runner import load_clip_16k

    x = load_clip_16k(path).astype(np.float32)
    lost = loss_trace(len(x), SAMPLE_RATE, loss_spec, index)
    scores = []
    for variant in variants:
        y = receive(x, lost, variant)
        scores.append((plcmos(y, SAMPLE_RATE, seed=index), pesq_wb(x, y, SAMPLE_RATE)))
    return scores


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.steering_probe", description=__doc__.split("\n\n")[0])
    add_clip_arguments(p, clips=40)
    p.add_argument("--variant", type=Variant.parse, action="append", metavar="SPEC",
                   help="opus, model[:k=N][:voiced][:vt=F][:rate=BPS][:warm=N][:att=F][:mix=F][:ramp=F][:gain=F][:pick=WHERE][:raw][:dir=DIR], "
                        "any of them [:interp=N[:min_burst=B][:corr=F]], "
                        "oracle[:k=N] or "
                        "replc (repeatable; the first is the reference; default: opus, model:k=1:voiced)")
    args = p.parse_args(argv)
    from .summary import paired_line, paired_scores

    variants = tuple(args.variant or (Variant("opus"), Variant("model", {"k": 1, "voiced": True})))
    from plc.concealers.neural import check_model_dir

    for v in variants:   # refuse a model folder that does not load before spending minutes
        if "dir" in v.options:
            try:
                check_model_dir(v.options["dir"])
            except ValueError as exc:
                p.error(str(exc))
    paths = sweep_paths(p, args)
    rows = np.array(map_clips(_score_clip, [(path, args.loss, i, variants) for i, path in enumerate(paths)], args.jobs))
    names = [":".join([v.kind] + [k if val is True else f"{k}={val}" for k, val in v.options.items()]) for v in variants]
    for name, r in zip(names, paired_scores(rows, 0)):
        print(paired_line(f"{name}:", r, names[0], f"{len(rows)} clips, {args.loss}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

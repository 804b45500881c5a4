"""Is libopus' concealment better because of the codec pipeline, or because it is a better concealer?

In the Opus pipeline (``plc eval --codec opus``) libopus' own PLC scores well above ``neteq``
and ``neural``. Two explanations: the decoder continues from its own concealment, so the packet
after a loss decodes smoothly only for libopus (a pipeline effect), or SILK's concealment (LPC
synthesis of pitch-repeated excitation, and random picks of the recent residual after unvoiced
audio) simply sounds better. This probe separates them. Each clip is Opus-coded twice, without
loss and through the loss trace with libopus' PLC, and scored as:

* ``libopus-plc spliced``: the lossless decode, with libopus' concealment spliced into the lost
  packets and faded by the same rule as ``neural`` (voiced: 60 -> 120 ms, unvoiced 40 -> 120 ms),
  then cross-faded back into the lossless decode over 10 ms: the packets after a loss are the
  true ones, as for any concealer in the PCM pipeline;
* ``libopus-plc unfaded``: the same without our fade (libopus only attenuates, by about 0.9 per
  20 ms, and is never silent by 120 ms as issue 3 asks of ``neural``): what the fade rule costs it;
* ``neteq`` and ``neural``: the PCM pipeline's concealers on the same lossless decode;
* ``pipeline: opus`` and ``pipeline: neural``: the real Opus pipeline (``plc eval --codec
  opus``) on the same clip and losses, where the packet after a loss is decoded from the
  decoder's own concealment state.

If the spliced concealment still beats the others, the advantage is the concealer's::

    python -m eval.opus_plc_probe --manifest ../shared/data/train.csv --every 7 --clips 30 --jobs 2

Prints mean PLCMOS and PESQ-WB per method and the paired difference to ``neteq``.
"""

from __future__ import annotations

import argparse
from typing import Optional

import numpy as np

from .sweep import PACKET_MS, add_clip_arguments, loss_trace, map_clips, sweep_paths

SAMPLE_RATE = 16000
METHODS = ("libopus-plc spliced", "libopus-plc unfaded", "neteq", "neural", "pipeline: opus", "pipeline: neural")


def decode_twice(x: np.ndarray, lost_packets: np.ndarray, bitrate_bps: int = 24000) -> tuple[np.ndarray, np.ndarray]:
    """(lossless decode, decode through the losses with libopus' PLC), both aligned with ``x``."""
    from plc.codecs.opus import OpusDecoder, OpusEncoder
    from plc.codecs.payload import encode_signal

    encoder = OpusEncoder(SAMPLE_RATE, bitrate_bps=bitrate_bps, frame_ms=PACKET_MS)
    clean_decoder, lossy_decoder = OpusDecoder(SAMPLE_RATE, PACKET_MS), OpusDecoder(SAMPLE_RATE, PACKET_MS)
    n = encoder.frame_samples
    payloads = encode_signal(encoder, x, min_packets=len(lost_packets))
    n_packets = len(payloads)
    lost = np.concatenate([lost_packets, np.zeros(n_packets - len(lost_packets), dtype=bool)])
    clean, lossy = np.empty(n_packets * n, np.float32), np.empty(n_packets * n, np.float32)
    for p, payload in enumerate(payloads):
        clean[p * n:(p + 1) * n] = clean_decoder.decode(payload)
        lossy[p * n:(p + 1) * n] = lossy_decoder.decode(None if lost[p] else payload)
    start = encoder.lookahead
    return clean[start:start + len(x)], lossy[start:start + len(x)]


def splice_concealment(clean: np.ndarray, concealed: np.ndarray, lost_packets: np.ndarray,
                       fade: bool = True) -> np.ndarray:
    """``clean`` with ``concealed`` in the lost packets, faded as ``neural`` fades (unless not
    ``fade``), merged back over 10 ms."""
    from plc.dsp import raised_cosine_fade
    from plc.concealers.neural import DEFAULT_VOICED_THRESHOLD
    from plc.neural.contract import UNVOICED_FADE_MS, VOICED_FADE_MS, fade_gains
    from plc.neural.features import FeatureConfig, pitch_lag
    from plc.offline import lost_sample_mask

    features = FeatureConfig()
    mask = lost_sample_mask(len(clean), SAMPLE_RATE, lost_packets, PACKET_MS)
    out = clean.copy()
    merge = raised_cosine_fade(SAMPLE_RATE // 100)
    starts = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8)])) == 1)
    for s in starts:
        e = s + int(np.argmin(mask[s:])) if not mask[s:].all() else len(mask)
        t_ms = np.arange(e - s + 1) * 1000.0 / SAMPLE_RATE
        if fade:  # the runtime's rule: its defaults, chosen by the voicing before the loss
            _, voicing = pitch_lag(out[:s], features)
            rule = VOICED_FADE_MS if voicing >= DEFAULT_VOICED_THRESHOLD else UNVOICED_FADE_MS
            gain = fade_gains(t_ms, rule)
        else:
            gain = np.ones_like(t_ms)
        out[s:e] = concealed[s:e] * gain[:-1]
        k = min(len(merge), len(out) - e)
        out[e:e + k] = concealed[e:e + k] * gain[-1] * (1.0 - merge[:k]) + clean[e:e + k] * merge[:k]
    return out


def _score_clip(args: tuple[str, int, str]) -> list[tuple[float, float]]:
    path, index, loss_spec = args
    from plc.offline import conceal_audio

    from .metrics import pesq_wb, plcmos
    from .runner import load_clip_16k

    x = load_clip_16k(path)
    lost = loss_trace(len(x), SAMPLE_RATE, loss_spec, index)
    clean, lossy = decode_twice(x, lost)
    outputs = [splice_concealment(clean, lossy, lost), splice_concealment(clean, lossy, lost, fade=False)]
    outputs += [conceal_audio(clean, SAMPLE_RATE, lost, m).audio for m in ("neteq", "neural")]
    outputs += [conceal_audio(x, SAMPLE_RATE, lost, m, codec="opus").audio for m in ("opus", "neural")]
    return [(plcmos(y, SAMPLE_RATE, seed=index), pesq_wb(x, y, SAMPLE_RATE)) for y in outputs]


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.opus_plc_probe", description=__doc__.split("\n\n")[0])
    add_clip_arguments(p, clips=30)
    args = p.parse_args(argv)
    from .summary import paired_line, paired_scores

    paths = sweep_paths(p, args)
    rows = np.array(map_clips(_score_clip, [(path, i, args.loss) for i, path in enumerate(paths)], args.jobs))
    for method, r in zip(METHODS, paired_scores(rows, METHODS.index("neteq"))):
        print(paired_line(f"{method:20s}", r, "neteq", f"{len(rows)} clips, Opus 24 kbit/s, {args.loss}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

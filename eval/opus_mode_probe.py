"""Does ``neural``'s model beat libopus' concealment in a given Opus mode? Hybrid mode included.

``plc eval --codec opus`` codes 16 kHz audio, where libopus picks SILK (speech at low bitrates)
or CELT, never hybrid: hybrid (SILK below 8 kHz, CELT above) needs a super-wideband or fullband
input, as browsers send (Chrome: 48 kHz, 32 kbit/s). This probe codes each clip from a 48 kHz
signal (16 kHz clips upsampled by 3) at ``--bitrate``, decodes at 16 kHz through the same payload
decoder as the jitter buffer (so the codec's mode is known per packet), and conceals the lost
packets with

* ``opus``: libopus' own concealment;
* ``neural``: the shipped runtime (in SILK and hybrid mode its model's first packet of a loss after
  voiced audio is coded into the decoder, :mod:`plc.codecs.opus_steering`, and libopus' PLC
  continues; in CELT mode the model conceals);
* ``neural, model in every mode``: ``defer_to_codec=()``, the model whatever the mode;
* ``neural, decoder in step in SILK only``: the runtime before hybrid was steered too (in hybrid
  mode it plays libopus' concealment);
* ``neural, steered under FEC too``: the runtime before it left streams with in-band FEC to the
  codec (``steer_with_fec``; the same as ``neural`` on a stream without FEC).

Each variant has its own decoder, run packet by packet as a receiver runs.

It prints which modes the lost packets were coded in, mean PLCMOS and PESQ-WB, and the paired
differences to ``opus`` with a normal 95% interval. Tune on training clips::

    python -m eval.opus_mode_probe --manifest ../shared/data/train.csv --every 7 --clips 40 \\
        --loss gilbert:0.1,3 --bitrate 32000 --jobs 2
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Optional

import numpy as np

from .sweep import add_clip_arguments, loss_trace, map_clips, sweep_paths

SAMPLE_RATE = 16000
#: The rate the clips are coded from (libopus may pick hybrid only from super-wideband input).
INPUT_RATE = 48000
VARIANTS = ("opus", "neural", "neural, model in every mode", "neural, decoder in step in SILK only",
            "neural, steered under FEC too")


def _variants():
    """(concealer, its decoder's options: ``OpusPayloadDecoder`` keyword arguments) per variant."""
    from plc.concealers import make_concealer

    return [(make_concealer("opus"), {}), (make_concealer("neural", realtime=False), {}),
            (make_concealer("neural", realtime=False, defer_to_codec=()), {}),
            (make_concealer("neural", realtime=False), {"steerable_modes": ("silk",)}),
            (make_concealer("neural", realtime=False), {"steer_with_fec": True})]


def code_clip(x: np.ndarray, lost_packets: np.ndarray, bitrate_bps: int, sender: str = "plc", fec: bool = False):
    """``x`` (16 kHz) coded from 48 kHz at ``bitrate_bps`` in 20 ms packets, by this project's mono
    encoder (``sender="plc"``) or by aiortc's, stereo, as a call sends (``"aiortc"``, with
    in-band FEC when ``fec``, as :func:`plc.webrtc_fec.fec_opus_encoder` sets it): (payloads,
    lost flag per packet, the coding mode a receiver knows at each packet (a lost one's: the last
    received packet's, which the decoder's concealment continues), encoder delay in 16 kHz samples)."""
    from scipy.signal import resample_poly

    from plc.codecs.opus import OpusEncoder, opus_packet_mode
    from plc.codecs.payload import encode_signal

    if sender == "aiortc":
        from plc.codecs.opus import DEFAULT_EXPECTED_LOSS_PERCENT

        from .fec_share import encode_aiortc

        payloads = encode_aiortc(np.concatenate([x, np.zeros(2 * SAMPLE_RATE // 50, np.float32)]), bitrate_bps,
                                 fec, DEFAULT_EXPECTED_LOSS_PERCENT)
        delay = _decoded_delay(x, payloads)
    else:
        enc = OpusEncoder(INPUT_RATE, bitrate_bps=bitrate_bps, **({"fec": True} if fec else {}))
        signal = resample_poly(x, INPUT_RATE // SAMPLE_RATE, 1).astype(np.float32)
        payloads = encode_signal(enc, signal)
        delay = enc.lookahead * SAMPLE_RATE // INPUT_RATE
    n_packets = len(payloads)
    lost = np.zeros(n_packets, bool)
    lost[:min(n_packets, len(lost_packets))] = lost_packets[:n_packets]
    modes, mode = [], None
    for payload, gone in zip(payloads, lost):
        mode = mode if gone else opus_packet_mode(payload)
        modes.append(mode)
    return payloads, lost, modes, delay


def _decoded_delay(x: np.ndarray, payloads: list[bytes], max_lag: int = 400) -> int:
    """The lag (16 kHz samples) at which ``payloads``, decoded without loss, line up with ``x``."""
    from plc.codecs.opus import OpusPayloadDecoder

    dec = OpusPayloadDecoder()
    y = np.concatenate([dec.decode(p) for p in payloads])
    n = min(len(x), len(y) - max_lag)
    return int(np.argmax([np.dot(x[:n], y[lag:lag + n]) for lag in range(max_lag)]))


def receive(payloads: list[bytes], lost: np.ndarray, concealer, decoder_options: Optional[dict] = None,
            fec: bool = False, lookahead: bool = False) -> np.ndarray:
    """What a receiver plays: each packet decoded at 16 kHz (or concealed by the decoder, steered by
    ``concealer`` where both can: :func:`plc.concealers.codec_plc.codec_concealment`; with ``fec``,
    a lost packet whose successor came and carries a copy of it is decoded from that copy, as the
    jitter buffer does) and passed through ``concealer`` 10 ms at a time, packet by packet. With
    ``lookahead`` the receiver holds the packet after each lost one, as a jitter buffer does, so a
    gap can end on its way into it (:mod:`plc.concealers.gap_end`): the next packet, or with
    ``fec`` the copy of the next lost packet that the one after it carries."""
    from plc.codecs.opus import OpusPayloadDecoder
    from plc.concealers.codec_plc import codec_concealment
    from plc.offline import play_packet

    dec = OpusPayloadDecoder(**(decoder_options or {}))
    n = SAMPLE_RATE * 20 // 1000
    out = np.zeros(len(payloads) * n, np.float32)
    for p, payload in enumerate(payloads):
        concealed = bool(lost[p])
        if concealed and fec and p + 1 < len(payloads) and not lost[p + 1]:
            copy = dec.fec_duration(payloads[p + 1])
            y = dec.decode_fec(payloads[p + 1], copy) if copy else None
            concealed = y is None
        if concealed:
            y = codec_concealment(dec, concealer, n, _audio_ahead(dec, payloads, lost, p, fec) if lookahead else None)
        elif not lost[p]:
            y = dec.decode(payload)
        y = np.zeros(n, np.float32) if y is None else y
        out[p * n:(p + 1) * n] = play_packet(concealer, y, concealed, dec.mode)
    return out


def _audio_ahead(dec, payloads: list[bytes], lost: np.ndarray, p: int, fec: bool):
    """A function decoding ahead what plays after lost packet ``p``, where a receiver holds it."""
    if p + 1 < len(payloads) and not lost[p + 1]:
        return lambda: dec.decode_ahead(payloads[p + 1])
    if fec and p + 2 < len(payloads) and lost[p + 1] and not lost[p + 2]:
        copy = dec.fec_duration(payloads[p + 2])
        if copy:
            return lambda: dec.decode_ahead(payloads[p + 2], copy)
    return None


def _score_clip(args: tuple[str, str, int, int, str, bool, bool]) -> tuple[list[tuple[float, float]], list]:
    path, loss_spec, index, bitrate_bps, sender, fec, lookahead = args
    from plc.audio_io import load_audio, resample

    from .metrics import pesq_wb, plcmos

    audio, sr = load_audio(path)
    x = resample(audio.mean(axis=1), sr, SAMPLE_RATE).astype(np.float32)
    payloads, lost, modes, delay = code_clip(x, loss_trace(len(x), SAMPLE_RATE, loss_spec, index), bitrate_bps,
                                             sender, fec)
    scores = []
    for concealer, options in _variants():
        y = receive(payloads, lost, concealer, options, fec, lookahead)[delay:delay + len(x)]
        scores.append((plcmos(y, SAMPLE_RATE, seed=index), pesq_wb(x, y, SAMPLE_RATE)))
    return scores, [m for m, gone in zip(modes, lost) if gone]


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.opus_mode_probe", description=__doc__.split("\n\n")[0])
    add_clip_arguments(p, clips=40)
    p.add_argument("--bitrate", type=int, default=32000, metavar="BPS",
                   help="Opus bitrate from 48 kHz input (default 32000, Chrome's: hybrid mode for speech)")
    p.add_argument("--sender", choices=("plc", "aiortc"), default="plc",
                   help="the encoder: this project's, mono (default), or aiortc's, stereo, as a live call sends")
    p.add_argument("--fec", action="store_true",
                   help="in-band FEC: the sender codes a copy of each packet into the next (planned for 10%% loss), "
                        "and a lost packet whose successor came is decoded from it")
    p.add_argument("--lookahead", action="store_true",
                   help="the receiver holds the packet after a lost one, as a jitter buffer does (gaps may end "
                        "on their way into it: plc.concealers.gap_end)")
    args = p.parse_args(argv)
    from .summary import paired_line, paired_scores

    paths = sweep_paths(p, args)
    results = map_clips(_score_clip, [(path, args.loss, i, args.bitrate, args.sender, args.fec, args.lookahead)
                                                  for i, path in enumerate(paths)], args.jobs)
    modes = Counter(m for _, lost_modes in results for m in lost_modes)
    total = sum(modes.values()) or 1
    print(f"{len(results)} clips, {args.loss}, Opus {args.bitrate // 1000} kbit/s from {INPUT_RATE // 1000} kHz "
          f"({'aiortc' if args.sender == 'aiortc' else 'this project'}'s encoder{', in-band FEC' if args.fec else ''}); "
          "lost packets coded in " + ", ".join(f"{m}: {n / total:.0%}" for m, n in modes.most_common()))
    rows = np.array([scores for scores, _ in results])     # (clips, variants, 2)
    for name, r in zip(VARIANTS, paired_scores(rows, 0)):
        print(paired_line(f"{name}:", r, "opus", f"{len(rows)} clips"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How much in-band FEC the Opus encoders really send, and at what bitrate.

``python -m eval.fec_share --manifest ../shared/data/dev.csv --limit 20`` encodes the clips
(concatenated, 16 kHz) with this project's libopus encoder (:class:`plc.codecs.opus.OpusEncoder`,
mono wideband VOIP, the offline and ``netsim`` path) and with aiortc's Opus encoder (PyAV's
libopus at 48 kHz stereo, the call path; with FEC as :func:`plc.webrtc_fec.fec_opus_encoder`
sets it), with and without FEC, at several bitrates, and prints for each the measured payload
bitrate, the share of packets that carry an LBRR copy (:func:`plc.codecs.opus_fec.has_lbrr`) and
the Opus modes used (SILK, hybrid, CELT). libopus codes LBRR only in SILK or hybrid mode, only
for frames its VAD calls speech, and only when the bitrate leaves room for it.
"""

from __future__ import annotations

import argparse
import fractions
import sys
from typing import Optional

import numpy as np

from .runner import load_clip_16k, read_manifest

PACKET_MS = 20


def _mode(packet: bytes) -> str:
    config = packet[0] >> 3
    return "SILK" if config < 12 else "hybrid" if config < 16 else "CELT"


def summarize_packets(packets: list[bytes], seconds: float) -> dict:
    """Payload kbit/s, share of packets with an LBRR copy, and the share of each Opus mode."""
    from plc.codecs.opus_fec import has_lbrr

    modes = [_mode(p) for p in packets]
    return {"kbps": sum(map(len, packets)) * 8 / seconds / 1000.0,
            "lbrr_share": float(np.mean([has_lbrr(p) for p in packets])),
            "modes": {m: modes.count(m) / len(modes) for m in ("SILK", "hybrid", "CELT") if m in modes}}


def encode_offline(x16: np.ndarray, bitrate_bps: int, fec: bool, expected_loss_percent: int) -> list[bytes]:
    """This project's encoder (16 kHz mono, VOIP, 20 ms)."""
    from plc.codecs.opus import OpusEncoder

    enc = OpusEncoder(16000, bitrate_bps, PACKET_MS, fec=fec, expected_loss_percent=expected_loss_percent)
    n = enc.frame_samples
    return [enc.encode(x16[k * n:(k + 1) * n]) for k in range(len(x16) // n)]


def encode_aiortc(x16: np.ndarray, bitrate_bps: Optional[int], fec: bool, expected_loss_percent: int) -> list[bytes]:
    """aiortc's encoder (48 kHz stereo s16; its 96 kbit/s unless ``bitrate_bps``)."""
    import av
    from aiortc.codecs.opus import OpusEncoder

    from plc.audio_io import resample
    from plc.webrtc_fec import fec_opus_encoder

    enc = fec_opus_encoder(expected_loss_percent) if fec else OpusEncoder()
    if bitrate_bps:
        enc.codec.bit_rate = bitrate_bps
    pcm = (np.clip(resample(x16, 16000, 48000), -1, 1) * 32767).astype(np.int16)
    packets: list[bytes] = []
    for k in range(len(pcm) // 960):
        frame = av.AudioFrame.from_ndarray(np.repeat(pcm[k * 960:(k + 1) * 960], 2).reshape(1, -1), format="s16",
                                           layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, k * 960, fractions.Fraction(1, 48000)
        packets += enc.encode(frame)[0]
    return packets


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.fec_share", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, metavar="CSV")
    p.add_argument("--limit", type=int, default=20, help="clips, spread over the manifest (default 20)")
    p.add_argument("--expected-loss", type=int, default=10, metavar="PERCENT", help="FEC planned for (default 10)")
    p.add_argument("--bitrates", default="16000,24000,32000", help="offline encoder bitrates, bit/s")
    p.add_argument("--aiortc-bitrates", default="96000,32000", help="aiortc encoder bitrates, bit/s (96000 its own)")
    args = p.parse_args(argv)
    clips = read_manifest(args.manifest, args.limit)
    x = np.concatenate([load_clip_16k(c.path) for c in clips]).astype(np.float32)
    seconds = len(x) // 320 * PACKET_MS / 1000.0
    print(f"{len(clips)} clips, {seconds:.1f} s of speech; FEC planned for {args.expected_loss}% loss")
    print(f"{'encoder':28s} {'FEC':>4s} {'kbit/s':>7s} {'LBRR packets':>13s}  modes")
    for name, encode, rates in (("plc (16 kHz mono)", encode_offline, args.bitrates),
                                ("aiortc (48 kHz stereo)", encode_aiortc, args.aiortc_bitrates)):
        for rate in (int(r) for r in rates.split(",") if r.strip()):
            for fec in (False, True):
                s = summarize_packets(encode(x, rate, fec, args.expected_loss), seconds)
                modes = ", ".join(f"{m} {100 * v:.0f}%" for m, v in s["modes"].items())
                print(f"{name + f' {rate // 1000} kbit/s':28s} {'on' if fec else 'off':>4s} {s['kbps']:7.1f} "
                      f"{100 * s['lbrr_share']:12.0f}%  {modes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

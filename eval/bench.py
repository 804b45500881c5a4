"""``plc bench``: the real-time cost of a concealer on real speech with bursty loss.

Runs single-threaded, frame by frame as a call would, and times every
``process`` call: concealed frames (p50, p99, max, in ms per 10 ms frame),
received frames, the real-time factor, the model's size and the process' peak
memory. Speech: ``--input`` or the built-in LibriVox clips.

``--codec opus`` times the Opus receive path instead (24 kbit/s, SILK, 20 ms packets, losses
drawn per packet): a lost packet's time is everything done for it (the decoder's concealment,
steered by the concealer's proposal where it is in step with it, and the concealer's two 10 ms
frames), reported per 10 ms of it (half the packet's) and per packet; a received frame's is the
concealer's ``process`` (the decode itself is the codec's, not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

from plc import argtypes


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure a concealer's real-time cost on real speech",
                       description="Time a concealer frame by frame on one thread on real speech under "
                                   "bursty loss (gilbert:0.1,3 by default).")
    p.add_argument("--method", default="neural", help="concealment method (default neural)")
    p.add_argument("--input", metavar="AUDIO", action="append",
                   help="speech file(s) (default: the built-in LibriVox clips)")
    p.add_argument("--loss", default="gilbert:0.1,3", help="loss model (default gilbert:0.1,3)")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="seed of the losses (default 0)")
    p.add_argument("--repeat", type=argtypes.int_range(1, 1000), default=3, help="passes over the speech (default 3)")
    p.add_argument("--model-dir", metavar="DIR",
                   help="neural model folder (default: the shipped model); refused if it does not load")
    p.add_argument("--codec", choices=("pcm", "opus"), default="pcm",
                   help="pcm (default): the concealer alone; opus: the Opus receive path at --bitrate, "
                        "the decoder's concealment (and steering) included")
    p.add_argument("--bitrate", type=argtypes.int_range(6000, 510000), default=24000,
                   help="Opus bitrate with --codec opus (default 24000: SILK)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    os.environ["OMP_NUM_THREADS"] = "1"
    import numpy as np

    from plc.audio_io import AudioError, load_audio, resample
    from plc.cli import UserError
    from plc.concealers import FallbackConcealer, available_methods, make_concealer, method_info, registered_methods
    from plc.loss_models import TraceError, parse_loss_spec

    if args.method not in available_methods(codec="pcm"):  # a codec's own concealment has no cost of its own here
        raise UserError(f"cannot bench {args.method!r}; choose from {', '.join(available_methods(codec='pcm'))}")
    info = method_info(args.method)
    if args.model_dir is not None:
        if not info.trained_model:
            trained = [i.name for i in registered_methods() if i.trained_model]
            raise UserError(f"--model-dir is for --method {' or '.join(trained)}, not {args.method}")
        from plc.concealers.neural import check_model_dir

        try:  # a folder that does not load would time the classic fallback under the name neural
            check_model_dir(args.model_dir)
        except ValueError as exc:
            raise UserError(f"--model-dir: {exc}") from None
    try:
        model = parse_loss_spec(args.loss)
        if model.loss_rate <= 0:
            raise UserError(f"--loss {args.loss}: bench times concealment, so it needs losses")
        paths = args.input or _default_speech()
        speech = np.concatenate([resample(a.mean(axis=1), rate, 16000) for a, rate in map(load_audio, paths)])
    except (AudioError, TraceError) as exc:
        raise UserError(str(exc)) from None
    # No deadline: bench times every frame the method makes, not the fallback's.
    concealer = make_concealer(args.method, realtime=False,
                               **({"model_dir": args.model_dir} if args.model_dir is not None else {}))
    # The method's own concealer, behind its fallback if it has one (its counters and model live there).
    core = concealer.primary if isinstance(concealer, FallbackConcealer) else concealer
    frame = concealer.frame_samples
    n_frames = len(speech) // frame
    if n_frames < 2:
        raise UserError(f"{len(speech) / 16000:.3f} s of speech is too short to time: give at least "
                        f"{2 * concealer.frame_ms} ms")
    rng = np.random.default_rng(args.seed)
    packet_ms: list[float] = []
    if args.codec == "opus":
        concealed_ms, received_ms, packet_ms = _time_opus_path(concealer, speech, model, rng, args)
        by_noise = [False] * len(concealed_ms)   # the noise continuation does not run in SILK mode
    else:
        concealed_ms, received_ms, by_noise = _time_pcm_path(concealer, core, speech, model, rng, args)
    if not concealed_ms or not received_ms:
        raise UserError(f"{'no' if not concealed_ms else 'every'} frame was lost under {args.loss} in "
                        f"{args.repeat} x {len(speech) / 16000:.2f} s of speech: give more speech, --repeat or "
                        "another --loss")
    c, r, noise = np.array(concealed_ms), np.array(received_ms), np.array(by_noise, dtype=bool)
    info = getattr(getattr(core, "model", None), "info", None) or {}
    result = {
        "method": args.method,
        "speech_s": round(len(speech) / 16000, 2),
        "concealed_frames": int(len(c)),
        "p50_ms": float(np.percentile(c, 50)), "p99_ms": float(np.percentile(c, 99)), "max_ms": float(c.max()),
        "mean_ms": float(c.mean()),
        "received_ms": float(np.mean(r)), "received_p99_ms": float(np.percentile(r, 99)),
        "rtf": float((c.sum() + r.sum()) / (len(c) + len(r)) / concealer.frame_ms),
        "rtf_concealed": float(c.mean() / concealer.frame_ms),
        "params": int(info.get("params", 0)), "model_bytes": int(info.get("model_bytes", 0)),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "fallback_frames": int(concealer.stats.fallback_frames),
        "noise_frames": int(noise.sum()),
        "not_noise_p50_ms": float(np.percentile(c[~noise], 50)) if (~noise).any() else 0.0,
        "threads": 1,
        "codec": args.codec,
    }
    if packet_ms:
        result.update(bitrate_bps=args.bitrate, packet_p50_ms=float(np.percentile(packet_ms, 50)),
                      packet_p99_ms=float(np.percentile(packet_ms, 99)), packet_max_ms=float(np.max(packet_ms)),
                      steered_losses=int(concealer.stats.steered_losses),
                      codec_concealed_frames=int(concealer.stats.codec_concealed_frames))
    if core.unavailable_reason:
        result["model_error"] = core.unavailable_reason
    if args.json:
        print(json.dumps(result))
    else:
        _print_result(args, result)
    return 0


def _time_pcm_path(concealer, core, speech, model, rng, args) -> tuple[list[float], list[float], list[bool]]:
    """The concealer alone, frame by frame: per-frame times of concealed and received frames, and
    for each concealed frame whether the neural concealer's noise continuation made it."""
    import numpy as np

    frame = concealer.frame_samples
    n_frames = len(speech) // frame
    concealed_ms, received_ms, by_noise = [], [], []
    for _ in range(args.repeat):
        lost = np.repeat(model.generate(-(-n_frames // 2), rng), 2)[:n_frames]
        for i in range(n_frames):
            x = None if lost[i] else speech[i * frame:(i + 1) * frame]
            noise_before = core.stats.noise_concealed_frames
            t = time.perf_counter()
            concealer.process(x)
            dt = (time.perf_counter() - t) * 1000.0
            (concealed_ms if x is None else received_ms).append(dt)
            if x is None:  # made by the neural concealer's noise continuation (after unvoiced audio)?
                by_noise.append(core.stats.noise_concealed_frames > noise_before)
    return concealed_ms, received_ms, by_noise


def _time_opus_path(concealer, speech, model, rng, args) -> tuple[list[float], list[float], list[float]]:
    """The Opus receive path, packet by packet (module docstring): per-10-ms times of concealed
    and received frames, and per-packet times of the lost packets."""
    import numpy as np

    from plc.codecs.opus import OpusEncoder, OpusPayloadDecoder
    from plc.concealers.codec_plc import codec_concealment
    from plc.offline import play_packet

    encoder = OpusEncoder(16000, bitrate_bps=args.bitrate, frame_ms=20)
    n = encoder.frame_samples
    frame = concealer.frame_samples
    payloads = [encoder.encode(speech[i * n:(i + 1) * n]) for i in range(len(speech) // n)]
    concealed_ms, received_ms, packet_ms = [], [], []
    for _ in range(args.repeat):
        decoder = OpusPayloadDecoder(20)
        lost = model.generate(len(payloads), rng)
        for i, payload in enumerate(payloads):
            if lost[i]:
                t = time.perf_counter()
                out = codec_concealment(decoder, concealer, n)
                if out is None:   # the decoder made nothing: the concealer is asked with nothing fed
                    for _ in range(n // frame):
                        concealer.process(None)
                else:
                    play_packet(concealer, out, True, decoder.mode)
                dt = (time.perf_counter() - t) * 1000.0
                packet_ms.append(dt)
                concealed_ms += [dt / (n // frame)] * (n // frame)
                continue
            out = decoder.decode(payload)
            for k in range(n // frame):
                t = time.perf_counter()
                concealer.process(out[k * frame:(k + 1) * frame])
                received_ms.append((time.perf_counter() - t) * 1000.0)
    return concealed_ms, received_ms, packet_ms


def _print_result(args: argparse.Namespace, result: dict) -> None:
    """The figures of one bench, for people."""
    print(f"{args.method}: {result['concealed_frames']} concealed 10 ms frames over "
          f"{args.repeat} x {result['speech_s']} s of speech ({args.loss}), one thread")
    print(f"  concealed frame: p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms  "
          f"max {result['max_ms']:.3f} ms")
    if "packet_p99_ms" in result:
        print(f"  Opus {result['bitrate_bps'] // 1000} kbit/s: lost 20 ms packet p50 {result['packet_p50_ms']:.3f} ms  "
              f"p99 {result['packet_p99_ms']:.3f} ms  max {result['packet_max_ms']:.3f} ms (decoder included); "
              f"{result['steered_losses']} losses steered by the concealer, {result['codec_concealed_frames']} frames "
              "the codec's")
    if result["noise_frames"]:
        print(f"  {result['noise_frames']} frames after unvoiced audio were LPC noise; the others' p50 "
              f"{result['not_noise_p50_ms']:.3f} ms")
    print(f"  received frame:  mean {result['received_ms']:.4f} ms  p99 {result['received_p99_ms']:.4f} ms")
    print(f"  real-time factor {result['rtf']:.4f} overall, {result['rtf_concealed']:.3f} while concealing")
    print(f"  {result['params']:,} parameters, {result['model_bytes']:,} model bytes, "
          f"peak RSS {result['peak_rss_mb']} MB, {result['fallback_frames']} fallback frames")
    if "model_error" in result:
        print(f"  model unavailable, classic fallback measured: {result['model_error']}")


def _default_speech() -> list[Path]:
    from demo.default_input import librivox_clips

    from plc.cli import UserError

    clips = [p for p, _ in librivox_clips()]
    if not clips:
        raise UserError("no built-in speech: run `make setup` (Debian's pocketsphinx-testdata) or pass --input")
    return clips

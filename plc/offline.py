"""Offline concealment of whole signals: the engine behind ``plc conceal`` and ``plc eval``.

Two pipelines:

* ``pcm``: the input is the *received* audio. Samples of lost packets are
  ignored whatever they hold; the concealer is told "lost" for them. Received
  samples pass through unchanged except where the concealer cross-fades back
  into them.
* ``opus``: the input is the *sender's* audio. It is encoded with libopus
  (20 ms packets, VOIP, wideband), lost packets are dropped, the rest decoded,
  and the lost ones concealed (by libopus itself with ``method="opus"``).
  With ``fec=True`` the encoder adds in-band FEC (each speech packet carries a
  low-bitrate copy of the frame before it, within the same bitrate), and a lost
  packet whose successor arrived and carries that copy is decoded from it
  (``opus_decode`` with ``decode_fec=1``), as NetEQ does when the next packet is in
  its buffer: offline it always is. The concealer is told only about the packets
  nothing recovered.

Concealers run at their native rate (16 kHz); the pipeline resamples around
them. At other input rates the received samples are still passed through
untouched: only the concealed stretches (and 1 ms splices around them) come
from the resampled concealer output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .audio_io import resample
from .concealers import DECODER_METHODS, Concealer, make_concealer, raised_cosine_fade

NATIVE_RATE = 16000
FRAME_MS = 10
CODECS = ("pcm", "opus")
#: The longest packet the pipelines take, ms (Opus' longest frame).
MAX_PACKET_MS = 120


@dataclass
class ConcealResult:
    """Output of :func:`conceal_audio`: the signal (input's shape and rate) and statistics."""

    audio: np.ndarray
    sample_rate: int
    stats: dict = field(default_factory=dict)
    #: Why a concealer fell back to its classic concealment (``stats["fallback_frames"]``), if it did.
    fallback_reasons: list[str] = field(default_factory=list)


def check_packet_ms(packet_ms: int, codec: str = "pcm") -> int:
    """``packet_ms`` if ``codec`` can carry packets that long, else ``ValueError`` (one line).

    Whole 10 ms frames up to :data:`MAX_PACKET_MS`; with Opus, a frame size libopus encodes.
    """
    from .codecs.opus import OPUS_FRAME_MS

    if not (isinstance(packet_ms, (int, np.integer)) and 0 < packet_ms <= MAX_PACKET_MS and packet_ms % FRAME_MS == 0):
        raise ValueError(f"packet duration must be a multiple of {FRAME_MS} ms from {FRAME_MS} to "
                         f"{MAX_PACKET_MS} ms, got {packet_ms}")
    if codec == "opus" and packet_ms not in OPUS_FRAME_MS:
        raise ValueError(f"Opus packets last {', '.join(map(str, OPUS_FRAME_MS))} ms, got {packet_ms}")
    return packet_ms


def offline_concealer(method: str, sample_rate: int = NATIVE_RATE, frame_ms: int = FRAME_MS) -> Concealer:
    """The concealer ``method`` for offline use: ``neural`` without its real-time deadline
    (offline there is none to fall back on, and a busy machine must not change the output)."""
    if method == "neural":
        return make_concealer(method, sample_rate=sample_rate, frame_ms=frame_ms, deadline_ms=None)
    return make_concealer(method, sample_rate=sample_rate, frame_ms=frame_ms)


def packets_in(n_samples: int, sample_rate: int, packet_ms: int) -> int:
    """Number of ``packet_ms`` packets needed to carry ``n_samples`` samples."""
    packet_samples = sample_rate * packet_ms / 1000.0
    return int(np.ceil(n_samples / packet_samples - 1e-9))


def conceal_audio(
    audio: np.ndarray,
    sample_rate: int,
    lost_packets: np.ndarray,
    method: str,
    codec: str = "pcm",
    packet_ms: int = 20,
    bitrate_bps: int = 24000,
    concealer_factory: Optional[Callable[[], Concealer]] = None,
    fec: bool = False,
    expected_loss_percent: Optional[int] = None,
) -> ConcealResult:
    """Conceal the lost packets of ``audio`` (``(samples,)`` or ``(samples, channels)``).

    Parameters
    ----------
    audio : np.ndarray
        Float samples in [-1, 1] at ``sample_rate`` Hz.
    lost_packets : np.ndarray of bool
        One entry per ``packet_ms`` packet, ``True`` = lost. Must cover the audio.
    method : str
        A concealer name (see :func:`plc.concealers.available_methods`).
    codec : {"pcm", "opus"}
        Pipeline, see the module docstring.
    concealer_factory : callable, optional
        Builds the concealer instead of ``make_concealer(method)`` (one per channel).
    fec : bool
        Opus only: in-band FEC on at the sender, planned for ``expected_loss_percent`` loss
        (default :data:`plc.codecs.opus.DEFAULT_EXPECTED_LOSS_PERCENT`).

    Returns
    -------
    ConcealResult
        Audio with the input's shape and rate, and summed concealer statistics. With Opus
        also ``fec_recovered_packets`` (lost packets decoded from FEC, per channel, summed)
        and ``payload_bitrate_bps`` (the coded bitrate, all channels).
    """
    from .codecs.opus import DEFAULT_EXPECTED_LOSS_PERCENT

    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose pcm or opus")
    check_packet_ms(packet_ms, codec)
    if (fec or expected_loss_percent is not None) and codec != "opus":
        raise ValueError("in-band FEC is Opus': use it with --codec opus")
    if expected_loss_percent is None:
        expected_loss_percent = DEFAULT_EXPECTED_LOSS_PERCENT
    if method in DECODER_METHODS and codec != "opus":
        raise ValueError(f"method {method!r} is the codec's own concealment: use it with --codec opus")
    audio = np.asarray(audio, dtype=np.float32)
    mono = audio.ndim == 1
    channels = audio[:, None] if mono else audio
    if channels.ndim != 2 or channels.shape[0] == 0:
        raise ValueError("audio must be a non-empty (samples,) or (samples, channels) array")
    lost_packets = np.asarray(lost_packets, dtype=bool)
    needed = packets_in(channels.shape[0], sample_rate, packet_ms)
    if len(lost_packets) < needed:
        raise ValueError(
            f"loss trace has {len(lost_packets)} packets but the audio needs {needed} "
            f"({packet_ms} ms packets)"
        )
    lost_packets = lost_packets[:needed]

    def new_concealer() -> Optional[Concealer]:
        if method in DECODER_METHODS:
            return None
        if concealer_factory is not None:
            return concealer_factory()
        return offline_concealer(method)

    outputs, stats, reasons = [], {}, []
    unrecovered = []  # per channel: the lost packets nothing recovered
    coded_bits = 0
    for ch in range(channels.shape[1]):
        concealer = new_concealer()
        x = channels[:, ch]
        if codec == "pcm":
            y = _conceal_pcm_channel(x, sample_rate, lost_packets, packet_ms, concealer)
            unrecovered.append(lost_packets)
        else:
            coded = _conceal_opus_channel(x, sample_rate, lost_packets, packet_ms, bitrate_bps, concealer, fec,
                                          expected_loss_percent)
            y = coded.audio
            unrecovered.append(lost_packets & ~coded.recovered[:len(lost_packets)])
            coded_bits += coded.payload_bytes * 8
        outputs.append(y)
        if concealer is not None:
            for key, value in concealer.stats.as_dict().items():
                stats[key] = stats.get(key, 0) + value
            reason = getattr(concealer, "fallback_reason", None)
            if reason and reason not in reasons:
                reasons.append(reason)
    if method in DECODER_METHODS:  # the codec concealed: count it the same way
        frames = sum(int(u.sum()) for u in unrecovered) * (packet_ms // FRAME_MS)
        bursts = sum(int(np.count_nonzero(np.diff(np.concatenate([[0], u.astype(np.int8)])) == 1))
                     for u in unrecovered)
        stats = {"concealed_frames": frames, "concealed_samples": frames * NATIVE_RATE * FRAME_MS // 1000,
                 "concealment_events": bursts}
    out = np.stack(outputs, axis=1)
    stats["lost_packets"] = int(lost_packets.sum())
    stats["packets"] = int(len(lost_packets))
    if codec == "opus":
        stats["fec_recovered_packets"] = sum(int((lost_packets & ~u).sum()) for u in unrecovered)
        stats["payload_bitrate_bps"] = coded_bits / (len(lost_packets) * packet_ms / 1000.0)
    return ConcealResult(out[:, 0] if mono else out, sample_rate, stats, reasons)


def lost_sample_mask(n_samples: int, sample_rate: int, lost_packets: np.ndarray, packet_ms: int) -> np.ndarray:
    """Per-sample boolean mask of the samples that belong to lost packets."""
    idx = (np.arange(n_samples) * 1000 // (sample_rate * packet_ms)).astype(np.int64)
    idx = np.minimum(idx, len(lost_packets) - 1)
    return np.asarray(lost_packets, dtype=bool)[idx]


def run_concealer(x: np.ndarray, lost_frames: np.ndarray, concealer: Concealer) -> np.ndarray:
    """Feed ``x`` (native rate, whole frames) to ``concealer`` frame by frame."""
    n = concealer.frame_samples
    out = np.empty_like(x)
    for f, lost in enumerate(lost_frames):
        out[f * n:(f + 1) * n] = concealer.process(None if lost else x[f * n:(f + 1) * n])
    return out


def _conceal_pcm_channel(x: np.ndarray, sample_rate: int, lost_packets: np.ndarray, packet_ms: int,
                         concealer: Concealer) -> np.ndarray:
    lost_mask = lost_sample_mask(len(x), sample_rate, lost_packets, packet_ms)
    received = np.where(lost_mask, 0.0, x).astype(np.float32)  # lost samples never leak in
    native = resample(received, sample_rate, NATIVE_RATE)
    frames_per_packet = packet_ms // FRAME_MS
    n_frames = len(lost_packets) * frames_per_packet
    frame = concealer.frame_samples
    padded = np.zeros(n_frames * frame, dtype=np.float32)
    padded[:min(len(native), len(padded))] = native[:len(padded)]
    lost_frames = np.repeat(lost_packets, frames_per_packet)
    concealed = run_concealer(padded, lost_frames, concealer)
    if sample_rate == NATIVE_RATE:
        return concealed[:len(x)]
    # Which native frames did the concealer change (lost ones and cross-fades back)?
    changed_frames = np.any((concealed != padded).reshape(n_frames, frame), axis=1) | lost_frames
    changed = lost_sample_mask(len(x), sample_rate, changed_frames, FRAME_MS)
    upsampled = resample(concealed, NATIVE_RATE, sample_rate)[:len(x)]
    if len(upsampled) < len(x):
        upsampled = np.pad(upsampled, (0, len(x) - len(upsampled)))
    return _splice(received, upsampled, changed, splice_samples=max(1, sample_rate // 1000))


def _splice(original: np.ndarray, replacement: np.ndarray, use_replacement: np.ndarray,
            splice_samples: int) -> np.ndarray:
    """``replacement`` where the mask is set, ``original`` elsewhere, cross-faded over
    ``splice_samples`` on the original's side of each edge so no step appears."""
    weight = use_replacement.astype(np.float32)
    edges = np.flatnonzero(np.diff(use_replacement.astype(np.int8)))
    ramp = raised_cosine_fade(splice_samples)
    for e in edges:
        if use_replacement[e + 1]:  # original -> replacement at e+1: ramp up before it
            lo = max(0, e + 1 - splice_samples)
            seg = ramp[-(e + 1 - lo):] if e + 1 - lo else ramp[:0]
            weight[lo:e + 1] = np.maximum(weight[lo:e + 1], seg)
        else:  # replacement -> original at e+1: ramp down after it
            hi = min(len(weight), e + 1 + splice_samples)
            weight[e + 1:hi] = np.maximum(weight[e + 1:hi], ramp[::-1][:hi - e - 1])
    return (original * (1.0 - weight) + replacement * weight).astype(np.float32)


@dataclass
class _CodedChannel:
    audio: np.ndarray          # the channel at the input's rate
    recovered: np.ndarray      # per packet: lost, and decoded from the next packet's FEC copy
    payload_bytes: int         # the coded size of the packets covering the input


def _conceal_opus_channel(x: np.ndarray, sample_rate: int, lost_packets: np.ndarray, packet_ms: int,
                          bitrate_bps: int, concealer: Optional[Concealer], fec: bool = False,
                          expected_loss_percent: int = 0) -> _CodedChannel:
    from .codecs.opus import OpusDecoder, OpusEncoder
    from .codecs.opus_fec import fec_samples

    native = resample(x, sample_rate, NATIVE_RATE)
    encoder = OpusEncoder(NATIVE_RATE, bitrate_bps=bitrate_bps, frame_ms=packet_ms, fec=fec,
                          expected_loss_percent=expected_loss_percent)
    decoder = OpusDecoder(NATIVE_RATE, frame_ms=packet_ms)
    packet = encoder.frame_samples
    # Pad so that the encoder's lookahead is flushed out at the end.
    n_packets = max(len(lost_packets), int(np.ceil((len(native) + encoder.lookahead) / packet)))
    lost = np.concatenate([lost_packets, np.zeros(n_packets - len(lost_packets), dtype=bool)])
    signal = np.zeros(n_packets * packet, dtype=np.float32)
    signal[:len(native)] = native
    frame = NATIVE_RATE * FRAME_MS // 1000
    payloads = [encoder.encode(signal[p * packet:(p + 1) * packet]) for p in range(n_packets)]
    decoded = np.empty_like(signal)
    recovered = np.zeros(n_packets, dtype=bool)
    for p in range(n_packets):
        if not lost[p]:
            decoded[p * packet:(p + 1) * packet] = decoder.decode(payloads[p])
        elif p + 1 < n_packets and not lost[p + 1] and fec_samples(payloads[p + 1], NATIVE_RATE) == packet:
            # the next packet arrived with a copy of this one (whatever the sender was told, as a receiver)
            decoded[p * packet:(p + 1) * packet] = decoder.decode_fec(payloads[p + 1], packet)
            recovered[p] = True
        else:
            # On a loss the decoder always runs its own PLC so that its state stays
            # continuous; other methods replace that output below.
            decoded[p * packet:(p + 1) * packet] = decoder.decode(None)
    if concealer is not None:
        lost_frames = np.repeat(lost & ~recovered, packet // frame)
        decoded = run_concealer(decoded, lost_frames, concealer)
    aligned = decoded[encoder.lookahead:encoder.lookahead + len(native)]
    audio = resample(aligned, NATIVE_RATE, sample_rate)[:len(x)]
    return _CodedChannel(audio, recovered, sum(len(p) for p in payloads[:len(lost_packets)]))

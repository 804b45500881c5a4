"""Offline concealment of whole signals: the engine behind ``plc conceal`` and ``plc eval``.

Two pipelines:

* ``pcm``: the input is the *received* audio. Samples of lost packets are
  ignored whatever they hold; the concealer is told "lost" for them. Received
  samples pass through unchanged except where the concealer cross-fades back
  into them.
* a lossy codec of :mod:`plc.codecs` (``opus``): the input is the *sender's* audio. It is
  encoded (libopus: 20 ms packets, VOIP, wideband), lost packets are dropped, the rest
  decoded, and the lost ones concealed (by the codec itself with ``method="opus"``).
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
from typing import Callable, Optional, Sequence

import numpy as np

from .audio_io import resample
from .codecs import Codec, codec_names, get_codec
from .codecs.opus import DEFAULT_EXPECTED_LOSS_PERCENT
from .codecs.payload import encode_signal
from .concealers import Concealer, check_method, make_concealer
from .concealers.codec_plc import codec_concealment
from .dsp import raised_cosine_fade

NATIVE_RATE = 16000
FRAME_MS = 10
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

    Whole 10 ms frames up to :data:`MAX_PACKET_MS`, and a packet duration the codec carries
    (:attr:`plc.codecs.Codec.packet_ms`: with Opus, a frame size libopus encodes).
    """
    if not (isinstance(packet_ms, (int, np.integer)) and 0 < packet_ms <= MAX_PACKET_MS and packet_ms % FRAME_MS == 0):
        raise ValueError(f"packet duration must be a multiple of {FRAME_MS} ms from {FRAME_MS} to "
                         f"{MAX_PACKET_MS} ms, got {packet_ms}")
    return get_codec(codec).check_packet_ms(packet_ms)


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
    codec : str
        A codec of :mod:`plc.codecs` that this project sends (``pcm``, ``opus``): the pipeline,
        see the module docstring.
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
    spec = _checked_codec(codec, method, packet_ms, fec, expected_loss_percent)
    if expected_loss_percent is None:
        expected_loss_percent = DEFAULT_EXPECTED_LOSS_PERCENT
    audio = np.asarray(audio, dtype=np.float32)
    mono = audio.ndim == 1
    channels = audio[:, None] if mono else audio
    if channels.ndim != 2 or channels.shape[0] == 0:
        raise ValueError("audio must be a non-empty (samples,) or (samples, channels) array")
    lost_packets = _covering(np.asarray(lost_packets, dtype=bool), channels.shape[0], sample_rate, packet_ms)

    outputs, stats, reasons = [], {}, []
    unrecovered = []  # per channel: the lost packets nothing recovered
    coded_bits = 0
    for ch in range(channels.shape[1]):
        # Offline there is no real-time deadline: a busy machine must not change the output.
        concealer = concealer_factory() if concealer_factory is not None else make_concealer(method, realtime=False)
        x = channels[:, ch]
        if not spec.lossy:
            y = _conceal_pcm_channel(x, sample_rate, lost_packets, packet_ms, concealer)
            unrecovered.append(lost_packets)
        else:
            coded = _conceal_coded_channel(x, sample_rate, lost_packets, packet_ms, bitrate_bps, concealer, spec,
                                           fec, expected_loss_percent)
            y = coded.audio
            unrecovered.append(lost_packets & ~coded.recovered[:len(lost_packets)])
            coded_bits += coded.payload_bytes * 8
        outputs.append(y)
        _add_stats(stats, reasons, concealer)
    out = np.stack(outputs, axis=1)
    stats["lost_packets"] = int(lost_packets.sum())
    stats["packets"] = int(len(lost_packets))
    if spec.lossy:
        stats["fec_recovered_packets"] = sum(int((lost_packets & ~u).sum()) for u in unrecovered)
        stats["payload_bitrate_bps"] = coded_bits / (len(lost_packets) * packet_ms / 1000.0)
    return ConcealResult(out[:, 0] if mono else out, sample_rate, stats, reasons)


def _checked_codec(codec: str, method: str, packet_ms: int, fec: bool, expected_loss_percent: Optional[int]) -> Codec:
    """The codec of the pipeline, after checking that it, the method, the packet size and FEC fit
    together (``ValueError``, one line)."""
    spec = get_codec(codec)
    if spec.encoder is None:
        raise ValueError(f"codec {codec!r} is received only; choose from {', '.join(codec_names())}")
    check_packet_ms(packet_ms, codec)
    check_method(method, codec)
    if fec or expected_loss_percent is not None:
        spec.check_redundancy(fec=True)
    return spec


def _covering(lost_packets: np.ndarray, n_samples: int, sample_rate: int, packet_ms: int) -> np.ndarray:
    """The trace cut to the packets that carry ``n_samples``; ``ValueError`` if it is too short."""
    needed = packets_in(n_samples, sample_rate, packet_ms)
    if len(lost_packets) < needed:
        raise ValueError(
            f"loss trace has {len(lost_packets)} packets but the audio needs {needed} "
            f"({packet_ms} ms packets)"
        )
    return lost_packets[:needed]


def _add_stats(stats: dict, reasons: list[str], concealer: Concealer) -> None:
    """Sum one channel's concealer statistics into ``stats``; collect its fallback reason."""
    for key, value in concealer.stats.as_dict().items():
        stats[key] = stats.get(key, 0) + value
    reason = getattr(concealer, "fallback_reason", None)
    if reason and reason not in reasons:
        reasons.append(reason)


def lost_sample_mask(n_samples: int, sample_rate: int, lost_packets: np.ndarray, packet_ms: int) -> np.ndarray:
    """Per-sample boolean mask of the samples that belong to lost packets."""
    idx = (np.arange(n_samples) * 1000 // (sample_rate * packet_ms)).astype(np.int64)
    idx = np.minimum(idx, len(lost_packets) - 1)
    return np.asarray(lost_packets, dtype=bool)[idx]


def run_concealer(x: np.ndarray, lost_frames: np.ndarray, concealer: Concealer,
                  codec_concealment: Optional[np.ndarray] = None,
                  codec_modes: Optional[Sequence[Optional[str]]] = None) -> np.ndarray:
    """Feed ``x`` (native rate, whole frames) to ``concealer`` frame by frame.

    ``codec_concealment`` (same length as ``x``) holds the codec's own concealment in the lost
    frames; a concealer that declares ``uses_codec_concealment`` is fed each lost frame's before
    it is asked for it, with the codec's coding mode at that frame (``codec_modes``, one per
    frame, if given).
    """
    n = concealer.frame_samples
    feed = codec_concealment is not None and concealer.uses_codec_concealment
    out = np.empty_like(x)
    for f, lost in enumerate(lost_frames):
        if lost and feed:
            concealer.feed_codec_concealment(codec_concealment[f * n:(f + 1) * n],
                                             None if codec_modes is None else codec_modes[f])
        out[f * n:(f + 1) * n] = concealer.process(None if lost else x[f * n:(f + 1) * n])
    return out


def play_packet(concealer: Concealer, samples: np.ndarray, concealed: bool, mode: Optional[str] = None) -> np.ndarray:
    """One packet of a decoder's output through ``concealer`` 10 ms at a time, as a receiver plays
    it: the received frames, or (``concealed``) the lost ones, each frame of the codec's
    concealment fed first (with the coding ``mode``) to a concealer that uses it."""
    n = concealer.frame_samples
    feed = concealed and concealer.uses_codec_concealment
    out = np.empty_like(samples)
    for f in range(len(samples) // n):
        frame = samples[f * n:(f + 1) * n]
        if feed:
            concealer.feed_codec_concealment(frame, mode)
        out[f * n:(f + 1) * n] = concealer.process(None if concealed else frame)
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


def _conceal_coded_channel(x: np.ndarray, sample_rate: int, lost_packets: np.ndarray, packet_ms: int,
                           bitrate_bps: int, concealer: Concealer, codec: Codec, fec: bool = False,
                           expected_loss_percent: int = 0) -> _CodedChannel:
    native = resample(x, sample_rate, NATIVE_RATE)
    encoder = codec.encoder(bitrate_bps, packet_ms, **({"fec": True, "expected_loss_percent": expected_loss_percent}
                                                       if fec else {}))
    decoder = codec.decoder(packet_ms)
    packet = encoder.frame_samples
    payloads = encode_signal(encoder, native, min_packets=len(lost_packets))
    n_packets = len(payloads)
    lost = np.concatenate([lost_packets, np.zeros(n_packets - len(lost_packets), dtype=bool)])
    packet_rtp = codec.clock_rate * packet_ms // 1000
    played = np.empty(n_packets * packet, np.float32)
    recovered = np.zeros(n_packets, dtype=bool)
    # One pass, packet by packet, as a receiver runs: the concealer plays each packet's frames
    # before the next packet is decoded, so a decoder in step with it (codec_concealment) hears
    # what was played.
    for p in range(n_packets):
        concealed = False
        if not lost[p]:
            out = decoder.decode(payloads[p])
        elif p + 1 < n_packets and not lost[p + 1] and decoder.fec_duration(payloads[p + 1]) == packet_rtp:
            # the next packet arrived with a copy of this one (whatever the sender was told, as a receiver)
            out = decoder.decode_fec(payloads[p + 1], packet_rtp)
            recovered[p] = out is not None
            concealed = not recovered[p]
        else:
            # On a loss the decoder always runs its own concealment so that its state stays
            # continuous (steered by the concealer's proposal where both can); other methods
            # replace its output (those that use the codec's concealment are given it).
            out = codec_concealment(decoder, concealer, packet)
            concealed = True
        if out is None:  # no concealment of its own, or a payload it cannot decode: silence
            out = np.zeros(packet, dtype=np.float32)
        played[p * packet:(p + 1) * packet] = play_packet(concealer, out, concealed, decoder.mode)
    aligned = played[encoder.lookahead:encoder.lookahead + len(native)]
    audio = resample(aligned, NATIVE_RATE, sample_rate)[:len(x)]
    return _CodedChannel(audio, recovered, sum(len(p) for p in payloads[:len(lost_packets)]))

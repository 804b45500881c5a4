"""Opus encoder and decoder on libopus, through ctypes, and Opus RTP payloads (RFC 7587).

The decoder exposes libopus' own packet loss concealment (``decode(None)``)
and its in-band FEC (``decode_fec``: a lost frame from the low-bitrate copy the
next packet carries), which PyAV's wrapper cannot reach; the encoder turns that
copy on (``fec=True``). :mod:`plc.codecs.opus_fec` tells which packets carry one. libopus is the one PyAV (a dependency of
aiortc) ships in its wheel; a system ``libopus.so.0`` is used if that is
missing. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import os
from functools import lru_cache
from typing import Collection, Iterator, Optional

import numpy as np

from .payload import MAX_PACKET_MS, SAMPLE_RATE, PayloadDecoder

OPUS_APPLICATION_VOIP = 2048
OPUS_SET_BITRATE_REQUEST = 4002
OPUS_SET_BANDWIDTH_REQUEST = 4008
OPUS_SET_COMPLEXITY_REQUEST = 4010
OPUS_SET_INBAND_FEC_REQUEST = 4012
OPUS_SET_PACKET_LOSS_PERC_REQUEST = 4014
OPUS_GET_LOOKAHEAD_REQUEST = 4027
OPUS_RESET_STATE = 4028
OPUS_BANDWIDTH_WIDEBAND = 1103

#: Sample rates libopus accepts.
OPUS_SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
#: Packet (frame) durations we encode, ms (libopus also takes 2.5 and 5 ms; calls use 20).
OPUS_FRAME_MS = (10, 20, 40, 60)
#: Bitrates libopus takes, bit/s.
OPUS_MIN_BITRATE_BPS, OPUS_MAX_BITRATE_BPS = 6000, 510000
#: The largest packet we ever ask the encoder for (bytes).
MAX_PACKET_BYTES = 1500
#: The packet loss the encoder plans its in-band FEC for when none is given, % (Chrome's
#: encoder reports the measured loss; 10% is the evaluation's loss rate).
DEFAULT_EXPECTED_LOSS_PERCENT = 10


class OpusError(RuntimeError):
    """libopus is missing or returned an error code."""


def _candidate_paths() -> list[str]:
    paths: list[str] = []
    try:
        import av  # noqa: F401  (only to find its bundled libraries)

        libs = os.path.join(os.path.dirname(os.path.dirname(av.__file__)), "av.libs")
        paths += sorted(glob.glob(os.path.join(libs, "libopus*.so*")))
    except ImportError:
        pass
    found = ctypes.util.find_library("opus")
    if found:
        paths.append(found)
    paths += ["libopus.so.0", "libopus.so"]
    return paths


@lru_cache(maxsize=1)
def load_libopus() -> ctypes.CDLL:
    """Load libopus once and declare the functions we use."""
    errors = []
    for path in _candidate_paths():
        try:
            lib = ctypes.CDLL(path)
            break
        except OSError as exc:
            errors.append(f"{path}: {exc}")
    else:
        raise OpusError("libopus not found (install PyAV, or the system package libopus0): " + "; ".join(errors))
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_encode_float.restype = ctypes.c_int32
    lib.opus_encode_float.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int,
                                      ctypes.c_char_p, ctypes.c_int32]
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_decoder_get_size.restype = ctypes.c_int
    lib.opus_decoder_get_size.argtypes = [ctypes.c_int]
    lib.opus_decode_float.restype = ctypes.c_int
    lib.opus_decode_float.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
                                      ctypes.POINTER(ctypes.c_float), ctypes.c_int, ctypes.c_int]
    lib.opus_strerror.restype = ctypes.c_char_p
    lib.opus_strerror.argtypes = [ctypes.c_int]
    lib.opus_encoder_ctl.restype = ctypes.c_int
    lib.opus_decoder_ctl.restype = ctypes.c_int
    return lib


def _check(lib: ctypes.CDLL, code: int, what: str) -> int:
    if code < 0:
        raise OpusError(f"{what}: {lib.opus_strerror(code).decode()}")
    return code


class OpusEncoder:
    """Mono Opus encoder (VOIP application) producing one packet per ``frame_ms``.

    Parameters
    ----------
    sample_rate : int
        Input rate in Hz; one of :data:`OPUS_SAMPLE_RATES`.
    bitrate_bps : int
        Target bitrate in bits per second (24000: wideband voice).
    frame_ms : int
        Packet duration (2.5, 5, 10, 20, 40 or 60 ms; 20 is what calls use).
    fec : bool
        In-band FEC (``OPUS_SET_INBAND_FEC``): each speech packet also carries a low-bitrate
        copy (LBRR) of the frame before it, taken out of the same bitrate. libopus codes it
        only in SILK or hybrid mode, for frames with speech, and only when the bitrate leaves
        room for it (at 16 kHz wideband: from about 20 kbit/s at 10% loss).
    expected_loss_percent : int
        The packet loss the FEC is planned for (``OPUS_SET_PACKET_LOSS_PERC``, 0..100);
        with 0 libopus codes no LBRR even with ``fec``. Ignored without ``fec``.
    """

    def __init__(self, sample_rate: int = 16000, bitrate_bps: int = 24000, frame_ms: int = 20,
                 complexity: int = 9, fec: bool = False,
                 expected_loss_percent: int = DEFAULT_EXPECTED_LOSS_PERCENT) -> None:
        if sample_rate not in OPUS_SAMPLE_RATES:
            raise ValueError(f"Opus does not support {sample_rate} Hz; use one of {OPUS_SAMPLE_RATES}")
        if not OPUS_MIN_BITRATE_BPS <= bitrate_bps <= OPUS_MAX_BITRATE_BPS:
            raise ValueError(f"Opus bitrate must be within {OPUS_MIN_BITRATE_BPS}..{OPUS_MAX_BITRATE_BPS} bit/s, "
                             f"got {bitrate_bps}")
        if fec and not (isinstance(expected_loss_percent, (int, np.integer)) and 0 <= expected_loss_percent <= 100):
            raise ValueError(f"expected packet loss must be a whole percentage 0..100, got {expected_loss_percent!r}")
        self.fec = bool(fec)
        self.expected_loss_percent = int(expected_loss_percent) if fec else 0
        self._lib = load_libopus()
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        err = ctypes.c_int()
        self._state = self._lib.opus_encoder_create(sample_rate, 1, OPUS_APPLICATION_VOIP, ctypes.byref(err))
        _check(self._lib, err.value, "opus_encoder_create")
        requests = [(OPUS_SET_BITRATE_REQUEST, bitrate_bps), (OPUS_SET_COMPLEXITY_REQUEST, complexity)]
        if self.fec:  # off by default in libopus: left untouched without FEC (bit-identical to before)
            requests += [(OPUS_SET_INBAND_FEC_REQUEST, 1), (OPUS_SET_PACKET_LOSS_PERC_REQUEST, self.expected_loss_percent)]
        for request, value in requests:
            _check(self._lib, self._lib.opus_encoder_ctl(ctypes.c_void_p(self._state), request,
                                                         ctypes.c_int32(value)), "opus_encoder_ctl")
        look = ctypes.c_int32()
        _check(self._lib, self._lib.opus_encoder_ctl(ctypes.c_void_p(self._state), OPUS_GET_LOOKAHEAD_REQUEST,
                                                     ctypes.byref(look)), "OPUS_GET_LOOKAHEAD")
        #: Encoder delay in samples: decoded audio lags the input by this much.
        self.lookahead = int(look.value)
        self._buffer = ctypes.create_string_buffer(MAX_PACKET_BYTES)

    def encode(self, pcm: np.ndarray) -> bytes:
        """Encode exactly ``frame_samples`` float samples in [-1, 1] into one packet."""
        pcm = np.ascontiguousarray(pcm, dtype=np.float32)
        if pcm.shape != (self.frame_samples,):
            raise ValueError(f"expected {self.frame_samples} samples, got {pcm.shape}")
        n = self._lib.opus_encode_float(ctypes.c_void_p(self._state),
                                        pcm.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                        self.frame_samples, self._buffer, MAX_PACKET_BYTES)
        _check(self._lib, n, "opus_encode_float")
        return self._buffer.raw[:n]

    def ctl(self, request: int, value: int) -> None:
        """Set one integer encoder option (``opus_encoder_ctl``); raises :class:`OpusError` if refused."""
        _check(self._lib, self._lib.opus_encoder_ctl(ctypes.c_void_p(self._state), request, ctypes.c_int32(value)),
               f"opus_encoder_ctl({request})")

    def reset(self) -> None:
        """Forget the encoder's signal state (``OPUS_RESET_STATE``); the options stay."""
        _check(self._lib, self._lib.opus_encoder_ctl(ctypes.c_void_p(self._state), OPUS_RESET_STATE), "OPUS_RESET_STATE")

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state:
            self._lib.opus_encoder_destroy(ctypes.c_void_p(state))
            self._state = None


class OpusDecoder:
    """Mono Opus decoder; ``decode(None)`` runs libopus' packet loss concealment."""

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 20) -> None:
        if sample_rate not in OPUS_SAMPLE_RATES:
            raise ValueError(f"Opus does not support {sample_rate} Hz; use one of {OPUS_SAMPLE_RATES}")
        self._lib = load_libopus()
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        err = ctypes.c_int()
        self._state = self._lib.opus_decoder_create(sample_rate, 1, ctypes.byref(err))
        _check(self._lib, err.value, "opus_decoder_create")
        self._out = np.zeros(sample_rate * 120 // 1000, dtype=np.float32)  # largest Opus frame

    def decode(self, packet: Optional[bytes]) -> np.ndarray:
        """Decode one packet, or conceal ``frame_samples`` samples when ``packet`` is None.

        A corrupt packet raises :class:`OpusError`; the caller decides whether to conceal instead.
        """
        out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        if packet is None:
            n = self._lib.opus_decode_float(ctypes.c_void_p(self._state), None, 0, out_ptr,
                                            self.frame_samples, 0)
        else:
            n = self._lib.opus_decode_float(ctypes.c_void_p(self._state), packet, len(packet), out_ptr,
                                            len(self._out), 0)
        _check(self._lib, n, "opus_decode_float")
        return self._out[:n].copy()

    def snapshot(self) -> bytes:
        """The decoder's whole state, to :meth:`restore` later (libopus keeps it in one
        relocatable block of ``opus_decoder_get_size`` bytes)."""
        return ctypes.string_at(self._state, self._lib.opus_decoder_get_size(1))

    def restore(self, state: bytes) -> None:
        """Put back a state :meth:`snapshot` took of a decoder like this one."""
        size = self._lib.opus_decoder_get_size(1)
        if len(state) != size:
            raise ValueError(f"an Opus decoder state is {size} bytes, got {len(state)}")
        ctypes.memmove(self._state, state, size)

    @contextlib.contextmanager
    def state_kept(self) -> Iterator["OpusDecoder"]:
        """Decode ahead inside ``with decoder.state_kept():``; the decoder's state is put back as
        it was on leaving (:meth:`snapshot`, :meth:`restore`), whatever happened inside."""
        saved = self.snapshot()
        try:
            yield self
        finally:
            self.restore(saved)

    def preview_concealment(self, n_samples: int) -> np.ndarray:
        """The first ``n_samples`` libopus' PLC would play if the next packets were lost, with the
        decoder left as it was (:meth:`state_kept`)."""
        with self.state_kept():
            out = [self.decode(None) for _ in range(-(-n_samples // self.frame_samples))]
        return np.concatenate(out)[:n_samples] if out else np.zeros(0, np.float32)

    def decode_fec(self, packet: bytes, n_samples: int) -> np.ndarray:
        """The ``n_samples`` lost just before ``packet``, from its in-band FEC copy (LBRR).

        libopus' ``opus_decode(..., decode_fec=1)``; ``n_samples`` is the lost frame's length
        (a multiple of 2.5 ms). Call it *before* decoding ``packet`` itself, as a receiver does
        (the copy precedes the packet in time). A packet without LBRR gives libopus' PLC
        instead, indistinguishable by the output: ask :func:`plc.codecs.opus_fec.has_lbrr` first.
        """
        step = self.sample_rate // 400
        if not 0 < n_samples <= len(self._out) or n_samples % step:
            raise ValueError(f"FEC frame must be a multiple of 2.5 ms up to 120 ms, got {n_samples} samples")
        out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        n = self._lib.opus_decode_float(ctypes.c_void_p(self._state), packet, len(packet), out_ptr, n_samples, 1)
        _check(self._lib, n, "opus_decode_float (FEC)")
        return self._out[:n].copy()

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state:
            self._lib.opus_decoder_destroy(ctypes.c_void_p(state))
            self._state = None


# ---------------------------------------------------------------- RTP payloads
#: Opus frame durations in 48 kHz samples by TOC configuration (RFC 6716 section 3.1).
_OPUS_FRAME_48K = (
    [480, 960, 1920, 2880] * 3     # SILK-only, NB/MB/WB: 10, 20, 40, 60 ms
    + [480, 960] * 2               # Hybrid SWB/FB: 10, 20 ms
    + [120, 240, 480, 960] * 4     # CELT-only: 2.5, 5, 10, 20 ms
)


def opus_packet_samples_48k(payload: bytes) -> Optional[int]:
    """Duration of an Opus packet in 48 kHz samples from its TOC byte, None if malformed."""
    if not payload:
        return None
    toc = payload[0]
    per_frame = _OPUS_FRAME_48K[toc >> 3]
    code = toc & 0x03
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(payload) < 2:
            return None
        frames = payload[1] & 0x3F
        if frames == 0:
            return None
    total = frames * per_frame
    if total > 48 * MAX_PACKET_MS:
        return None
    return total


#: Opus coding modes by TOC configuration (RFC 6716 section 3.1): configurations 0-11 are
#: SILK-only, 12-15 hybrid (SILK below 8 kHz, CELT above), 16-31 CELT-only.
OPUS_MODES = ("silk",) * 12 + ("hybrid",) * 4 + ("celt",) * 16


def opus_packet_mode(payload: bytes) -> Optional[str]:
    """The coding mode of an Opus packet (``silk``, ``hybrid`` or ``celt``) from its TOC byte,
    None for an empty payload."""
    return OPUS_MODES[payload[0] >> 3] if payload else None


class OpusPayloadDecoder(PayloadDecoder):
    """Opus through libopus, decoded at 16 kHz; ``conceal`` is libopus' own PLC, ``frame_ms`` at a time,
    ``decode_fec`` its in-band FEC (as libwebrtc's ``AudioDecoderOpusImpl::DecodeRedundantInternal``)."""

    name = "opus"
    clock_rate = 48000

    def __init__(self, frame_ms: int = 20, steerable_modes: Optional[Collection[str]] = None,
                 steer_with_fec: bool = False) -> None:
        from .opus_steering import STEERABLE_MODES, OpusSteering

        self.frame_ms = frame_ms
        self._decoder = OpusDecoder(SAMPLE_RATE, frame_ms=frame_ms)
        self.mode: Optional[str] = None
        self._steering = OpusSteering(SAMPLE_RATE, self._decoder.frame_samples,
                                      STEERABLE_MODES if steerable_modes is None else steerable_modes,
                                      with_fec=steer_with_fec)

    def duration(self, payload: bytes) -> Optional[int]:
        n48 = opus_packet_samples_48k(payload)
        if n48 is None or n48 % 480:  # whole 10 ms frames only
            return None
        return n48

    def decode(self, payload: bytes) -> Optional[np.ndarray]:
        n48 = self.duration(payload)
        if n48 is None:
            return None
        try:
            out = self._decoder.decode(bytes(payload))
        except (OpusError, ValueError):
            return None
        self.mode = opus_packet_mode(payload)
        want = n48 // 3
        if len(out) != want:
            out = np.pad(out, (0, max(0, want - len(out))))[:want]
        out = np.asarray(out, dtype=np.float32)
        self._steering.observe(out, bytes(payload))
        return out

    def decode_ahead(self, payload: bytes, fec_duration: Optional[int] = None) -> Optional[np.ndarray]:
        n48 = self.duration(payload) if fec_duration is None else fec_duration
        if n48 is None or n48 <= 0:
            return None
        try:
            with self._decoder.state_kept() as ahead:
                if fec_duration is None:
                    out = ahead.decode(bytes(payload))
                else:
                    out = ahead.decode_fec(bytes(payload), fec_duration * SAMPLE_RATE // self.clock_rate)
        except (OpusError, ValueError):
            return None
        return np.asarray(out[:n48 * SAMPLE_RATE // self.clock_rate], dtype=np.float32)

    def fec_duration(self, payload: bytes) -> Optional[int]:
        from .opus_fec import fec_samples

        return fec_samples(payload, self.clock_rate)

    def decode_fec(self, payload: bytes, duration: int) -> Optional[np.ndarray]:
        try:
            out = self._decoder.decode_fec(bytes(payload), duration * SAMPLE_RATE // self.clock_rate)
        except (OpusError, ValueError):
            return None
        self.mode = "silk"  # an LBRR copy is SILK (hybrid's low band)
        out = np.asarray(out, dtype=np.float32)
        self._steering.observe(out, fec_copy=True)
        return out

    def continuation_samples(self, n_samples: int) -> Optional[int]:
        return self._steering.samples_needed(self.mode)

    @property
    def leaves_loss_to_fec(self) -> bool:
        return self._steering.leaves_to_fec(self.mode)

    def conceal(self, n_samples: int, continuation: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """``frame_ms`` of libopus' PLC; or, given a ``continuation``, that continuation coded
        into the decoder (:mod:`plc.codecs.opus_steering`; libopus' PLC if that fails)."""
        out = None
        if continuation is not None and self.continuation_samples(n_samples) is not None:
            try:
                out = self._steering.decode(self._decoder, continuation)
            except (OpusError, ValueError):
                out = None
        self.steered = out is not None
        if out is None:
            try:
                out = self._decoder.decode(None)
            except (OpusError, ValueError):
                return None
        out = np.asarray(out, dtype=np.float32)
        self._steering.observe(out)
        return out

    def reset(self) -> None:
        self._decoder = OpusDecoder(SAMPLE_RATE, frame_ms=self.frame_ms)
        self._steering.forget()
        self.mode = None

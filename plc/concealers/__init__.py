"""Concealers: every method behind one streaming interface (:class:`Concealer`), in one registry.

Each ``--method`` is a :class:`MethodInfo`: where its class lives and what it can do or needs.
The callers (``plc conceal``, ``plc netsim``, ``plc eval``, the jitter buffer, an aiortc call)
ask the registry, never a method's name:

* ``needs_codec``: it plays the codec's own concealment (``opus``), so it works only where a
  codec that conceals is decoding (``--codec opus``, an Opus call); callers feed it through
  :meth:`Concealer.feed_codec_concealment`.
* ``fallback``: a classic method that takes over where it fails (:class:`FallbackConcealer`,
  the one fallback mechanism); ``deadline_ms``: its real-time budget per frame, after which the
  fallback takes over too. Offline pipelines build it without a deadline (:func:`make_concealer`
  with ``realtime=False``), since a busy machine must not change what a file or a simulation
  gives. The jitter buffer puts every other concealer behind :data:`CLASSIC_METHOD` the same
  way (:func:`with_fallback`).
* ``trained_model``: it runs a trained model, which ``model_dir`` selects (``--neural-model``).
* ``requires``: what must be installed for it; where that is missing the method is listed as
  unavailable with the reason (``plc methods``), not silently left out.

A new concealer is a module with a :class:`Concealer` subclass and one :func:`register` call
below; the contract every concealer keeps is pinned by ``tests/test_concealers.py``, which reads
its list of methods from here.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Optional

from .base import Concealer, ConcealerStats, ConcealmentError
from .fallback import FallbackConcealer


@dataclass(frozen=True)
class MethodInfo:
    """One ``--method`` of the registry.

    Attributes
    ----------
    name : str
        The ``--method`` name.
    summary : str
        One line for ``plc methods``.
    target : str
        ``"module:Class"`` of its :class:`Concealer` (imported when first used).
    needs_codec : bool
        It plays the codec's own concealment: only with a codec whose decoder conceals.
    fallback : str or None
        The method that takes over where it fails or runs late.
    deadline_ms : float or None
        Its real-time budget per frame (dropped offline); None: no deadline.
    trained_model : bool
        It runs a trained model; ``model_dir`` selects one.
    requires : tuple of str
        Python modules it needs that an installation may lack.
    """

    name: str
    summary: str
    target: str
    needs_codec: bool = False
    fallback: Optional[str] = None
    deadline_ms: Optional[float] = None
    trained_model: bool = False
    requires: tuple[str, ...] = ()

    @property
    def realtime_deadline(self) -> bool:
        """It has a real-time deadline (which offline use drops)."""
        return self.deadline_ms is not None

    def missing(self) -> Optional[str]:
        """Why the method cannot be used here (a module it needs is not installed), or None."""
        absent = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if absent:
            return f"needs {', '.join(absent)}, which is not installed"
        try:
            self.concealer_class()
        except ImportError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def concealer_class(self) -> type[Concealer]:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module, __name__), cls)


_METHODS: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> MethodInfo:
    """Add a method to the registry (a name registered twice is an error)."""
    if info.name in _METHODS:
        raise ValueError(f"concealment method {info.name!r} is registered already")
    _METHODS[info.name] = info
    return info


register(MethodInfo("zero", "silence, what a receiver without concealment plays", ".simple:ZeroConcealer"))
register(MethodInfo("repeat", "the last packet again, 3 dB quieter each 10 ms", ".simple:RepeatConcealer"))
register(MethodInfo("g711", "ITU-T G.711 Appendix I pitch-waveform replication", ".g711:G711Concealer"))
register(MethodInfo("neteq", "WebRTC NetEQ's expand and merge", ".neteq:NetEqConcealer"))
register(MethodInfo("neural", "WaveRNN-style model in onnxruntime (the codec's own PLC in SILK-mode Opus), "
                    "neteq when it fails or runs late",
                    ".neural:NeuralConcealer", fallback="neteq", deadline_ms=5.0, trained_model=True,
                    requires=("onnxruntime",)))
register(MethodInfo("opus", "the codec's own concealment (libopus' PLC)", ".codec_plc:CodecPlcConcealer",
                    needs_codec=True))


#: The methods used where none is named (``plc conceal``, ``plc netsim``, ``enable_concealment``,
#: ``JitterBuffer``, the demos), best first: the first usable here is :func:`default_method`. Ordered by
#: the held-out evaluation (README): ``neural`` is at least level with the best other method on every
#: path (PCM, Opus in SILK and CELT mode, the jitter buffer, live calls).
PREFERRED_METHODS = ("neural", "neteq", "g711", "repeat")


def default_method() -> str:
    """The concealment method used where none is named: the first of :data:`PREFERRED_METHODS`
    usable here (``neural`` needs onnxruntime)."""
    usable = available_methods()
    return next(m for m in PREFERRED_METHODS if m in usable)


def method_info(method: str) -> MethodInfo:
    """The registry entry of ``method``; ``ValueError`` if it is unknown or cannot be used here."""
    info = _METHODS.get(method)
    if info is None:
        raise ValueError(f"unknown concealment method {method!r}; choose from {', '.join(available_methods())}")
    missing = info.missing()
    if missing:
        raise ValueError(f"concealment method {method!r} is unavailable: {missing}")
    return info


def registered_methods() -> list[MethodInfo]:
    """Every registered method, usable here or not (see :meth:`MethodInfo.missing`)."""
    return list(_METHODS.values())


def available_methods(codec: Optional[str] = None) -> list[str]:
    """The ``--method`` names usable here, PCM concealers first (sorted), then those that need a
    codec; with ``codec``, only those usable with it (``pcm``: no codec concealment)."""
    usable = [i for i in _METHODS.values() if i.missing() is None]
    if codec is not None:
        usable = [i for i in usable if not i.needs_codec or _codec_conceals(codec)]
    return sorted(i.name for i in usable if not i.needs_codec) + [i.name for i in usable if i.needs_codec]


def check_method(method: str, codec: Optional[str] = None) -> MethodInfo:
    """:func:`method_info`, and with ``codec`` also that the method can run with that codec
    (``ValueError`` with the reason, one line)."""
    info = method_info(method)
    if codec is not None and info.needs_codec and not _codec_conceals(codec):
        from ..codecs import concealing_codecs

        raise ValueError(f"method {method!r} is the codec's own concealment: use it with "
                         f"--codec {' or '.join(concealing_codecs())}")
    return info


def _codec_conceals(codec: str) -> bool:
    from ..codecs import get_codec

    return get_codec(codec).conceals


def make_concealer(method: str, sample_rate: int = 16000, realtime: bool = True, **kwargs) -> Concealer:
    """Build the concealer called ``method`` at its native ``sample_rate``.

    A method with a ``fallback`` comes behind :class:`FallbackConcealer`, with its deadline
    (``deadline_ms=`` sets another; ``realtime=False``: none, for offline pipelines and
    simulations). Other keyword arguments go to its class.
    """
    info = method_info(method)
    deadline_ms = kwargs.pop("deadline_ms", info.deadline_ms if realtime else None)
    if info.fallback is None and deadline_ms is not None:
        raise TypeError(f"{method} has no real-time deadline (no fallback to take over)")
    concealer = info.concealer_class()(sample_rate=sample_rate, **kwargs)
    if info.fallback is None:
        return concealer
    classic = make_concealer(info.fallback, sample_rate, frame_ms=concealer.frame_ms)
    return FallbackConcealer(concealer, classic, deadline_ms=deadline_ms)


#: The classic concealer behind every other one in the jitter buffer (:func:`with_fallback`).
CLASSIC_METHOD = "neteq"


def with_fallback(concealer: Concealer) -> FallbackConcealer:
    """``concealer`` behind a :class:`FallbackConcealer` (itself if it is one already), with
    :data:`CLASSIC_METHOD` taking over where it fails; no deadline beyond the one it has."""
    if isinstance(concealer, FallbackConcealer):
        return concealer
    classic = make_concealer(CLASSIC_METHOD, concealer.sample_rate, frame_ms=concealer.frame_ms)
    return FallbackConcealer(concealer, classic)


__all__ = [
    "Concealer", "ConcealerStats", "ConcealmentError", "FallbackConcealer", "MethodInfo", "register",
    "method_info", "registered_methods", "available_methods", "check_method", "make_concealer", "with_fallback",
    "CLASSIC_METHOD", "PREFERRED_METHODS", "default_method",
]

"""Concealers: every method behind one streaming interface (:class:`Concealer`).

Use :func:`make_concealer` to build one by its ``--method`` name.
"""

from __future__ import annotations

from typing import Callable

from .base import Concealer, ConcealerStats
from .simple import RepeatConcealer, ZeroConcealer

_FACTORIES: dict[str, Callable[..., Concealer]] = {
    "zero": ZeroConcealer,
    "repeat": RepeatConcealer,
}


def _register_optional() -> None:
    """Register the concealers that live in their own modules."""
    try:
        from .g711 import G711Concealer
        _FACTORIES["g711"] = G711Concealer
    except ImportError:
        pass
    try:
        from .neteq import NetEqConcealer
        _FACTORIES["neteq"] = NetEqConcealer
        from .neural import NeuralConcealer
        _FACTORIES["neural"] = NeuralConcealer
    except ImportError:
        pass


_register_optional()

#: Methods that need the codec's own decoder (only with ``--codec opus``).
DECODER_METHODS = ("opus",)


def available_methods() -> list[str]:
    """All ``--method`` names, PCM concealers first."""
    return sorted(_FACTORIES) + list(DECODER_METHODS)


def make_concealer(method: str, sample_rate: int = 16000, **kwargs) -> Concealer:
    """Build the concealer called ``method`` at its native ``sample_rate``."""
    try:
        factory = _FACTORIES[method]
    except KeyError:
        raise ValueError(
            f"unknown concealment method {method!r}; choose from {', '.join(available_methods())}"
        ) from None
    return factory(sample_rate=sample_rate, **kwargs)


__all__ = [
    "Concealer", "ConcealerStats", "ZeroConcealer", "RepeatConcealer",
    "make_concealer", "available_methods", "DECODER_METHODS",
]

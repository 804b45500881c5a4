"""The receive side of a call: an RTP jitter buffer modelled on WebRTC's NetEQ.

Modules, one per protocol part:

* :mod:`~jitterbuffer.rtp`: RTP header parsing, validation, serialization, counter unwrapping.
* :mod:`~jitterbuffer.packet_buffer`: packets by timestamp and priority; duplicates, late packets, overflow.
* :mod:`~jitterbuffer.delay_manager`: the target delay from arrival jitter (and clock skew).
* :mod:`~jitterbuffer.decision_logic`: normal, expand, merge, accelerate, preemptive expand.
* :mod:`~jitterbuffer.time_stretch`: accelerate / preemptive expand by whole pitch periods.
* :mod:`~jitterbuffer.sync_buffer`: audio prepared for playout.
* :mod:`~jitterbuffer.declick`: de-clicking at the boundaries of expand and merge.
* :mod:`~jitterbuffer.jitter_buffer`: :class:`JitterBuffer`, putting it all together.
* :mod:`~jitterbuffer.network`, :mod:`~jitterbuffer.netsim`, :mod:`~jitterbuffer.cli`: ``plc netsim``.
* :mod:`~jitterbuffer.bench_network`: the benchmark behind ``RESULTS.md``.

Payloads (PCM, Opus with its in-band FEC, RED) are decoded through the codec registry,
:mod:`plc.codecs`.

Names are imported lazily so that ``plc --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "JitterBuffer": "jitter_buffer", "JitterBufferConfig": "jitter_buffer", "TickInfo": "jitter_buffer",
    "Operation": "decision_logic", "RtpPacket": "rtp", "parse_rtp": "rtp", "RtpError": "rtp",
    "NetworkSpec": "network", "parse_network": "network", "simulate": "netsim",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jitterbuffer' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)

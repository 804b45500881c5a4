"""Every use of aiortc's internals, in one place, next to the version check.

aiortc has no public hook for what :mod:`plc.webrtc` does: an audio ``RTCRtpReceiver`` hands each
RTP packet to its own private jitter buffer, and the remote track's ``recv()`` reads a private
queue. This module is the only one that names those private attributes (``RTCRtpReceiver``'s
name-mangled ``__jitter_buffer``, ``__codecs``, ``__decoder_thread``, ``__timestamp_mapper`` and
``__kind``, ``RTCRtpSender``'s ``__encoder`` (:mod:`plc.webrtc_fec`), the receiver's ``_track``,
the track's ``_queue``, the timestamp mapper's ``_origin``), so a new aiortc release that renames them breaks here, with
:func:`check_receiver`'s message, and nowhere else. Tested with :data:`TESTED_VERSION`.

It also adds the jitter buffer's WebRTC statistics to a receiver's ``getStats()`` report as
declared fields (:func:`inbound_stats_type`), not as attributes set on aiortc's objects.
"""

from __future__ import annotations

import asyncio
import dataclasses
from functools import lru_cache
from typing import Any, Callable, Optional

#: The aiortc release plc.webrtc is tested with (pyproject.toml pins it).
TESTED_VERSION = "1.16"

_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_CODECS = "_RTCRtpReceiver__codecs"
_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
_TIMESTAMP_MAPPER = "_RTCRtpReceiver__timestamp_mapper"
_KIND = "_RTCRtpReceiver__kind"
_SENDER_ENCODER = "_RTCRtpSender__encoder"
#: What :func:`check_receiver` requires of a receiver.
_REQUIRED = (_JITTER_BUFFER, _CODECS, _DECODER_THREAD)


def aiortc_version() -> str:
    import aiortc

    return str(getattr(aiortc, "__version__", "unknown"))


def check_receiver(receiver) -> None:
    """Raise ``RuntimeError`` unless ``receiver`` has the internals plc.webrtc replaces."""
    for attr in _REQUIRED:
        if not hasattr(receiver, attr):
            raise RuntimeError(f"this aiortc version ({aiortc_version()}) is not supported by plc.webrtc "
                               f"(tested with aiortc {TESTED_VERSION}): RTCRtpReceiver has no {attr}")


def receiver_kind(receiver, default: Optional[str] = None) -> Optional[str]:
    """``audio`` or ``video`` (``default`` if the receiver does not say)."""
    return getattr(receiver, _KIND, default)


def jitter_buffer(receiver):
    """The object the receiver hands each RTP packet to (aiortc's jitter buffer, or our tap)."""
    return getattr(receiver, _JITTER_BUFFER, None)


def set_jitter_buffer(receiver, value) -> None:
    """Make the receiver hand its RTP packets to ``value`` (an object with ``add(packet)``)."""
    setattr(receiver, _JITTER_BUFFER, value)


def negotiated_codecs(receiver) -> dict:
    """Payload type -> the receiver's negotiated codec (``RTCRtpCodecParameters``)."""
    return getattr(receiver, _CODECS, {})


def negotiated_codec(receiver, payload_type: int):
    """The receiver's negotiated codec for ``payload_type``, or None."""
    return negotiated_codecs(receiver).get(payload_type)


def decoder_running(receiver) -> bool:
    """False once the receiver has stopped (its decoder thread is gone)."""
    return getattr(receiver, _DECODER_THREAD, None) is not None


def timestamp_origin(receiver) -> Optional[int]:
    """The RTP timestamp aiortc's own frames count their ``pts`` from, None before its first frame."""
    return getattr(getattr(receiver, _TIMESTAMP_MAPPER, None), "_origin", None)


def sender_encoder(sender):
    """The sender's encoder (None until aiortc builds one, lazily, at its first frame)."""
    return getattr(sender, _SENDER_ENCODER, None)


def set_sender_encoder(sender, encoder) -> None:
    """Make the sender use ``encoder`` (aiortc builds none while one is set)."""
    setattr(sender, _SENDER_ENCODER, encoder)


def remote_track(receiver):
    """The receiver's remote track (None until the remote description created it)."""
    return getattr(receiver, "_track", None)


def track_queue(track) -> asyncio.Queue:
    """The queue the remote track's ``recv()`` takes its frames from."""
    return track._queue


@lru_cache(maxsize=None)
def inbound_stats_type(fields: tuple[str, ...]) -> type:
    """aiortc's ``RTCInboundRtpStreamStats`` with the WebRTC statistic ``fields`` declared too."""
    from aiortc.stats import RTCInboundRtpStreamStats

    return dataclasses.make_dataclass("RTCInboundRtpStreamStatsWithJitterBuffer",
                                      [(name, Any, None) for name in fields], bases=(RTCInboundRtpStreamStats,))


def with_inbound_audio_stats(report, values: dict[str, Any]) -> None:
    """Replace each audio ``inbound-rtp`` entry of a ``getStats()`` report by one that also holds
    ``values`` (WebRTC's names, e.g. ``jitterBufferDelay``)."""
    cls = inbound_stats_type(tuple(values))
    for key, entry in list(report.items()):
        if getattr(entry, "type", None) == "inbound-rtp" and getattr(entry, "kind", None) == "audio":
            own = {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}
            report[key] = cls(**{**own, **values})


def patch_get_stats(receiver, extend: Callable[[Any], None]) -> Callable[[], None]:
    """Make ``receiver.getStats()`` pass its report through ``extend`` first; returns the undo."""
    saved = receiver.__dict__.get("getStats")  # an instance override made by someone else
    original = receiver.getStats

    async def getStats():  # noqa: N802 - aiortc's name
        report = await original()
        extend(report)
        return report

    getStats.__doc__ = original.__doc__
    receiver.getStats = getStats

    def undo() -> None:
        if saved is not None:
            receiver.getStats = saved
        else:
            receiver.__dict__.pop("getStats", None)

    return undo

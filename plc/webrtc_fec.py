"""Opus in-band FEC in aiortc calls: the sender's encoder with FEC, and ``useinbandfec=1`` in the SDP.

Browsers send Opus with in-band FEC when the other side's SDP says ``useinbandfec=1``; aiortc
(1.16) never turns it on and never advertises it, so two aiortc peers have none.
:func:`enable_opus_fec` changes one peer connection (nothing global):

1. every audio ``RTCRtpSender`` of the connection (present, and added before the next offer or
   answer) that ends up sending Opus gets an aiortc ``OpusEncoder`` whose PyAV libopus encoder
   has ``fec=1`` and ``packet_loss=PERCENT`` (``OPUS_SET_INBAND_FEC``,
   ``OPUS_SET_PACKET_LOSS_PERC``), at aiortc's own bitrate (96 kbit/s, stereo): PyAV's libopus
   (1.5 and later) switches to SILK or hybrid mode for it, and each speech packet then carries
   a low-bitrate copy of the frame before it (:mod:`plc.codecs.opus_fec`). The sender's
   ``send()`` is wrapped to put the encoder in place once the negotiated codec is known (aiortc
   builds its encoder lazily, only when none is set);
2. the connection's offers and answers say ``a=fmtp:PT useinbandfec=1`` for Opus (its
   ``createOffer`` / ``createAnswer`` are wrapped; the SDP text is changed, aiortc parses it
   back as the local description), so a browser on the other side sends FEC too.

The receive side needs nothing more: this project's jitter buffer decodes a missing frame from
the next packet's copy whenever it is there (:mod:`jitterbuffer.jitter_buffer`), so
:func:`plc.webrtc.enable_concealment` with ``fec=True`` just calls this as well.
:meth:`OpusFecHandle.disable` undoes both (an encoder already in use keeps running).

RED (RFC 2198, ``audio/red``) is not negotiated: aiortc's codec list, its receivers' codec
tables and its senders would all have to learn it (its module-level ``CODECS``), more than a
plug-in should change. The jitter buffer splits RED packets (:mod:`plc.codecs.red`) when a
stream carries them.
"""

from __future__ import annotations

import re
import weakref
from typing import Any, Optional

from . import aiortc_compat
from .codecs.opus import DEFAULT_EXPECTED_LOSS_PERCENT

__all__ = ["enable_opus_fec", "OpusFecHandle", "advertise_inband_fec", "fec_opus_encoder"]

_HANDLES: "weakref.WeakKeyDictionary[Any, OpusFecHandle]" = weakref.WeakKeyDictionary()


def fec_opus_encoder(expected_loss_percent: int = DEFAULT_EXPECTED_LOSS_PERCENT):
    """aiortc's ``OpusEncoder`` with libopus' in-band FEC on, planned for ``expected_loss_percent`` loss."""
    from aiortc.codecs.opus import OpusEncoder

    encoder = OpusEncoder()
    encoder.codec.options = dict(encoder.codec.options, fec="1", packet_loss=str(int(expected_loss_percent)))
    return encoder


def advertise_inband_fec(sdp: str) -> str:
    """``sdp`` with ``useinbandfec=1`` in the format parameters of every Opus payload type."""
    newline = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(newline)
    opus_pts = {m.group(1) for line in lines
                if (m := re.match(r"a=rtpmap:(\d+)\s+opus/", line, flags=re.IGNORECASE))}
    out = []
    for line in lines:
        fmtp = re.match(r"a=fmtp:(\d+)\s*(.*)", line)
        if fmtp and fmtp.group(1) in opus_pts:
            params = [p for p in fmtp.group(2).split(";") if p.strip() and not p.strip().startswith("useinbandfec=")]
            line = f"a=fmtp:{fmtp.group(1)} " + ";".join(params + ["useinbandfec=1"])
            opus_pts.discard(fmtp.group(1))
        out.append(line)
    for pt in opus_pts:  # no fmtp line yet: one after the rtpmap
        i = next(i for i, line in enumerate(out) if re.match(rf"a=rtpmap:{pt}\s", line))
        out.insert(i + 1, f"a=fmtp:{pt} useinbandfec=1")
    return newline.join(out)


class OpusFecHandle:
    """What :func:`enable_opus_fec` returns; ``disable()`` undoes it."""

    def __init__(self, pc, expected_loss_percent: int) -> None:
        self._pc = weakref.ref(pc)
        self.expected_loss_percent = int(expected_loss_percent)
        self.enabled = True
        self._senders: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
        #: Senders whose Opus encoder has FEC on.
        self.encoders_installed = 0
        self._saved = {name: pc.__dict__.get(name) for name in ("createOffer", "createAnswer")}
        for name in ("createOffer", "createAnswer"):
            setattr(pc, name, self._wrap_create(getattr(pc, name)))
        self._patch_senders()

    def _wrap_create(self, create):
        handle = self

        async def wrapped(*args, **kwargs):
            handle._patch_senders()
            description = await create(*args, **kwargs)
            if handle.enabled and description is not None:
                description.sdp = advertise_inband_fec(description.sdp)
            return description

        wrapped.__doc__ = create.__doc__
        return wrapped

    def _patch_senders(self) -> None:
        pc = self._pc()
        if pc is None or not self.enabled:
            return
        for transceiver in pc.getTransceivers():
            sender = transceiver.sender
            if transceiver.kind == "audio" and sender not in self._senders:
                self._senders[sender] = sender.__dict__.get("send")
                sender.send = self._wrap_send(sender, sender.send)

    def _wrap_send(self, sender, send):
        handle = self

        async def wrapped(parameters):
            codecs = getattr(parameters, "codecs", None) or []
            if (handle.enabled and codecs and str(codecs[0].mimeType).lower() == "audio/opus"
                    and aiortc_compat.sender_encoder(sender) is None):
                aiortc_compat.set_sender_encoder(sender, fec_opus_encoder(handle.expected_loss_percent))
                handle.encoders_installed += 1
            return await send(parameters)

        wrapped.__doc__ = send.__doc__
        return wrapped

    def disable(self) -> None:
        """Restore the connection's ``createOffer`` / ``createAnswer`` and its senders' ``send`` (idempotent)."""
        if not self.enabled:
            return
        self.enabled = False
        pc = self._pc()
        if pc is not None:
            for name, saved in self._saved.items():
                if saved is None:
                    pc.__dict__.pop(name, None)
                else:
                    setattr(pc, name, saved)
            if _HANDLES.get(pc) is self:
                del _HANDLES[pc]
        for sender, saved in list(self._senders.items()):
            if saved is None:
                sender.__dict__.pop("send", None)
            else:
                sender.send = saved


def enable_opus_fec(pc, expected_loss_percent: int = DEFAULT_EXPECTED_LOSS_PERCENT) -> OpusFecHandle:
    """Send Opus with in-band FEC from ``pc`` and advertise ``useinbandfec=1`` (module docstring).

    Call it before the offer or answer. Calling it again on the same connection returns the same
    handle (with the same ``expected_loss_percent``; otherwise ``ValueError``).
    """
    from aiortc import RTCPeerConnection

    if not isinstance(pc, RTCPeerConnection):
        raise TypeError(f"enable_opus_fec needs an RTCPeerConnection, not {type(pc).__name__}")
    if isinstance(expected_loss_percent, bool) or not isinstance(expected_loss_percent, int) \
            or not 0 <= expected_loss_percent <= 100:
        raise ValueError(f"expected_loss_percent must be a whole percentage 0..100, got {expected_loss_percent!r}")
    handle: Optional[OpusFecHandle] = _HANDLES.get(pc)
    if handle is not None:
        if handle.expected_loss_percent != expected_loss_percent:
            raise ValueError(f"Opus FEC is already on for this connection at {handle.expected_loss_percent}% "
                             "expected loss; disable() it first")
        return handle
    handle = OpusFecHandle(pc, expected_loss_percent)
    _HANDLES[pc] = handle
    return handle

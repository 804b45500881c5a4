"""A float (numpy) port of WebRTC NetEQ's concealment, one operation per module.

Sources followed: ``modules/audio_coding/neteq/`` of the WebRTC tree (2018-2023 versions; the
algorithm has not changed in that span), each module named after the file it ports:

=========================  ==============================================================
module                     ports
=========================  ==============================================================
:mod:`.expand`             ``expand.cc``: continue the signal through a loss
:mod:`.merge`              ``merge.cc``: merge the expansion into the first received frame
:mod:`.background_noise`   ``background_noise.cc``: the LPC model of the noise floor
:mod:`.random_vector`      ``random_vector.cc``: NetEQ's table of random numbers
:mod:`.dsp_helper`         ``dsp_helper.cc``: downsampling, peaks, distortion, windows
:mod:`.concealer`          the parts of ``neteq_impl.cc`` that drive them frame by frame:
                           :class:`NetEqConcealer`
=========================  ==============================================================

Signals are floats, but every *control* quantity that NetEQ keeps in fixed point (mute factor
Q14, mute slope Q20, voice-mix factors Q14, amplitude ratio Q13, the cross-fade and ramp
increments) is kept as the same integer, so the muting / mixing schedule is NetEQ's to the
sample. Each module says how it adapts NetEQ to this project's fixed-length, time-aligned,
zero-delay frames. Only mono; sample rates 8, 16, 32 and 48 kHz (NetEQ's).

Not ported: the post-decode VAD (off by default in NetEQ), the "Normal after Expand" path for
a late packet (time-aligned frames never arrive late here), statistics bookkeeping, and the
bit-exact int16 rounding of the signal path. The jitter buffer's own NetEQ parts (packet
buffer, delay manager, decision logic, time stretching) are in :mod:`jitterbuffer`.
"""

from .concealer import NetEqConcealer

__all__ = ["NetEqConcealer"]

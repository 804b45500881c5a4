"""The one fallback mechanism (plc/concealers/fallback.py): primary, classic and deadline in one place."""

from __future__ import annotations

import numpy as np
import pytest

from plc.concealers import FallbackConcealer, make_concealer, with_fallback
from plc.concealers.base import Concealer, ConcealmentError

from .conftest import harmonic

FRAME = 160


def run(c: Concealer, x: np.ndarray, lost: np.ndarray) -> np.ndarray:
    return np.concatenate([c.process(None if l else x[i * FRAME:(i + 1) * FRAME]) for i, l in enumerate(lost)])


class Scripted(Concealer):
    """Repeats the last frame at half level; fails as told, once each: ``fail_at`` lost-frame indices
    of a loss (counted from 0) raise, ``bad_at`` return NaN."""

    name = "scripted"

    def __init__(self, fail_at=(), bad_at=(), unavailable=None, **kw):
        self.fail_at, self.bad_at, self._unavailable = set(fail_at), set(bad_at), unavailable
        super().__init__(**kw)

    @property
    def unavailable_reason(self):
        return self._unavailable

    def process(self, frame):
        if frame is None and self.lost_frames in self.bad_at:
            self.bad_at.discard(self.lost_frames)
            return np.full(self.frame_samples, np.nan, np.float32)
        return super().process(frame)

    def _conceal(self):
        if self.lost_frames in self.fail_at:
            self.fail_at.discard(self.lost_frames)
            raise ConcealmentError(f"scripted failure at lost frame {self.lost_frames}")
        return self.history[-self.frame_samples:] * 0.5


def loss(n=40, start=20, length=6):
    lost = np.zeros(n, dtype=bool)
    lost[start:start + length] = True
    return lost


def test_no_failure_plays_the_primary_bit_for_bit():
    x, lost = harmonic(seconds=0.4), loss()
    alone = run(Scripted(), x, lost)
    wrapped = FallbackConcealer(Scripted(), make_concealer("neteq"))
    assert np.array_equal(run(wrapped, x, lost), alone)
    assert wrapped.stats.fallback_frames == 0 and wrapped.fallback_reason is None
    assert wrapped.stats.concealed_frames == 6 and wrapped.stats.concealment_events == 1


@pytest.mark.parametrize("at", [0, 2])
def test_a_failure_hands_the_rest_of_the_loss_to_the_classic(at):
    """The classic continues from what the primary played (its history heard it) and merges back;
    the primary is kept in step, so the next loss is the primary's again."""
    x, lost = harmonic(seconds=0.6), loss(60, 20, 6)
    lost[40:43] = True
    primary = Scripted(fail_at={at})
    c = FallbackConcealer(primary, make_concealer("neteq"))
    out = run(c, x, lost)
    assert c.stats.fallback_frames == 6 - at
    assert c.fallback_reason == f"scripted failure at lost frame {at}"
    taken_over = np.abs(out[(20 + at) * FRAME:26 * FRAME]).reshape(-1, FRAME).max(axis=1)
    assert np.all(taken_over > 0) and taken_over[0] > 0.3 * np.abs(out[(19 + at) * FRAME:(20 + at) * FRAME]).max()
    assert primary.lost_frames == 0 and primary.stats.concealed_frames == 9  # in step: every lost frame counted
    assert np.array_equal(primary.history[-FRAME:], out[-FRAME:])
    # the second loss is the primary's (half the last frame)
    np.testing.assert_allclose(out[40 * FRAME:41 * FRAME], 0.5 * out[39 * FRAME:40 * FRAME], atol=1e-6)


def test_garbage_unavailable_and_a_failing_classic():
    x, lost = harmonic(seconds=0.4), loss()
    c = FallbackConcealer(Scripted(bad_at={1}), make_concealer("neteq"))
    run(c, x, lost)
    assert c.stats.fallback_frames == 5 and "bad concealer output" in c.fallback_reason
    gone = FallbackConcealer(Scripted(unavailable="no model here"), make_concealer("neteq"))
    assert gone.fallback_reason == "no model here"  # said before the first loss
    assert np.array_equal(run(gone, x, lost), run(make_concealer("neteq"), x, lost))
    assert gone.stats.fallback_frames == 6
    both = FallbackConcealer(Scripted(fail_at={0}), Scripted(fail_at={0}))
    out = run(both, x, lost)
    assert not np.any(out[20 * FRAME:21 * FRAME]) and both.stats.fallback_frames == 6
    assert "the classic concealer failed too" in both.fallback_reason


def test_deadline_moves_the_rest_of_the_loss_to_the_classic_and_retries_later(monkeypatch):
    """Every primary frame takes 3 ms (a fake clock), over the 2 ms deadline."""
    import itertools

    from plc.concealers import fallback

    ticks = itertools.count()
    monkeypatch.setattr(fallback, "perf_counter", lambda: 0.003 * next(ticks))
    x, lost = harmonic(seconds=1.0), loss(100, 20, 5)
    lost[60:65] = True
    c = FallbackConcealer(Scripted(), make_concealer("neteq"), deadline_ms=2.0)
    run(c, x, lost)
    assert "over the 2 ms deadline" in c.fallback_reason
    assert c.stats.fallback_frames == 8  # the first frame of each loss shows it is too slow; halved, it is retried
    assert list(c.frame_times_ms) == pytest.approx([3.0, 3.0])
    offline = FallbackConcealer(Scripted(), make_concealer("neteq"), deadline_ms=None)
    run(offline, x, lost)
    assert offline.stats.fallback_frames == 0


def test_registry_and_jitter_buffer_use_the_same_wrapper():
    neural = make_concealer("neural", realtime=False)
    assert isinstance(neural, FallbackConcealer) and neural.classic.name == "neteq" and neural.deadline_ms is None
    assert make_concealer("neural").deadline_ms == 5.0 and make_concealer("neural", deadline_ms=2.0).deadline_ms == 2.0
    assert with_fallback(neural) is neural
    plain = make_concealer("g711")
    wrapped = with_fallback(plain)
    assert wrapped.primary is plain and wrapped.deadline_ms is None and wrapped.name == "g711"
    with pytest.raises(TypeError, match="no real-time deadline"):
        make_concealer("neteq", deadline_ms=5.0)
    opus = with_fallback(make_concealer("opus"))
    assert opus.uses_codec_concealment
    opus.feed_codec_concealment(np.full(FRAME, 0.25, np.float32))
    opus.process(np.zeros(FRAME, np.float32))  # a received frame empties the queue
    opus.feed_codec_concealment(np.full(FRAME, 0.25, np.float32))
    assert np.all(opus.process(None) == 0.25)


def test_frames_that_play_the_codecs_concealment_are_not_held_to_the_deadline(monkeypatch):
    """A slow clock (every primary frame "takes" 3 ms, over a 2 ms deadline): where ``neural``
    plays the codec's concealment (SILK mode) nothing is timed and nothing falls back; where its
    model conceals (CELT mode) the deadline hands the loss to the classic."""
    import itertools

    from plc.concealers import fallback

    ticks = itertools.count()
    monkeypatch.setattr(fallback, "perf_counter", lambda: 0.003 * next(ticks))
    x = harmonic(seconds=0.5)
    for mode, fallbacks in (("silk", 0), ("celt", 2)):
        c = make_concealer("neural", deadline_ms=2.0)
        for f in range(20):
            c.process(x[f * FRAME:(f + 1) * FRAME])
        for _ in range(3):
            c.feed_codec_concealment(np.full(FRAME, 0.1, np.float32), mode)
            assert c.plays_codec_concealment == (mode == "silk")
            c.process(None)
        assert c.stats.fallback_frames == fallbacks, (mode, c.fallback_reason)
        assert len(c.frame_times_ms) == (0 if mode == "silk" else 1)

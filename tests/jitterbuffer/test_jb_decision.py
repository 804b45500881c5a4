"""Decision logic: the operation chosen for each state (jitterbuffer/decision_logic.py)."""

from __future__ import annotations

from jitterbuffer.decision_logic import Decision, DecisionConfig, DecisionLogic, DecisionStatus, Operation

N, E, M = Operation.NORMAL, Operation.EXPAND, Operation.MERGE


def status(last=N, prepared=0.0, available=True, leap=None, generated=0.0, delay=60.0, target=50.0):
    return DecisionStatus(last, prepared, available, leap, generated, delay, target)


def test_expected_packet_plays_normally_inside_the_band():
    assert DecisionLogic().decide(status(delay=65.0)) == Decision(N)


def test_time_stretch_follows_the_delay():
    logic = DecisionLogic()
    assert logic.decide(status(delay=75.0)).operation == Operation.ACCELERATE
    assert logic.decide(status(delay=200.0)).operation == Operation.FAST_ACCELERATE
    assert logic.decide(status(delay=52.0)).operation == Operation.PREEMPTIVE_EXPAND
    logic.stretched(True)  # an ordinary stretch waits a tick after a successful one
    assert logic.decide(status(delay=75.0)).operation == N
    assert logic.decide(status(delay=75.0)).operation == Operation.ACCELERATE
    logic.stretched(True)
    assert logic.decide(status(delay=200.0)).operation == Operation.FAST_ACCELERATE  # fast is not held back


def test_no_time_stretch_right_after_an_expand_or_in_fixed_mode():
    assert DecisionLogic().decide(status(last=E, available=True, delay=200.0)) == Decision(M)
    assert DecisionLogic("fixed").decide(status(delay=500.0)) == Decision(N)
    assert DecisionLogic(config=DecisionConfig(allow_time_stretch=False)).decide(status(delay=500.0)) == Decision(N)


def test_missing_packet_with_nothing_after_it_expands():
    assert DecisionLogic().decide(status(available=False)) == Decision(E)
    assert DecisionLogic("fixed").decide(status(available=False)) == Decision(E)


def test_gap_before_a_later_packet():
    logic = DecisionLogic()
    # first tick of the gap: conceal
    assert logic.decide(status(available=False, leap=20.0)) == Decision(E)
    # waiting while less has been concealed than is missing, and the delay is not above target
    assert logic.decide(status(last=E, available=False, leap=40.0, generated=10.0, delay=60.0)) == Decision(E)
    # enough concealed: give the gap up and merge into the next packet
    assert logic.decide(status(last=E, available=False, leap=20.0, generated=20.0)) == Decision(M, jump=True)
    # above target even without the gap: jump early (shortens the gap, like an accelerate)
    assert logic.decide(status(last=E, available=False, leap=40.0, generated=10.0, delay=100.0)) == Decision(M, True)
    # a sender pause: jump at once
    assert logic.decide(status(last=E, available=False, leap=5000.0, generated=10.0)) == Decision(M, jump=True)


def test_fixed_mode_conceals_the_whole_gap():
    logic = DecisionLogic("fixed")
    assert logic.decide(status(last=E, available=False, leap=40.0, generated=10.0, delay=500.0)) == Decision(E)
    assert logic.decide(status(last=E, available=False, leap=5000.0, generated=10.0)) == Decision(M, jump=True)


def test_prepared_audio_is_played_first():
    assert DecisionLogic().decide(status(prepared=12.0, available=False, delay=65.0)) == Decision(N)


def test_a_slow_sender_clock_lifts_the_preemptive_threshold():
    logic = DecisionLogic()
    assert logic.decide(status(delay=63.0)).operation == N
    assert logic.decide(status(delay=63.0)).operation == N
    slow = DecisionStatus(N, 0.0, True, None, 0.0, 63.0, 50.0, clock_skew=0.01)
    assert logic.decide(slow).operation == Operation.PREEMPTIVE_EXPAND

"""The transition table by itself: no I/O, no clock (the policy that picks the events is
test_policy.py)."""

from __future__ import annotations

import itertools

import pytest

from supervisord_lite.daemon.policy import MAX_FAILED, backoff_delay, restart_delay
from supervisord_lite.daemon.states import (
    RESTING,
    TRANSITIONS,
    IllegalTransition,
    ProcEvent,
    ProcState,
    next_state,
)

S, E = ProcState, ProcEvent


def test_a_normal_life() -> None:
    state = S.STOPPED
    for event, expected in [
        (E.START, S.STARTING),
        (E.READY, S.RUNNING),
        (E.RETRY, S.BACKOFF),
        (E.START, S.STARTING),
        (E.READY, S.RUNNING),
        (E.STOP, S.STOPPING),
        (E.HALTED, S.STOPPED),
    ]:
        state = next_state(state, event)
        assert state is expected


def test_failed_starts_lead_to_fatal_and_fatal_is_retried() -> None:
    state = S.STOPPED
    for _ in range(MAX_FAILED - 1):
        state = next_state(next_state(state, E.START), E.RETRY)
        assert state is S.BACKOFF
    state = next_state(next_state(state, E.START), E.GIVE_UP)
    assert state is S.FATAL
    assert next_state(state, E.START) is S.STARTING


def test_not_ready_is_stopped_then_backs_off() -> None:
    state = next_state(S.STARTING, E.NOT_READY)
    assert state is S.STOPPING
    assert next_state(state, E.RETRY) is S.BACKOFF
    assert next_state(state, E.GIVE_UP) is S.FATAL


def test_stop_from_every_resting_state_is_stopped() -> None:
    for state in RESTING:
        assert next_state(state, E.STOP) is S.STOPPED
    assert next_state(S.STOPPING, E.STOP) is S.STOPPING


def test_illegal_pairs_raise() -> None:
    with pytest.raises(IllegalTransition):
        next_state(S.RUNNING, E.READY)
    with pytest.raises(IllegalTransition):
        next_state(S.STOPPED, E.HALTED)
    with pytest.raises(IllegalTransition):
        next_state(S.RUNNING, E.GIVE_UP)  # only a failed start can be the last straw


def test_every_pair_is_decided_or_illegal() -> None:
    for state, event in itertools.product(S, E):
        if (state, event) in TRANSITIONS:
            assert isinstance(next_state(state, event), ProcState)
        else:
            with pytest.raises(IllegalTransition):
                next_state(state, event)
    # every state can be left, and every state but STARTING can be stopped
    for state in S:
        assert any(s is state for s, _ in TRANSITIONS)
        assert (state, E.STOP) in TRANSITIONS


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    for failures in range(1, 20):
        full = min(30.0, 0.1 * 2 ** (failures - 1))
        delay = backoff_delay(failures, 30.0)
        assert full / 2 <= delay <= full
    assert backoff_delay(50, 30.0) <= 30.0


def test_restart_delay_is_free_only_at_the_start_of_a_streak_after_running() -> None:
    assert restart_delay(1, free_first=True, cap=30.0) == 0.0
    for crashes in range(2, 20):
        full = min(30.0, 0.1 * 2 ** (crashes - 2))  # from 0.1 s at the second one
        assert full / 2 <= restart_delay(crashes, free_first=True, cap=30.0) <= full
    for crashes in range(1, 20):  # a start that fails before RUNNING: no free restart
        full = min(30.0, 0.1 * 2 ** (crashes - 1))
        assert full / 2 <= restart_delay(crashes, free_first=False, cap=30.0) <= full

"""The transition table by itself: no I/O, no clock; and the restart policy that picks
the events, driven through a Process without a child."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from supervisord_lite.daemon.output import Output
from supervisord_lite.daemon.process import (
    MAX_FAILED,
    STABLE,
    Process,
    Services,
    backoff_delay,
    restart_delay,
)
from supervisord_lite.daemon.ready import ReadyRegistry
from supervisord_lite.daemon.reaper import Reaper
from supervisord_lite.daemon.states import (
    RESTING,
    TRANSITIONS,
    IllegalTransition,
    ProcEvent,
    ProcState,
    next_state,
)
from supervisord_lite.layout import DeployRoot
from supervisord_lite.manifest import ProcessSpec, Release

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


def policy_process(tmp_path: Path) -> Process:
    services = Services(
        root=DeployRoot(tmp_path),
        output=Output(),
        reaper=Reaper(tmp_path / "children.json"),
        ready=ReadyRegistry(),
        base_env={},
    )
    release = Release(
        id="v1",
        created_at="2026-11-22T00:00:00Z",
        build="b-1",
        config={},
        sockets={},
        switch="start-first",
        processes={},
    )
    return Process(services, release, ProcessSpec(type="web", cmd="true"), 1)


def run_then_die(p: Process, ran_for: float) -> float:
    """START, READY, then an exit after ran_for seconds of RUNNING; the delay chosen."""
    p._apply(E.START)
    p._ready()
    assert p.state is S.RUNNING
    p.ready_at = time.monotonic() - ran_for
    p._after_exit(-9)
    assert p.state is S.BACKOFF
    delay = p._delay_before_start()
    assert delay is not None
    return delay


def test_a_death_after_a_stable_run_is_restarted_at_once_then_backoff(tmp_path: Path) -> None:
    p = policy_process(tmp_path)
    assert run_then_die(p, STABLE + 50) == 0.0  # the bug was a 0.05-0.1 s wait here
    assert p.crashes == 1
    assert 0.05 <= run_then_die(p, 0.5) <= 0.1  # the second quick death: from 0.1 s
    assert 0.1 <= run_then_die(p, 0.5) <= 0.2
    assert 0.2 <= run_then_die(p, 0.5) <= 0.4
    assert p.crashes == 4
    assert run_then_die(p, STABLE + 1) == 0.0  # a stable run ends the streak
    assert p.crashes == 1
    assert p.failures == 0  # they were all ready: none was a failed start


def test_the_first_death_of_a_process_that_came_up_is_restarted_at_once(
    tmp_path: Path,
) -> None:
    p = policy_process(tmp_path)
    assert run_then_die(p, 0.5) == 0.0
    assert 0.05 <= run_then_die(p, 0.5) <= 0.1


def test_failed_starts_back_off_from_the_first_and_go_fatal(tmp_path: Path) -> None:
    p = policy_process(tmp_path)
    delays = []
    for _ in range(MAX_FAILED):
        p._apply(E.START)
        p._after_exit(1)
        if p.state is S.BACKOFF:
            delays.append(p._resume_at - time.monotonic())
    assert p.state is S.FATAL
    assert p.failures == MAX_FAILED and len(delays) == MAX_FAILED - 1
    assert 0.0 < delays[0] <= 0.1 and 0.1 <= delays[1] <= 0.2
    assert p.error == "exited with code 1 before it was ready"

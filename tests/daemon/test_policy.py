"""The restart policy as a table: a fake clock, fixed jitter, no process, no private member."""

from __future__ import annotations

import pytest

from supervisord_lite.daemon.policy import (
    MAX_FAILED,
    STABLE,
    Decision,
    Exit,
    Streak,
    after_exit,
    uniform,
)
from supervisord_lite.daemon.states import ProcEvent, ProcState

S, E = ProcState, ProcEvent
NOW = 1000.0


def no_jitter(low: float, high: float) -> float:
    return high  # the top of the range: delays are exact


def decide(exit_: Exit, streak: Streak, policy: str = "always") -> Decision:
    return after_exit(
        exit_,
        streak,
        policy=policy,
        now=NOW,
        max_backoff=30.0,
        fatal_cooloff=60.0,
        previous_error="not ready within 5 s",
        jitter=no_jitter,
    )


def after_running(seconds: float, code: int = -9) -> Exit:
    return Exit(code, S.RUNNING, ready_at=NOW - seconds)


CASES = [
    # (name, exit, streak, policy, event, delay, crashes, failures, error)
    (
        "first death after a stable run: at once",
        after_running(STABLE + 50),
        Streak(3, 0, True),
        "always",
        E.RETRY,
        0.0,
        1,
        0,
        "exited with code -9 after it was ready",
    ),
    (
        "first death ever after RUNNING: at once",
        after_running(0.5),
        Streak(),
        "always",
        E.RETRY,
        0.0,
        1,
        0,
        None,
    ),
    (
        "second quick death: 0.1 s",
        after_running(0.5),
        Streak(1, 0, True),
        "always",
        E.RETRY,
        0.1,
        2,
        0,
        None,
    ),
    (
        "fourth quick death: 0.4 s",
        after_running(0.5),
        Streak(3, 0, True),
        "always",
        E.RETRY,
        0.4,
        4,
        0,
        None,
    ),
    (
        "failed start backs off from the first",
        Exit(1, S.STARTING),
        Streak(),
        "always",
        E.RETRY,
        0.1,
        1,
        1,
        "exited with code 1 before it was ready",
    ),
    (
        "ninth failed start in a row: capped backoff",
        Exit(1, S.STARTING),
        Streak(8, 8, False),
        "always",
        E.RETRY,
        25.6,
        9,
        9,
        None,
    ),
    (
        "tenth failed start: FATAL, cool-off",
        Exit(1, S.STARTING),
        Streak(MAX_FAILED - 1, MAX_FAILED - 1, False),
        "always",
        E.GIVE_UP,
        60.0,
        MAX_FAILED,
        MAX_FAILED,
        None,
    ),
    (
        "not ready in time keeps the check's reason",
        Exit(0, S.STARTING, not_ready=True),
        Streak(),
        "always",
        E.RETRY,
        0.1,
        1,
        1,
        "not ready within 5 s",
    ),
    (
        "spawn failure names itself",
        Exit(127, S.STARTING, error="cannot spawn: no such file"),
        Streak(),
        "always",
        E.RETRY,
        0.1,
        1,
        1,
        "cannot spawn: no such file",
    ),
    (
        "one-shot exits 0: done, streak untouched",
        after_running(0.1, code=0),
        Streak(2, 1, True),
        "never",
        E.DONE,
        0.0,
        2,
        1,
        None,
    ),
    (
        "on-failure exits 0 before ready: done",
        Exit(0, S.STARTING),
        Streak(),
        "on-failure",
        E.DONE,
        0.0,
        0,
        0,
        None,
    ),
    (
        "on-failure exits 1: restarted",
        after_running(0.5, code=1),
        Streak(),
        "on-failure",
        E.RETRY,
        0.0,
        1,
        0,
        None,
    ),
    (
        "never exits 1: left EXITED with the reason",
        Exit(1, S.STARTING),
        Streak(),
        "never",
        E.DONE,
        0.0,
        1,
        1,
        "exited with code 1 before it was ready",
    ),
]


@pytest.mark.parametrize(
    ("exit_", "streak", "policy", "event", "delay", "crashes", "failures", "error"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_after_exit(
    exit_: Exit,
    streak: Streak,
    policy: str,
    event: ProcEvent,
    delay: float,
    crashes: int,
    failures: int,
    error: str | None,
) -> None:
    d = decide(exit_, streak, policy)
    assert d.event is event
    assert d.resume_at - NOW == pytest.approx(delay)
    assert (d.streak.crashes, d.streak.failures) == (crashes, failures)
    if error is not None or (event is E.DONE and exit_.code == 0):
        assert d.error == error


def test_a_crash_loop_walks_the_whole_table_to_fatal_and_back() -> None:
    streak, events = Streak(), []
    for _ in range(MAX_FAILED):
        d = decide(Exit(3, S.STARTING), streak)
        streak = d.streak
        events.append(d.event)
    assert events == [E.RETRY] * (MAX_FAILED - 1) + [E.GIVE_UP]
    # `restart` gives a fresh set of tries: the caller resets failures, one more is RETRY
    d = decide(Exit(3, S.STARTING), Streak(streak.crashes, 0, False))
    assert d.event is E.RETRY and d.streak.failures == 1


def test_jitter_draws_spread_over_the_whole_range_and_stay_inside_it() -> None:
    draws = [uniform(2.0, 4.0) for _ in range(2000)]
    assert all(2.0 <= d <= 4.0 for d in draws)
    assert min(draws) < 2.2 and max(draws) > 3.8  # not stuck at one end
    assert len(set(draws)) > 1900  # not a constant, nor a handful of values

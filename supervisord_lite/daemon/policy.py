"""The restart policy: what an exit leads to, as a pure function of the exit, the streak and now.

No I/O, no clock of its own, no randomness of its own: process.py gives it the time
(Services.clock) and the jitter source, so every case is a table row in a test.

Backoff: 0.1 s doubling per failure in a row, capped (30 s), with "equal jitter" (half
fixed, half random) so that a whole generation that crashes together does not restart in
lockstep. A death after being RUNNING, when it is the first of a streak (after a stable
run, or the process's first death), is restarted at once (PEERS: respawn under 20 ms); the
backoff starts with the second quick death in a row, at 0.1 s. A start that fails before
RUNNING backs off from its first failure. The streak ends when the process had been
RUNNING for STABLE seconds before it died, judged from the real times (no timer). After
MAX_FAILED failed starts in a row (exited, or not ready, before RUNNING) it is FATAL; after
the cool-off it gets one more try (and is FATAL again if that fails). A process of a
`never` or `on-failure` type that exits 0 is done: a one-shot that did its job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from supervisord_lite.daemon.states import ProcEvent, ProcState

MAX_FAILED = 10
STABLE = 10.0
BACKOFF_FIRST = 0.1


@dataclass(frozen=True)
class Streak:
    """Exits in a row (crashes), failed starts in a row (failures), and whether the streak
    began with a death after RUNNING (free_first: that one is restarted at once)."""

    crashes: int = 0
    failures: int = 0
    free_first: bool = False


@dataclass(frozen=True)
class Exit:
    code: int
    was: ProcState  # the state it exited from
    not_ready: bool = False  # it failed its readiness check (and was stopped for it)
    ready_at: float = 0.0  # when it became RUNNING (clock time), if it did
    error: str | None = None  # why, when the daemon knows better than the code (spawn)


@dataclass(frozen=True)
class Decision:
    event: ProcEvent  # DONE, GIVE_UP or RETRY
    streak: Streak
    resume_at: float  # when to start again (RETRY, GIVE_UP)
    error: str | None  # what status and a switch report; None when it did its job


def uniform(low: float, high: float) -> float:
    """A float in [low, high]: os.urandom, since the random module (and its SHA-512) would
    be 150 KB of the daemon's RSS for this one draw (issue 16)."""
    return low + (high - low) * int.from_bytes(os.urandom(4), "big") / 0xFFFFFFFF


def backoff_delay(
    failures: int, cap: float, jitter: Callable[[float, float], float] = uniform
) -> float:
    full = min(cap, BACKOFF_FIRST * 2.0 ** max(failures - 1, 0))
    return full / 2 + jitter(0, full / 2)


def restart_delay(
    crashes: int,
    *,
    free_first: bool,
    cap: float,
    jitter: Callable[[float, float], float] = uniform,
) -> float:
    """The wait before restarting after the crashes-th exit in a row."""
    if free_first:
        return 0.0 if crashes <= 1 else backoff_delay(crashes - 1, cap, jitter)
    return backoff_delay(crashes, cap, jitter)


def after_exit(
    exit_: Exit,
    streak: Streak,
    *,
    policy: str,
    now: float,
    max_backoff: float,
    fatal_cooloff: float,
    previous_error: str | None = None,
    jitter: Callable[[float, float], float] = uniform,
) -> Decision:
    """What an unrequested exit leads to (a requested stop is not the policy's business)."""
    success = exit_.code == 0 and not exit_.not_ready
    if success and policy in ("never", "on-failure"):
        return Decision(ProcEvent.DONE, streak, now, None)
    failed_start = exit_.not_ready or exit_.was is ProcState.STARTING
    crashes = streak.crashes
    if exit_.was is ProcState.RUNNING and now - exit_.ready_at >= STABLE:
        crashes = 0  # a stable run ends the streak: this exit starts a new one
    crashes += 1
    free_first = exit_.was is ProcState.RUNNING if crashes == 1 else streak.free_first
    failures = streak.failures + 1 if failed_start else streak.failures
    if not failed_start:
        error: str | None = f"exited with code {exit_.code} after it was ready"
    elif exit_.not_ready:
        error = previous_error  # the readiness check's own reason
    else:
        error = exit_.error or f"exited with code {exit_.code} before it was ready"
    new = Streak(crashes, failures, free_first)
    if policy == "never":
        return Decision(ProcEvent.DONE, new, now, error)
    if failed_start and failures >= MAX_FAILED:
        return Decision(ProcEvent.GIVE_UP, new, now + fatal_cooloff, error)
    delay = restart_delay(crashes, free_first=free_first, cap=max_backoff, jitter=jitter)
    return Decision(ProcEvent.RETRY, new, now + delay, error)


def exit_line(
    name: str, code: int, decision: Decision, *, policy: str, fatal_cooloff: float, now: float
) -> tuple[int, str]:
    """What the daemon's log says about a decision: (logging level, one line)."""
    match decision.event:
        case ProcEvent.DONE:
            return logging.INFO, f"{name}: exited with code {code}; restart policy {policy}"
        case ProcEvent.GIVE_UP:
            return logging.ERROR, (
                f"{name}: FATAL after {decision.streak.failures} failed starts in a row "
                f"({decision.error}); next try in {fatal_cooloff:g} s"
            )
        case _:
            delay = decision.resume_at - now
            return logging.INFO, f"{name}: exited with code {code}; restarting in {delay:.2f} s"

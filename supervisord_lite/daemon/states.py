"""The life of one supervised process: an Enum of states and ONE transition table.

The table is the whole state machine (s6's lesson): every (state, event) pair the
process task can produce is decided here, in one place, and anything missing is a bug
that raises IllegalTransition instead of silently doing something. Pairs that mean
"nothing to do" are written down as such (the state maps to itself).

The process task (process.py) decides *which* event happened, because that needs the
policy, the clock and the exit status; this module only says where the event leads.
So the exit of a process becomes one of four events chosen by the task:
RETRY (restart it after a backoff), DONE (the policy says leave it), GIVE_UP (the
tenth failed start in a row), HALTED (it exited because we asked it to stop).

Pure: no I/O, no clock; tested by itself.
"""

from __future__ import annotations

import enum


class ProcState(enum.Enum):
    STARTING = "STARTING"  # spawned, not ready yet
    RUNNING = "RUNNING"  # ready
    BACKOFF = "BACKOFF"  # exited; waiting before the next start
    STOPPING = "STOPPING"  # stop signal sent, waiting for the exit
    STOPPED = "STOPPED"  # not running because it was asked not to (or not yet started)
    EXITED = "EXITED"  # exited and its restart policy says leave it
    FATAL = "FATAL"  # failed to start too many times in a row; retried after a cool-off


class ProcEvent(enum.Enum):
    START = "start"  # the task spawns it (first start, after backoff/cool-off, on request)
    READY = "ready"  # its readiness check passed
    NOT_READY = "not_ready"  # ready_timeout passed or the check can never pass: stop it
    STOP = "stop"  # asked to stop
    RETRY = "retry"  # exited; will be restarted after a backoff
    DONE = "done"  # exited; its policy says not to restart it
    GIVE_UP = "give_up"  # exited, and that was the last failed start allowed in a row
    HALTED = "halted"  # exited after we asked it to stop


class IllegalTransition(Exception):
    """An event that cannot happen in that state: a bug in the caller."""


S = ProcState
E = ProcEvent

TRANSITIONS: dict[tuple[ProcState, ProcEvent], ProcState] = {
    # starting it
    (S.STOPPED, E.START): S.STARTING,
    (S.BACKOFF, E.START): S.STARTING,
    (S.EXITED, E.START): S.STARTING,
    (S.FATAL, E.START): S.STARTING,
    # readiness
    (S.STARTING, E.READY): S.RUNNING,
    (S.STARTING, E.NOT_READY): S.STOPPING,
    # stop requests
    (S.STARTING, E.STOP): S.STOPPING,
    (S.RUNNING, E.STOP): S.STOPPING,
    (S.STOPPING, E.STOP): S.STOPPING,  # nothing to do: already on its way
    (S.BACKOFF, E.STOP): S.STOPPED,  # nothing runs: cancel the pending restart
    (S.EXITED, E.STOP): S.STOPPED,
    (S.FATAL, E.STOP): S.STOPPED,
    (S.STOPPED, E.STOP): S.STOPPED,  # nothing to do
    # exits
    (S.STARTING, E.RETRY): S.BACKOFF,
    (S.RUNNING, E.RETRY): S.BACKOFF,
    (S.STOPPING, E.RETRY): S.BACKOFF,  # a not-ready process we stopped ourselves
    (S.STARTING, E.DONE): S.EXITED,
    (S.RUNNING, E.DONE): S.EXITED,
    (S.STOPPING, E.DONE): S.EXITED,
    (S.STARTING, E.GIVE_UP): S.FATAL,
    (S.STOPPING, E.GIVE_UP): S.FATAL,
    (S.STOPPING, E.HALTED): S.STOPPED,
}

# States in which no process of ours is alive.
RESTING = frozenset({S.BACKOFF, S.STOPPED, S.EXITED, S.FATAL})


def next_state(state: ProcState, event: ProcEvent) -> ProcState:
    """Where event leads from state; IllegalTransition for a pair the table lacks."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"{event.value} is not possible in state {state.value}") from None

"""The one request stream into the supervisor loop, and the daemon's own state.

Every trigger becomes a typed request: SIGHUP, the control socket's `reload` and --watch
put a Reload; the control socket's `restart`, `stop` and `start` put a ProcessCommand and
wait for its answer. The loop takes one request at a time, so a `stop web` sent during a
switch is applied after it, to the generation that runs then (it used to act on the old
generation at once and be undone by the switch). Reloads fold: a Reload already waiting
absorbs the next, so a burst of HUPs during a switch makes exactly one more reload.
Commands are kept in the order they came, each answered once.

Rejected: a bounded anyio memory stream. It cannot fold, and a full one would make the
signal task wait on the supervisor, which is the very coupling this removes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

import anyio


class DaemonState(Enum):
    STARTING = "starting"
    RUNNING = "running"
    SWITCHING = "switching"
    STOPPING = "stopping"


class DaemonEvent(Enum):
    UP = "up"  # the first release (or its fallback) came up or failed its first start
    SWITCH = "switch"
    SWITCHED = "switched"  # done, either way
    STOP = "stop"


_S, _E = DaemonState, DaemonEvent
TRANSITIONS: dict[tuple[DaemonState, DaemonEvent], DaemonState] = {
    (_S.STARTING, _E.UP): _S.RUNNING,
    (_S.RUNNING, _E.SWITCH): _S.SWITCHING,
    (_S.SWITCHING, _E.SWITCHED): _S.RUNNING,
    (_S.STARTING, _E.STOP): _S.STOPPING,
    (_S.RUNNING, _E.STOP): _S.STOPPING,
    (_S.SWITCHING, _E.STOP): _S.STOPPING,  # shutdown cancels a switch wherever it is
    (_S.STOPPING, _E.STOP): _S.STOPPING,  # nothing to do
}


def next_daemon_state(state: DaemonState, event: DaemonEvent) -> DaemonState:
    """The state after event; ValueError for a pair the daemon must never see."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise ValueError(f"daemon: no transition from {state.value} on {event.value}") from None


@dataclass(frozen=True)
class Reload:
    pass


Verb = Literal["restart", "stop", "start"]


@dataclass(eq=False)
class ProcessCommand:
    """restart/stop/start of a target; answered with the names it acted on, or an error."""

    verb: Verb
    target: str | None
    _done: anyio.Event = field(default_factory=anyio.Event)
    _names: list[str] = field(default_factory=list)
    _error: LookupError | None = None

    def answer(self, names: list[str]) -> None:
        self._names = names
        self._done.set()

    def fail(self, error: LookupError) -> None:
        self._error = error
        self._done.set()

    async def result(self) -> list[str]:
        """The names acted on; LookupError when there was no such target."""
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._names


Request = Reload | ProcessCommand


class Requests:
    """The stream: puts never block and never fail; get() waits for the next request."""

    def __init__(self) -> None:
        self._queue: deque[Request] = deque()
        self._reload_waiting = False
        self._event = anyio.Event()

    def put(self, request: Request) -> None:
        if isinstance(request, Reload):
            if self._reload_waiting:
                return  # folded into the one already waiting
            self._reload_waiting = True
        self._queue.append(request)
        self._event.set()

    async def get(self) -> Request:
        while not self._queue:
            self._event = anyio.Event()
            await self._event.wait()
        request = self._queue.popleft()
        if isinstance(request, Reload):
            self._reload_waiting = False
        return request

    def pending(self) -> int:
        return len(self._queue)

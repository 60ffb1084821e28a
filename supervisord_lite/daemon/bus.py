"""Events are values; the bus hands each one to every subscriber and trusts none of them.

One frozen dataclass per kind of thing that happens in the daemon. `publish` is
synchronous and never blocks: each subscriber has its own bounded memory stream fed with
`send_nowait`; a subscriber that falls behind loses events (counted, per subscriber)
instead of slowing the supervisor, and one whose stream is closed is dropped. The order
of events is the order of `publish` calls, and every subscriber sees that order.

Rejected: a callback list (a slow or raising callback runs inside the supervisor's own
task); an unbounded queue (a stuck plugin would grow the daemon's memory without limit).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    at: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {"event": self.kind, **data}


@dataclass(frozen=True)
class DaemonStarted(Event):
    kind: ClassVar[str] = "daemon_started"
    pid: int
    root: str


@dataclass(frozen=True)
class ReleaseLoaded(Event):
    kind: ClassVar[str] = "release_loaded"
    release: str
    build: str


@dataclass(frozen=True)
class ProcessSpawned(Event):
    kind: ClassVar[str] = "process_spawned"
    name: str
    release: str
    pid: int


@dataclass(frozen=True)
class ProcessReady(Event):
    kind: ClassVar[str] = "process_ready"
    name: str
    release: str
    pid: int


@dataclass(frozen=True)
class ProcessExited(Event):
    kind: ClassVar[str] = "process_exited"
    name: str
    release: str
    pid: int
    exit_code: int | None  # None when a signal ended it
    signal: int | None
    expected: bool  # we asked it to stop


@dataclass(frozen=True)
class ProcessFatal(Event):
    kind: ClassVar[str] = "process_fatal"
    name: str
    release: str
    failures: int


@dataclass(frozen=True)
class ProcessStateChanged(Event):
    """Every transition of every process (states.TRANSITIONS), BACKOFF and STOPPING too."""

    kind: ClassVar[str] = "process_state"
    name: str
    release: str
    old: str
    new: str
    event: str
    reason: str | None  # why it failed, when it did


@dataclass(frozen=True)
class SwitchStarted(Event):
    kind: ClassVar[str] = "switch_started"
    from_release: str | None
    to_release: str
    mode: str


@dataclass(frozen=True)
class SwitchDone(Event):
    kind: ClassVar[str] = "switch_done"
    from_release: str | None
    to_release: str
    seconds: float


@dataclass(frozen=True)
class SwitchFailed(Event):
    kind: ClassVar[str] = "switch_failed"
    from_release: str | None
    to_release: str
    error: str
    seconds: float


@dataclass(frozen=True)
class ReloadRejected(Event):
    kind: ClassVar[str] = "reload_rejected"
    release: str | None
    error: str


@dataclass(frozen=True)
class HeldSocketIgnored(Event):
    """A process given LISTEN_FDS listens on a socket of its own (heldsocket.py)."""

    kind: ClassVar[str] = "held_socket_ignored"
    name: str
    release: str
    pid: int
    address: str  # where it listens itself
    held: str | None  # a held bind its process tree has open, if any


@dataclass(frozen=True)
class DaemonStopping(Event):
    kind: ClassVar[str] = "daemon_stopping"
    reason: str


EVENT_KINDS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        DaemonStarted,
        ReleaseLoaded,
        ProcessSpawned,
        ProcessReady,
        ProcessExited,
        ProcessFatal,
        ProcessStateChanged,
        SwitchStarted,
        SwitchDone,
        SwitchFailed,
        ReloadRejected,
        HeldSocketIgnored,
        DaemonStopping,
    )
}


@dataclass
class Subscription:
    name: str
    send: MemoryObjectSendStream[Event]
    receive: MemoryObjectReceiveStream[Event]
    dropped: int = 0


class EventBus:
    """Fan-out of events to bounded per-subscriber streams; publish never blocks."""

    def __init__(self) -> None:
        self._subs: dict[str, Subscription] = {}
        self.published = 0

    def subscribe(self, name: str, *, maxsize: int = 1000) -> Subscription:
        if name in self._subs:
            raise ValueError(f"{name!r} is already subscribed")
        send, receive = anyio.create_memory_object_stream[Event](maxsize)
        sub = Subscription(name, send, receive)
        self._subs[name] = sub
        return sub

    def unsubscribe(self, name: str) -> None:
        sub = self._subs.pop(name, None)
        if sub is not None:
            sub.send.close()

    def publish(self, event: Event) -> None:
        self.published += 1
        for name, sub in list(self._subs.items()):
            try:
                sub.send.send_nowait(event)
            except anyio.WouldBlock:
                sub.dropped += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subs.pop(name, None)

    @property
    def subscribed(self) -> bool:
        """Whether anyone listens: an event nobody gets need not even be made."""
        return bool(self._subs)

    def dropped(self) -> dict[str, int]:
        return {name: sub.dropped for name, sub in self._subs.items()}

    def close(self) -> None:
        for name in list(self._subs):
            self.unsubscribe(name)

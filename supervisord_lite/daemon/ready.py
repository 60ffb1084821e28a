"""Readiness checks: when a spawned process counts as RUNNING, and a registry plugins extend.

"Spawned" and "ready" are different events (s6): a process is ready when its check
passes, and a switch waits for that before it retires the old generation.

Choices, and what was rejected:
- A check is a plain async function `(ReadyCheck, ReadyContext) -> None` that returns when
  the process is ready. It never times out by itself: the process task owns the one
  deadline (`ready_timeout`) and wraps the check in `anyio.fail_after`, so there is exactly
  one timer per start attempt and cancellation is the only way out. A check raises
  ReadyFailed only when it knows it can never pass (a closed notify socket, a target it
  cannot parse); the caller treats that like a timeout, without waiting for one.
- Probes retry on their own short timer (50 ms growing to 500 ms). Polling the app is
  the only way to learn that a port opened; the timer belongs to this task alone.
- Each attempt has its own bound: an accepted connection that never answers, or a
  `cmd` that hangs, must not eat the whole ready timeout in one attempt.
- http speaks HTTP/1.1 over a raw anyio stream and reads only the status line: the
  stdlib's http.client would need a thread, and requests/httpx are dependencies for a
  probe that needs twenty lines.
- Cancellation safety: streams are closed by `async with`; a `cmd` probe runs in its own
  session and its whole process group is killed and reaped (shielded) when cancelled.
- Dispatch is a dict of kind -> function; a duplicate registration is refused, so a
  plugin cannot silently replace a built-in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import anyio

from supervisord_lite.manifest import ReadyCheck

if TYPE_CHECKING:
    from supervisord_lite.daemon.ready_notify import ChildNotify

RETRY_FIRST = 0.05
RETRY_MAX = 0.5
RETRY_FACTOR = 1.5


@dataclass(frozen=True)
class ReadyContext:
    """What a check may know about the process it watches."""

    name: str
    cwd: Path
    env: Mapping[str, str]
    notify: ChildNotify | None


class ReadyFailed(Exception):
    """The check knows it will never pass (e.g. the notify socket closed)."""


ReadyCheckFn: TypeAlias = Callable[[ReadyCheck, ReadyContext], Awaitable[None]]


class ReadyRegistry:
    """kind -> check function; the built-ins first, plugins add their own kinds."""

    def __init__(self) -> None:
        self._checks: dict[str, ReadyCheckFn] = {}
        for kind, fn in BUILTINS.items():
            self.register(kind, fn)

    def register(self, kind: str, fn: ReadyCheckFn) -> None:
        """Add a kind; ValueError if it is already registered."""
        if kind in self._checks:
            raise ValueError(f"readiness check {kind!r} is already registered")
        self._checks[kind] = fn

    def kinds(self) -> list[str]:
        return sorted(self._checks)

    async def wait_ready(self, check: ReadyCheck, ctx: ReadyContext) -> None:
        """Return once ready. Never times out by itself; ReadyFailed if it never can pass."""
        fn = self._checks.get(check.kind)
        if fn is None:
            raise ReadyFailed(f"unknown readiness check {check.kind!r}")
        await fn(check, ctx)


async def retry(attempt: Callable[[], Awaitable[bool]]) -> None:
    """Run attempt until it returns True, sleeping a short growing interval in between."""
    delay = RETRY_FIRST
    while not await attempt():
        await anyio.sleep(delay)
        delay = min(delay * RETRY_FACTOR, RETRY_MAX)


def split_host_port(target: str) -> tuple[str, int]:
    """Split "host:port" or "[v6]:port" -> (host, port); ReadyFailed when it is neither."""
    host, sep, port = target.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ReadyFailed(f"not host:port: {target!r}")
    return host, int(port)


async def check_after(check: ReadyCheck, ctx: ReadyContext) -> None:
    await anyio.sleep(check.seconds)


def loaded(name: str) -> ReadyCheckFn:
    """A built-in check whose code is imported the first time a process is checked with
    it: most releases wait `after` only, and the others' stream, URL and probe machinery
    (readychecks.py) is 0.15 MB of the idle daemon (issue 16)."""

    async def run_check(check: ReadyCheck, ctx: ReadyContext) -> None:
        from supervisord_lite.daemon import readychecks

        await getattr(readychecks, name)(check, ctx)

    return run_check


BUILTINS: dict[str, ReadyCheckFn] = {
    "after": check_after,
    "tcp": loaded("check_tcp"),
    "http": loaded("check_http"),
    "cmd": loaded("check_cmd"),
    "notify": loaded("check_notify"),
}

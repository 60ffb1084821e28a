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

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias
from urllib.parse import urlsplit

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from supervisord_lite.daemon.ready_notify import ChildNotify
from supervisord_lite.manifest import ReadyCheck

log = logging.getLogger(__name__)

RETRY_FIRST = 0.05
RETRY_MAX = 0.5
RETRY_FACTOR = 1.5
CONNECT_TIMEOUT = 2.0
HTTP_TIMEOUT = 5.0
CMD_TIMEOUT = 10.0
MAX_STATUS_LINE = 8192


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


# --- the built-in checks -----------------------------------------------------------------


async def check_after(check: ReadyCheck, ctx: ReadyContext) -> None:
    await anyio.sleep(check.seconds)


async def check_tcp(check: ReadyCheck, ctx: ReadyContext) -> None:
    host, port = split_host_port(check.target)

    async def attempt() -> bool:
        with anyio.move_on_after(CONNECT_TIMEOUT):
            try:
                stream = await anyio.connect_tcp(host, port)
            except OSError:
                return False
            await stream.aclose()
            return True
        return False

    await retry(attempt)


def http_request(target: str) -> tuple[str, int, bytes]:
    """(host, port, request bytes) for an http:// URL; ReadyFailed for anything else."""
    url = urlsplit(target)
    if url.scheme != "http" or not url.hostname:
        raise ReadyFailed(f"not an http:// URL: {target!r}")
    try:
        port = url.port or 80
    except ValueError:
        raise ReadyFailed(f"bad port in {target!r}") from None
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    host_header = url.netloc.rpartition("@")[2]
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: supervisord-lite\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    )
    return url.hostname, port, request.encode("latin-1", "replace")


def http_status(line: bytes) -> int | None:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])


async def check_http(check: ReadyCheck, ctx: ReadyContext) -> None:
    host, port, request = http_request(check.target)

    async def attempt() -> bool:
        with anyio.move_on_after(HTTP_TIMEOUT):
            try:
                async with await anyio.connect_tcp(host, port) as stream:
                    await stream.send(request)
                    reader = BufferedByteReceiveStream(stream)
                    line = await reader.receive_until(b"\n", MAX_STATUS_LINE)
            except (
                OSError,
                anyio.EndOfStream,
                anyio.IncompleteRead,
                anyio.DelimiterNotFound,
                anyio.BrokenResourceError,
            ):
                return False
            status = http_status(line)
            return status is not None and 200 <= status < 400
        return False

    await retry(attempt)


async def check_cmd(check: ReadyCheck, ctx: ReadyContext) -> None:
    async def attempt() -> bool:
        return await run_probe(check.target, ctx) == 0

    await retry(attempt)


async def run_probe(command: str, ctx: ReadyContext) -> int | None:
    """Run command once, bounded by CMD_TIMEOUT; its exit code, None if it took too long.

    The probe gets its own session so that whatever it forks is killed with it.
    """
    process = await anyio.open_process(
        ["/bin/sh", "-c", command],
        cwd=ctx.cwd,
        env=dict(ctx.env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with anyio.move_on_after(CMD_TIMEOUT):
            return await process.wait()
        log.info("%s: readiness command still running after %g s", ctx.name, CMD_TIMEOUT)
        return None
    finally:
        with anyio.CancelScope(shield=True):
            # only while unreaped: once reaped, the pid (and so the group id) may be reused
            if process.returncode is None:
                kill_group(process.pid)
            await process.aclose()


def kill_group(pgid: int) -> None:
    # the leader may have exited while a child it forked still holds the group
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def check_notify(check: ReadyCheck, ctx: ReadyContext) -> None:
    if ctx.notify is None:
        raise ReadyFailed(f"{ctx.name}: ready by notify, but it has no notify socket")
    try:
        await ctx.notify.wait_ready()
    except anyio.ClosedResourceError:
        raise ReadyFailed(f"{ctx.name}: notify socket closed before READY=1") from None


BUILTINS: dict[str, ReadyCheckFn] = {
    "after": check_after,
    "tcp": check_tcp,
    "http": check_http,
    "cmd": check_cmd,
    "notify": check_notify,
}

"""The built-in readiness checks but `after`: a port that accepts, an HTTP status, a
command's exit, a notify socket's READY=1. ready.py imports this module the first time a
process is checked with one of them (ready.loaded); ready.py says how checks behave.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from urllib.parse import urlsplit

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from supervisord_lite.daemon.ready import ReadyContext, ReadyFailed, retry, split_host_port
from supervisord_lite.manifest import ReadyCheck

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
HTTP_TIMEOUT = 5.0
CMD_TIMEOUT = 10.0
MAX_STATUS_LINE = 8192


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

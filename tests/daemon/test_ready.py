"""ready.py against real listeners and real processes."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from supervisord_lite.daemon.ready import (
    ReadyContext,
    ReadyFailed,
    ReadyRegistry,
    split_host_port,
)
from supervisord_lite.daemon.ready_notify import open_child_notify
from supervisord_lite.daemon.readychecks import http_status
from supervisord_lite.manifest import ReadyCheck
from tests.helpers import PY, pid_alive, until


def context(tmp_path: Path, **env: str) -> ReadyContext:
    return ReadyContext(
        name="web.1", cwd=tmp_path, env={"PATH": os.environ["PATH"], **env}, notify=None
    )


async def test_after_sleeps_its_seconds(tmp_path: Path) -> None:
    start = time.monotonic()
    await ReadyRegistry().wait_ready(ReadyCheck("after", seconds=0.2), context(tmp_path))
    assert time.monotonic() - start >= 0.2


def bound_not_listening(family: socket.AddressFamily, host: str) -> socket.socket:
    """A bound socket that refuses connections until listen() is called."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    return sock


@pytest.mark.parametrize(
    ("family", "host", "target"),
    [(socket.AF_INET, "127.0.0.1", "127.0.0.1:{port}"), (socket.AF_INET6, "::1", "[::1]:{port}")],
)
async def test_tcp_retries_until_the_port_accepts(
    tmp_path: Path, family: socket.AddressFamily, host: str, target: str
) -> None:
    if not socket.has_ipv6 and family == socket.AF_INET6:
        pytest.skip("no IPv6")
    try:
        sock = bound_not_listening(family, host)
    except OSError:
        pytest.skip(f"cannot bind {host}")
    with sock:
        check = ReadyCheck("tcp", target=target.format(port=sock.getsockname()[1]))
        done = anyio.Event()

        async def probe() -> None:
            await ReadyRegistry().wait_ready(check, context(tmp_path))
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(probe)
            with anyio.move_on_after(0.3):
                await done.wait()
            assert not done.is_set()
            sock.listen()
            with anyio.fail_after(30):
                await done.wait()


async def serve_http(
    statuses: list[int], hits: list[int], task_status: anyio.abc.TaskStatus[int]
) -> None:
    """A tiny HTTP server answering each request with the next status of statuses."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started(port)

        async def handle(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += await stream.receive()
                assert request.startswith(b"GET /healthz?x=1 HTTP/1.1\r\n")
                assert f"Host: 127.0.0.1:{port}\r\n".encode() in request
                code = statuses[min(len(hits), len(statuses) - 1)]
                hits.append(code)
                await stream.send(f"HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n".encode())

        await listener.serve(handle)


@pytest.mark.parametrize("final", [200, 204, 302])
async def test_http_ready_on_2xx_or_3xx_after_errors(tmp_path: Path, final: int) -> None:
    hits: list[int] = []
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, [503, 404, 500, final], hits)
        check = ReadyCheck("http", target=f"http://127.0.0.1:{port}/healthz?x=1")
        with anyio.fail_after(30):
            await ReadyRegistry().wait_ready(check, context(tmp_path))
        tg.cancel_scope.cancel()
    assert hits == [503, 404, 500, final]


async def test_http_retries_while_refused_and_survives_a_silent_server(tmp_path: Path) -> None:
    # accepts (kernel backlog) but never answers: each attempt must be bounded, and the
    # caller's deadline must cancel it cleanly
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        check = ReadyCheck("http", target=f"http://127.0.0.1:{sock.getsockname()[1]}/")
        with pytest.raises(TimeoutError), anyio.fail_after(0.5):
            await ReadyRegistry().wait_ready(check, context(tmp_path))


async def test_cmd_runs_in_cwd_with_env_until_exit_0(tmp_path: Path) -> None:
    check = ReadyCheck("cmd", target='test "$PROBE" = yes && test -f flag')
    done = anyio.Event()

    async def probe() -> None:
        await ReadyRegistry().wait_ready(check, context(tmp_path, PROBE="yes"))
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(probe)
        with anyio.move_on_after(0.3):
            await done.wait()
        assert not done.is_set()
        (tmp_path / "flag").touch()
        with anyio.fail_after(30):
            await done.wait()


async def test_cancelled_cmd_kills_its_process_group(tmp_path: Path) -> None:
    # the probe forks a background grandchild: it must die with the probe
    command = "sleep 60 & echo $! > gc.pid; echo $$ > probe.pid; wait"
    check = ReadyCheck("cmd", target=command)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ReadyRegistry().wait_ready, check, context(tmp_path))
        await until(lambda: (tmp_path / "probe.pid").read_text().strip(), what="the probe")
        await until(lambda: (tmp_path / "gc.pid").read_text().strip(), what="the grandchild")
        tg.cancel_scope.cancel()
    pids = [int((tmp_path / n).read_text()) for n in ("probe.pid", "gc.pid")]
    await until(lambda: not any(pid_alive(p) for p in pids), what="probe processes to die")


async def test_notify_check_waits_for_the_child(tmp_path: Path) -> None:
    code = (
        "import os, socket\n"
        "a = '\\0' + os.environ['NOTIFY_SOCKET'][1:]\n"
        "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', a)\n"
    )
    async with open_child_notify("web.1") as notify:
        ctx = ReadyContext(name="web.1", cwd=tmp_path, env={}, notify=notify)
        env = {**os.environ, "NOTIFY_SOCKET": notify.address}
        await anyio.run_process([PY, "-c", code], env=env, check=True)
        with anyio.fail_after(30):
            await ReadyRegistry().wait_ready(ReadyCheck("notify"), ctx)


async def test_notify_check_fails_without_socket_or_when_closed(tmp_path: Path) -> None:
    registry = ReadyRegistry()
    with pytest.raises(ReadyFailed, match="no notify socket"):
        await registry.wait_ready(ReadyCheck("notify"), context(tmp_path))
    failures: list[ReadyFailed] = []

    async def probe(ctx: ReadyContext) -> None:
        try:
            await registry.wait_ready(ReadyCheck("notify"), ctx)
        except ReadyFailed as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg, open_child_notify("web.1") as notify:
        tg.start_soon(probe, ReadyContext("web.1", tmp_path, {}, notify))
        await anyio.lowlevel.checkpoint()  # the probe runs up to its wait, then we close
    assert len(failures) == 1
    assert "closed before READY=1" in str(failures[0])


async def test_registry_refuses_duplicates_and_unknown_kinds(tmp_path: Path) -> None:
    registry = ReadyRegistry()
    assert registry.kinds() == ["after", "cmd", "http", "notify", "tcp"]
    seen: list[str] = []

    async def file_check(check: ReadyCheck, ctx: ReadyContext) -> None:
        seen.append(check.target)

    registry.register("file", file_check)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("tcp", file_check)
    await registry.wait_ready(ReadyCheck("file", target="x"), context(tmp_path))
    assert seen == ["x"]
    with pytest.raises(ReadyFailed, match="unknown readiness check"):
        await ReadyRegistry().wait_ready(ReadyCheck("file"), context(tmp_path))


def test_parsers() -> None:
    assert split_host_port("localhost:80") == ("localhost", 80)
    assert split_host_port("[::1]:8080") == ("::1", 8080)
    for bad in ("nohost", ":80", "h:0", "h:99999", "h:x"):
        with pytest.raises(ReadyFailed):
            split_host_port(bad)
    assert http_status(b"HTTP/1.1 204 No Content\r\n") == 204
    assert http_status(b"HTTP/1.0 301\r\n") == 301
    assert http_status(b"SSH-2.0-OpenSSH\r\n") is None
    assert http_status(b"") is None


async def test_bad_targets_fail_fast(tmp_path: Path) -> None:
    registry = ReadyRegistry()
    with pytest.raises(ReadyFailed):
        await registry.wait_ready(ReadyCheck("http", target="https://x/"), context(tmp_path))
    with pytest.raises(ReadyFailed):
        await registry.wait_ready(ReadyCheck("tcp", target="x"), context(tmp_path))

"""control.py: a real Unix socket served in-process to a fake ControlTarget."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectSendStream

from supervisord_lite import daemon_client
from supervisord_lite.daemon.control import serve_control
from supervisord_lite.errors import OperationFailed
from tests.helpers import until

STATUS: dict[str, Any] = {
    "release": "v1",
    "build": "b-000000000000",
    "state": "running",
    "processes": [],
    "last_switch": None,
    "rejected": None,
}


class FakeTarget:
    """Records what it is asked; publishes log lines to its subscribers like the bus."""

    def __init__(self, lines: int = 300) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.lines = [f"{'web' if i % 2 else 'worker'}.1 | line {i}" for i in range(lines)]
        self.subscribers: list[MemoryObjectSendStream[str]] = []
        self.pad = ""
        self.broken = False

    def status(self) -> dict[str, Any]:
        if self.broken:
            raise RuntimeError("boom\nsecond line")
        return {**STATUS, "pad": self.pad} if self.pad else dict(STATUS)

    def request_reload(self) -> None:
        self.calls.append(("reload", None))

    async def act(self, verb: str, target: str | None) -> list[str]:
        if target == "nope":
            raise LookupError("no process or type named 'nope'")
        self.calls.append((verb, target))
        return [target or "web.1"]

    async def restart(self, target: str | None) -> list[str]:
        return await self.act("restart", target)

    async def stop(self, target: str | None) -> list[str]:
        return await self.act("stop", target)

    async def start(self, target: str | None) -> list[str]:
        return await self.act("start", target)

    def log_tail(self, name: str | None, n: int) -> list[str]:
        mine = [x for x in self.lines if name is None or x.startswith(name + " | ")]
        return mine[-n:] if n else []

    def subscribe_logs(self, name: str | None) -> anyio.abc.ObjectReceiveStream[str]:
        send, receive = anyio.create_memory_object_stream[str](100)
        self.subscribers.append(send)
        return receive

    def publish(self, line: str) -> None:
        for sub in list(self.subscribers):
            try:
                sub.send_nowait(line)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.subscribers.remove(sub)
                sub.close()

    def request_shutdown(self) -> None:
        self.calls.append(("shutdown", None))


@asynccontextmanager
async def serving(path: Path, target: FakeTarget, **options: Any) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        await tg.start(partial(serve_control, path, target, **options))
        yield
        tg.cancel_scope.cancel()


class Client:
    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)

    @classmethod
    @asynccontextmanager
    async def connect(cls, path: Path) -> AsyncIterator[Client]:
        async with await anyio.connect_unix(path) as stream:
            yield cls(stream)

    async def send(self, request: dict[str, Any] | bytes) -> None:
        raw = request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n"
        await self.stream.send(raw)

    async def read(self) -> dict[str, Any]:
        with anyio.fail_after(30):
            reply = json.loads(await self.reader.receive_until(b"\n", 64 * 1024 * 1024))
        assert isinstance(reply, dict)
        return reply

    async def ask(self, request: dict[str, Any] | bytes) -> dict[str, Any]:
        await self.send(request)
        return await self.read()

    async def at_eof(self) -> bool:
        with anyio.fail_after(30):
            try:
                await self.reader.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                return True
        return False


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "supervisord-lite.sock"


async def test_status_round_trip_and_socket_mode(sock_path: Path) -> None:
    target = FakeTarget()
    async with serving(sock_path, target), Client.connect(sock_path) as client:
        st = os.stat(sock_path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert [p.name for p in sock_path.parent.iterdir()] == [sock_path.name]
        assert await client.ask({"cmd": "status"}) == {"ok": True, "status": STATUS}
        # the shared blocking client, as brr-release and the CLI use it
        reply = await anyio.to_thread.run_sync(daemon_client.request, sock_path, {"cmd": "status"})
        assert reply == {"ok": True, "status": STATUS}
    assert not sock_path.exists()


async def test_stale_socket_is_replaced_and_a_live_one_is_not(sock_path: Path) -> None:
    sock_path.parent.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(sock_path))
    assert sock_path.exists()
    target = FakeTarget()
    async with serving(sock_path, target):
        with pytest.raises(OperationFailed, match="another daemon"):
            await serve_control(sock_path, FakeTarget())
        async with Client.connect(sock_path) as client:
            assert (await client.ask({"cmd": "status"}))["ok"] is True


async def test_commands_reach_the_target(sock_path: Path) -> None:
    target = FakeTarget()
    async with serving(sock_path, target), Client.connect(sock_path) as client:
        assert await client.ask({"cmd": "reload"}) == {"ok": True}
        assert await client.ask({"cmd": "restart"}) == {"ok": True, "affected": ["web.1"]}
        assert await client.ask({"cmd": "stop", "target": "web"}) == {
            "ok": True,
            "affected": ["web"],
        }
        assert await client.ask({"cmd": "start", "target": None}) == {
            "ok": True,
            "affected": ["web.1"],
        }
        assert await client.ask({"cmd": "restart", "target": "nope"}) == {
            "ok": False,
            "error": "no process or type named 'nope'",
        }
        assert await client.ask({"cmd": "shutdown"}) == {"ok": True}
    assert target.calls == [
        ("reload", None),
        ("restart", None),
        ("stop", "web"),
        ("start", None),
        ("shutdown", None),
    ]


BAD_REQUESTS = [
    (b"\x00\xff\xfe garbage\n", "not valid JSON"),
    (b'{"cmd": "sta\n', "not valid JSON"),
    (b'["status"]\n', "must be a JSON object"),
    (b"42\n", "must be a JSON object"),
    (b'{"command": "status"}\n', '"cmd"'),
    (b'{"cmd": 7}\n', '"cmd"'),
    (b'{"cmd": "explode"}\n', "unknown command 'explode'"),
    (b'{"cmd": "status", "verbose": true}\n', "unknown argument 'verbose'"),
    (b'{"cmd": "restart", "target": 3}\n', "target must be a string"),
    (b'{"cmd": "logs", "n": "ten"}\n', "n must be an integer"),
    (b'{"cmd": "logs", "n": -1}\n', "n must be an integer"),
    (b'{"cmd": "logs", "n": true}\n', "n must be an integer"),
    (b'{"cmd": "logs", "follow": "yes"}\n', "follow must be true or false"),
]


async def test_bad_requests_get_an_error_and_the_connection_stays_usable(
    sock_path: Path,
) -> None:
    target = FakeTarget()
    async with serving(sock_path, target), Client.connect(sock_path) as client:
        for raw, message in BAD_REQUESTS:
            reply = await client.ask(raw)
            assert reply["ok"] is False, raw
            assert message in reply["error"], (raw, reply)
            assert "\n" not in reply["error"]
        await client.send(b"\n  \r\n")  # blank lines are skipped
        assert (await client.ask({"cmd": "status"}))["ok"] is True
    assert target.calls == []


async def test_handler_errors_are_one_line_and_logged(
    sock_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = FakeTarget()
    target.broken = True
    async with serving(sock_path, target), Client.connect(sock_path) as client:
        reply = await client.ask({"cmd": "status"})
        assert reply == {"ok": False, "error": "internal error: RuntimeError: boom second line"}
        target.broken = False
        assert (await client.ask({"cmd": "status"}))["ok"] is True
    assert any("failed" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_oversized_line_gets_an_error_and_is_closed(sock_path: Path) -> None:
    target = FakeTarget()
    async with serving(sock_path, target), Client.connect(sock_path) as client:
        replies: list[dict[str, Any]] = []

        async def flood() -> None:
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                await client.send(b'{"cmd": "status", "x": "' + b"a" * (2 * 1024 * 1024))

        async with anyio.create_task_group() as tg:
            tg.start_soon(flood)
            replies.append(await client.read())
            assert await client.at_eof()
        assert replies == [{"ok": False, "error": "request line longer than 1 MiB"}]
        async with Client.connect(sock_path) as other:
            assert (await other.ask({"cmd": "status"}))["ok"] is True


async def test_logs_tail_and_filter(sock_path: Path) -> None:
    target = FakeTarget()
    async with serving(sock_path, target), Client.connect(sock_path) as client:
        reply = await client.ask({"cmd": "logs"})
        assert reply == {"ok": True, "lines": target.lines[-100:]}
        reply = await client.ask({"cmd": "logs", "n": 3, "name": "web.1"})
        assert reply["lines"] == ["web.1 | line 295", "web.1 | line 297", "web.1 | line 299"]
        assert (await client.ask({"cmd": "logs", "n": 0}))["lines"] == []


async def test_logs_follow_streams_until_the_client_goes_away(sock_path: Path) -> None:
    target = FakeTarget(lines=5)
    async with serving(sock_path, target):
        async with Client.connect(sock_path) as client:
            reply = await client.ask({"cmd": "logs", "n": 2, "follow": True})
            assert reply == {"ok": True, "lines": target.lines[-2:]}
            assert len(target.subscribers) == 1
            for i in range(3):
                target.publish(f"web.1 | new {i}")
            for i in range(3):
                assert await client.read() == {"line": f"web.1 | new {i}"}
        # the client left: its subscription is closed, and the next publish drops it

        def dropped() -> bool:
            target.publish("web.1 | after")
            return not target.subscribers

        await until(dropped, what="the subscription to be dropped")
        async with Client.connect(sock_path) as other:
            assert (await other.ask({"cmd": "status"}))["ok"] is True


async def test_fifty_concurrent_clients(sock_path: Path) -> None:
    target = FakeTarget()
    answers: list[int] = []

    async def one(i: int) -> None:
        async with Client.connect(sock_path) as client:
            for _ in range(10):
                assert (await client.ask({"cmd": "status"}))["status"] == STATUS
            assert (await client.ask({"cmd": "restart", "target": f"web.{i}"}))["ok"]
            answers.append(i)

    async with serving(sock_path, target), anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(one, i)
    assert sorted(answers) == list(range(50))
    assert len(target.calls) == 50


async def test_clients_beyond_the_limit_are_refused(sock_path: Path) -> None:
    target = FakeTarget()
    async with serving(sock_path, target, max_clients=2):
        async with Client.connect(sock_path) as a, Client.connect(sock_path) as b:
            assert (await a.ask({"cmd": "status"}))["ok"]
            assert (await b.ask({"cmd": "status"}))["ok"]
            async with Client.connect(sock_path) as c:
                reply = await c.read()
                assert reply == {"ok": False, "error": "too many control clients (limit 2)"}
                assert await c.at_eof()
        with anyio.fail_after(30):
            while True:  # the two sessions end asynchronously after their clients left
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    async with Client.connect(sock_path) as d:
                        if (await d.ask({"cmd": "status"}))["ok"]:
                            break
                await anyio.sleep(0.02)


async def test_a_client_that_never_reads_is_dropped(
    sock_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    target = FakeTarget()
    target.pad = "x" * (256 * 1024)  # each reply is larger than any socket buffer
    async with (
        serving(sock_path, target, send_timeout=0.5),
        Client.connect(sock_path) as lazy,
        Client.connect(sock_path) as busy,
    ):
        with contextlib.suppress(anyio.BrokenResourceError, OSError):
            with anyio.move_on_after(5):
                await lazy.send(b'{"cmd": "status"}\n' * 100)
        # the server keeps answering others while it waits on the lazy one
        for _ in range(5):
            assert (await busy.ask({"cmd": "status"}))["ok"]
        await until(
            lambda: any("did not read" in r.getMessage() for r in caplog.records),
            what="the lazy client to be dropped",
        )
        received = 0
        with contextlib.suppress(anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
            while True:
                await lazy.read()
                received += 1
        assert received < 100
        assert (await busy.ask({"cmd": "status"}))["ok"]


async def test_a_path_too_long_is_a_clear_error(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120) / "supervisord-lite.sock"
    with pytest.raises(OperationFailed, match="too long"):
        await serve_control(deep, FakeTarget())
    assert not deep.parent.exists()

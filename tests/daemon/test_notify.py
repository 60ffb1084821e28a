"""notify.py against real sockets and real child processes."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from supervisord_lite.daemon.notify import SystemdNotifier, Vitals, run_watchdog, watchdog_usec
from supervisord_lite.daemon.ready_notify import ChildNotify, open_child_notify
from tests.daemon.conftest import Root, proc
from tests.helpers import PY, SLEEP, until, wait_until

# What an app written for systemd does: '@' names the abstract namespace.
SD_NOTIFY_CHILD = """
import os, socket, sys
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\\0" + addr[1:]
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
    for message in sys.argv[1:]:
        s.sendto(message.encode(), addr)
"""

# Sends READY=1 along with an open file descriptor (as FDSTORE=1 would).
FD_PASSING_CHILD = """
import array, os, socket
addr = "\\0" + os.environ["NOTIFY_SOCKET"][1:]
r, w = os.pipe()
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
    s.sendmsg([b"FDSTORE=1\\nREADY=1"],
              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]))], 0, addr)
"""


async def run_child(code: str, notify_socket: str, *args: str) -> int:
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket}
    result = await anyio.run_process([PY, "-c", code, *args], env=env, check=True)
    return result.returncode


async def test_child_ready_and_status_from_a_real_process() -> None:
    async with open_child_notify("web.1") as child:
        assert child.address.startswith("@supervisord-lite/")
        assert f"/{os.getpid()}/web.1/" in child.address
        assert not child.ready
        env = {**os.environ, "NOTIFY_SOCKET": child.address}
        proc = subprocess.Popen(
            [PY, "-c", SD_NOTIFY_CHILD, "STATUS=warming up", "STATUS=serving\nREADY=1"], env=env
        )
        try:
            with anyio.fail_after(30):
                await child.wait_ready()
        finally:
            proc.wait(timeout=30)
        assert child.ready
        assert child.sender_pid == proc.pid
        await until(lambda: child.status == "serving", what="STATUS=serving")
        # already ready: returns at once
        with anyio.fail_after(1):
            await child.wait_ready()


async def test_only_ready_equal_to_1_counts() -> None:
    async with open_child_notify("worker.1") as child:
        await run_child(SD_NOTIFY_CHILD, child.address, "READY=0\nSTATUS=a", "garbage\xff", "")
        await run_child(SD_NOTIFY_CHILD, child.address, "STATUS=b")
        await until(lambda: child.status == "b", what="STATUS=b")
        assert not child.ready


async def test_wait_ready_raises_when_closed_first() -> None:
    errors: list[BaseException] = []

    async def waiter(child: ChildNotify) -> None:
        try:
            await child.wait_ready()
        except anyio.ClosedResourceError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg, open_child_notify("web.2") as child:
        tg.start_soon(waiter, child)
        await anyio.lowlevel.checkpoint()  # the waiter runs up to its wait, then we close
    assert len(errors) == 1
    with pytest.raises(anyio.ClosedResourceError):
        await child.wait_ready()


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_passed_file_descriptors_are_closed() -> None:
    async with open_child_notify("web.3") as child:
        before = open_fds()
        await run_child(FD_PASSING_CHILD, child.address)
        with anyio.fail_after(30):
            await child.wait_ready()
        assert open_fds() <= before


async def test_long_names_fit_in_sun_path() -> None:
    async with open_child_notify("x" * 300) as child:
        assert len(child.address) <= 107
        await run_child(SD_NOTIFY_CHILD, child.address, "READY=1")
        with anyio.fail_after(30):
            await child.wait_ready()


# --- SystemdNotifier: the daemon as systemd's child --------------------------------------


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing in for systemd, and the NOTIFY_SOCKET naming it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(30)
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
    else:
        address = f"@supervisord-lite-test/{os.getpid()}/{os.urandom(6).hex()}"
        sock.bind("\0" + address[1:])
    with sock:
        yield address, sock


def received(sock: socket.socket) -> list[str]:
    return sock.recv(65536).decode().splitlines()


def test_notifier_sends_each_message(listener: tuple[str, socket.socket]) -> None:
    address, sock = listener
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    assert notifier.ready()
    assert received(sock) == ["READY=1"]
    assert notifier.stopping()
    assert received(sock) == ["STOPPING=1"]
    assert notifier.status("running v3\nsecond line")
    assert received(sock) == ["STATUS=running v3 second line"]
    assert notifier.watchdog()
    assert received(sock) == ["WATCHDOG=1"]
    assert notifier.send("A=1", "B=2")
    assert received(sock) == ["A=1", "B=2"]


def test_reloading_carries_monotonic_usec(listener: tuple[str, socket.socket]) -> None:
    address, sock = listener
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": address})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = received(sock)
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = SystemdNotifier.from_environ({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.reloading()
    assert not notifier.status("x")
    assert notifier.watchdog_interval() is None
    assert SystemdNotifier.from_environ({"NOTIFY_SOCKET": ""}).address is None


def test_send_errors_are_logged_once_and_never_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    assert not notifier.ready()
    assert not notifier.stopping()
    assert len(caplog.records) == 1
    assert "missing.sock" in caplog.records[0].getMessage()
    bad = SystemdNotifier.from_environ({"NOTIFY_SOCKET": "relative/name"})
    assert not bad.ready()
    assert not bad.ready()
    assert len(caplog.records) == 2


def test_watchdog_interval_follows_sd_watchdog_enabled() -> None:
    base = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2000000"}
    assert SystemdNotifier.from_environ(base).watchdog_interval() == 1.0
    mine = {**base, "WATCHDOG_PID": str(os.getpid())}
    assert SystemdNotifier.from_environ(mine).watchdog_interval() == 1.0
    other = {**base, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert SystemdNotifier.from_environ(other).watchdog_interval() is None
    assert watchdog_usec({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_usec({"WATCHDOG_USEC": "soon"}) is None
    assert SystemdNotifier.from_environ({"WATCHDOG_USEC": "1000"}).watchdog_interval() is None


async def test_run_watchdog_returns_at_once_without_a_watchdog() -> None:
    with anyio.fail_after(1):
        await run_watchdog(SystemdNotifier.from_environ({}), lambda: True)


def drain(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            return got


async def test_run_watchdog_pings_only_while_healthy(tmp_path: Path) -> None:
    path = tmp_path / "wd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        notifier = SystemdNotifier.from_environ(
            {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "40000"}
        )
        assert notifier.watchdog_interval() == 0.02
        healthy = True
        asked = 0

        def is_healthy() -> bool:
            nonlocal asked
            asked += 1
            return healthy

        async def asked_again(times: int) -> None:
            mark = asked
            await until(lambda: asked >= mark + times, what=f"{times} more health checks")

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_watchdog, notifier, is_healthy)
            pings: list[bytes] = []
            with anyio.fail_after(30):
                while len(pings) < 3:
                    await anyio.wait_readable(sock)
                    pings += drain(sock)
            assert set(pings) == {b"WATCHDOG=1\n"}
            healthy = False
            drain(sock)
            await asked_again(3)
            assert drain(sock) == []
            healthy = True
            await asked_again(2)
            assert drain(sock)
            tg.cancel_scope.cancel()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to send as another uid")
async def test_datagrams_from_another_uid_are_ignored() -> None:
    # an abstract socket has no permissions: the sender's credentials are the only gate
    as_nobody = "import os, socket, sys\nos.setgid(65534)\nos.setuid(65534)\n" + SD_NOTIFY_CHILD
    async with open_child_notify("web.1") as child:
        await run_child(as_nobody, child.address, "STATUS=forged\nREADY=1")
        await run_child(SD_NOTIFY_CHILD, child.address, "STATUS=real")
        await until(lambda: child.status == "real", what="STATUS=real")
        assert not child.ready


# --- the watchdog's health rule, and the daemon's pings --------------------------------


async def test_the_watchdog_stops_for_good_when_a_vital_task_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "wd.sock"
    vitals = Vitals()
    end = anyio.Event()
    asked = 0

    def healthy() -> bool:
        nonlocal asked
        asked += 1
        return vitals.healthy()

    async def asked_again(times: int) -> None:
        mark = asked
        await until(lambda: asked >= mark + times, what=f"{times} more health checks")

    async def reaper() -> None:
        with vitals.vital("reaper"):
            await end.wait()  # a task that should never end, ending (a bug, say)

    async def control() -> None:
        with vitals.vital("control"):
            await anyio.sleep_forever()

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        notifier = SystemdNotifier.from_environ(
            {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "40000"}
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(reaper)
            tg.start_soon(control)
            tg.start_soon(run_watchdog, notifier, healthy)
            await asked_again(3)
            assert drain(sock)
            end.set()
            await until(lambda: vitals.lost, what="the lost vital task")
            assert vitals.lost == ["reaper"]
            drain(sock)
            await asked_again(3)
            assert drain(sock) == []
            tg.cancel_scope.cancel()
    assert vitals.lost == ["reaper"]  # control was cancelled: the stop path, not a death
    messages = [r.getMessage() for r in caplog.records]
    assert "reaper ended while the daemon runs" in messages
    assert sum("WATCHDOG=1 withheld" in m for m in messages) == 1


async def test_a_vital_task_may_end_once_the_daemon_stops() -> None:
    vitals = Vitals()
    with vitals.vital("supervisor loop"):
        await anyio.lowlevel.checkpoint()
    assert not vitals.healthy()
    vitals = Vitals()
    vitals.stopping()
    with vitals.vital("supervisor loop"):
        await anyio.lowlevel.checkpoint()
    with pytest.raises(RuntimeError), vitals.vital("reaper"):
        raise RuntimeError("after stopping, an exception is not a death either")
    assert vitals.healthy()


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def watchdog_pings(sock: socket.socket, seconds: float) -> int:
    """How many WATCHDOG=1 arrive within seconds (other messages are counted out)."""
    count = 0
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        count += b"WATCHDOG=1" in data.splitlines()
    return count


@pytest.mark.timeout(120)
def test_the_daemon_pings_from_its_loop_and_not_while_stopped(
    droot: Root, daemon: Any, tmp_path: Path
) -> None:
    droot.release(proc("web", SLEEP(3600)))
    path = tmp_path / "systemd-notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        # 0.2 s: a ping every 0.1 s
        d = daemon(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"})
        wait_until(lambda: watchdog_pings(sock, 1.0) >= 3, what="watchdog pings")
        d.signal(signal.SIGSTOP)
        try:
            wait_until(lambda: proc_state(d.pid) == "T", what="daemon stopped")
            sock.setblocking(False)
            drain(sock)  # what it sent before it stopped
            assert watchdog_pings(sock, 1.0) == 0  # ten intervals
        finally:
            d.signal(signal.SIGCONT)
        wait_until(lambda: watchdog_pings(sock, 1.0) >= 3, what="pings again")

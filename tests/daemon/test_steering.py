"""Steering new connections between listeners of one SO_REUSEPORT group, on real sockets.

Where a connection landed is read from the listeners' accept queues (nobody accepts in
these tests, so each completed handshake stays queued on the listener the kernel chose).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import anyio
import pytest

from supervisord_lite.daemon import steering
from supervisord_lite.daemon.sockets import SocketBindError, SocketPool
from supervisord_lite.daemon.steering import accept_queue, drain, reuseport_listener, steer
from supervisord_lite.manifest import ProcessSpec, ReadyCheck, Release, SocketSpec
from tests.helpers import wait_until

N = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def release(rid: str, port: int, switch: str = "start-first") -> Release:
    spec = ProcessSpec(type="web", cmd="true", sockets=("http",), ready=ReadyCheck("after"))
    return Release(
        id=rid,
        created_at="2026-12-06T00:00:00Z",
        build="b-000000000001",
        config={},
        sockets={"http": SocketSpec("http", f"127.0.0.1:{port}", backlog=64)},
        switch=switch,
        processes={"web": spec},
    )


@pytest.fixture
def clients() -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        made: list[socket.socket] = []
        stack.callback(lambda: [c.close() for c in made])
        yield made


def connect(port: int, n: int, made: list[socket.socket]) -> None:
    for _ in range(n):
        made.append(socket.create_connection(("127.0.0.1", port), timeout=5))


def queues(*socks: socket.socket) -> list[int]:
    return [accept_queue(s) for s in socks]


def expect_queues(want: list[int], *socks: socket.socket) -> None:
    wait_until(lambda: queues(*socks) == want, timeout=10, what=f"accept queues {want}")


def test_every_new_connection_lands_on_the_chosen_listener(clients: list[socket.socket]) -> None:
    first = reuseport_listener(("127.0.0.1", 0), socket.AF_INET, 128)
    port = first.getsockname()[1]
    second = reuseport_listener(("127.0.0.1", port), socket.AF_INET, 128)
    with first, second:
        steer(first, 0)
        connect(port, N, clients)
        expect_queues([N, 0], first, second)
        steer(second, 1)
        connect(port, N, clients)
        expect_queues([N, N], first, second)
        first.close()  # the kernel moves the last listener into the freed index 0
        steer(second, 0)
        connect(port, N, clients)
        expect_queues([2 * N], second)


def test_a_switch_steers_to_the_new_listener_and_hands_it_on(
    clients: list[socket.socket],
) -> None:
    port = free_port()
    v1, v2 = release("v1", port), release("v2", port)
    pool = SocketPool()
    pool.bind_all(v1.sockets.values())
    try:
        old = pool.held[f"127.0.0.1:{port}"]
        pool.open_lanes(v2, v1)
        old_fd = pool.fds_for(v1.processes["web"], v1.sockets, v1)[0][1]
        new_fd = pool.fds_for(v2.processes["web"], v2.sockets, v2)[0][1]
        assert old_fd == old.fileno() and new_fd != old_fd
        new = socket.socket(fileno=socket.dup(new_fd))
        with new:
            connect(port, N, clients)  # the new generation is not ready: the old serves
            expect_queues([N, 0], old, new)
            assert [b for b, _ in pool.steer_to(v2)] == [f"127.0.0.1:{port}"]
            connect(port, N, clients)
            expect_queues([N, N], old, new)
            pool.forget(v1, [v2])  # the old generation is gone: its listener closes
            assert pool.held[f"127.0.0.1:{port}"].fileno() == new_fd
            assert pool.lanes == {}
            connect(port, N, clients)
            expect_queues([2 * N], new)
    finally:
        pool.close_all()


def test_a_failed_switch_closes_only_the_new_listener(clients: list[socket.socket]) -> None:
    port = free_port()
    v1, v2 = release("v1", port), release("v2", port)
    pool = SocketPool()
    pool.bind_all(v1.sockets.values())
    try:
        old = pool.held[f"127.0.0.1:{port}"]
        pool.open_lanes(v2, v1)
        pool.forget(v2, [v1])
        assert pool.lanes == {} and pool.held[f"127.0.0.1:{port}"] is old
        connect(port, N, clients)
        expect_queues([N], old)
    finally:
        pool.close_all()


def test_stop_first_and_no_drain_share_one_listener() -> None:
    port = free_port()
    for pool, v2 in (
        (SocketPool(), release("v2", port, switch="stop-first")),
        (SocketPool(drain=False), release("v2", port)),
    ):
        v1 = release("v1", port)
        pool.bind_all(v1.sockets.values())
        try:
            if v2.switch == "start-first":
                pool.open_lanes(v2, v1)
            fds = {pool.fds_for(r.processes["web"], r.sockets, r)[0][1] for r in (v1, v2)}
            assert len(fds) == 1 and pool.lanes == {}
        finally:
            pool.close_all()


def test_an_address_held_elsewhere_is_refused_even_with_reuseport() -> None:
    other = reuseport_listener(("127.0.0.1", 0), socket.AF_INET, 8)
    with other:
        port = other.getsockname()[1]
        pool = SocketPool()
        with pytest.raises(SocketBindError, match="address already in use"):
            pool.bind_all([SocketSpec("http", f"127.0.0.1:{port}")])
        assert pool.held == {}


def test_drain_waits_for_the_queue_to_empty(
    clients: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = reuseport_listener(("127.0.0.1", 0), socket.AF_INET, 128)
    port = sock.getsockname()[1]
    accepted: list[socket.socket] = []
    seen_full = threading.Event()  # the drain has looked and found all N waiting
    real_queued = steering.queued

    def queued_seen(socks: list[socket.socket]) -> int:
        left = real_queued(socks)
        if left == N:
            seen_full.set()
        return left

    monkeypatch.setattr(steering, "queued", queued_seen)

    def accept_later() -> None:
        # an app slow to accept: it takes them only once the drain has seen them queued
        seen_full.wait(30)
        for _ in range(N):
            accepted.append(sock.accept()[0])

    with sock:
        connect(port, N, clients)
        expect_queues([N], sock)
        taker = threading.Thread(target=accept_later)
        taker.start()
        assert anyio.run(drain, [sock], "test") == 0
        assert len(accepted) == N  # it returned only once all were taken
        taker.join(10)
        for conn in accepted:
            conn.close()


def test_drain_gives_up_after_its_bound_and_says_how_many(
    clients: list[socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    sock = reuseport_listener(("127.0.0.1", 0), socket.AF_INET, 128)
    with sock:
        connect(sock.getsockname()[1], 3, clients)
        expect_queues([3], sock)
        assert anyio.run(drain, [sock], "test", 1.0) == 3
    assert "test: 3 connection(s) still queued for the old generation after 1 s" in caplog.text


# A real kernel refusal: a seccomp filter makes setsockopt(SO_ATTACH_REUSEPORT_CBPF) fail
# with EPERM, as a container's profile may. Run in a child: seccomp cannot be undone.
REFUSING_CHILD = """
import ctypes, json, logging, socket, struct, sys
from supervisord_lite.daemon.sockets import SocketPool
from tests.daemon.test_steering import release

def insn(code, jt, jf, k):
    return struct.pack("=HBBI", code, jt, jf, k)

LD, JEQ, RET = 0x20, 0x15, 0x06
program = b"".join([
    insn(LD, 0, 0, 4), insn(JEQ, 0, 5, 0xC000003E),  # x86_64
    insn(LD, 0, 0, 0), insn(JEQ, 0, 3, 54),  # setsockopt
    insn(LD, 0, 0, 32), insn(JEQ, 0, 1, 51),  # optname SO_ATTACH_REUSEPORT_CBPF
    insn(RET, 0, 0, 0x00050000 | 1),  # EPERM
    insn(RET, 0, 0, 0x7FFF0000),  # allow
])
buf = ctypes.create_string_buffer(program)
fprog = ctypes.create_string_buffer(struct.pack("@HP", 8, ctypes.addressof(buf)))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.c_void_p(ctypes.addressof(fprog)), 0, 0) == 0, ctypes.get_errno()
logging.basicConfig(level=logging.INFO, format="%(message)s")
port = int(sys.argv[1])
v1, v2 = release("v1", port), release("v2", port)
pool = SocketPool()
pool.bind_all(v1.sockets.values())
pool.open_lanes(v2, v1)
fds = {pool.fds_for(r.processes["web"], r.sockets, r)[0][1] for r in (v1, v2)}
with socket.create_connection(("127.0.0.1", port), timeout=5):
    pass
print(json.dumps({"steerable": sorted(pool.steerable), "fds": len(fds)}))
pool.close_all()
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the seccomp filter is x86_64's")
def test_a_kernel_that_refuses_steering_gets_one_shared_listener_and_one_line() -> None:
    port = free_port()
    child = subprocess.run(
        [sys.executable, "-c", REFUSING_CHILD, str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == {"steerable": [], "fds": 1}
    lines = [x for x in child.stderr.splitlines() if "steer" in x]
    assert lines == [
        "socket http: cannot steer connections (Operation not permitted): start-first "
        f"switches share one listener on 127.0.0.1:{port}, without draining"
    ]


# In a network namespace of its own (the sysctl is per namespace; the host's is untouched)
MIGRATING_CHILD = """
import socket, subprocess, time
from supervisord_lite.daemon.steering import (
    accept_queue, kernel_migrates, reuseport_listener, steer
)
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
with open("/proc/sys/net/ipv4/tcp_migrate_req", "w") as f:
    f.write("1")
assert kernel_migrates()
old = reuseport_listener(("127.0.0.1", 0), socket.AF_INET, 128)
port = old.getsockname()[1]
steer(old, 0)
new = reuseport_listener(("127.0.0.1", port), socket.AF_INET, 128)
clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
deadline = time.monotonic() + 10
while accept_queue(old) < 5 and time.monotonic() < deadline:
    time.sleep(0.01)
old.close()  # not drained: the kernel moves its queue to new
for c in clients:
    c.sendall(b"x")
print(sorted(new.accept()[0].recv(1).decode() for _ in range(5)))
"""


@pytest.mark.skipif(
    shutil.which("unshare") is None or shutil.which("ip") is None or os.geteuid() != 0,
    reason="needs root, unshare and ip for a network namespace",
)
def test_with_tcp_migrate_req_an_undrained_queue_moves_to_the_new_listener() -> None:
    child = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", MIGRATING_CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split("\n")[0] == "['x', 'x', 'x', 'x', 'x']"

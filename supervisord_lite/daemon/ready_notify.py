"""The readiness socket of a child written for systemd's `Type=notify`: its NOTIFY_SOCKET,
READY=1 and STATUS= (the `notify` readiness check of ready.py waits on it).

The protocol is tiny: newline-separated `KEY=VALUE` lines in one datagram on an
AF_UNIX/SOCK_DGRAM socket; an address starting with `@` is in the abstract namespace.

Choices, and what was rejected:
- ChildNotify binds one socket per child, in the abstract namespace: no file
  to clean up after a crash, no directory to own. An abstract name has no permissions
  and is visible in /proc/net/unix, so the name's random part is not a secret: every
  datagram carries SCM_CREDENTIALS and only those sent by our own uid or root count.
  systemd checks the sender's cgroup instead; we have none to check against.
- A reader task drains the socket for the child's whole life, not only while someone
  awaits readiness: STATUS= lines are recorded, and a chatty child never fills the queue.
  File descriptors passed with SCM_RIGHTS (FDSTORE=1) are closed at once: we keep no
  fd store.
"""

from __future__ import annotations

import array
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

log = logging.getLogger(__name__)

MAX_DATAGRAM = 64 * 1024
# sun_path is 108 bytes, the leading NUL of an abstract name included
MAX_ADDRESS = 107
CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ChildNotify:
    """The notify socket of one child: its address for NOTIFY_SOCKET, readiness, STATUS=."""

    def __init__(self, address: str, sock: socket.socket) -> None:
        self.address = address
        self.status: str | None = None
        self.ready = False
        self.sender_pid: int | None = None
        self._sock = sock
        self._settled = anyio.Event()  # set on READY=1 or when closed

    async def wait_ready(self) -> None:
        """Return once the child sent READY=1.

        Raises anyio.ClosedResourceError if the socket was closed first: readiness can
        then never come.
        """
        await self._settled.wait()
        if not self.ready:
            raise anyio.ClosedResourceError

    async def _receive_loop(self) -> None:
        while True:
            await anyio.wait_readable(self._sock)
            try:
                data, ancdata, _flags, _addr = self._sock.recvmsg(
                    MAX_DATAGRAM, socket.CMSG_SPACE(CREDS.size) + socket.CMSG_SPACE(64)
                )
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                # readiness can no longer arrive: say so, and let the check fail now
                log.warning("notify socket %s: %s", self.address, exc)
                self._close()
                return
            uid, pid = credentials(ancdata)
            if uid not in (os.getuid(), 0):
                log.warning("notify socket %s: ignored a datagram from uid %s", self.address, uid)
                continue
            self._handle(data, pid)

    def _handle(self, data: bytes, pid: int | None) -> None:
        for raw in data.split(b"\n"):
            key, sep, value = raw.decode("utf-8", "replace").partition("=")
            if not sep:
                continue
            if key == "STATUS":
                self.status = value
            elif key == "READY" and value == "1" and not self.ready:
                self.ready = True
                self.sender_pid = pid
                self._settled.set()

    def _close(self) -> None:
        self._settled.set()


def credentials(ancdata: list[tuple[int, int, bytes]]) -> tuple[int | None, int | None]:
    """(uid, pid) from SCM_CREDENTIALS; closes any fds passed along with SCM_RIGHTS."""
    uid = pid = None
    for level, kind, payload in ancdata:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_CREDENTIALS and len(payload) >= CREDS.size:
            pid, uid, _gid = CREDS.unpack_from(payload)
        elif kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            for fd in fds:
                os.close(fd)
    return uid, pid


def child_address(name: str) -> str:
    """@supervisord-lite/<daemon pid>/<name>/<random>, name shortened to fit sun_path."""
    head = f"@supervisord-lite/{os.getpid()}/"
    tail = "/" + os.urandom(8).hex()
    room = MAX_ADDRESS - len(head) - len(tail)
    return head + name[:room] + tail


def bind_child_socket(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.setblocking(False)
        sock.bind("\0" + address[1:])
    except BaseException:
        sock.close()
        raise
    return sock


@asynccontextmanager
async def open_child_notify(name: str) -> AsyncIterator[ChildNotify]:
    """Bind a notify socket for the child called name; closed (and waiters woken) on exit."""
    address = child_address(name)
    sock = bind_child_socket(address)
    child = ChildNotify(address, sock)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(child._receive_loop)
            try:
                yield child
            finally:
                tg.cancel_scope.cancel()
    finally:
        child._close()
        sock.close()

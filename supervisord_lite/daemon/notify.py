"""systemd's notify protocol, both directions: the daemon as a child of systemd, and the
daemon as the manager of children that were written for systemd's `Type=notify`.

The protocol is tiny: newline-separated `KEY=VALUE` lines in one datagram on the
AF_UNIX/SOCK_DGRAM socket named by `NOTIFY_SOCKET`; an address starting with `@` is in the
abstract namespace (the `@` becomes a NUL byte). Implementing it takes about thirty lines
of stdlib, as gunicorn's `systemd.py` shows, so we take no dependency (python-systemd
needs libsystemd and a compiler).

Choices, and what was rejected:
- Sending (SystemdNotifier) is synchronous, non-blocking, and never raises. A status
  update must not be able to stall or crash the supervisor: a full receive queue
  (EAGAIN) or a vanished socket loses one message, logged once. Awaiting a writable
  socket instead would add a task per message for no gain, since systemd reads its queue
  promptly or not at all.
- One socket per message, like sd_notify itself: nothing to keep open or reopen.
- `reloading()` carries `MONOTONIC_USEC`: since systemd 253 a `Type=notify-reload`
  service whose RELOADING=1 lacks it may have its reload treated as failed.
- The watchdog interval is half of `WATCHDOG_USEC`, and only when `WATCHDOG_PID` is unset
  or is our pid (sd_watchdog_enabled(3)). `run_watchdog` is a timer owned by its own task
  in the daemon's event loop, so a loop that is stuck (a blocking call, a CPU-bound bug,
  SIGSTOP) sends nothing. And a loop that runs is not enough: it pings only while every
  vital task (Vitals: the reaper, the signal task, the control server, the supervisor
  loop) is still there. One that ended while the daemon was not stopping leaves a daemon
  that reaps nothing or answers nothing; systemd should restart it, not be told it is
  well. Rejected: a self-test through the control socket at each ping (a deleted socket
  file would then restart every process of the service); a ping from a thread (it would
  prove that the thread runs, not the loop).
- Receiving (ChildNotify) binds one socket per child, in the abstract namespace: no file
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
import secrets
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import anyio

log = logging.getLogger(__name__)

MAX_DATAGRAM = 64 * 1024
# sun_path is 108 bytes, the leading NUL of an abstract name included
MAX_ADDRESS = 107
CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def socket_address(address: str) -> str | None:
    """The address to pass to socket calls for a NOTIFY_SOCKET value, or None if unusable."""
    if address.startswith("@") and len(address) > 1:
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    return None


# --- the daemon as systemd's child ------------------------------------------------------


@dataclass
class SystemdNotifier:
    """sd_notify for the daemon itself; every method is a no-op without NOTIFY_SOCKET."""

    address: str | None = None
    watchdog_usec: int | None = None
    _warned: bool = field(default=False, repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        return cls(address=address, watchdog_usec=watchdog_usec(env))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send lines as one datagram; True if it was sent. Never raises."""
        if self.address is None or not lines:
            return False
        target = socket_address(self.address)
        if target is None:
            self._warn_once(f"NOTIFY_SOCKET={self.address!r} is not a path or @abstract name")
            return False
        payload = "\n".join(lines).encode("utf-8", "replace") + b"\n"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(payload, target)
        except OSError as exc:
            self._warn_once(f"sd_notify to {self.address} failed: {exc.strerror or exc}")
            return False
        return True

    def ready(self) -> bool:
        return self.send("READY=1")

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        # one datagram is a block of lines: a newline in text would start a new assignment
        return self.send("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half the timeout), or None when not asked for."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s (further notify errors are not logged)", message)


def watchdog_usec(env: Mapping[str, str]) -> int | None:
    """WATCHDOG_USEC when it is meant for this process (sd_watchdog_enabled(3))."""
    value = env.get("WATCHDOG_USEC", "")
    if not value.isdigit() or int(value) <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(value)


async def run_watchdog(notifier: SystemdNotifier, healthy: Callable[[], bool]) -> None:
    """Ping systemd's watchdog every interval while healthy(); returns at once without one.

    Run it in the event loop it vouches for: healthy() is asked once per interval, no
    more often, and only when the loop gets round to this task.
    """
    interval = notifier.watchdog_interval()
    if interval is None:
        return
    withheld = False
    while True:
        if healthy():
            notifier.watchdog()
            withheld = False
        elif not withheld:
            withheld = True
            log.error("watchdog: not healthy; WATCHDOG=1 withheld until it is")
        await anyio.sleep(interval)


class Vitals:
    """The tasks without which the daemon no longer does its job, though its loop runs.

    Each wraps its body in `vital(name)`. Cancellation is the stop path, not a death; so
    is any end after `stopping()`. Any other end (a return, or an exception on its way up)
    makes `healthy()` False for good: the watchdog stops, and systemd restarts the daemon.
    """

    def __init__(self) -> None:
        self._stopping = False
        self.lost: list[str] = []

    @contextmanager
    def vital(self, name: str) -> Iterator[None]:
        ended = True
        try:
            yield
        except anyio.get_cancelled_exc_class():
            ended = False
            raise
        finally:
            if ended and not self._stopping:
                self.lost.append(name)
                log.error("%s ended while the daemon runs", name)

    def stopping(self) -> None:
        """From now on a vital task may end."""
        self._stopping = True

    def healthy(self) -> bool:
        return not self.lost


# --- the daemon as the manager of a Type=notify child ----------------------------------


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
    tail = "/" + secrets.token_hex(8)
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

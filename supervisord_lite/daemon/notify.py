"""systemd's notify protocol as the daemon speaks it to systemd (sd_notify, the watchdog),
and the vital tasks whose loss stops the watchdog pings.

The other direction, children written for systemd's `Type=notify` telling the daemon
they are ready, is ready_notify.py, beside the other readiness checks.

The protocol is tiny: newline-separated `KEY=VALUE` lines in one datagram on the
AF_UNIX/SOCK_DGRAM socket named by `NOTIFY_SOCKET`; an address starting with `@` is in the
abstract namespace (the `@` becomes a NUL byte). Implementing it takes about thirty lines
of stdlib, as gunicorn's `systemd.py` shows, so we take no dependency (python-systemd
needs libsystemd and a compiler).

Choices, and what was rejected:
- SystemdNotifier is synchronous, non-blocking, and never raises. A status
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
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio

log = logging.getLogger(__name__)



def socket_address(address: str) -> str | None:
    """The address to pass to socket calls for a NOTIFY_SOCKET value, or None if unusable."""
    if address.startswith("@") and len(address) > 1:
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    return None


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

"""Daemon-held listening sockets, keyed by their `bind`, kept across release switches.

The daemon binds every declared socket once, before any process that uses it starts,
and hands it to children as fd 3, 4, ... (systemd's socket activation convention). A
socket whose `bind` is the same in the new release stays bound across the switch, so no
connection is refused (old and new share it, or, when draining, each has a listener of
its own on the address, below). Keying by `bind` (not by name) is what makes a renamed
socket with the same address survive, and a moved address a new socket.

The daemon never accepts on these sockets, so they stay blocking: O_NONBLOCK lives on the
shared open file description, and setting it here would change it under the children.

Draining (steering.py): a TCP socket is bound with SO_REUSEPORT and a steering program
that sends every connection to it. During a start-first switch the new release gets a
listener of its own (a lane) in the same group; old processes keep theirs. Once the new
generation is ready, new connections are steered to the lane, the old listener's accept
queue is drained, the old generation is stopped, and then its listener is closed (empty,
so nothing is reset) and the lane becomes the held socket. Unix sockets, stop-first
switches, `--no-drain`, and a kernel that refuses the program keep one shared listener.
Before binding with SO_REUSEPORT the address is bound once without it, so an address
another process holds is still refused ("address already in use") as before.

Rejected: letting children bind (connections queued on the old socket's backlog are
reset when it closes, and the port is briefly free between releases).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from supervisord_lite.daemon.steering import reuseport_listener, steer
from supervisord_lite.errors import OperationFailed
from supervisord_lite.manifest import ProcessSpec, Release, SocketSpec

log = logging.getLogger("supervisord_lite.daemon")


class SocketBindError(OperationFailed):
    """A declared socket could not be bound; the message is one line."""


def open_listener(spec: SocketSpec) -> socket.socket:
    """Bind and listen on spec.bind; raises SocketBindError naming the socket."""
    try:
        if spec.bind.startswith("unix:"):
            return open_unix(spec.bind[5:], spec.backlog)
        host, _, port = spec.bind.rpartition(":")
        host = host[1:-1] if host.startswith("[") else host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server(
            (host, int(port)), family=family, backlog=spec.backlog, dualstack_ipv6=False
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use"
        raise SocketBindError(f"socket {spec.name}: cannot bind {spec.bind}: {reason}") from None
    return sock


def open_unix(path: str, backlog: int) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode) and not unix_in_use(path):
            os.unlink(path)  # left by a process that died without cleaning up
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def unix_in_use(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


@dataclass
class SocketPool:
    """The listeners the daemon holds; one owner (the supervisor loop), no locking."""

    held: dict[str, socket.socket] = field(default_factory=dict)  # bind -> listener
    drain: bool = True  # False (--no-drain): one shared listener per bind, as before
    steerable: set[str] = field(default_factory=set)  # binds whose group steers to held
    # id(release) -> (release, bind -> its own listener) while it is being switched to
    lanes: dict[int, tuple[Release, dict[str, socket.socket]]] = field(default_factory=dict)

    def bind_all(self, specs: Iterable[SocketSpec]) -> None:
        """Bind every spec not held yet. All or nothing: on failure, closes what it bound."""
        fresh: dict[str, socket.socket] = {}
        try:
            for spec in specs:
                if spec.bind not in self.held and spec.bind not in fresh:
                    fresh[spec.bind] = self._open(spec)
        except BaseException:
            for sock in fresh.values():
                close_listener(sock)
            raise
        self.held.update(fresh)

    def _open(self, spec: SocketSpec) -> socket.socket:
        sock = open_listener(spec)
        if not (self.drain and steerable_address(spec.bind)):
            return sock
        # bound once without SO_REUSEPORT above, so an address someone holds was refused
        address, family = sock.getsockname(), sock.family
        sock.close()
        try:
            sock = reuseport_listener(address, family, spec.backlog)
        except OSError as exc:
            raise SocketBindError(
                f"socket {spec.name}: cannot bind {spec.bind}: {exc.strerror or exc}"
            ) from None
        try:
            steer(sock, 0)
        except OSError as exc:
            sock.close()
            log.warning(
                "socket %s: cannot steer connections (%s): start-first switches share one "
                "listener on %s, without draining",
                spec.name,
                exc.strerror or exc,
                spec.bind,
            )
            return open_listener(spec)
        self.steerable.add(spec.bind)
        return sock

    def open_lanes(self, release: Release, beside: Release) -> None:
        """A listener of release's own for each steerable bind beside's processes hold.

        New connections still go to the held listener until steer_to(release).
        """
        shared = {s.bind for s in beside.sockets.values()}
        lanes: dict[str, socket.socket] = {}
        for spec in release.sockets.values():
            if spec.bind in self.steerable and spec.bind in shared and spec.bind not in lanes:
                held = self.held[spec.bind]
                try:
                    lanes[spec.bind] = reuseport_listener(
                        held.getsockname(), held.family, spec.backlog
                    )
                except OSError as exc:
                    log.warning("socket %s: no listener of its own (%s): shared", spec.name, exc)
        if lanes:
            self.lanes[id(release)] = (release, lanes)

    def steer_to(self, release: Release) -> list[tuple[str, socket.socket]]:
        """Steer new connections to release's lanes; (bind, listener) of those to drain."""
        _, lanes = self.lanes.get(id(release), (release, {}))
        retiring = []
        for bind, lane in lanes.items():
            try:
                steer(lane, 1)  # the held listener is 0, the lane joined next
            except OSError as exc:
                log.warning("%s: cannot steer to the new listener (%s): shared", bind, exc)
                continue
            retiring.append((bind, self.held[bind]))
        return retiring

    def forget(self, release: Release, live: Iterable[Release]) -> None:
        """release's processes are gone: close its lanes, or hand its held listeners on."""
        own = self.lanes.pop(id(release), None)
        if own is not None:
            for lane in own[1].values():
                close_listener(lane)  # the last to join: no index moves; never steered to
            return
        for other in live:
            entry = self.lanes.pop(id(other), None)
            for bind, lane in (entry[1] if entry else {}).items():
                close_listener(self.held[bind])  # drained: nothing queued is reset
                self.held[bind] = lane
                with contextlib.suppress(OSError):  # else the kernel's hash: one listener
                    steer(lane, 0)  # the kernel moved it into the freed index 0

    def fds_for(
        self,
        proc: ProcessSpec,
        sockets: dict[str, SocketSpec],
        release: Release | None = None,
    ) -> list[tuple[str, int]]:
        """(name, fd) for each socket the process type names, in its declared order."""
        _, lanes = self.lanes.get(id(release), (release, {}))
        return [
            (name, lanes.get(sockets[name].bind, self.held[sockets[name].bind]).fileno())
            for name in proc.sockets
        ]

    def listeners(self) -> list[tuple[str, socket.socket]]:
        """(bind, listener) of every listener held, lanes included."""
        found = list(self.held.items())
        return found + [item for _, lanes in self.lanes.values() for item in lanes.items()]

    def retain_only(self, binds: set[str]) -> list[str]:
        """Close every listener whose bind is not in binds; the binds closed."""
        gone = [b for b in self.held if b not in binds]
        for bind in gone:
            close_listener(self.held.pop(bind))
            self.steerable.discard(bind)
        return gone

    def close_all(self) -> None:
        for release, _ in list(self.lanes.values()):
            self.forget(release, ())
        self.retain_only(set())


def steerable_address(bind: str) -> bool:
    """A TCP bind with a fixed port: its generations can each get a listener."""
    return not bind.startswith("unix:") and not bind.endswith(":0")


def close_listener(sock: socket.socket) -> None:
    path = sock.getsockname() if sock.family == socket.AF_UNIX else None
    sock.close()
    if isinstance(path, str) and path:
        with contextlib.suppress(OSError):
            os.unlink(path)

"""Daemon-held listening sockets, keyed by their `bind`, kept across release switches.

The daemon binds every declared socket once, before any process that uses it starts,
and hands it to children as fd 3, 4, ... (systemd's socket activation convention). A
socket whose `bind` is the same in the new release is the same kernel socket: old and
new processes accept from one queue during a start-first switch, so no connection is
refused. Keying by `bind` (not by name) is what makes a renamed socket with the same
address survive, and a moved address a new socket.

The daemon never accepts on these sockets, so they stay blocking: O_NONBLOCK lives on the
shared open file description, and setting it here would change it under the children.

Rejected: SO_REUSEPORT with each generation binding its own socket (connections queued
on the old socket's backlog are reset when it closes); letting children bind (the same
problem, plus the port is briefly free between releases).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from supervisord_lite.errors import OperationFailed
from supervisord_lite.manifest import ProcessSpec, SocketSpec


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

    def bind_all(self, specs: Iterable[SocketSpec]) -> None:
        """Bind every spec not held yet. All or nothing: on failure, closes what it bound."""
        fresh: dict[str, socket.socket] = {}
        try:
            for spec in specs:
                if spec.bind not in self.held and spec.bind not in fresh:
                    fresh[spec.bind] = open_listener(spec)
        except BaseException:
            for sock in fresh.values():
                close_listener(sock)
            raise
        self.held.update(fresh)

    def fds_for(self, proc: ProcessSpec, sockets: dict[str, SocketSpec]) -> list[tuple[str, int]]:
        """(name, fd) for each socket the process type names, in its declared order."""
        return [(name, self.held[sockets[name].bind].fileno()) for name in proc.sockets]

    def retain_only(self, binds: set[str]) -> list[str]:
        """Close every listener whose bind is not in binds; the binds closed."""
        gone = [b for b in self.held if b not in binds]
        for bind in gone:
            close_listener(self.held.pop(bind))
        return gone

    def close_all(self) -> None:
        self.retain_only(set())


def close_listener(sock: socket.socket) -> None:
    path = sock.getsockname() if sock.family == socket.AF_UNIX else None
    sock.close()
    if isinstance(path, str) and path:
        with contextlib.suppress(OSError):
            os.unlink(path)

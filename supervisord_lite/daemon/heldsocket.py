"""Notice a process that was handed a held socket but listens on a socket of its own.

The trap (issue 13): gunicorn with `reuse_port = True` ignores LISTEN_FDS, binds the
address again with SO_REUSEPORT, says READY=1 and counts as RUNNING, while the kernel
hands part of the connections to the daemon's socket, where nobody accepts them. So,
once a process that got LISTEN_FDS is ready (and once more a little later, for servers
that bind after saying ready), its process tree's fds are read from /proc and every
TCP socket in LISTEN state (unix, for a unix socket) that is not one the daemon holds is
named: one warning line, a `held_socket_ignored` event, and a note in `status`. A
process that listens on another port beside the held socket (an admin port) is named
too: that is worth one line.

Read from /proc/<pid>/fd and /proc/<pid>/net/{tcp,tcp6,unix} (the process's own network
namespace). A process tree that cannot be read (it exited, another user's) is skipped.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
from collections.abc import Iterable

import anyio

from supervisord_lite.daemon.bus import HeldSocketIgnored, ProcessExited, ProcessReady
from supervisord_lite.daemon.services import Services

log = logging.getLogger("supervisord_lite.daemon")

SUBSCRIBER = "held-socket-check"
# seconds after ready to look again: gunicorn with reuse_port binds in each worker,
# after its master said READY=1
RECHECKS = (1.0, 5.0)
TCP_LISTEN = "0A"
UNIX_ACCEPTCON = 0x10000
SOCKET_LINK_RE = re.compile(r"socket:\[(\d+)\]")
MAX_TREE = 4096  # processes looked at in one tree: a fork bomb does not stall the check


def tcp_address(hex_addr: str) -> str:
    """`0100007F:1F40` -> `127.0.0.1:8000` (the kernel writes each 32-bit word in host order)."""
    host_hex, port_hex = hex_addr.split(":")
    raw = b"".join(bytes.fromhex(host_hex[i : i + 8])[::-1] for i in range(0, len(host_hex), 8))
    host = ipaddress.ip_address(raw)
    port = int(port_hex, 16)
    return f"[{host}]:{port}" if host.version == 6 else f"{host}:{port}"


def listening_sockets(pid: int) -> dict[int, str]:
    """inode -> address of every socket in LISTEN state in pid's network namespace."""
    found: dict[int, str] = {}
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{name}") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) > 9 and fields[3] == TCP_LISTEN:
                    found[int(fields[9])] = tcp_address(fields[1])
    with contextlib.suppress(OSError), open(f"/proc/{pid}/net/unix") as f:
        next(f, None)
        for line in f:
            fields = line.split()
            if len(fields) > 6 and int(fields[3], 16) & UNIX_ACCEPTCON:
                path = fields[7] if len(fields) > 7 else "(unnamed)"
                found[int(fields[6])] = f"unix:{path}"
    return found


def socket_inodes(pids: Iterable[int]) -> set[int]:
    inodes: set[int] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    m = SOCKET_LINK_RE.fullmatch(os.readlink(f"/proc/{pid}/fd/{fd}"))
                    if m:
                        inodes.add(int(m.group(1)))
    return inodes


def was_handed_sockets(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return any(v.startswith(b"LISTEN_FDS=") for v in f.read().split(b"\0"))
    except OSError:
        return False


def subtree(pid: int) -> list[int]:
    """pid and its descendants, from /proc/<pid>/task/*/children (no scan of every pid)."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < MAX_TREE:
        p = todo.pop()
        found.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
    return found


def tree_listeners(pid: int, held: dict[int, str]) -> tuple[list[str], list[str]]:
    """(addresses pid's tree listens on itself, held binds its tree has open).

    Only listeners of the kind it was handed count (TCP for a TCP socket, unix for a
    unix one): gunicorn's own control socket (`gunicorn.ctl`) is no reason to warn.
    """
    inodes = socket_inodes(subtree(pid))
    handed = sorted({held[i] for i in inodes if i in held})
    own = inodes - held.keys()
    if not own:
        return [], handed
    kinds = {is_unix(b) for b in (handed or held.values())}
    listening = listening_sockets(pid)
    found = {listening[i] for i in own if i in listening}
    return sorted(a for a in found if is_unix(a) in kinds), handed


def is_unix(address: str) -> bool:
    return address.startswith("unix:")


class HeldSocketCheck:
    """A bus subscriber: checks each ready process that got LISTEN_FDS, warns once per pid."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.subscription = services.bus.subscribe(SUBSCRIBER)
        self.warned: set[int] = set()

    async def run(self) -> None:
        async with anyio.create_task_group() as tg, self.subscription.receive:
            async for event in self.subscription.receive:
                if isinstance(event, ProcessReady):
                    tg.start_soon(self.check_soon, event)
                elif isinstance(event, ProcessExited):
                    self.services.notes.pop(event.pid, None)
                    self.warned.discard(event.pid)
            tg.cancel_scope.cancel()

    async def check_soon(self, event: ProcessReady) -> None:
        if not was_handed_sockets(event.pid):
            return
        await self.check(event)
        waited = 0.0
        for at in RECHECKS:
            await anyio.sleep(at - waited)
            waited = at
            await self.check(event)

    def held(self) -> dict[int, str]:
        """inode -> bind of every socket the daemon holds."""
        out: dict[int, str] = {}
        for bind, sock in self.services.sockets.listeners():
            with contextlib.suppress(OSError):
                out[os.fstat(sock.fileno()).st_ino] = bind
        return out

    async def check(self, event: ProcessReady) -> None:
        if event.pid in self.warned:
            return
        # /proc/net/tcp of a busy host is megabytes: read off the event loop
        own, handed = await anyio.to_thread.run_sync(tree_listeners, event.pid, self.held())
        if not own or event.pid in self.warned:
            return
        self.warned.add(event.pid)
        given = f"was handed {', '.join(handed)} but " if handed else ""
        note = (
            f"{given}listens on its own socket {', '.join(own)}: connections to the held "
            "socket may wait unanswered (gunicorn: remove reuse_port; see docs/zero-downtime.md)"
        )
        self.services.notes[event.pid] = note
        log.warning("warning: %s (pid %d, %s) %s", event.name, event.pid, event.release, note)
        self.services.bus.publish(
            HeldSocketIgnored(
                event.name, event.release, event.pid, own[0], handed[0] if handed else None
            )
        )

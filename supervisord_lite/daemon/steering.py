"""Steering new connections between the listeners of one SO_REUSEPORT group, and draining.

Why (issue 13): with one listener shared by two generations, the retiring one keeps
accepting until its stop signal arrives, and a server that closes what it accepted but
has not read yet at shutdown (uvicorn, its issue 2757) resets that connection. So during
a start-first switch each generation gets a listener of its own on the held address, all
in one SO_REUSEPORT group, and a one-instruction classic BPF program (`return K`) picks
the listener for every new connection: the old one until the new generation is ready,
then the new one. The old listener's accept queue then empties (its processes still
accept), and only then is the old generation signalled. Envoy and HAProxy do the same
for hitless reloads.

How the kernel numbers the group: a listener's index is the order it joined; closing
one moves the last listener into the freed index. A program that returns an index with
no listener falls back to the group's hash, so a stale index misroutes nothing while
only one listener is left.

Rejected: an eBPF program with a socket map (needs a BPF map and more privileges than
cBPF, for the same one decision); SO_INCOMING_CPU tricks (they spread, not steer).
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from typing import Any

import anyio

log = logging.getLogger("supervisord_lite.daemon")

SO_ATTACH_REUSEPORT_CBPF = 51  # asm-generic/socket.h; not in Python's socket module
BPF_RET_K = 0x06  # BPF_RET | BPF_K: return the constant k
TCP_INFO_UNACKED = 24  # offset of tcpi_unacked: a listener's accept queue length
# seconds the old accept queue may take to empty: only an old generation whose every
# worker is busy the whole time takes longer, and what is then left is reset at close
# (unless the kernel migrates it, net.ipv4.tcp_migrate_req)
DRAIN_TIMEOUT = 5.0
MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"
DRAIN_SETTLE = 0.3  # then this long empty, so what was accepted last is read too
DRAIN_POLL = 0.02


def steer(sock: socket.socket, index: int) -> None:
    """Send every new connection of sock's reuseport group to the listener at index.

    Raises OSError when the kernel refuses the program (EPERM in some sandboxes).
    """
    import ctypes  # here: only a switch of a release with sockets steers (issue 16)

    program = ctypes.create_string_buffer(struct.pack("=HBBI", BPF_RET_K, 0, 0, index))
    fprog = struct.pack("@HP", 1, ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def accept_queue(sock: socket.socket) -> int:
    """Connections completed but not yet accepted on the listening socket sock."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_UNACKED + 4)
    return int(struct.unpack_from("=I", info, TCP_INFO_UNACKED)[0])


def reuseport_listener(
    address: tuple[Any, ...], family: socket.AddressFamily, backlog: int
) -> socket.socket:
    """A listener on address that joins (or starts) the address's SO_REUSEPORT group."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def queued(socks: list[socket.socket]) -> int:
    total = 0
    for sock in socks:
        try:
            total += accept_queue(sock)
        except OSError:
            continue  # closed meanwhile: nothing left to wait for
    return total


def kernel_migrates() -> bool:
    """Whether closing a listener moves its queued connections to another of its group."""
    try:
        with open(MIGRATE_REQ) as f:
            return f.read().strip() == "1"
    except OSError:
        return False


async def drain(socks: list[socket.socket], names: str, timeout: float = DRAIN_TIMEOUT) -> int:
    """Wait until no connection waits in socks' accept queues (bounded); those left."""
    if not socks:
        return 0
    started = time.monotonic()
    deadline = started + timeout
    empty_since: float | None = None
    while True:
        now = time.monotonic()
        left = queued(socks)
        if left:
            empty_since = None
        elif empty_since is None:
            empty_since = now
        if empty_since is not None and now - empty_since >= DRAIN_SETTLE:
            log.info("drained %s in %.2f s", names, now - started)
            return 0
        if now >= deadline:
            fate = (
                "the kernel moves them to the new listener (net.ipv4.tcp_migrate_req=1)"
                if kernel_migrates()
                else "they are reset when it stops (net.ipv4.tcp_migrate_req=1 would move "
                "them to the new listener)"
            )
            log.warning(
                "%s: %d connection(s) still queued for the old generation after %.0f s, "
                "stopping it anyway: %s",
                names,
                left,
                timeout,
                fate,
            )
            return left
        await anyio.sleep(DRAIN_POLL)

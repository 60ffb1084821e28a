"""Daemon-held sockets: bound once, kept by bind across switches, all-or-nothing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from supervisord_lite.daemon.sockets import SocketBindError, SocketPool
from supervisord_lite.manifest import ProcessSpec, SocketSpec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_binds_tcp_and_unix_and_passes_fds_in_declared_order(tmp_path: Path) -> None:
    port = free_port()
    specs = {
        "http": SocketSpec("http", f"127.0.0.1:{port}", backlog=16),
        "admin": SocketSpec("admin", f"unix:{tmp_path / 'admin.sock'}"),
    }
    pool = SocketPool()
    pool.bind_all(specs.values())
    try:
        web = ProcessSpec(type="web", cmd="x", sockets=("admin", "http"))
        fds = pool.fds_for(web, specs)
        assert [name for name, _ in fds] == ["admin", "http"]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the kernel completes the handshake on a listening socket
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(str(tmp_path / "admin.sock"))
    finally:
        pool.close_all()
    assert not (tmp_path / "admin.sock").exists()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 5):
        pass


def test_same_bind_is_the_same_socket_across_releases() -> None:
    port = free_port()
    pool = SocketPool()
    pool.bind_all([SocketSpec("http", f"127.0.0.1:{port}")])
    try:
        first = pool.held[f"127.0.0.1:{port}"].fileno()
        pool.bind_all([SocketSpec("web-renamed", f"127.0.0.1:{port}")])
        assert pool.held[f"127.0.0.1:{port}"].fileno() == first
        assert pool.retain_only({f"127.0.0.1:{port}"}) == []
    finally:
        pool.close_all()


def test_a_failed_bind_leaves_nothing_new_bound() -> None:
    busy = socket.create_server(("127.0.0.1", 0))
    busy_port = busy.getsockname()[1]
    port = free_port()
    pool = SocketPool()
    try:
        with pytest.raises(SocketBindError) as info:
            pool.bind_all(
                [SocketSpec("a", f"127.0.0.1:{port}"), SocketSpec("b", f"127.0.0.1:{busy_port}")]
            )
        assert str(info.value) == (
            f"socket b: cannot bind 127.0.0.1:{busy_port}: address already in use"
        )
        assert pool.held == {}
        # the first socket of the failed call was closed: its port is free again
        socket.create_server(("127.0.0.1", port)).close()
    finally:
        busy.close()
        pool.close_all()


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        probe = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    port = probe.getsockname()[1]
    probe.close()
    pool = SocketPool()
    pool.bind_all([SocketSpec("v6", f"[::1]:{port}")])
    try:
        with socket.create_connection(("::1", port), timeout=5):
            pass
    finally:
        pool.close_all()


def test_stale_unix_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens
    pool = SocketPool()
    pool.bind_all([SocketSpec("s", f"unix:{path}")])
    pool.close_all()

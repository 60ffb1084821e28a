"""How anything outside the daemon reaches it: its pid, its signal, its control socket.

Shared by brr-release (`activate` sends SIGHUP, `--wait` polls `status`) and the
daemon's own CLI subcommands. Stdlib only (no psutil): a client command must start
fast. The protocol: one JSON object per line each way over
`run/supervisord-lite.sock`; a request is `{"cmd": NAME, ...}`, a reply is
`{"ok": true, ...}` or `{"ok": false, "error": "one line"}`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from supervisord_lite.errors import OperationFailed
from supervisord_lite.layout import DeployRoot
from supervisord_lite.nofollow import socket_path_fd

SHORT_TIMEOUT = 10.0
MAX_REPLY = 16 * 1024 * 1024
CONNECT_BACKOFF = 0.005
MAX_CONNECT_BACKOFF = 0.1
DAEMON_MARKERS = ("supervisord-lite", "supervisord_lite")


def read_pid(root: DeployRoot) -> int | None:
    try:
        text = root.pidfile.read_text().strip()
    except (FileNotFoundError, OSError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def daemon_pid(root: DeployRoot) -> int | None:
    """The pid of the daemon running on root, or None.

    A pidfile can outlive its daemon and its pid be reused by anything; the pid counts
    only while that process is alive and its command line is the daemon's `run`.
    """
    pid = read_pid(root)
    if pid is None:
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except PermissionError:
        return pid
    cmdline = [arg.decode("utf-8", "replace") for arg in raw.split(b"\0") if arg]
    joined = " ".join(cmdline)
    if "run" in cmdline and any(marker in joined for marker in DAEMON_MARKERS):
        return pid
    return None


def signal_daemon(root: DeployRoot, signum: int = signal.SIGHUP) -> int | None:
    """Send signum to the running daemon; the pid signalled, or None when none runs."""
    pid = daemon_pid(root)
    if pid is None:
        return None
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return None
    return pid


def call(
    root: DeployRoot, payload: dict[str, Any], timeout: float = SHORT_TIMEOUT
) -> dict[str, Any]:
    """One request; OperationFailed with the daemon's own message when it says no."""
    reply = request(root.control_socket, payload, timeout=timeout)
    if reply.get("ok") is not True:
        raise OperationFailed(str(reply.get("error") or "the daemon refused the request"))
    return reply


def fetch_status(root: DeployRoot) -> dict[str, Any]:
    """The daemon's status object; OperationFailed when it cannot be had."""
    status = call(root, {"cmd": "status"}).get("status")
    if not isinstance(status, dict):
        raise OperationFailed("daemon sent a status that is not a JSON object")
    return status


def connect(sock: socket.socket, sock_path: Path, timeout: float) -> None:
    """Connect within timeout, waiting for room when the daemon's listen backlog is full.

    A socket with a timeout is non-blocking inside, and connect(2) to a Unix socket
    whose backlog is full then fails with EAGAIN at once (TCP would wait): a burst of
    clients must delay this one, not fail it. So retry, backing off a little, until the
    deadline. Leaves sock with timeout set; raises TimeoutError at the deadline.
    """
    deadline = time.monotonic() + timeout
    delay = CONNECT_BACKOFF
    sock.settimeout(timeout)
    while True:
        try:
            with socket_path_fd(sock_path) as name:  # never through a planted symlink
                sock.connect(name)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the backlog of {sock_path} stayed full") from None
            time.sleep(min(delay, left))
            delay = min(delay * 2, MAX_CONNECT_BACKOFF)


def request(sock_path: Path, payload: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
    """Send one request and read one reply line.

    Raises OperationFailed when the daemon cannot be reached or answers garbage.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            connect(sock, sock_path, timeout)
            sock.sendall(json.dumps(payload).encode() + b"\n")
            buf = bytearray()
            while b"\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > MAX_REPLY:
                    raise OperationFailed("daemon reply too large")
    except (FileNotFoundError, ConnectionRefusedError):
        raise OperationFailed(f"daemon not running (no control socket at {sock_path})") from None
    except TimeoutError:
        raise OperationFailed(f"daemon did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise OperationFailed(f"cannot reach the daemon at {sock_path}: {exc.strerror}") from None
    return parse_reply(bytes(buf).split(b"\n", 1)[0])


def request_stream(
    sock_path: Path, payload: dict[str, Any], *, timeout: float = 10.0
) -> Iterator[dict[str, Any]]:
    """Send one request and yield every reply line as it comes, until the daemon closes.

    For `logs --follow`: the first reply must come within timeout, the lines after it
    may take as long as they like. Raises OperationFailed like request().
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            connect(sock, sock_path, timeout)
            sock.sendall(json.dumps(payload).encode() + b"\n")
            buf = bytearray()
            first = True
            while True:
                line, sep, rest = bytes(buf).partition(b"\n")
                if sep:
                    buf = bytearray(rest)
                    yield parse_reply(line)
                    if first:
                        first = False
                        sock.settimeout(None)
                    continue
                if len(buf) > MAX_REPLY:
                    raise OperationFailed("daemon reply too large")
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise OperationFailed(f"daemon not running (no control socket at {sock_path})") from None
    except TimeoutError:
        raise OperationFailed(f"daemon did not answer within {timeout:g} s") from None
    except ConnectionResetError:
        return
    except OSError as exc:
        raise OperationFailed(f"cannot reach the daemon at {sock_path}: {exc.strerror}") from None


def parse_reply(line: bytes) -> dict[str, Any]:
    try:
        reply = json.loads(line)
    except ValueError:
        raise OperationFailed("daemon sent a reply that is not JSON") from None
    if not isinstance(reply, dict):
        raise OperationFailed("daemon sent a reply that is not a JSON object")
    return reply

"""What the running daemon keeps in memory (issue 16): no OpenSSL, no psutil.

Checked where an operator would look, the daemon's mappings in /proc/PID/maps, after a
day's ordinary work: processes with tcp, http, notify and timed ready checks, a restart,
status, logs, a reload to a new release. libssl and libcrypto come with ssl (loaded on
first use, deferssl.py) and with hashlib's OpenSSL digests; psutil's extension with
psutil. tests/test_imports.py checks the same at start from the import log.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from supervisord_lite.daemon_client import request
from supervisord_lite.manifest import ReadyCheck
from tests.daemon.conftest import Root, proc, running
from tests.helpers import python, wait_until

NOT_MAPPED = ("libssl", "libcrypto", "_ssl.", "_hashlib.", "_psutil_linux")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_server(port: int) -> str:
    return python(
        "import http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
        "    def log_message(self, *a): pass\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    )


def tcp_server(port: int) -> str:
    return python(
        "import socket, time\n"
        f"s = socket.create_server(('127.0.0.1', {port}))\n"
        "while True:\n"
        "    s.accept()[0].close()\n"
    )


NOTIFY_READY = python(
    "import os, socket, time\n"
    "a = os.environ['NOTIFY_SOCKET']\n"
    "a = '\\0' + a[1:] if a.startswith('@') else a\n"
    "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', a)\n"
    "time.sleep(600)\n"
)


def mapped_offences(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({word for word in NOT_MAPPED if word in maps})


def test_a_days_work_maps_neither_openssl_nor_psutil(droot: Root, daemon: Any) -> None:
    def release() -> str:
        web_port, api_port = free_port(), free_port()
        web_ready = ReadyCheck("http", target=f"http://127.0.0.1:{web_port}/")
        return droot.release(
            proc("web", http_server(web_port), ready=web_ready),
            proc("api", tcp_server(api_port), ready=ReadyCheck("tcp", f"127.0.0.1:{api_port}")),
            proc("worker", python("import time; time.sleep(600)")),
            proc("notifier", NOTIFY_READY, ready=ReadyCheck("notify")),
        )

    first = release()
    d = daemon()
    wait_until(lambda: len(running(d, first)) == 4, timeout=60, what="4 running")
    sock = droot.layout.control_socket
    assert request(sock, {"cmd": "restart", "target": "worker"}).get("ok", True)
    request(sock, {"cmd": "logs", "name": None, "n": 5})
    second = release()
    d.signal(1)  # SIGHUP: switch to the release `current` names
    wait_until(lambda: len(running(d, second)) == 4, timeout=60, what="switched")
    d.status()
    assert not mapped_offences(d.pid), f"the daemon mapped {mapped_offences(d.pid)}"

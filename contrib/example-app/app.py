"""The example web app: standard library only, shows its release in every answer.

It serves from an inherited socket when the supervisor passes one (LISTEN_FDS, the
systemd convention), else it binds $BIND_HOST:$BIND_PORT itself with SO_REUSEPORT, so an
old and a new release can listen side by side during a start-first switch. Once it serves
it says READY=1 on $NOTIFY_SOCKET when there is one (systemd's Type=notify protocol, which
`ready: {notify: true}` gives it), so the supervisor knows this very process is ready.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RELEASE = os.environ.get("BRR_RELEASE", "dev")
PROCESS = os.environ.get("BRR_PROCESS", "web")
GREETING = os.environ.get("GREETING", "hello")
BUILD_INFO = Path("build-info.txt").read_text().strip() if Path("build-info.txt").exists() else "-"


class Handler(BaseHTTPRequestHandler):
    # a connection that sends nothing must not hold up a graceful stop for long
    timeout = 2

    def do_GET(self) -> None:
        if self.path == "/healthz":
            body = b"ok\n"
        else:
            body = f"{GREETING} from {RELEASE} ({PROCESS}, {BUILD_INFO})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would drown the demo's output


def inherited_socket() -> socket.socket | None:
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or not os.environ.get("LISTEN_FDS"):
        return None
    return socket.socket(fileno=3)


def notify_ready() -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket name
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", address)


def main() -> None:
    host = os.environ.get("BIND_HOST", "127.0.0.1")
    port = int(os.environ.get("BIND_PORT", os.environ.get("PORT", "8080")))
    server = ThreadingHTTPServer((host, port), Handler, bind_and_activate=False)
    # server_close() joins request threads: in-flight requests finish on SIGTERM
    server.daemon_threads = False
    server.block_on_close = True
    sock = inherited_socket()
    if sock is not None:
        server.socket = sock
    else:
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        server.server_bind()
        server.server_activate()
    # non-blocking: processes that share one listener (the inherited socket) all wake for
    # a connection that only one of them gets; a blocking accept() would then hold the
    # loser until the next connection, which after a drain never comes, so SIGTERM could
    # not stop it (socketserver takes the EAGAIN as "nothing to accept")
    server.socket.setblocking(False)
    # shutdown() waits for serve_forever to return, so it must run off the main thread
    signal.signal(
        signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start()
    )
    print(f"{PROCESS} of {RELEASE} serving on {host}:{port}", flush=True)
    # the socket is listening: a connection waits in its backlog until serve_forever takes it
    notify_ready()
    server.serve_forever(poll_interval=0.5)
    server.server_close()
    print(f"{PROCESS} of {RELEASE} stopped gracefully", flush=True)


if __name__ == "__main__":
    main()

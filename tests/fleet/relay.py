"""ssh's ProxyCommand for the test hosts: stdin/stdout <-> a TCP connection.

Run with `ip netns exec NS`, so the address it connects to exists only inside that
namespace. Exits when either side closes; a refused connection exits 255 at once (ssh
then reports the host unreachable). With $FLEET_RELAY_LOG set, appends a line
`host bytes_sent bytes_received` there when the connection ends (bytes on the wire,
SSH framing and encryption included): what a deploy moves, measured.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    try:
        conn = socket.create_connection((host, port), timeout=5)
    except OSError as exc:
        print(f"relay: {host}:{port}: {exc}", file=sys.stderr)
        return 255
    conn.settimeout(None)
    sent = received = 0
    try:
        sent, received = pump(conn)
    finally:
        log = os.environ.get("FLEET_RELAY_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{host} {sent} {received}\n")
    return 0


def pump(conn: socket.socket) -> tuple[int, int]:
    sent = received = 0
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ)
    sel.register(conn, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj == 0:
                data = os.read(0, 65536)
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    sel.unregister(0)
                    continue
                conn.sendall(data)
                sent += len(data)
            else:
                data = conn.recv(65536)
                if not data:
                    return sent, received
                os.write(1, data)
                received += len(data)


if __name__ == "__main__":
    sys.exit(main())

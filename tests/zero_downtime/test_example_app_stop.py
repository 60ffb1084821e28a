"""contrib/example-app stops on SIGTERM even when it lost a race for a connection.

During a drain the old generation's processes share one listener, and all of them wake
for each connection only one of them gets. With a blocking listener the losers sat in
accept() until the next connection, which after the drain never came: the switch bench
saw an old process killed at its stop_timeout. Here two copies of the app share one
inherited listener; both are stopped (SIGSTOP) while a connection queues, then resumed
together, so both wake for it; then both get SIGTERM and must stop gracefully. Without
the fix about one round in five hangs in accept().
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.zero_downtime.conftest import EXAMPLE_APP

ROUNDS = 15
STOP_DEADLINE = 30.0  # the app's own bound is its 0.5 s poll plus a 2 s request timeout


# put the listener at fd 3 and exec the app in this very process, as LISTEN_PID wants
AT_FD_3 = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
    "os.execv(sys.executable, [sys.executable, sys.argv[2]])"
)


def start_app(listener: socket.socket, name: str) -> subprocess.Popen[bytes]:
    """The example app serving the listener as its inherited fd 3 (LISTEN_FDS)."""
    fd = listener.fileno()
    app = EXAMPLE_APP / "app.py"
    return subprocess.Popen(
        [sys.executable, "-c", AT_FD_3, str(fd), str(app)],
        env={**os.environ, "LISTEN_FDS": "1", "BRR_PROCESS": name},
        pass_fds=(fd,),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def one_round() -> list[str]:
    """Both copies' last line after SIGTERM, or why not."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        apps = [start_app(listener, f"web.{i}") for i in (1, 2)]
        try:
            for app in apps:
                assert app.stdout is not None
                first = app.stdout.readline()
                assert b"serving on" in first, first + app.stdout.read(2000)
            for app in apps:
                os.kill(app.pid, signal.SIGSTOP)
            with socket.create_connection(listener.getsockname(), timeout=10) as client:
                client.sendall(b"GET / HTTP/1.0\r\n\r\n")
                os.killpg(apps[0].pid, signal.SIGCONT)
                os.killpg(apps[1].pid, signal.SIGCONT)
                assert b"200" in client.recv(1000)
            for app in apps:
                app.terminate()
            ends = []
            for app in apps:
                try:
                    out, _ = app.communicate(timeout=STOP_DEADLINE)
                except subprocess.TimeoutExpired:
                    ends.append(f"still running {STOP_DEADLINE:.0f} s after SIGTERM")
                    continue
                lines = out.decode(errors="replace").strip().splitlines()
                ends.append(lines[-1] if lines else f"exit {app.returncode}, nothing said")
            return ends
        finally:
            for app in apps:
                if app.poll() is None:
                    os.killpg(app.pid, signal.SIGKILL)
                    app.wait()
                if app.stdout is not None:
                    app.stdout.close()


@pytest.mark.timeout(ROUNDS * (2 * STOP_DEADLINE + 30))
def test_both_copies_stop_gracefully_after_racing_for_a_connection() -> None:
    for n in range(ROUNDS):
        ends = one_round()
        assert all(end.endswith("stopped gracefully") for end in ends), f"round {n}: {ends}"

"""A process handed a held socket that listens on its own instead is named, once."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import BIN, DAEMON, PY, run_brr, wait_until, write_app

GUNICORN = str(BIN / "gunicorn")
WSGI_APP = """\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
"""
# serves on the socket handed over as fd 3, as a well-behaved server does; it reads the
# request first: a close with unread data sends RST, which may beat "hello" to the client
SERVE_FD3 = """\
import socket
s = socket.socket(fileno=3)
while True:
    c, _ = s.accept(); c.recv(1000); c.sendall(b"hello"); c.close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_with_socket(src: Path, held: int, cmd: str) -> Path:
    return write_app(
        src,
        f'sockets:\n  http: {{bind: "127.0.0.1:{held}"}}\n'
        f"processes:\n  web:\n    cmd: {json.dumps(cmd)}\n    sockets: [http]\n"
        "    ready: {after: 0.5}\n",
        {"app.py": WSGI_APP, "serve.py": SERVE_FD3},
    )


def test_gunicorn_reuse_port_is_named(root: Path, tmp_path: Path, live_daemon: Any) -> None:
    held, own = free_port(), free_port()
    # Heroku's gunicorn.conf.py sets reuse_port = True: gunicorn then ignores LISTEN_FDS
    cmd = f"{shlex.quote(GUNICORN)} --reuse-port -w 1 -b 127.0.0.1:{own} app:app"
    run_brr(root, "deploy", str(app_with_socket(tmp_path / "src", held, cmd)), "--no-signal")
    events = tmp_path / "events.jsonl"
    d = live_daemon(
        root,
        "--plugin",
        "exec",
        "--plugin-opt",
        f"exec.cmd=cat >> {events}",
        "--plugin-opt",
        "exec.on=held_socket_ignored",
    )
    line = wait_until(
        lambda: [x for x in d.output().splitlines() if "listens on its own socket" in x],
        what="the warning",
    )
    assert len(line) == 1, line
    assert "web.1 (pid " in line[0]
    assert f"was handed 127.0.0.1:{held} but listens on its own socket 127.0.0.1:{own}" in line[0]
    event = json.loads(wait_until(lambda: events.exists() and events.read_text()))
    assert (event["event"], event["name"], event["release"], event["address"]) == (
        "held_socket_ignored",
        "web.1",
        "v1",
        f"127.0.0.1:{own}",
    )
    (web,) = d.status()["processes"]
    assert f"listens on its own socket 127.0.0.1:{own}" in web["note"]
    text = subprocess.run(
        [DAEMON, "--root", str(root), "status"], capture_output=True, text=True, timeout=60
    ).stdout
    assert f"note: web.1: was handed 127.0.0.1:{held} but listens on its own socket" in text


@pytest.mark.parametrize("server", ["python", "gunicorn"])
def test_a_server_on_the_held_socket_is_not_named(
    root: Path, tmp_path: Path, live_daemon: Any, server: str
) -> None:
    held = free_port()
    # gunicorn also listens on its own control socket (unix): no reason to warn
    cmd = f"{shlex.quote(PY)} serve.py" if server == "python" else f"{GUNICORN} -w 1 app:app"
    run_brr(root, "deploy", str(app_with_socket(tmp_path / "src", held, cmd)), "--no-signal")
    d = live_daemon(root)
    with socket.create_connection(("127.0.0.1", held), timeout=30) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = b"".join(iter(lambda: c.recv(1000), b""))  # to the server's close
        assert reply.endswith(b"hello")
    # the checks run at ready, 1 s and 5 s later: well after them all, silence is proof
    wait_until(lambda: d.status()["processes"][0]["uptime"] > 12, timeout=90, what="checks done")
    assert "listens on its own socket" not in d.output()
    assert "note" not in d.status()["processes"][0]

"""A deploy root, its real daemon and real releases, for switches under load.

Each test gets a free loopback port (bind port 0, close, write it into the app's brr.yaml),
a root made by the real `brr-release`, and a daemon started as a subprocess in its own
session with its output in a file. Teardown stops the daemon with SIGTERM (it stops its
children), then SIGKILLs its process group and whatever its children.json still shows
alive: only processes this test started, never by name.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisord_lite.daemon.reaper import kill_previous
from supervisord_lite.daemon_client import request
from supervisord_lite.layout import DeployRoot
from tests.helpers import BIN, DAEMON, PY, run_brr, wait_until, write_app
from tests.zero_downtime.loadgen import Sample, Switch, fetch

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_APP = REPO / "contrib" / "example-app"
GUNICORN = str(BIN / "gunicorn")
UVICORN = str(BIN / "uvicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def example_app(
    src: Path,
    port: int,
    *,
    switch: str = "start-first",
    held_socket: bool = True,
    ready: str = "{notify: true}",
    crash: bool = False,
) -> Path:
    """contrib/example-app's app.py with a brr.yaml for this port (web only, scale 2).

    held_socket=False: no daemon-held socket, the app binds the port itself (SO_REUSEPORT).
    crash=True: app.py exits with code 3 as it starts.
    """
    code = (EXAMPLE_APP / "app.py").read_text()
    if crash:
        main = "\n    main()\n"
        assert code.endswith(main), "contrib/example-app/app.py no longer ends with main()"
        crash_now = '\n    print("crashing at start", flush=True)\n    sys.exit(3)\n'
        code = code[: -len(main)] + crash_now
        code = code.replace("\nimport os\n", "\nimport os\nimport sys\n", 1)
    if held_socket:
        head = f'sockets:\n  http: {{bind: "127.0.0.1:{port}", backlog: 1024}}\n'
        web = "    sockets: [http]\n"
    else:
        head, web = "", f'    env: {{BIND_PORT: "{port}"}}\n'
    return write_app(
        src,
        "build:\n"
        "  - python3 -c \"print('built by brr-release')\" > build-info.txt\n"
        f"{head}switch: {switch}\n"
        "processes:\n"
        "  web:\n"
        f"    cmd: {shlex.quote(PY)} app.py\n"
        "    scale: 2\n"
        f"{web}"
        f"    ready: {ready}\n"
        "    ready_timeout: 30\n"
        "    stop_timeout: 5\n",
        {"app.py": code},
    )


def server_app(src: Path, port: int, *, cmd: str, ready: str, app: str, stop: int) -> Path:
    """A one-file app (app.py) served by cmd from the daemon-held socket at fd 3."""
    return write_app(
        src,
        f'sockets:\n  http: {{bind: "127.0.0.1:{port}", backlog: 1024}}\n'
        "processes:\n"
        "  web:\n"
        f"    cmd: {cmd}\n"
        "    sockets: [http]\n"
        f"    ready: {ready}\n"
        "    ready_timeout: 30\n"
        f"    stop_timeout: {stop}\n",
        {"app.py": app},
    )


@dataclass
class Deploy:
    """A deploy root with its port, releases made by brr-release, and its daemon."""

    tmp: Path
    port: int
    root: Path
    daemon: subprocess.Popen[bytes] | None = None
    running: str | None = None  # the release the daemon runs, as the test knows it
    switches: list[Switch] = field(default_factory=list)
    daemon_args: tuple[str, ...] = ()  # more options for `supervisord-lite run`

    @property
    def out(self) -> Path:
        return self.tmp / "daemon.out"

    def output(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def build(self, src: Path) -> str:
        return run_brr(self.root, "build", str(src)).stdout.strip()

    def release(self, build: str, *sets: str) -> str:
        args = [a for kv in sets for a in ("--set", kv)]
        return run_brr(self.root, "release", "--build", build, *args).stdout.strip()

    def config_set(self, kv: str) -> str:
        return run_brr(self.root, "config", "set", kv).stdout.strip()

    def start(self, first: str) -> None:
        """Activate first (no daemon yet), start the daemon, wait until first serves."""
        run_brr(self.root, "activate", first, "--no-signal")
        with self.out.open("ab") as f:
            self.daemon = subprocess.Popen(
                [DAEMON, "run", "--root", str(self.root), *self.daemon_args],
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.wait_serving(first)
        self.running = first

    def wait_serving(self, release: str, timeout: float = 60.0) -> Sample:
        def answered() -> Sample | None:
            assert self.daemon is not None and self.daemon.poll() is None, self.output()
            s = fetch("127.0.0.1", self.port, "/", 5.0)
            return s if s.ok and s.release == release else None

        return wait_until(answered, timeout=timeout, interval=0.1, what=f"{release} serving")

    def listener(self) -> int:
        """The inode of the daemon's one listening socket on the port: the same or not."""
        assert self.daemon is not None
        found = [
            os.stat(f"/proc/{self.daemon.pid}/fd/{conn.fd}").st_ino
            for conn in psutil.Process(self.daemon.pid).net_connections(kind="tcp")
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == self.port
        ]
        assert len(found) == 1, f"the daemon holds {len(found)} listeners on port {self.port}"
        return found[0]

    def drained(self) -> int | None:
        """How many switches drained the old generation; None where the kernel refused."""
        out = self.output()
        if "cannot steer connections" in out:
            return None
        return out.count(f"drained 127.0.0.1:{self.port} in ")

    def status(self) -> dict[str, Any]:
        reply = request(DeployRoot(self.root).control_socket, {"cmd": "status"})
        return dict(reply.get("status", reply))

    def switch(
        self, release: str, *, expect_ok: bool | None = True
    ) -> subprocess.CompletedProcess[str]:
        """`brr-release activate release --wait`; records the switch with its times.

        Fails unless it exits 0 (expect_ok True) or non-zero (False); None: either."""
        assert self.running is not None
        start = time.monotonic()
        proc = run_brr(
            self.root, "activate", release, "--wait", "--timeout", "90", check=False, timeout=120
        )
        end = time.monotonic()
        ok = proc.returncode == 0
        self.switches.append(Switch(self.running, release, start, end, ok))
        if expect_ok is not None and ok != expect_ok:
            raise AssertionError(
                f"activate {release} --wait exited {proc.returncode} (expected "
                f"{'0' if expect_ok else 'non-zero'}): {proc.stderr.strip()}\n"
                f"--- daemon output (tail) ---\n{self.output()[-4000:]}"
            )
        if ok:
            self.running = release
        return proc

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            os.kill(self.daemon.pid, signal.SIGTERM)
            try:
                self.daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.daemon.pid, signal.SIGKILL)
                self.daemon.wait(timeout=30)
        layout = DeployRoot(self.root)
        kill_previous(layout.run_dir / "children.json", layout.builds)


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Deploy]:
    d = Deploy(tmp_path, free_port(), tmp_path / "root")
    run_brr(d.root, "init")
    try:
        yield d
    finally:
        d.stop()


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst

"""A deploy root made by the real brr-release, and its real daemon, always cleaned up.

The daemon runs in its own session with its output in a file; teardown stops it with
SIGTERM, then SIGKILLs whatever its children.json still shows alive: only processes
this test started.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from supervisord_lite.daemon.reaper import kill_previous
from supervisord_lite.daemon_client import request
from supervisord_lite.layout import DeployRoot
from tests.helpers import DAEMON, wait_until


@dataclass
class LiveDaemon:
    root: Path
    proc: subprocess.Popen[bytes]
    out: Path

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        reply = request(DeployRoot(self.root).control_socket, {"cmd": "status"})
        status: dict[str, Any] = reply.get("status", reply)
        return status


@pytest.fixture
def live_daemon(tmp_path: Path) -> Iterator[Any]:
    """live_daemon(root, *args) starts the daemon on root, waits until it runs current."""
    started: list[LiveDaemon] = []

    def start(root: Path, *args: str) -> LiveDaemon:
        out = tmp_path / f"daemon-{len(started)}.out"
        with out.open("ab") as f:
            proc = subprocess.Popen(
                [DAEMON, "run", "--root", str(root), *args],
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        d = LiveDaemon(root, proc, out)
        started.append(d)
        wait_until(
            lambda: proc.poll() is not None or d.status()["state"] == "running",
            timeout=60,
            what="daemon running",
        )
        assert proc.poll() is None, d.output()
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            os.kill(d.proc.pid, signal.SIGTERM)
            try:
                d.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(d.proc.pid, signal.SIGKILL)
                d.proc.wait()
        layout = DeployRoot(d.root)
        kill_previous(layout.run_dir / "children.json", layout.builds)

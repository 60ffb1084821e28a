"""The README's runnable blocks work as printed: a new user's first ten minutes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.helpers import BIN, pid_alive, wait_until

REPO = Path(__file__).parents[1]
BLOCK_RE = re.compile(r"<!-- runnable: (\S+) -->\n```console\n(.*?)```", re.S)


def runnable_blocks() -> dict[str, str]:
    return dict(BLOCK_RE.findall((REPO / "README.md").read_text()))


def test_readme_has_the_tour_block() -> None:
    assert "tour" in runnable_blocks()


@pytest.mark.timeout(300)
def test_readme_tour_runs_as_printed(tmp_path: Path) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8080)) == 0:
            pytest.fail("port 8080 is taken: the README's example app needs it")
    block = runnable_blocks()["tour"]
    root = tmp_path / "tour"
    commands = [line[2:] for line in block.splitlines() if line.startswith("$ ")]
    expected = [line for line in block.splitlines() if line and not line.startswith("$ ")]
    script = "set -euo pipefail\n" + "\n".join(commands).replace("/tmp/brr-tour", str(root))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("BRR_ROOT", None)
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=240)
    finally:
        pidfile = root / "run" / "supervisord-lite.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not pid_alive(pid), timeout=60, what="the tour's daemon to stop")
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    daemon_log = root / "daemon.log"
    said = daemon_log.read_text(errors="replace") if daemon_log.exists() else "(no daemon.log)"
    assert proc.returncode == 0, f"{out}\n--- the daemon printed:\n{said}"
    # every line of output that does not depend on time or pids appears as printed
    stable = [
        line
        for line in expected
        if not re.search(r"\d{4}-\d\d-\d\dT|pid \d+|\b\d{3,}\b|UPTIME|RUNNING", line)
    ]

    def norm(text: str) -> str:  # which web.N answers is the kernel's choice
        return re.sub(r"web\.\d", "web.N", text.replace("/tmp/brr-tour", str(root)))

    missing = [line for line in stable if norm(line.strip()) not in norm(out)]
    assert not missing, f"README lines not printed:\n{missing}\n--- output:\n{out}"
    left = [
        p.pid
        for p in psutil.process_iter(["cwd"])
        if (p.info["cwd"] or "").startswith(str(root / "builds"))
    ]
    assert left == [], f"processes of the tour still run after shutdown: {left}"

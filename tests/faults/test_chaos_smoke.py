"""`chaos/run.py --quick`: the whole chaos suite for 20 s, no invariant violated.

The suite runs in its own process (it mounts a tmpfs when root, spawns writers and
daemons, and kills all of them by pid or process group at its end, even when this test
times out and the suite gets SIGTERM). Known bugs the suite finds are named below: while
one is open, a run that hits only known bugs is an expected failure, and any other
violation fails the test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import PY

REPO = Path(__file__).resolve().parents[2]

# violation text -> the bug (see docs/reliability.md, "Bugs the suite found")
KNOWN_BUGS = {
    r"daemon killed by SIGHUP while starting": (
        "daemon: the pidfile is written before SIGHUP is handled; an activate in that "
        "window kills the daemon (daemon/pidfile.py hold_daemon_lock, daemon/main.py "
        "_run_signals)"
    ),
    r"exited 1 with a traceback: OSError: \[Errno (27|28)\]": (
        "brr-release: ENOSPC/EFBIG end in a traceback instead of one error line "
        "(brr/cli.py main catches only BrrError)"
    ),
}


@pytest.mark.timeout(110)
def test_quick_chaos_run_violates_no_invariant(tmp_path: Path) -> None:
    report = tmp_path / "chaos.json"
    proc = subprocess.Popen(
        [PY, str(REPO / "chaos" / "run.py"), "--quick", "--no-save", "--json", str(report)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=100)
    finally:
        if proc.poll() is None:  # it cleans up after itself on SIGTERM
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert report.exists(), out[-3000:]
    data = json.loads(report.read_text())
    assert sum(data["ops"].values()) > 20, out[-3000:]
    assert data["faults"].get("SIGKILL writer", 0) > 0
    assert data["faults"].get("SIGKILL daemon", 0) > 0
    assert data["checks"] > 10
    assert data["max_status_latency"].get("process", 0) < 1.0
    violations: list[str] = data["violations"]
    unknown = [v for v in violations if not any(re.search(k, v) for k in KNOWN_BUGS)]
    assert unknown == [], "\n".join(unknown) + "\n" + out[-3000:]
    hit = sorted({bug for v in violations for k, bug in KNOWN_BUGS.items() if re.search(k, v)})
    if hit:
        pytest.xfail("known bugs: " + "; ".join(hit))
    assert proc.returncode == 0, out[-3000:]

"""The release phase streams its output as it runs, and stops at its release_timeout."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.helpers import BRR, pid_alive, run_brr, wait_until, write_app

# prints, then waits (at most 30 s) for the test to answer what it saw, then prints again
HANDSHAKE = (
    "echo first line; i=0; "
    'while [ ! -e "$GO" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; '
    '[ -e "$GO" ] && echo second line after the answer || echo gave up waiting'
)


def test_release_phase_output_streams_as_it_runs(root: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    src = write_app(
        tmp_path / "src",
        f"release_command: {json.dumps(HANDSHAKE)}\nprocesses:\n  web: sleep 1000\n",
    )
    proc = subprocess.Popen(
        [BRR, "--root", str(root), "deploy", str(src), "--set", f"GO={go}", "--no-signal"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    try:
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            if line == "first line\n" or not line:
                break
        assert seen[-1] == "first line\n", seen
        go.touch()  # only a streamed first line can be answered before the phase ends
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 0, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert "second line after the answer" in rest
    assert os.readlink(root / "current") == "releases/v1"


def test_release_phase_stops_at_its_timeout(root: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    command = f"echo migrating; sleep 600 & echo $! > {pidfile}; wait"
    src = write_app(
        tmp_path / "src",
        f"release_timeout: 2\nrelease_command: {json.dumps(command)}\n"
        "processes:\n  web: sleep 1000\n",
    )
    proc = run_brr(root, "deploy", str(src), "--no-signal", check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "brr-release: error: release command of v1 was stopped after 2 s (release_timeout); "
        "nothing is active (its output is above)"
    )
    assert "migrating" in proc.stderr
    child = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(child), timeout=30, what="the phase's child killed")
    assert not os.path.lexists(root / "current")
    last = json.loads((root / "ledger.jsonl").read_text().splitlines()[-1])
    assert (last["event"], last["timed_out"], last["exit_code"]) == (
        "release_command_failed",
        2.0,
        None,
    )

"""`chaos/run.py --quick`: the whole chaos suite for 20 s, no invariant violated; and each
bug the suite found, reproduced on its own, so that it stays fixed.

The suite runs in its own process (it mounts a tmpfs when root, spawns writers and
daemons, and kills all of them by pid or process group at its end, even when this test
times out and the suite gets SIGTERM). Every bug it found is fixed (docs/reliability.md,
"Bugs the suite found"): any violation fails the test. A new bug gets its own test below,
marked xfail until it is fixed, not a tolerance here: the quick run must stay clean.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisord_lite.daemon.reaper import kill_previous
from supervisord_lite.daemon_client import request
from supervisord_lite.layout import DeployRoot
from tests.helpers import BRR, DAEMON, PY, run_brr, wait_until, write_app

REPO = Path(__file__).resolve().parents[2]


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
        # the 1 s bound is make chaos's; here the whole suite may share two cores with us
        env={**os.environ, "CHAOS_STATUS_LIMIT": "3"},
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
    assert data["max_status_latency"].get("process", 0) < 3.0
    violations: list[str] = data["violations"]
    assert violations == [], "\n".join(violations) + "\n" + out[-3000:]
    assert proc.returncode == 0, out[-3000:]


# --- the bugs, one by one --------------------------------------------------------------------

APP = """\
processes:
  web:
    cmd: "sleep 1000"
    ready: {after: 0.1}
    stop_timeout: 2
"""


def start_daemon(root: Path, out: Path) -> subprocess.Popen[bytes]:
    with out.open("ab") as f:
        return subprocess.Popen(
            [DAEMON, "run", "--root", str(root)],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop_daemon(proc: subprocess.Popen[bytes], root: Path) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    layout = DeployRoot(root)
    kill_previous(layout.run_dir / "children.json", layout.builds)


@pytest.fixture
def deployed(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    run_brr(root, "init")
    run_brr(root, "deploy", str(write_app(tmp_path / "src", APP)))
    return root


# bug 1 of docs/reliability.md, fixed in cda5c58: this test keeps it fixed
def test_sighup_as_soon_as_the_pidfile_appears_does_not_kill_the_daemon(
    deployed: Path, tmp_path: Path
) -> None:
    pidfile = DeployRoot(deployed).pidfile
    proc = start_daemon(deployed, tmp_path / "d.out")
    try:
        wait_until(
            lambda: proc.poll() is not None or pidfile.read_text().strip() == str(proc.pid),
            timeout=30,
            interval=0.001,
            what="the pidfile",
        )
        os.kill(proc.pid, signal.SIGHUP)  # what `brr-release activate` does
        sock = DeployRoot(deployed).control_socket
        wait_until(
            lambda: proc.poll() is not None or request(sock, {"cmd": "status"})["ok"],
            timeout=30,
            what="the daemon answering",
        )
        assert proc.poll() is None, f"the daemon died: {proc.returncode}"
    finally:
        stop_daemon(proc, deployed)


def fsize_limit(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


# bug 2 of docs/reliability.md: an OSError (EFBIG, ENOSPC) ended in a traceback
@pytest.mark.parametrize(
    "args", [["deploy", "SRC"], ["config", "set", "A=1"], ["rollback"]], ids=lambda a: a[0]
)
def test_a_file_size_limit_is_one_error_line_not_a_traceback(
    deployed: Path, tmp_path: Path, args: list[str]
) -> None:
    big = write_app(tmp_path / "big", APP, {"blob.txt": "x" * 200_000})
    run_brr(deployed, "config", "set", "B=2", "--activate", "--no-signal")
    argv = [BRR, "--root", str(deployed), *[str(big) if a == "SRC" else a for a in args]]
    # writes past the limit fail with EFBIG (Python ignores SIGXFSZ): a full disk's twin
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, preexec_fn=fsize_limit(100)
    )
    assert proc.returncode == 1
    assert run_brr(deployed, "verify").returncode == 0  # nothing half-done either way
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert lines[-1].startswith("brr-release: error:"), lines
    assert [line for line in lines if "error:" in line] == lines[-1:], lines
    assert "File too large" in lines[-1], lines


# bug 3 of docs/reliability.md: a socket with a timeout is non-blocking, and connect() to
# a Unix socket whose backlog is full failed at once with EAGAIN
def test_a_client_waits_for_a_full_backlog_instead_of_failing(
    deployed: Path, tmp_path: Path
) -> None:
    proc = start_daemon(deployed, tmp_path / "d.out")
    sock = DeployRoot(deployed).control_socket
    held: list[socket.socket] = []
    try:
        wait_until(lambda: request(sock, {"cmd": "status"})["ok"], timeout=30, what="daemon")
        os.kill(proc.pid, signal.SIGSTOP)  # accepts nothing: the backlog fills up
        for _ in range(4096):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            held.append(s)
            try:
                s.connect(str(sock))
            except BlockingIOError:
                break
        else:
            pytest.skip("the backlog never filled")

        def resume() -> None:
            # the burst goes away (each of its sessions ends at EOF) and the daemon wakes
            for c in held:
                c.close()
            os.kill(proc.pid, signal.SIGCONT)

        resumer = threading.Timer(0.5, resume)
        resumer.start()
        try:
            reply = request(sock, {"cmd": "status"}, timeout=10)
        finally:
            resumer.join()
        assert reply["ok"] is True
    finally:
        for s in held:
            s.close()
        stop_daemon(proc, deployed)

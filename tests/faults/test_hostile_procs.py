"""Processes against the daemon: escapes from the session, empty names in scripts, and a
formation big enough to run the daemon out of descriptors. Real daemon, real processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisord_lite.daemon.leftovers import kill_previous
from supervisord_lite.daemon.proctree import session_of
from supervisord_lite.layout import DeployRoot
from tests.faults.test_security import Daemon, start
from tests.helpers import DAEMON, pid_alive, run_brr, wait_until, write_app

# the escape leaves the session and clears the environment that names its process; its
# pid goes to a file outside the (read-only) build
ESCAPE = """\
processes:
  web:
    cmd: "sh -c 'setsid env -i sleep 1000 & echo $! >> \\"$ESCAPES\\"; exec sleep 1000'"
    ready: {after: 0}
    stop_timeout: 2
"""
# here the process itself exits, leaving the escape to the subreaper; then it restarts
ESCAPE_AND_EXIT = """\
processes:
  web:
    cmd: "sh -c 'setsid env -i sleep 1000 & echo $! >> \\"$ESCAPES\\"; sleep 0.3; exit 3'"
    ready: {after: 0}
    stop_timeout: 2
"""
TWO = """\
processes:
  web:
    cmd: "sleep 1000"
    scale: 2
    ready: {after: 0}
    stop_timeout: 2
"""


@pytest.fixture
def escapes(tmp_path: Path) -> Iterator[Path]:
    """The file the escapes write their pids to; every one is killed at the end."""
    path = tmp_path / "escapes"
    yield path
    for pid in pids(path):
        if pid_alive(pid) and session_of(pid) == (pid, pid):
            os.kill(pid, 9)


def pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except (OSError, ValueError):
        return []


def deploy(root: Path, src: Path, declaration: str, *sets: str) -> Path:
    run_brr(root, "init")
    write_app(src, declaration)
    run_brr(root, "deploy", str(src), *(a for s in sets for a in ("--set", s)))
    return root


def escaped_and_alive(path: Path, count: int) -> None:
    """The count-th escape runs, in a session of its own (so killpg cannot reach it)."""
    pid = pids(path)[count - 1]
    wait_until(lambda: session_of(pid) == (pid, pid), what=f"escape {pid} in its session")


def ctl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DAEMON, "--root", str(root), *args], capture_output=True, text=True, timeout=120
    )


def test_an_escape_does_not_survive_stop_restart_or_shutdown(
    daemons: list[Daemon], tmp_path: Path, escapes: Path
) -> None:
    root = deploy(tmp_path / "root", tmp_path / "src", ESCAPE, f"ESCAPES={escapes}")
    d = start(daemons, root, tmp_path / "d.out")
    first = wait_until(lambda: pids(escapes)[:1], what="first escape")[0]
    escaped_and_alive(escapes, 1)
    assert ctl(root, "restart", "web.1").returncode == 0
    wait_until(lambda: not pid_alive(first), what=f"escape {first} killed by restart")
    second = wait_until(lambda: pids(escapes)[1:2], what="second escape")[0]
    escaped_and_alive(escapes, 2)
    assert ctl(root, "stop", "web.1").returncode == 0
    wait_until(lambda: not pid_alive(second), what=f"escape {second} killed by stop")
    assert ctl(root, "start", "web.1").returncode == 0
    third = wait_until(lambda: pids(escapes)[2:3], what="third escape")[0]
    escaped_and_alive(escapes, 3)
    assert ctl(root, "shutdown").returncode == 0
    d.proc.wait(timeout=60)
    wait_until(lambda: not pid_alive(third), what=f"escape {third} killed by shutdown")
    assert "Traceback" not in d.output()


def test_restarts_of_a_process_that_leaves_an_escape_do_not_leak_copies(
    daemons: list[Daemon], tmp_path: Path, escapes: Path
) -> None:
    root = deploy(tmp_path / "root", tmp_path / "src", ESCAPE_AND_EXIT, f"ESCAPES={escapes}")
    d = start(daemons, root, tmp_path / "d.out")
    wait_until(lambda: len(pids(escapes)) >= 4, timeout=60, what="four runs")
    alive = [pid for pid in pids(escapes)[:-1] if pid_alive(pid)]
    wait_until(
        lambda: [p for p in pids(escapes)[:3] if pid_alive(p)] == [],
        what=f"escapes of ended runs killed (alive: {alive})",
    )
    d.stop()
    wait_until(lambda: not any(pid_alive(p) for p in pids(escapes)), what="no escape left")


@pytest.mark.parametrize("verb", ["stop", "restart", "start"])
def test_an_empty_process_name_is_a_usage_error(
    daemons: list[Daemon], tmp_path: Path, verb: str
) -> None:
    root = deploy(tmp_path / "root", tmp_path / "src", TWO)
    d = start(daemons, root, tmp_path / "d.out")
    before = {p["name"]: p["pid"] for p in d.status()["processes"]}
    for name in ("", " "):
        proc = ctl(root, verb, name)
        err = proc.stderr.strip()
        assert proc.returncode == 2 and len(err.splitlines()) == 1 and "empty" in err, err
    with socket.socket(socket.AF_UNIX) as s:  # a client that skips the CLI's check
        s.connect(str(DeployRoot(root).control_socket))
        s.sendall(json.dumps({"cmd": verb, "target": ""}).encode() + b"\n")
        reply = json.loads(s.makefile("rb").readline())
    assert reply["ok"] is False and "empty" in reply["error"]
    after = {p["name"]: p["pid"] for p in d.status()["processes"]}
    assert after == before and all(after.values())


def limit(pid: int, name: str) -> list[str]:
    """[soft, hard] of one line of /proc/<pid>/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(name):
            return line[len(name) :].split()[:2]
    return []


def test_scale_600_under_a_soft_limit_of_1024_fds_answers_status(tmp_path: Path) -> None:
    root = deploy(
        tmp_path / "root",
        tmp_path / "src",
        TWO.replace("scale: 2", "scale: 600"),
    )
    out = tmp_path / "d.out"
    # nproc bounds what a runaway could fork (not enforced for root, so it is read back)
    argv = ["prlimit", "--nofile=1024:8192", "--nproc=2000:2000", DAEMON, "run", "--root"]
    with out.open("ab") as f:
        proc = subprocess.Popen(
            [*argv, str(root)], stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        # prlimit sets them on itself, then execs the daemon: read them back from /proc
        wait_until(lambda: limit(proc.pid, "Max processes") == ["2000", "2000"], what="nproc")
        sock = DeployRoot(root).control_socket
        wait_until(sock.exists, timeout=60, what="control socket")

        def all_running() -> bool:
            reply = ctl(root, "status")
            return reply.returncode == 0 and reply.stdout.count("RUNNING") == 600

        wait_until(all_running, timeout=120, interval=0.5, what="600 running")
        assert limit(proc.pid, "Max open files") == ["8192", "8192"]  # soft raised to hard
        for _ in range(20):
            assert ctl(root, "status").returncode == 0
        assert proc.poll() is None
        text = out.read_text()
        assert "Too many open files" not in text and "Traceback" not in text
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:  # never leave 600 processes behind
            proc.kill()
            proc.wait()
        layout = DeployRoot(root)
        kill_previous(layout.run_dir / "children.json", layout.builds)

"""`supervisord-lite run` execs the daemon's own image (runner.py): same pid, the
operator's words still on its command line, nothing of the first image's argparse or
client in its memory, still its children's subreaper, and no signal lost or fatal while
the exec happens."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from supervisord_lite.client.connection import daemon_pid
from supervisord_lite.daemon.runner import OPTIONS_ENV
from supervisord_lite.daemon_client import request
from supervisord_lite.errors import BrrError
from supervisord_lite.layout import resolve_root
from tests.daemon.conftest import Root, proc, start_daemon, stop_daemon
from tests.helpers import DAEMON, PY, python, wait_until

# a child whose own child leaves a grandchild behind (in a session of its own) and exits
ORPHAN_MAKER = python(
    "import subprocess, sys, time\n"
    "inner = \"import subprocess, sys; g = subprocess.Popen([sys.executable, '-c', "
    "'import time; time.sleep(3600)'], start_new_session=True); "
    "print('grandchild', g.pid, flush=True)\"\n"
    "subprocess.run([sys.executable, '-c', inner])\n"
    "time.sleep(3600)\n"
)


def state(root: Root) -> str | None:
    try:
        reply = request(root.layout.control_socket, {"cmd": "status"}, timeout=5)
    except (OSError, BrrError):  # no daemon listening yet
        return None
    return str(reply.get("status", reply).get("state"))


def test_the_daemon_runs_in_its_own_image_under_the_same_pid(droot: Root, tmp_path: Path) -> None:
    droot.release(proc("web", ORPHAN_MAKER))
    out = tmp_path / "daemon.out"
    with out.open("wb") as f:
        p = subprocess.Popen(
            [PY, "-X", "importtime", DAEMON, "run", "--root", str(droot.path)],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_until(lambda: state(droot) == "running", timeout=60, what="daemon running")
        text = out.read_text(errors="replace")
        images = text.split("imported package")
        assert len(images) == 3, "not two interpreter starts: the daemon did not exec"
        daemon_image = {
            line.rsplit("|", 1)[1].strip()
            for line in images[2].splitlines()
            if line.startswith("import time:")
        }
        assert "supervisord_lite.daemon.main" in daemon_image
        carried = sorted(
            m
            for m in daemon_image
            if m.split(".")[0] in ("argparse", "gettext", "ctypes", "_ctypes", "runpy")
            or m.startswith(("supervisord_lite.client", "supervisord_lite.declaration"))
            or m == "supervisord_lite.daemon.cli"
        )
        assert not carried, f"the daemon's image imported {carried}"
        # the same process: systemd's main pid, the pidfile and the clients agree
        assert daemon_pid(resolve_root(str(droot.path))) == p.pid
        # named as the console script named it before the exec, for pgrep and systemctl
        assert Path(f"/proc/{p.pid}/comm").read_text().strip() == "supervisord-lit"
        cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")
        assert [b"run", b"--root", str(droot.path).encode()] == cmdline[-4:-1]
        # still the subreaper: the grandchild left by web.1 is the daemon's now
        web = request(droot.layout.control_socket, {"cmd": "status"})["status"]["processes"][0]
        child_env = Path(f"/proc/{web['pid']}/environ").read_bytes()
        assert OPTIONS_ENV.encode() not in child_env
        grandchild = int(
            wait_until(
                lambda: next((w for w in text_lines(out) if w.startswith("grandchild")), None),
                what="the grandchild's pid",
            ).split()[-1]
        )
        try:
            assert ppid(grandchild) == p.pid
        finally:
            stop_daemon(p, droot)
            if ppid_or_none(grandchild) is not None:  # not swept: not ours, so ours to end
                os.kill(grandchild, signal.SIGKILL)
    finally:
        stop_daemon(p, droot)


def text_lines(out: Path) -> list[str]:
    return [line.split("| ", 1)[-1] for line in out.read_text(errors="replace").splitlines()]


def ppid_or_none(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))


def ppid(pid: int) -> int:
    found = ppid_or_none(pid)
    assert found is not None, f"no process {pid}"
    return found


def hup_blocked(pid: int) -> bool:
    """Whether pid blocks SIGHUP now: from just before the exec until the daemon's image
    has its handlers."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    blocked = next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:"))
    return bool(int(blocked, 16) & (1 << (signal.SIGHUP - 1)))


def test_sighups_across_the_exec_neither_kill_nor_get_lost(droot: Root, tmp_path: Path) -> None:
    """A SIGHUP that arrives while the first image execs the daemon's (handlers gone, the
    new ones not yet set) waits, blocked, and is then handled: sent every millisecond
    from the moment the first image blocks it until the daemon runs."""
    droot.release(proc("web", python("import time; time.sleep(3600)")))
    out = tmp_path / "daemon.out"
    p = start_daemon(droot, out)
    try:
        wait_until(lambda: hup_blocked(p.pid), interval=0.0005, what="SIGHUP blocked")
        sent = 0
        deadline = time.monotonic() + 60
        while state(droot) != "running" and time.monotonic() < deadline and sent < 60_000:
            assert p.poll() is None, f"the daemon died of a SIGHUP (exit {p.poll()})"
            os.kill(p.pid, signal.SIGHUP)
            sent += 1
            time.sleep(0.001)  # the pace of the burst, not a wait for a condition
        assert state(droot) == "running", out.read_text()[-2000:]
        assert p.poll() is None
        assert not hup_blocked(p.pid)  # unblocked for good: children inherit the mask
    finally:
        stop_daemon(p, droot)

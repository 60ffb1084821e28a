"""Symlinks planted under ROOT by a member of the deploy group, against tools run as root.

Each test plants the link the way an attacker would (a real symlink, at the real path),
runs the real CLI or daemon, and checks that the target outside the root is unchanged
(content, mode, owner) and that the refusal is one line naming the link.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from supervisord_lite.daemon.logfiles import LogFiles
from supervisord_lite.layout import DeployRoot
from tests.faults.test_security import Daemon, start
from tests.helpers import DAEMON, pid_alive, run_brr, wait_until, write_app

APP = """\
processes:
  web:
    cmd: "sh -c 'while :; do echo line-from-web; sleep 0.1; done'"
    ready: {after: 0}
    stop_timeout: 2
"""


def deployed(root: Path, src: Path) -> Path:
    run_brr(root, "init")
    write_app(src, APP)
    run_brr(root, "deploy", str(src))
    return root


def victim(path: Path, text: str = "root-only secret\n", mode: int = 0o600) -> tuple[str, int]:
    """A root-owned file outside the root, as an attacker would aim at (/etc/shadow)."""
    path.write_text(text)
    path.chmod(mode)
    st = path.stat()
    return text, st.st_mode


def untouched(path: Path, text: str, mode: int) -> None:
    st = path.stat()
    assert path.read_text() == text, "the target's content changed"
    assert st.st_mode == mode and st.st_gid == 0, f"mode {oct(st.st_mode)} gid {st.st_gid}"


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("planted", ["ledger.jsonl", "logs", "run/lock"])
def test_init_group_does_not_chown_or_chmod_through_a_symlink(tmp_path: Path, planted: str) -> None:
    root = tmp_path / "root"
    run_brr(root, "init", "--group", "daemon")
    target = tmp_path / "outside"
    if planted == "logs":
        target.mkdir(mode=0o700)
        mode, text = target.stat().st_mode, ""
    else:
        text, mode = victim(target)
    link = root / planted
    link.unlink() if not link.is_dir() else link.rmdir()
    link.symlink_to(target)
    proc = run_brr(root, "init", "--group", "daemon", check=False)
    assert proc.returncode == 1 and str(link) in one_line(proc) and "symlink" in proc.stderr
    st = target.stat()
    assert st.st_mode == mode and st.st_gid == 0, f"{oct(st.st_mode)} gid {st.st_gid}"
    if text:
        untouched(target, text, mode)


def test_init_group_refuses_a_hard_link_to_a_root_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run_brr(root, "init", "--group", "daemon")
    text, mode = victim(tmp_path / "outside")
    (root / "ledger.jsonl").unlink()
    os.link(tmp_path / "outside", root / "ledger.jsonl")
    proc = run_brr(root, "init", "--group", "daemon", check=False)
    assert proc.returncode == 1 and "hard link" in one_line(proc)
    untouched(tmp_path / "outside", text, mode)


def test_a_ledger_symlink_is_not_truncated_or_written(tmp_path: Path) -> None:
    root = deployed(tmp_path / "root", tmp_path / "src")
    text, mode = victim(tmp_path / "shadow")
    (root / "ledger.jsonl").unlink()
    (root / "ledger.jsonl").symlink_to(tmp_path / "shadow")
    proc = run_brr(root, "config", "set", "A=1", check=False)
    assert proc.returncode == 1 and "ledger.jsonl" in one_line(proc) and "symlink" in proc.stderr
    untouched(tmp_path / "shadow", text, mode)
    assert DeployRoot(root).release_ids() == ["v1"], "a release was made that is not recorded"
    verify = run_brr(root, "verify", check=False)
    assert verify.returncode == 1 and "ledger.jsonl: a symlink" in verify.stdout, verify.stdout


def test_a_run_lock_symlink_creates_nothing_at_its_target(tmp_path: Path) -> None:
    root = deployed(tmp_path / "root", tmp_path / "src")
    nologin = tmp_path / "etc-nologin"
    (root / "run" / "lock").unlink()
    (root / "run" / "lock").symlink_to(nologin)
    proc = run_brr(root, "config", "set", "A=1", check=False)
    assert proc.returncode == 1 and "run/lock" in one_line(proc)
    assert not os.path.lexists(nologin)


@pytest.mark.parametrize("planted", ["logs", "logs/web.1.log"])
def test_the_daemon_does_not_append_child_output_through_a_log_symlink(
    daemons: list[Daemon], tmp_path: Path, planted: str
) -> None:
    root = deployed(tmp_path / "root", tmp_path / "src")
    passwd = tmp_path / "passwd"
    text, mode = victim(passwd, "root:x:0:0:root:/root:/bin/bash\n", 0o644)
    if planted == "logs":
        (root / "logs").rmdir()
        (root / "logs").symlink_to(tmp_path)  # logs/web.1.log would then be outside
        (tmp_path / "web.1.log").symlink_to(passwd)
    else:
        (root / planted).symlink_to(passwd)
    out = tmp_path / "d.out"
    start(daemons, root, out, extra=["--log-files"])
    wait_until(lambda: out.read_text().count("line-from-web") >= 3, what="child output")
    untouched(passwd, text, mode)
    refusals = [line for line in out.read_text().splitlines() if "log file of web.1" in line]
    assert refusals and "symlink" in refusals[0], out.read_text()[-2000:]


def test_logfiles_rotate_and_write_only_inside_a_real_directory(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    files = LogFiles(logs, max_bytes=10, keep=2)
    for n in range(5):
        files.write("web.1", f"line {n}\n".encode())
    files.close()
    assert sorted(p.name for p in logs.iterdir()) == ["web.1.log", "web.1.log.1", "web.1.log.2"]


def test_a_socket_symlink_does_not_reach_another_roots_daemon(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    a = deployed(tmp_path / "a", tmp_path / "src")
    b = deployed(tmp_path / "b", tmp_path / "src")
    da = start(daemons, a, tmp_path / "a.out")
    sock_b = DeployRoot(b).control_socket
    sock_b.unlink(missing_ok=True)
    sock_b.symlink_to(DeployRoot(a).control_socket)
    proc = subprocess.run(
        [DAEMON, "--root", str(b), "shutdown"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and str(sock_b) in one_line(proc) and "symlink" in proc.stderr
    assert da.proc.poll() is None and da.status()["state"] == "running"
    run_dir = DeployRoot(b).run_dir
    os.rename(run_dir, tmp_path / "b-run")
    run_dir.symlink_to(DeployRoot(a).run_dir)
    proc = subprocess.run(
        [DAEMON, "--root", str(b), "shutdown"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and str(run_dir) in one_line(proc)
    assert da.proc.poll() is None and pid_alive(da.proc.pid)
    assert stat.S_ISSOCK(os.lstat(DeployRoot(a).control_socket).st_mode)


def test_a_fifo_at_the_ledger_is_refused_not_waited_on(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run_brr(root, "init")
    (root / "ledger.jsonl").unlink()
    os.mkfifo(root / "ledger.jsonl")
    src = write_app(tmp_path / "src", APP)
    proc = run_brr(root, "build", str(src), check=False, timeout=60)
    assert proc.returncode == 1 and "not a regular file" in one_line(proc)


@pytest.mark.parametrize("planted", ["builds", "releases", "run"])
def test_a_symlinked_root_directory_is_refused_by_every_command(
    tmp_path: Path, planted: str
) -> None:
    root = deployed(tmp_path / "root", tmp_path / "src")
    elsewhere = tmp_path / "elsewhere"
    os.rename(root / planted, elsewhere)
    (root / planted).symlink_to(elsewhere)
    before = sorted(p.name for p in elsewhere.iterdir())
    for args in (["config", "set", "A=1"], ["verify"], ["rollback"]):
        proc = run_brr(root, *args, check=False)
        assert proc.returncode == 1 and str(root / planted) in one_line(proc), args
    assert sorted(p.name for p in elsewhere.iterdir()) == before


def test_the_daemon_creates_nothing_through_a_daemon_lock_symlink(tmp_path: Path) -> None:
    root = deployed(tmp_path / "root", tmp_path / "src")
    nologin = tmp_path / "etc-nologin"
    (root / "run" / "daemon.lock").unlink(missing_ok=True)
    (root / "run" / "daemon.lock").symlink_to(nologin)
    proc = subprocess.run(
        [DAEMON, "run", "--root", str(root)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1 and "daemon.lock" in one_line(proc) and "symlink" in proc.stderr
    assert not os.path.lexists(nologin)


def test_logs_without_a_daemon_does_not_read_through_a_symlink(tmp_path: Path) -> None:
    root = deployed(tmp_path / "root", tmp_path / "src")
    victim(tmp_path / "shadow")
    (root / "logs" / "web.1.log").symlink_to(tmp_path / "shadow")
    proc = subprocess.run(
        [DAEMON, "--root", str(root), "logs", "web.1"], capture_output=True, text=True, timeout=60
    )
    error = proc.stderr.strip().splitlines()[-1]  # after the "daemon not running" notice
    assert proc.returncode == 1 and "symlink" in error and "Traceback" not in proc.stderr
    assert "secret" not in proc.stdout

"""Security properties, each against the real CLIs and a real daemon.

- The control socket, the pidfile and the daemon's signals are not usable by another user.
- The daemon does not follow a symlink it finds at its socket or pidfile path.
- No ID or process name from a manifest or the command line reaches outside the root.
- A build refuses symlinks out of the tree; `verify` catches a change made after the fact.
- Config values never show in the daemon's output, `releases`, `diff`, `show` or `status`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisord_lite.brr.cli import main as brr_main
from supervisord_lite.daemon.reaper import kill_previous
from supervisord_lite.daemon_client import request
from supervisord_lite.errors import ValidationError
from supervisord_lite.fsatomic import replace_symlink
from supervisord_lite.layout import DeployRoot
from supervisord_lite.manifest import compute_digest, load_release
from tests.helpers import BRR, DAEMON, PY, pid_alive, run_brr, wait_until, write_app

NOBODY = 65534
SECRET = "very-secret-value-123"
OTHER_SECRET = "other-secret-value-456"
THIRD_SECRET = "third-secret-value-789"

APP = f"""\
processes:
  web:
    cmd: "sleep 1000"
    ready: {{after: 0.1}}
    stop_timeout: 2
  worker:
    cmd: "{PY} worker.py"
    ready: {{after: 0.1}}
    stop_timeout: 2
"""
WORKER = "import time\nprint('worker starting', flush=True)\ntime.sleep(1000)\n"


class Daemon:
    def __init__(self, root: Path, out: Path, extra: Sequence[str] = ()) -> None:
        self.root = root
        self.out = out
        with out.open("ab") as f:
            self.proc = subprocess.Popen(
                [DAEMON, "run", "--root", str(root), *extra],
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def sock(self) -> Path:
        return DeployRoot(self.root).control_socket

    def status(self) -> dict[str, Any]:
        reply = request(self.sock, {"cmd": "status"}, timeout=5)
        return dict(reply["status"])

    def wait_running(self) -> None:
        wait_until(
            lambda: self.proc.poll() is not None or self.status()["state"] == "running",
            timeout=30,
            what="daemon running",
        )
        assert self.proc.poll() is None, self.output()

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        layout = DeployRoot(self.root)
        kill_previous(layout.run_dir / "children.json", layout.builds)


def start(
    daemons: list[Daemon], root: Path, out: Path, *, wait: bool = True, extra: Sequence[str] = ()
) -> Daemon:
    d = Daemon(root, out, extra)
    daemons.append(d)
    if wait:
        d.wait_running()
    return d


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A deploy root another user can walk to (pytest's own temp dirs are 0700 to others),
    so that a refused connect proves the socket's own mode, not a directory's."""
    base = Path(tempfile.mkdtemp(prefix="brr-security-"))
    base.chmod(0o755)
    try:
        yield base / "root"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def deployed(root: Path, src: Path, *sets: str) -> Path:
    run_brr(root, "init")
    write_app(src, APP, {"worker.py": WORKER, "main.py": "print('hi')\n"})
    if not (src / "link.py").is_symlink():
        os.symlink("main.py", src / "link.py")
    args = [a for s in sets for a in ("--set", s)]
    run_brr(root, "deploy", str(src), *args)
    return root


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One deployed root (v1, with a secret) that tests copy instead of deploying again."""
    base = tmp_path_factory.mktemp("pristine")
    return deployed(base / "root", base / "src", f"SECRET={SECRET}")


def copy_root(pristine: Path, dest: Path) -> Path:
    shutil.copytree(pristine, dest, symlinks=True)
    return dest


def as_nobody(sock: Path, pidfile: Path, daemon_pid: int) -> list[str]:
    """In a forked child that drops to uid/gid 65534 (nobody): connect to the socket,
    open the pidfile for writing, signal the daemon; one line per attempt."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: plain syscalls only, then _exit
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            lines = [f"uid {os.getuid()} {os.getgid()}"]
            os.stat(sock)  # the way there is open: what refuses us is the socket's own mode
            lines.append("connect " + attempt(lambda: connect_unix(sock)))
            lines.append("pidfile " + attempt(lambda: os.close(os.open(pidfile, os.O_WRONLY))))
            lines.append("kill " + attempt(lambda: os.kill(daemon_pid, signal.SIGHUP)))
            os.write(write_end, "\n".join(lines).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        out = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    return out.splitlines()


def connect_unix(path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))


def attempt(action: Any) -> str:
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return "ok"


# --- another user ------------------------------------------------------------------------


def test_socket_is_0600_and_pidfile_and_run_dir_not_world_writable(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    root = deployed(tmp_path / "root", tmp_path / "src")
    d = start(daemons, root, tmp_path / "d.out")
    layout = DeployRoot(root)
    st = os.lstat(layout.control_socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    pst = os.lstat(layout.pidfile)
    assert stat.S_ISREG(pst.st_mode)
    assert not stat.S_IMODE(pst.st_mode) & 0o022, oct(pst.st_mode)
    assert int(layout.pidfile.read_text()) == d.proc.pid
    assert not stat.S_IMODE(os.stat(layout.run_dir).st_mode) & 0o002


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another uid needs root")
def test_another_user_cannot_connect_signal_or_rewrite_the_pidfile(
    daemons: list[Daemon], open_root: Path, tmp_path: Path
) -> None:
    root = deployed(open_root, tmp_path / "src")
    d = start(daemons, root, tmp_path / "d.out")
    layout = DeployRoot(root)
    lines = as_nobody(layout.control_socket, layout.pidfile, d.proc.pid)
    assert f"uid {NOBODY} {NOBODY}" in lines
    assert "connect EACCES" in lines, lines
    assert "pidfile EACCES" in lines, lines
    assert "kill EPERM" in lines, lines
    assert d.proc.poll() is None
    assert d.status()["state"] == "running"


# --- paths the daemon did not create -------------------------------------------------------


def test_a_symlink_at_the_socket_path_is_not_followed(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    root = deployed(tmp_path / "root", tmp_path / "src")
    layout = DeployRoot(root)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    layout.control_socket.symlink_to(victim)
    d = start(daemons, root, tmp_path / "d.out", wait=False)
    wait_until(
        lambda: d.proc.poll() is not None or stat.S_ISSOCK(os.lstat(layout.control_socket).st_mode),
        timeout=30,
        what="the daemon replaces the link or refuses it",
    )
    assert victim.read_text() == "precious\n" and not victim.is_symlink()
    if d.proc.poll() is None:  # replaced the link itself, by rename: fine
        st = os.lstat(layout.control_socket)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        d.wait_running()
    d.stop()
    assert victim.read_text() == "precious\n"


def test_a_regular_file_at_the_socket_path_is_replaced_not_written(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    root = deployed(tmp_path / "root", tmp_path / "src")
    layout = DeployRoot(root)
    layout.control_socket.write_text("not a socket\n")
    d = start(daemons, root, tmp_path / "d.out", wait=False)
    wait_until(
        lambda: d.proc.poll() is not None or stat.S_ISSOCK(os.lstat(layout.control_socket).st_mode),
        timeout=30,
        what="the daemon replaces the file or refuses it",
    )
    if d.proc.poll() is not None:
        assert d.proc.returncode in (1, 2), d.output()
        assert "supervisord-lite: error:" in d.output()
    else:
        assert stat.S_IMODE(os.lstat(layout.control_socket).st_mode) == 0o600
        d.wait_running()


def test_a_symlink_at_the_pidfile_path_is_not_written_through(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    root = deployed(tmp_path / "root", tmp_path / "src")
    layout = DeployRoot(root)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    layout.pidfile.symlink_to(victim)
    d = start(daemons, root, tmp_path / "d.out")
    assert victim.read_text() == "precious\n"
    assert not layout.pidfile.is_symlink()
    assert layout.pidfile.read_text().strip() == str(d.proc.pid)
    d.stop()
    assert victim.read_text() == "precious\n"


# --- IDs and names that try to leave the root ----------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("build", "../../etc"),
        ("build", "b-../../../x"),
        ("id", "../x"),
        ("id", "v1/../../x"),
        ("processes", "../x"),
        ("processes", "web/../../x"),
    ],
)
def test_a_manifest_with_a_path_for_an_id_or_name_is_rejected(
    pristine: Path, tmp_path: Path, field: str, value: str
) -> None:
    root = pristine
    layout = DeployRoot(root)
    data = yaml.safe_load(layout.release_manifest("v1").read_bytes())
    if field == "processes":
        data["processes"] = {value: data["processes"]["web"]}
    else:
        data[field] = value
    data.pop("digest")
    data["digest"] = compute_digest(data)  # sealed: only the field itself is wrong
    forged = tmp_path / "forged" / "release.yaml"
    forged.parent.mkdir()
    forged.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ValidationError) as info:
        load_release(forged, builds_dir=layout.builds)
    message = info.value.message
    assert "\n" not in message
    assert str(forged) in message and field in message, message


BAD_IDS = ["../x", "../../etc", "v1/../v1", "/etc/passwd", "v1\n", "b-../../x"]


def test_brr_release_commands_refuse_a_path_as_an_id(
    pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = copy_root(pristine, tmp_path / "root")
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    commands = (
        ["show", "BAD"],
        ["activate", "BAD", "--no-signal"],
        ["rollback", "BAD"],
        ["diff", "v1", "BAD"],
        ["release", "--build", "BAD"],
    )
    for bad in BAD_IDS:
        for command in commands:
            # the CLI's own main() in-process: the same code, a hundred times faster
            args = ["--root", str(root), *[bad if a == "BAD" else a for a in command]]
            code = brr_main(args)
            lines = capsys.readouterr().err.strip().splitlines()
            assert code == 2, (args, lines)
            assert len(lines) == 1 and lines[0].startswith("brr-release: error:"), (args, lines)
    for command in commands:  # and the real command line once each
        proc = run_brr(root, *[BAD_IDS[0] if a == "BAD" else a for a in command], check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, (command, proc.stderr)
    assert os.readlink(root / "current") == "releases/v1"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before


@pytest.fixture(scope="module")
def empty_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialized root that only refused builds touch: they leave nothing."""
    root = tmp_path_factory.mktemp("empty") / "root"
    run_brr(root, "init")
    return root


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "x" * 100])
def test_a_declaration_with_a_path_for_a_process_name_is_refused(
    empty_root: Path, tmp_path: Path, name: str
) -> None:
    root = empty_root
    src = write_app(tmp_path / "src", f'processes:\n  "{name}": "sleep 1"\n')
    proc = run_brr(root, "build", str(src), check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "brr-release: error:" in proc.stderr
    assert [p.name for p in (root / "builds").iterdir()] == []


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda src: os.symlink("/etc/passwd", src / "abs"), id="absolute"),
        pytest.param(lambda src: os.symlink("../outside", src / "up"), id="relative-up"),
        pytest.param(lambda src: os.symlink("sub/../../outside", src / "sneaky"), id="via-sub"),
        pytest.param(lambda src: os.symlink("/tmp", src / "dir"), id="directory"),
        pytest.param(lambda src: os.symlink("../..", src / "sub" / "parent"), id="nested-parent"),
    ],
)
def test_a_build_refuses_a_symlink_out_of_the_tree(
    empty_root: Path, tmp_path: Path, make: Any
) -> None:
    root = empty_root
    src = write_app(tmp_path / "src", APP, {"sub/keep.txt": "x\n"})
    (tmp_path / "outside").write_text("outside\n")
    make(src)
    proc = run_brr(root, "build", str(src), check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("brr-release: error:") and "symlink" in lines[-1], lines
    assert [p.name for p in (root / "builds").iterdir()] == []


# --- verify ------------------------------------------------------------------------------


def tamper(path: Path, change: Any) -> None:
    mode = path.parent.stat().st_mode
    path.parent.chmod(mode | 0o200)
    if path.exists() and not path.is_symlink():
        path.chmod(path.stat().st_mode | 0o200)
    change(path)
    path.parent.chmod(mode)


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("app/main.py", lambda p: p.write_text("print('evil')\n")),
        ("app/main.py", lambda p: p.chmod(0o755)),
        ("app/new.py", lambda p: p.write_text("x = 1\n")),
        ("app/main.py", lambda p: p.unlink()),
        ("app/link.py", lambda p: (p.unlink(), os.symlink("brr.yaml", p))),
        ("release", lambda p: p.write_text(p.read_text().replace(SECRET, "changed"))),
    ],
    ids=["content", "mode", "added", "removed", "symlink-target", "release-manifest"],
)
def test_verify_names_what_changed_after_the_fact(
    pristine: Path, tmp_path: Path, where: str, change: Any
) -> None:
    root = copy_root(pristine, tmp_path / "root")
    layout = DeployRoot(root)
    bid = layout.build_ids()[0]
    target = layout.release_manifest("v1") if where == "release" else layout.build_dir(bid) / where
    tamper(target, change)
    proc = run_brr(root, "verify", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    named = "release v1" if where == "release" else f"build {bid}"
    assert named in proc.stdout + proc.stderr


# --- config values stay secret ---------------------------------------------------------------


def test_config_values_never_show_in_output_listings_or_status(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    root = deployed(tmp_path / "root", tmp_path / "src", f"SECRET={SECRET}")
    d = start(daemons, root, tmp_path / "d.out")
    # a switch to a release with another value
    run_brr(root, "config", "set", f"SECRET={OTHER_SECRET}", "--activate", "--wait")
    outputs = {}
    for args in (
        ["releases"],
        ["--json", "releases"],
        ["diff", "v1", "v2"],
        ["--json", "diff", "v1", "v2"],
        ["show", "v1"],
        ["--json", "show", "v1"],
    ):
        outputs[" ".join(args)] = subprocess.run(
            [BRR, "--root", str(root), *args], capture_output=True, text=True
        )
    # then a reload that finds current forged: its rejection is logged and in status
    run_brr(root, "config", "set", f"SECRET={THIRD_SECRET}")
    layout = DeployRoot(root)
    tamper(
        layout.release_manifest("v3"),
        lambda p: p.write_text(p.read_text().replace(THIRD_SECRET, THIRD_SECRET + "x")),
    )
    replace_symlink(layout.current, "releases/v3")
    os.kill(d.proc.pid, signal.SIGHUP)
    wait_until(lambda: d.status()["rejected"], timeout=30, what="the forged release rejected")
    for args in (["status", "--json"], ["status"], ["logs", "-n", "1000"]):
        outputs[" ".join(args)] = subprocess.run(
            [DAEMON, args[0], "--root", str(root), *args[1:]], capture_output=True, text=True
        )
    secrets = (SECRET, OTHER_SECRET, THIRD_SECRET)
    for name, proc in outputs.items():
        assert proc.returncode == 0, (name, proc.stderr)
        text = proc.stdout + proc.stderr
        assert not any(v in text for v in secrets), f"{name} shows a value:\n{text}"
    status = json.loads(outputs["status --json"].stdout)
    assert status["release"] == "v2" and status["rejected"]["id"] == "v3"
    assert "SECRET" in outputs["releases"].stdout  # the keys do show, the values do not
    assert "worker starting" in d.output()
    d.stop()
    daemon_out = d.output()
    assert "v3" in daemon_out  # the rejection was logged...
    assert not any(v in daemon_out for v in secrets), daemon_out  # ...without a value
    assert not pid_alive(d.proc.pid)

"""ctl.py: the client subcommands against the real control server and a fake daemon.

The server runs in an event loop on a thread of its own (a blocking portal), so the
blocking client can run in-process (through cli.main) or as the real command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from anyio.streams.memory import MemoryObjectSendStream

from supervisord_lite.client.ctl import reload_outcome
from supervisord_lite.client.status_view import format_status, format_uptime
from supervisord_lite.daemon.cli import main
from supervisord_lite.daemon.control import serve_control
from supervisord_lite.layout import DeployRoot
from tests.helpers import DAEMON, wait_until


def proc_entry(name: str, **extra: Any) -> dict[str, Any]:
    entry = {
        "name": name,
        "type": name.split(".")[0],
        "release": "v1",
        "pid": 4242,
        "state": "RUNNING",
        "restarts": 0,
        "uptime": 12.5,
        "exit_code": None,
    }
    entry.update(extra)
    return entry


def base_status() -> dict[str, Any]:
    return {
        "release": "v1",
        "build": "b-0123456789ab",
        "state": "running",
        "processes": [
            proc_entry("web.1"),
            proc_entry("web.2", pid=4243, restarts=3, uptime=3725.0),
            proc_entry("worker.1", pid=None, state="BACKOFF", uptime=None, exit_code=1),
        ],
        "last_switch": None,
        "rejected": None,
    }


class FakeDaemon:
    """A ControlTarget whose status the test sets, and whose reload runs a test hook."""

    def __init__(self) -> None:
        self.state = base_status()
        self.calls: list[tuple[str, str | None]] = []
        self.on_reload: Callable[[FakeDaemon], None] = lambda d: None
        self.lines = [f"web.1 | hello {i}" for i in range(5)] + ["worker.1 | tick"]
        self.subscribers: list[MemoryObjectSendStream[str]] = []
        self.status_calls = 0

    def status(self) -> dict[str, Any]:
        self.status_calls += 1
        return self.state

    def request_reload(self) -> None:
        self.calls.append(("reload", None))
        self.on_reload(self)

    async def act(self, verb: str, target: str | None) -> list[str]:
        names = [p["name"] for p in self.state["processes"]]
        chosen = [n for n in names if target in (None, n, n.split(".")[0])]
        if not chosen:
            raise LookupError(f"no process or type named {target!r}")
        self.calls.append((verb, target))
        return chosen

    async def restart(self, target: str | None) -> list[str]:
        return await self.act("restart", target)

    async def stop(self, target: str | None) -> list[str]:
        return await self.act("stop", target)

    async def start(self, target: str | None) -> list[str]:
        return await self.act("start", target)

    def log_tail(self, name: str | None, n: int) -> list[str]:
        mine = [x for x in self.lines if name is None or x.startswith(name + " | ")]
        return mine[-n:] if n else []

    def subscribe_logs(self, name: str | None) -> anyio.abc.ObjectReceiveStream[str]:
        send, receive = anyio.create_memory_object_stream[str](100)
        self.subscribers.append(send)
        return receive

    def publish(self, line: str) -> None:
        for sub in list(self.subscribers):
            try:
                sub.send_nowait(line)
            except (anyio.WouldBlock, anyio.BrokenResourceError):
                self.subscribers.remove(sub)
                sub.close()

    def end_streams(self) -> None:
        for sub in self.subscribers:
            sub.close()
        self.subscribers.clear()

    def request_shutdown(self) -> None:
        self.calls.append(("shutdown", None))


@dataclass
class Served:
    root: DeployRoot
    daemon: FakeDaemon
    portal: BlockingPortal
    capsys: pytest.CaptureFixture[str]

    def cli(self, *args: str) -> tuple[int, str, str]:
        """supervisord-lite in-process: (exit code, stdout, stderr)."""
        self.capsys.readouterr()
        code = main([*args, "--root", str(self.root.path)])
        out, err = self.capsys.readouterr()
        return code, out, err

    def real(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The real command, as a separate process."""
        return subprocess.run(
            [DAEMON, *args, "--root", str(self.root.path)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def set_current(self, release_id: str | None) -> None:
        if self.root.current.is_symlink():
            self.root.current.unlink()
        if release_id is not None:
            self.root.release_dir(release_id).mkdir(parents=True, exist_ok=True)
            self.root.current.symlink_to(f"releases/{release_id}")


@pytest.fixture
def served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Served]:
    root = DeployRoot(tmp_path / "root")
    root.run_dir.mkdir(parents=True)
    daemon = FakeDaemon()
    with start_blocking_portal() as portal:
        future, _ = portal.start_task(serve_control, root.control_socket, daemon)
        try:
            yield Served(root, daemon, portal, capsys)
        finally:
            future.cancel()
            portal.call(daemon.end_streams)


def test_status_table_and_json(served: Served) -> None:
    code, out, err = served.cli("status")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "PID", "RESTARTS", "UPTIME", "RELEASE"]
    assert lines[1].split() == ["web.1", "RUNNING", "4242", "0", "12s", "v1"]
    assert lines[2].split() == ["web.2", "RUNNING", "4243", "3", "1h02m", "v1"]
    assert lines[3].split() == ["worker.1", "BACKOFF", "-", "0", "-", "v1"]
    assert "release: v1 (build b-0123456789ab)" in lines
    assert "state: running" in lines
    assert "last switch: none" in lines
    code, out, _ = served.cli("status", "--json")
    assert code == 0
    assert json.loads(out) == served.daemon.state


def test_the_real_command_end_to_end(served: Served) -> None:
    proc = served.real("status", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == served.daemon.state
    proc = served.real("restart", "nope")
    assert proc.returncode == 1
    assert proc.stderr == "supervisord-lite: error: no process or type named 'nope'\n"


def test_daemon_not_running(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    for args in (["status"], ["reload", "--wait"], ["logs", "-f"], ["stop", "web"]):
        proc = subprocess.run(
            [DAEMON, *args, "--root", str(tmp_path)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 1, args
        assert proc.stderr.startswith("supervisord-lite: error: daemon not running"), proc.stderr
        assert proc.stderr.count("\n") == 1


def test_bad_usage_exits_2(served: Served) -> None:
    for args in (["logs", "-n", "ten"], ["logs", "-n", "-1"], ["reload", "--timeout", "0"]):
        proc = served.real(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "error:" in proc.stderr
    proc = subprocess.run(
        [DAEMON, "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "BRR_ROOT"},
    )
    assert proc.returncode == 2
    assert (
        proc.stderr == "supervisord-lite: error: no deploy root: pass --root DIR or set BRR_ROOT\n"
    )


def test_restart_stop_start(served: Served) -> None:
    assert served.cli("restart") == (0, "restarted: web.1, web.2, worker.1\n", "")
    assert served.cli("stop", "web") == (0, "stopped: web.1, web.2\n", "")
    assert served.cli("start", "worker.1") == (0, "started: worker.1\n", "")
    code, out, err = served.cli("stop", "nope")
    assert (code, out) == (1, "")
    assert err == "supervisord-lite: error: no process or type named 'nope'\n"
    assert served.daemon.calls == [("restart", None), ("stop", "web"), ("start", "worker.1")]


def test_logs_tail(served: Served) -> None:
    assert served.cli("logs", "-n", "2", "web.1") == (
        0,
        "web.1 | hello 3\nweb.1 | hello 4\n",
        "",
    )
    code, out, _ = served.cli("logs")
    assert code == 0
    assert out.splitlines() == served.daemon.lines


def test_logs_follow_with_the_real_command(served: Served) -> None:
    with subprocess.Popen(
        [DAEMON, "logs", "-f", "-n", "1", "--root", str(served.root.path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        follow_logs(served, proc)


def follow_logs(served: Served, proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "worker.1 | tick\n"
        wait_until(lambda: served.daemon.subscribers, what="the follower to subscribe")
        served.portal.call(served.daemon.publish, "web.1 | live 1")
        served.portal.call(served.daemon.publish, "web.2 | live 2")
        assert proc.stdout.readline() == "web.1 | live 1\n"
        assert proc.stdout.readline() == "web.2 | live 2\n"
        served.portal.call(served.daemon.end_streams)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_reload_without_wait(served: Served) -> None:
    assert served.cli("reload") == (0, "reload requested\n", "")
    assert served.daemon.calls == [("reload", None)]


def switch_to(release_id: str, *, ok: bool = True, error: str | None = None) -> Callable[..., None]:
    def hook(d: FakeDaemon) -> None:
        d.state = {
            **d.state,
            "release": release_id if ok else d.state["release"],
            "last_switch": {
                "from": d.state["release"],
                "to": release_id,
                "ok": ok,
                "error": error,
                "seconds": 0.4,
                "finished_at": time.time(),
            },
        }

    return hook


def test_reload_wait_succeeds_once_current_runs(served: Served) -> None:
    served.set_current("v2")
    served.daemon.on_reload = switch_to("v2")
    assert served.cli("reload", "--wait") == (0, "running v2\n", "")


def test_reload_wait_when_current_already_runs(served: Served) -> None:
    served.set_current("v1")
    assert served.cli("reload", "--wait", "--timeout", "30") == (0, "running v1\n", "")


def test_reload_wait_reports_a_failed_switch(served: Served) -> None:
    served.set_current("v2")
    served.daemon.on_reload = switch_to("v2", ok=False, error="web.1 not ready within 5 s")
    code, out, err = served.cli("reload", "--wait")
    assert (code, out) == (1, "")
    assert err == (
        "supervisord-lite: error: the switch to v2 failed: web.1 not ready within 5 s; "
        "still running v1\n"
    )


def test_reload_wait_reports_a_rejected_release(served: Served) -> None:
    served.set_current("v2")

    def reject(d: FakeDaemon) -> None:
        d.state = {**d.state, "rejected": {"at": time.time(), "id": "v2", "error": "bad digest"}}

    served.daemon.on_reload = reject
    code, _, err = served.cli("reload", "--wait")
    assert code == 1
    assert err == (
        "supervisord-lite: error: the daemon rejected v2: bad digest; still running v1\n"
    )


def test_reload_wait_follows_a_switch_in_progress(served: Served) -> None:
    served.set_current("v2")
    old = served.daemon.state
    # an earlier, failed switch must not count: it finished before this reload
    old["last_switch"] = {**switch_to_data("v2", ok=False), "finished_at": time.time() - 60}
    served.daemon.on_reload = lambda d: d.state.update(state="switching")
    with subprocess.Popen(
        [DAEMON, "reload", "--wait", "--root", str(served.root.path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        settle_later(served, proc)


def settle_later(served: Served, proc: subprocess.Popen[str]) -> None:
    try:
        wait_until(lambda: served.daemon.calls, what="the reload request")
        seen = served.daemon.status_calls
        wait_until(lambda: served.daemon.status_calls >= seen + 3, what="polls while switching")
        assert proc.poll() is None
        served.portal.call(switch_to("v2"), served.daemon)
        served.daemon.state["state"] = "running"
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out, err) == (0, "running v2\n", "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def switch_to_data(release_id: str, *, ok: bool) -> dict[str, Any]:
    return {"from": "v1", "to": release_id, "ok": ok, "error": "old failure", "seconds": 1.0}


def test_reload_wait_times_out(served: Served) -> None:
    served.set_current("v2")
    served.daemon.on_reload = lambda d: d.state.update(state="switching")
    start = time.monotonic()
    code, _, err = served.cli("reload", "--wait", "--timeout", "0.5")
    assert code == 1
    assert time.monotonic() - start < 20
    assert err == (
        "supervisord-lite: error: reload did not settle within 0.5 s "
        "(state switching, running v1)\n"
    )


def test_shutdown(served: Served) -> None:
    assert served.cli("shutdown") == (0, "the daemon is shutting down\n", "")
    assert served.daemon.calls == [("shutdown", None)]


# --- formatting and the settle rule, without a socket ------------------------------------


def test_format_uptime() -> None:
    assert [format_uptime(v) for v in (None, -1, True, 0, 59.9, 61, 3600, 90000)] == [
        "-",
        "-",
        "-",
        "0s",
        "59s",
        "1m01s",
        "1h00m",
        "1d01h",
    ]


def test_format_status_without_processes_and_with_a_rejection() -> None:
    status = {
        **base_status(),
        "processes": [],
        "last_switch": {
            "from": "v1",
            "to": "v2",
            "ok": False,
            "error": "boom",
            "seconds": 1.5,
            "finished_at": 0,
        },
        "rejected": {"at": 0, "id": "v3", "error": "bad digest"},
    }
    text = format_status(status)
    assert "(no processes)" in text
    assert "last switch: v1 -> v2 FAILED: boom in 1.5 s at 1970-01-01T00:00:00Z" in text
    assert "rejected: v3 at 1970-01-01T00:00:00Z: bad digest" in text


def test_reload_outcome_rule() -> None:
    running = base_status()
    assert reload_outcome(running, "v1", since=100.0) == ""
    assert reload_outcome(running, "v2", since=100.0) is None
    assert reload_outcome({**running, "state": "switching"}, "v1", since=100.0) is None
    old_reject = {**running, "rejected": {"at": 50.0, "id": "v2", "error": "x"}}
    assert reload_outcome(old_reject, "v2", since=100.0) is None
    new_reject = {**running, "rejected": {"at": 150.0, "id": "v2", "error": "x"}}
    assert reload_outcome(new_reject, "v2", since=100.0) == "the daemon rejected v2: x"
    # current vanished: the daemon rejects it, and that is the answer
    assert reload_outcome(new_reject, None, since=100.0) == "the daemon rejected v2: x"


def test_logs_follow_into_a_closed_pipe_ends_quietly(served: Served) -> None:
    # `supervisord-lite logs -f | head -1`: the reader leaves, the follower must too
    with subprocess.Popen(
        [DAEMON, "logs", "-f", "-n", "1", "--root", str(served.root.path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"worker.1 | tick\n"
            proc.stdout.close()
            wait_until(lambda: served.daemon.subscribers, what="the follower to subscribe")
            for i in range(3):
                served.portal.call(served.daemon.publish, f"web.1 | into the void {i}")
            assert proc.wait(timeout=30) == 0
            assert proc.stderr is not None
            assert proc.stderr.read() == b""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_root_before_or_after_the_command_or_from_the_environment(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = str(served.root.path)
    for argv in (
        ["--root", root, "status", "--json"],
        ["status", "--json", "--root", root],
        ["--json", "--root", root, "status"],  # as brr-release takes it
    ):
        served.capsys.readouterr()
        assert main(argv) == 0, argv
        assert json.loads(served.capsys.readouterr().out) == served.daemon.state
    served.capsys.readouterr()
    assert main(["--json", "--root", root, "reload"]) == 2
    assert served.capsys.readouterr().err == (
        "supervisord-lite: error: --json: only status prints JSON\n"
    )
    # after the command wins, as the nearer one
    served.capsys.readouterr()
    assert main(["--root", "/nonexistent", "status", "--root", root]) == 0
    monkeypatch.setenv("BRR_ROOT", root)
    served.capsys.readouterr()
    assert main(["status", "--json"]) == 0
    assert json.loads(served.capsys.readouterr().out) == served.daemon.state
    proc = subprocess.run(
        [DAEMON, "--root", root, "stop", "web"], capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "stopped: web.1, web.2\n", "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["bogus"], "argument COMMAND: invalid choice: 'bogus'"),
        (["logs", "-n", "ten"], "logs: argument -n/--lines: not a number: 'ten'"),
        (["status", "--jsn"], "status: unrecognized arguments: --jsn"),
        (["reload", "--timeout", "0"], "reload: argument --timeout: must be more than 0"),
        (["--root"], "argument --root: expected one argument"),
        (["run", "--log-max-bytes", "1X"], "run: argument --log-max-bytes: not a size: '1X'"),
        (["run", "--log-keep", "-1"], "run: argument --log-keep: must be 0 or more"),
    ],
)
def test_usage_errors_are_one_line_naming_the_command(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"supervisord-lite: error: {message}"), err
    assert err.count("\n") == 1, err


def test_a_usage_error_of_the_real_command_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [DAEMON, "--root", str(tmp_path), "logs", "-n", "-1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == "supervisord-lite: error: logs: argument -n/--lines: must be 0 or more\n"


# --- logs NAME from ROOT/logs when no daemon runs ----------------------------------------


def file_root(tmp_path: Path, lines: int) -> DeployRoot:
    root = DeployRoot(tmp_path / "root")
    root.run_dir.mkdir(parents=True)
    root.logs.mkdir()
    (root.logs / "web.1.log").write_bytes(b"".join(b"%d\n" % i for i in range(1, lines + 1)))
    return root


def test_logs_without_a_daemon_tails_the_log_file(tmp_path: Path) -> None:
    root = file_root(tmp_path, 5)
    proc = subprocess.run(
        [DAEMON, "logs", "-n", "3", "web.1", "--root", str(root.path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "web.1 | 3\nweb.1 | 4\nweb.1 | 5\n"
    log = root.logs / "web.1.log"
    assert proc.stderr == f"supervisord-lite: daemon not running; lines from {log}\n"
    # a stale pidfile (its daemon was killed) does not count as a daemon
    root.pidfile.write_text("999999999\n")
    proc = subprocess.run(
        [DAEMON, "logs", "web.1", "--root", str(root.path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout.count("\n")) == (0, 5)
    # another name, a type, or all: that still needs the daemon
    for args in (["web.2"], ["web"], []):
        proc = subprocess.run(
            [DAEMON, "logs", *args, "--root", str(root.path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1, args
        assert proc.stderr.startswith("supervisord-lite: error: daemon not running"), args


def test_logs_follow_without_a_daemon_follows_the_file_across_rotation(tmp_path: Path) -> None:
    root = file_root(tmp_path, 5)
    log = root.logs / "web.1.log"
    out = tmp_path / "out"

    def seen() -> list[str]:
        return out.read_text().splitlines()

    def append(path: Path, data: bytes) -> None:
        with path.open("ab") as f:
            f.write(data)

    with out.open("wb") as f:
        proc = subprocess.Popen(
            [DAEMON, "logs", "-f", "-n", "2", "web.1", "--root", str(root.path)],
            stdout=f,
            stderr=subprocess.DEVNULL,
        )
    try:
        wait_until(lambda: seen() == ["web.1 | 4", "web.1 | 5"], what="the last 2 lines")
        append(log, b"6\n7\n1")
        wait_until(lambda: seen()[2:] == ["web.1 | 6", "web.1 | 7"], what="appended lines")
        append(log, b"0\n")  # a line written in two pieces is printed once, whole
        wait_until(lambda: seen()[4:] == ["web.1 | 10"], what="a line completed")
        # rotation by rename: the writer goes on in the old file until it reopens
        log.rename(root.logs / "web.1.log.1")
        log.touch()  # as logrotate's `create` would: empty, nothing to switch to yet
        append(root.logs / "web.1.log.1", b"11\n")
        wait_until(lambda: seen()[5:] == ["web.1 | 11"], what="a line after the rename")
        append(root.logs / "web.1.log.1", b"12\n")  # the follower has seen the new name
        append(log, b"13\n")
        wait_until(
            lambda: seen()[5:] == ["web.1 | 11", "web.1 | 12", "web.1 | 13"],
            what="the lines on both sides of the rotation, in order",
        )
        assert proc.poll() is None, "-f runs until it is stopped"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

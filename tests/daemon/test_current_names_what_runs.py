"""`current` names what runs: refused releases are moved off, remembered and never rerun.

Real brr-release commands against a real daemon, as an operator would drive them: a
failed deploy with --wait, a refused SIGHUP, a boot on a refused release, a boot on a
release that never gets ready, and one-shot types in a switch.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisord_lite.daemon.reaper import kill_previous
from supervisord_lite.daemon_client import request
from tests.helpers import DAEMON, brr_json, run_brr, wait_until, write_app

# web crashes at start when CRASH is set: a config change makes a broken release
APP = """\
processes:
  web:
    cmd: "sh -c 'test -z \\"$CRASH\\" || exit 3; exec sleep 1000'"
    ready: {after: 0.3}
    ready_timeout: 20
    stop_timeout: 5
"""

# plus a one-shot that is ready at once and then exits 0 (a cache warm-up)
ONE_SHOT_APP = (
    APP
    + """\
  warmup:
    cmd: "true"
    restart: never
    ready: {after: 0}
"""
)


class Deployed:
    def __init__(self, root: Path, out: Path) -> None:
        self.root, self.out = root, out
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify: socket.socket | None = None

    def start(self, *, notify: socket.socket | None = None) -> None:
        env = dict(os.environ)
        if notify is not None:
            env["NOTIFY_SOCKET"] = notify.getsockname()
        with self.out.open("ab") as f:
            self.proc = subprocess.Popen(
                [DAEMON, "run", "--root", str(self.root)],
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        wait_until(
            lambda: (
                self.proc is not None
                and (self.proc.poll() is not None or self.status()["state"] == "running")
            ),
            timeout=60,
            what="daemon running",
        )
        assert self.proc.poll() is None, self.output()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        kill_previous(self.root / "run" / "children.json", self.root / "builds")

    def status(self) -> dict[str, Any]:
        reply = request(self.root / "run" / "supervisord-lite.sock", {"cmd": "status"})
        status = reply["status"]
        assert isinstance(status, dict)
        return status

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def current(self) -> str:
        return os.readlink(self.root / "current").rsplit("/", 1)[-1]

    def releases(self) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in brr_json(self.root, "releases")["releases"]}

    def ledger(self) -> list[dict[str, Any]]:
        lines = (self.root / "ledger.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[Deployed]:
    """v1 and v2 good (v2 current and running), v3 = v2 + CRASH=1, not activated."""
    root = tmp_path / "root"
    run_brr(root, "init")
    src = write_app(tmp_path / "src", APP)
    run_brr(root, "deploy", str(src))
    run_brr(root, "config", "set", "GREETING=hello", "--activate")
    run_brr(root, "config", "set", "CRASH=1")
    d = Deployed(root, tmp_path / "daemon.out")
    d.start()
    yield d
    d.stop()


def test_activate_wait_refused_moves_current_back_and_records_why(deployed: Deployed) -> None:
    proc = run_brr(deployed.root, "activate", "v3", "--wait", check=False)
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "daemon did not switch to v3" in err and "exited with code 3" in err
    assert "still running v2" in err and "current is v2" in err
    assert deployed.current() == "v2"
    assert deployed.status()["release"] == "v2"
    failed = [e for e in deployed.ledger() if e["event"] == "activate_failed"]
    assert len(failed) == 1, failed  # the daemon and --wait raced: recorded once
    assert failed[0]["id"] == "v3" and "exited with code 3" in failed[0]["reason"]
    assert failed[0]["current"] == "v2"
    listed = deployed.releases()
    assert "exited with code 3" in listed["v3"]["refused"]
    assert listed["v2"]["refused"] is None and listed["v2"]["current"]
    text = run_brr(deployed.root, "releases").stdout
    assert "refused: " in text.splitlines()[1] and text.splitlines()[1].split()[0] == "v3"
    shown = run_brr(deployed.root, "show", "v3").stdout
    assert "refused:" in shown


def test_a_bare_rollback_never_picks_the_refused_release(deployed: Deployed) -> None:
    run_brr(deployed.root, "activate", "v3", "--wait", check=False)
    assert deployed.current() == "v2"
    out = brr_json(deployed.root, "rollback", "--wait")
    assert out["id"] == "v1", out  # not v3, the last release activated before v2's return
    assert deployed.current() == "v1"
    wait_until(lambda: deployed.status()["release"] == "v1", what="v1 runs")


def test_config_set_activate_wait_refused_leaves_current_on_what_runs(
    deployed: Deployed,
) -> None:
    proc = run_brr(deployed.root, "config", "set", "CRASH=2", "--activate", "--wait", check=False)
    assert proc.returncode == 1, proc.stderr
    assert "daemon did not switch to v4" in proc.stderr
    assert deployed.current() == "v2"
    assert deployed.releases()["v4"]["refused"]


def test_a_refused_sighup_is_recorded_and_reload_wait_fails(
    deployed: Deployed, tmp_path: Path
) -> None:
    deployed.stop()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(60)
    deployed.start(notify=notify)
    out = run_brr(deployed.root, "activate", "v3", "--no-signal").stdout
    assert "the daemon was not signalled (--no-signal)" in out, out
    assert "no daemon running" not in out
    proc = subprocess.run(
        [DAEMON, "reload", "--wait", "--root", str(deployed.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc
    assert "v3" in proc.stderr and "still running v2" in proc.stderr
    records = json.loads((deployed.root / "run" / "refused.json").read_text())
    assert "exited with code 3" in records["v3"]["reason"]
    # the daemon put current back on what runs, and said why in the ledger
    wait_until(lambda: deployed.current() == "v2", what="current back on v2")
    assert [e["id"] for e in deployed.ledger() if e["event"] == "activate_failed"] == ["v3"]
    refused = deployed.status()["refused"]
    assert [r["id"] for r in refused] == ["v3"]
    assert "v3" in run_brr(deployed.root, "releases").stdout.splitlines()[1]
    # systemd's STATUS= names the refused release until a switch works
    with notify:
        lines = receive_until(notify, "READY=1")  # the boot's
        lines = receive_until(notify, "READY=1")  # the refused switch's
    assert any(m.startswith("STATUS=") and "refused v3" in m for m in lines), lines


def test_a_restart_after_a_refusal_nobody_could_undo_runs_last_good(
    deployed: Deployed, tmp_path: Path
) -> None:
    run_brr(deployed.root, "activate", "v3", "--no-signal")
    # an operator's long command holds the root's lock: the daemon cannot move current
    with (deployed.root / "run" / "lock").open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        deployed.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_until(
            lambda: (deployed.status().get("last_switch") or {}).get("to") == "v3",
            what="the switch to v3 over",
        )
        wait_until(lambda: deployed.status()["refused"], what="the refusal recorded")
        assert deployed.current() == "v3"  # the lock was held: nothing moved it
    deployed.stop()  # "the reboot"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(60)
    with notify:
        deployed.start(notify=notify)
        status = deployed.status()
        assert status["release"] == "v2", status
        assert status["fallback"]["current"] == "v3" and status["fallback"]["running"] == "v2"
        line = next(x for x in deployed.output().splitlines() if "FALLING BACK" in x)
        assert "v3" in line and "last-good v2" in line
        messages = receive_until(notify, "READY=1")
        status_lines = [m for m in messages if m.startswith("STATUS=")]
        assert any("FALLING BACK to last-good v2" in m and "v3" in m for m in status_lines)
    text = subprocess.run(
        [DAEMON, "status", "--root", str(deployed.root)], capture_output=True, text=True
    ).stdout
    assert "FALLING BACK to last-good v2" in text
    # with the lock free, the boot put current back on what runs
    wait_until(lambda: deployed.current() == "v2", what="current back on v2")


def test_a_boot_on_a_release_that_never_gets_ready_falls_back(deployed: Deployed) -> None:
    deployed.stop()
    run_brr(deployed.root, "activate", "v3")  # no daemon runs: nothing refuses it yet
    assert deployed.current() == "v3"
    deployed.start()
    wait_until(lambda: deployed.status()["release"] == "v2", timeout=60, what="v2 runs")
    status = deployed.status()
    assert status["fallback"]["current"] == "v3"
    assert "never got ready" in status["fallback"]["reason"]
    assert [p["release"] for p in status["processes"]] == ["v2"]
    wait_until(lambda: deployed.status()["processes"][0]["state"] == "RUNNING", what="v2 RUNNING")
    wait_until(lambda: deployed.current() == "v2", what="current back on v2")
    assert deployed.releases()["v3"]["refused"]
    # the next boot runs v2 with no fallback at all
    deployed.stop()
    deployed.start()
    assert deployed.status()["release"] == "v2" and deployed.status()["fallback"] is None


def test_reactivating_a_refused_release_tries_it_again(deployed: Deployed) -> None:
    deployed.stop()
    with deployed.root.joinpath("run", "lock").open("rb"):
        (deployed.root / "run" / "refused.json").write_text(
            json.dumps({"v2": {"at": 1.0, "reason": "an old refusal"}})
        )
    # the record is older than current: the operator activated v2 since, so v2 runs
    deployed.start()
    assert deployed.status()["release"] == "v2" and deployed.status()["fallback"] is None
    wait_until(lambda: not deployed.status()["refused"], what="a run clears the record")


def test_a_one_shot_that_exits_0_after_ready_does_not_fail_a_switch(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run_brr(root, "init")
    src = write_app(tmp_path / "src", ONE_SHOT_APP)
    run_brr(root, "deploy", str(src))
    d = Deployed(root, tmp_path / "daemon.out")
    d.start()
    try:
        wait_until(
            lambda: (
                {p["name"]: p["state"] for p in d.status()["processes"]}.get("warmup.1") == "EXITED"
            ),
            what="warmup done",
        )
        out = brr_json(root, "config", "set", "X=1", "--activate", "--wait")
        assert out["id"] == "v2"
        last = d.status()["last_switch"]
        assert last["ok"] and last["to"] == "v2", last
        assert d.current() == "v2"
    finally:
        d.stop()


def test_config_set_and_scale_start_from_current_not_the_newest(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run_brr(root, "init")
    src = write_app(tmp_path / "src", APP)
    run_brr(root, "deploy", str(src))  # v1, current
    newer = write_app(tmp_path / "src2", APP.replace("sleep 1000", "sleep 2000"))
    staged = brr_json(root, "build", str(newer))["id"]
    run_brr(root, "release", "--build", staged)  # v2, staged, never activated
    v1_build = brr_json(root, "show", "v1")["build"]
    assert brr_json(root, "config", "set", "X=1")["build"] == v1_build  # v3
    assert brr_json(root, "scale", "web=2")["build"] == v1_build  # v4, from current v1
    assert brr_json(root, "scale", "web=3", "--from", "v2")["build"] == staged
    v4 = brr_json(root, "show", "v4", "--show-values")
    assert v4["config"] == {} and v4["processes"]["web"]["scale"] == 2


def receive_until(sock: socket.socket, wanted: str) -> list[str]:
    """Every notify line up to and including the first that equals wanted."""
    lines: list[str] = []
    for _ in range(1000):
        lines += sock.recv(65536).decode().splitlines()
        if wanted in lines:
            return lines
    raise AssertionError(f"no {wanted} in {lines}")

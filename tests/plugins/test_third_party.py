"""A third-party plugin, installed as a real package, sees every event, in order."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from supervisord_lite.daemon_client import request
from tests.daemon.conftest import Root, proc, start_daemon, stop_daemon
from tests.helpers import SLEEP, wait_until

PACKAGE = Path(__file__).parent / "sample_plugin"


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """pip installs the sample package (its own pyproject, its entry point) into a dir."""
    src = tmp_path / "pkg-src"
    shutil.copytree(PACKAGE, src)
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert list(target.glob("brr_sample_plugin-1.0.0.dist-info"))
    return target


def kinds(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        e = json.loads(line)
        out.append((e["event"], e.get("name") or e.get("to_release") or e.get("release") or ""))
    return out


def root_running_v1(tmp_path: Path) -> Root:
    """A deploy root whose current is v1: one web process that sleeps."""
    path = tmp_path / "root"
    for sub in ("builds", "releases", "run", "logs"):
        (path / sub).mkdir(parents=True)
    root = Root(path)
    root.release(proc("web", SLEEP(600)))
    return root


@pytest.mark.timeout(180)
def test_installed_plugin_gets_start_crash_switch_and_stop_in_order(
    installed: Path, tmp_path: Path
) -> None:
    root = root_running_v1(tmp_path)
    events = tmp_path / "events.jsonl"
    env = {"PYTHONPATH": str(installed)}
    daemon = start_daemon(
        root,
        tmp_path / "daemon.out",
        "--plugin",
        "recorder",
        "--plugin-opt",
        f"recorder.path={events}",
        env=env,
    )
    sock = root.layout.control_socket

    def status() -> dict[str, object]:
        return dict(request(sock, {"cmd": "status"})["status"])

    try:
        wait_until(lambda: ("process_ready", "web.1") in kinds(events), what="web.1 ready")
        pid = int(status()["processes"][0]["pid"])  # type: ignore[index]
        os.kill(pid, signal.SIGKILL)  # a crash
        wait_until(lambda: kinds(events).count(("process_ready", "web.1")) == 2, what="respawn")
        root.release(proc("web", SLEEP(601)))  # v2, activated
        os.kill(daemon.pid, signal.SIGHUP)
        wait_until(lambda: ("switch_done", "v2") in kinds(events), what="switch done")
    finally:
        stop_daemon(daemon, root)
    seen = kinds(events)
    expected = [
        ("daemon_started", ""),
        ("release_loaded", "v1"),
        ("process_spawned", "web.1"),
        ("process_ready", "web.1"),
        ("process_exited", "web.1"),  # the kill -9
        ("process_spawned", "web.1"),
        ("process_ready", "web.1"),
        ("switch_started", "v2"),
        ("process_spawned", "web.1"),  # v2's
        ("process_ready", "web.1"),
        ("process_exited", "web.1"),  # v1's, stopped
        ("switch_done", "v2"),
        ("daemon_stopping", ""),
        ("process_exited", "web.1"),  # v2's, at shutdown
    ]
    it = iter(seen)
    missing = [e for e in expected if e not in it]  # a subsequence, in this order
    assert not missing, f"missing or out of order: {missing}\nseen: {seen}"
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    crash = next(e for e in lines if e["event"] == "process_exited")
    assert crash["signal"] == signal.SIGKILL
    assert crash["expected"] is False


@pytest.mark.timeout(240)
def test_a_hanging_and_a_raising_plugin_delay_nothing(installed: Path, tmp_path: Path) -> None:
    """Issue 5: a plugin that sleeps forever or raises on every event does not delay a
    switch by more than its cut-off (5 s a call), and the daemon keeps supervising."""
    root = root_running_v1(tmp_path)
    events = tmp_path / "events.jsonl"
    out = tmp_path / "daemon.out"
    daemon = start_daemon(
        root,
        out,
        *("--plugin", "hangs", "--plugin", "raises", "--plugin", "recorder"),
        *("--plugin-opt", f"recorder.path={events}"),
        env={"PYTHONPATH": str(installed)},
    )
    sock = root.layout.control_socket

    def status() -> dict[str, Any]:
        return dict(request(sock, {"cmd": "status"})["status"])

    def running(release: str) -> bool:
        s = status()
        procs = s["processes"]
        return s["release"] == release and bool(procs) and procs[0]["state"] == "RUNNING"

    try:
        wait_until(lambda: running("v1"), timeout=60, what="v1 running")
        pid = int(status()["processes"][0]["pid"])
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: running("v1") and status()["processes"][0]["pid"] != pid,
            timeout=60,
            what="web.1 restarted after kill -9",
        )
        root.release(proc("web", SLEEP(601)))
        os.kill(daemon.pid, signal.SIGHUP)
        wait_until(lambda: running("v2"), timeout=60, what="the switch to v2")
        switch = status()["last_switch"]
        assert switch["ok"] and switch["to"] == "v2", switch
        # the plugins' calls are cut off after 5 s each, and the switch does not wait for them
        assert switch["seconds"] < 5.0, switch
        wait_until(lambda: ("switch_done", "v2") in kinds(events), what="recorder: switch done")
        os.kill(daemon.pid, signal.SIGTERM)
        wait_until(lambda: daemon.poll() is not None, timeout=60, what="the daemon to exit")
    finally:
        stop_daemon(daemon, root)
    assert daemon.returncode == 0
    said = out.read_text()
    assert "plugin raises: " in said and "on purpose" in said, said
    assert "plugin raises: disabled after 3 failures in a row" in said, said
    assert "plugin hangs: " in said and "cut off" in said, said
    assert said.count("Traceback") == 1, "the raising plugin's traceback is logged once"
    assert ("daemon_stopping", "") in kinds(events), "the good plugin got the last events"

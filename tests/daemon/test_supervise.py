"""Supervision with real processes: restart, backoff, FATAL, stop escalation, leftovers."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisord_lite.daemon import reaper
from supervisord_lite.daemon.reaper import ORPHAN_GRACE, OWN_REAP_WAIT, Reaper, is_zombie
from supervisord_lite.daemon_client import request
from supervisord_lite.manifest import ReadyCheck
from tests.daemon.conftest import Root, alive, proc, read_pid, running
from tests.helpers import (
    DOUBLE_FORK,
    EXIT_0,
    EXIT_1,
    IGNORE_TERM,
    SLEEP,
    pid_alive,
    python,
    wait_until,
)


def one(d: Any, name: str) -> dict[str, Any]:
    return next(p for p in d.procs() if p["name"] == name)


def test_killed_child_is_back_within_the_backoff(droot: Root, daemon: Any) -> None:
    droot.release(proc("web", SLEEP(3600), scale=2))
    d = daemon()
    wait_until(lambda: len(running(d)) == 2, what="2 running")
    before = one(d, "web.1")
    os.kill(before["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    after = wait_until(
        lambda: (p := one(d, "web.1"))["pid"] not in (None, before["pid"]) and p,
        what="web.1 respawned",
    )
    assert time.monotonic() - killed_at < 3
    assert after["restarts"] == 1
    assert one(d, "web.2")["restarts"] == 0
    wait_until(lambda: one(d, "web.1")["state"] == "RUNNING", what="running again")


def test_crash_loop_goes_fatal_cheaply_and_is_retried(droot: Root, daemon: Any) -> None:
    droot.release(proc("web", EXIT_1, fatal_cooloff=3.0), proc("ok", SLEEP(3600)))
    d = daemon("--max-backoff", "0.4")
    web = wait_until(
        lambda: (p := one(d, "web.1"))["state"] == "FATAL" and p, timeout=60, what="FATAL"
    )
    # 10 starts in all; the daemon's own line says so (a poll on a loaded host may first
    # see FATAL after a cool-off or two, when restarts is already past 9)
    assert "web.1: FATAL after 10 failed starts in a row" in d.output()
    assert web["restarts"] >= 9
    assert web["exit_code"] == 1
    cpu = psutil.Process(d.pid).cpu_times()
    assert cpu.user + cpu.system < 3.0, cpu  # the interpreter's own start is most of it
    # idle while FATAL: no timer but the cool-off's
    idle_before = psutil.Process(d.pid).cpu_times()
    time.sleep(1.0)  # a window to measure over, not a wait for a condition
    idle_after = psutil.Process(d.pid).cpu_times()
    assert (idle_after.user + idle_after.system) - (idle_before.user + idle_before.system) < 0.05
    wait_until(lambda: one(d, "web.1")["restarts"] >= 10, timeout=30, what="retry after cool-off")
    wait_until(lambda: one(d, "web.1")["state"] == "FATAL", timeout=30, what="FATAL again")
    assert one(d, "ok.1")["state"] == "RUNNING"


def test_a_child_ignoring_sigterm_is_killed_after_stop_timeout(droot: Root, daemon: Any) -> None:
    droot.release(proc("web", IGNORE_TERM, stop_timeout=1.0))
    d = daemon()
    wait_until(lambda: "web.1 | ignoring TERM" in d.output(), what="TERM ignored")
    pid = one(d, "web.1")["pid"]
    started = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    took = time.monotonic() - started
    assert 0.9 < took < 10, took
    assert not pid_alive(pid)
    wait_until(
        lambda: "still running 1 s after SIGTERM; killing it" in d.output(),
        what="still running 1 s after SIGTERM; killing it",
    )


def test_double_fork_leaves_nothing_after_stop_switch_and_shutdown(
    droot: Root, daemon: Any, tmp_path: Path
) -> None:
    def release(tag: str) -> str:
        return droot.release(
            proc("web", DOUBLE_FORK, env={"GRANDCHILD_PIDFILE": str(tmp_path / f"{tag}.pid")})
        )

    release("v1")
    d = daemon()
    g1 = read_pid(tmp_path / "v1.pid")
    # stop over the control socket
    reply = request(droot.layout.control_socket, {"cmd": "stop", "target": "web"})
    assert reply.get("ok"), reply
    wait_until(lambda: not pid_alive(g1), what="grandchild gone after stop")
    request(droot.layout.control_socket, {"cmd": "start", "target": "web"})
    g1b = wait_until(
        lambda: (p := read_pid(tmp_path / "v1.pid")) != g1 and p, what="grandchild again"
    )
    # switch
    release("v2")
    d.signal(signal.SIGHUP)
    g2 = read_pid(tmp_path / "v2.pid")
    wait_until(lambda: not pid_alive(g1b), what="v1 grandchild gone after switch")
    wait_until(lambda: d.status()["release"] == "v2", what="v2 active")
    # shutdown
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    wait_until(lambda: not pid_alive(g2), timeout=5, what="v2 grandchild gone after shutdown")


def test_daemon_killed_then_restarted_leaves_nothing_of_the_old(
    droot: Root, daemon: Any, tmp_path: Path
) -> None:
    droot.release(
        proc("web", DOUBLE_FORK, scale=2, env={"GRANDCHILD_PIDFILE": "grandchild.pid"}),
        proc("worker", SLEEP(3600)),
    )
    d = daemon()
    wait_until(lambda: len(running(d)) == 3, what="3 running")
    old = [p["pid"] for p in d.procs()]
    old_tree = [c.pid for pid in old for c in psutil.Process(pid).children(recursive=True)]
    app = next((droot.path / "builds").iterdir()) / "app"
    wait_until(lambda: (app / "grandchild.pid").exists(), what="a grandchild")
    os.kill(d.pid, signal.SIGKILL)
    d.wait_exit()
    everything = old + old_tree + [int((app / "grandchild.pid").read_text())]
    assert alive(everything)  # they outlived the daemon, as expected
    d2 = daemon()
    wait_until(lambda: len(running(d2)) == 3, what="3 running again")
    wait_until(lambda: not alive(everything), timeout=10, what="old generation gone")
    wait_until(lambda: "previous daemon left" in d2.output(), what="previous daemon left")


def test_restart_policies(droot: Root, daemon: Any) -> None:
    droot.release(
        proc("never", EXIT_1, restart="never"),
        proc("onfail0", EXIT_0, restart="on-failure"),
        proc("onfail1", EXIT_1, restart="on-failure"),
    )
    d = daemon("--max-backoff", "0.2")
    wait_until(lambda: one(d, "never.1")["state"] == "EXITED", what="never: EXITED")
    wait_until(lambda: one(d, "onfail0.1")["state"] == "EXITED", what="on-failure 0: EXITED")
    wait_until(lambda: one(d, "onfail1.1")["restarts"] >= 2, what="on-failure 1: restarted")
    assert one(d, "never.1")["restarts"] == 0 and one(d, "never.1")["exit_code"] == 1
    assert one(d, "onfail0.1")["restarts"] == 0 and one(d, "onfail0.1")["exit_code"] == 0


def test_not_ready_in_time_is_stopped_and_retried(droot: Root, daemon: Any) -> None:
    never = ReadyCheck("tcp", target="127.0.0.1:9")
    droot.release(proc("web", SLEEP(3600), ready=never, ready_timeout=0.5))
    d = daemon("--max-backoff", "0.2")
    wait_until(lambda: one(d, "web.1")["restarts"] >= 2, what="retried")
    wait_until(
        lambda: "web.1: not ready within 0.5 s; stopping it" in d.output(),
        what="web.1: not ready within 0.5 s; stopping it",
    )
    assert one(d, "web.1")["state"] in ("STARTING", "STOPPING", "BACKOFF")


def test_restart_revives_a_fatal_process_at_once(droot: Root, daemon: Any) -> None:
    droot.release(proc("web", EXIT_1, fatal_cooloff=3600.0))
    d = daemon("--max-backoff", "0.2")
    wait_until(lambda: one(d, "web.1")["state"] == "FATAL", timeout=60, what="FATAL")
    reply = request(droot.layout.control_socket, {"cmd": "restart", "target": "web.1"})
    assert reply["ok"] and reply["affected"] == ["web.1"], reply
    wait_until(lambda: one(d, "web.1")["restarts"] >= 10, timeout=5, what="restarted at once")
    bad = request(droot.layout.control_socket, {"cmd": "restart", "target": "nope"})
    assert not bad["ok"] and "no process or type named nope" in bad["error"]


def test_logs_tail_over_the_control_socket(droot: Root, daemon: Any) -> None:
    code = "import time\nfor i in range(5): print('line', i, flush=True)\ntime.sleep(3600)"
    droot.release(proc("web", python(code), scale=2))
    d = daemon()
    wait_until(lambda: "web.2 | line 4" in d.output(), what="output")
    reply = request(droot.layout.control_socket, {"cmd": "logs", "name": "web.2", "n": 3})
    assert reply["ok"], reply
    assert reply["lines"] == ["web.2 | line 2", "web.2 | line 3", "web.2 | line 4"]


# Each instance leaves a grandchild in a session of its own, named after the instance.
GRANDCHILD_PER_INSTANCE = python(
    "import os, time\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        name = os.environ['BRR_PROCESS']\n"
    "        path = os.path.join(os.environ['GRANDCHILD_DIR'], name + '.pid')\n"
    "        open(path + '.tmp', 'w').write(str(os.getpid()))\n"
    "        os.rename(path + '.tmp', path)\n"
    "        time.sleep(3600)\n"
    "    os._exit(0)\n"
    "time.sleep(3600)"
)


def test_processes_stopped_together_each_lose_their_leftovers_and_only_theirs(
    droot: Root, daemon: Any, tmp_path: Path
) -> None:
    """The orphans of processes that end together are looked for in one pass: each
    one's grandchild dies with it, and another type's grandchild is left running."""
    env = {"GRANDCHILD_DIR": str(tmp_path)}
    droot.release(
        proc("web", GRANDCHILD_PER_INSTANCE, scale=4, env=env),
        proc("worker", GRANDCHILD_PER_INSTANCE, env=env),
    )
    d = daemon()
    web = [read_pid(tmp_path / f"web.{i}.pid") for i in range(1, 5)]
    worker = read_pid(tmp_path / "worker.1.pid")
    reply = request(droot.layout.control_socket, {"cmd": "stop", "target": "web"})
    assert reply.get("ok"), reply
    wait_until(
        lambda: not [p for p in web if pid_alive(p)],
        what=f"every web grandchild killed by the stop (alive: {[p for p in web if pid_alive(p)]})",
    )
    assert pid_alive(worker), "worker's grandchild was killed by web's stop"
    assert one(d, "worker.1")["state"] == "RUNNING"
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    wait_until(lambda: not pid_alive(worker), what="worker's grandchild killed at shutdown")


@pytest.mark.parametrize("children_file", [True, False], ids=["listed", "no-children-file"])
def test_orphan_zombies_are_reaped_after_the_grace_and_ours_never(
    children_file: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not children_file:  # a kernel without /proc/<pid>/task/<tid>/children
        monkeypatch.setattr(reaper, "listed_children", lambda: None)
    r = Reaper(tmp_path / "children.json")
    ours = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 0"], {})
    r.add(ours, "web.1")
    try:
        wait_until(lambda: is_zombie(ours), what="our child exited")
        seen: dict[int, float] = {}
        now = time.monotonic()
        if not children_file:  # ours hides what is behind it: look again soon
            assert r.reap_orphans(seen, now) == OWN_REAP_WAIT
        else:
            assert r.reap_orphans(seen, now) is None
        assert is_zombie(ours)  # its task's to reap, never the reaper's
    finally:
        os.waitpid(ours, 0)
        r.discard(ours)
    orphan = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 3"], {})
    wait_until(lambda: is_zombie(orphan), what="the orphan exited")
    seen = {}
    now = time.monotonic()
    assert r.reap_orphans(seen, now) == ORPHAN_GRACE  # seen once: not reaped yet
    assert is_zombie(orphan)
    assert r.reap_orphans(seen, now + ORPHAN_GRACE) is None
    assert not pid_alive(orphan)
    assert seen == {}

"""`--watch`: started means armed, cancellation is prompt, and the daemon switches unsignalled."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisord_lite.daemon.reaper import kill_previous
from supervisord_lite.daemon.watch import STEP_MS, watch_current
from supervisord_lite.daemon_client import request
from supervisord_lite.fsatomic import replace_symlink
from tests.daemon.conftest import Root, children_of, proc, running
from tests.helpers import DAEMON, SLEEP, run_brr, until, wait_until


def make_root(path: Path) -> Path:
    for release in ("v1", "v2"):
        (path / "releases" / release).mkdir(parents=True)
    replace_symlink(path / "current", "releases/v1")
    return path


async def test_a_change_right_after_started_is_seen(tmp_path: Path) -> None:
    # before the fix, started came before inotify was armed: a change made at once was
    # lost nearly every time, so a few rounds make a miss certain to show
    root = make_root(tmp_path)
    for n in range(3):
        changed = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(watch_current, root, changed.set)
            (root / "ledger.jsonl").write_text("noise\n")  # not current: ignored
            replace_symlink(root / "current", f"releases/v{2 - n % 2}")
            with anyio.fail_after(10):
                await changed.wait()
            tg.cancel_scope.cancel()
    assert [p.name for p in (root / "run").iterdir()] == []  # the probe does not stay


async def test_only_current_wakes_the_callback(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    calls = 0

    def on_change() -> None:
        nonlocal calls
        calls += 1

    async with anyio.create_task_group() as tg:
        await tg.start(watch_current, root, on_change)
        (root / "ledger.jsonl").write_text("noise\n")
        (root / "run" / "children.json").write_text("[]")
        (root / "releases" / "v3").mkdir()
        replace_symlink(root / "current", "releases/v2")  # the marker that ends the wait
        await until(lambda: calls, timeout=10, what="the reload callback")
        tg.cancel_scope.cancel()
    assert calls == 1


@pytest.mark.timeout(60)
async def test_cancelling_the_watch_returns_within_a_step(tmp_path: Path) -> None:
    # watchfiles' thread waits with no timeout and anyio does not abandon it: before the
    # fix a cancelled watch waited for the next change in ROOT, that is forever here (no
    # fail_after can cut that wait short: the test's timeout does)
    root = make_root(tmp_path)
    worst = 0.0
    for delay in (0.0, 0.05, 0.13):
        async with anyio.create_task_group() as tg:
            await tg.start(watch_current, root, lambda: None)
            await anyio.sleep(delay)  # the moment of the cancel, not a wait for a condition
            started = anyio.current_time()
            tg.cancel_scope.cancel()
        worst = max(worst, anyio.current_time() - started)
    print(f"worst cancellation: {worst:.3f} s")
    assert worst < 10 * STEP_MS / 1000  # one step, with a slow machine's margin


@pytest.mark.timeout(120)
def test_activate_no_signal_switches_the_daemon(droot: Root, daemon: Any) -> None:
    droot.release(proc("web", SLEEP(3600)))
    d = daemon("--watch")  # status "running" comes after the watch is armed
    droot.release(proc("web", SLEEP(3600), scale=2), activate=False)
    run_brr(droot.path, "activate", "--no-signal", "v2")
    activated = time.monotonic()
    started: list[float] = []

    def switched() -> bool:
        if not started and any(p["release"] == "v2" for p in d.procs()):
            started.append(time.monotonic() - activated)
        return len(running(d, "v2")) == 2 and d.status()["release"] == "v2"

    wait_until(switched, timeout=60, interval=0.02, what="v2 running, switched by --watch")
    done = time.monotonic() - activated
    print(f"--watch: switch started {started[0]:.3f} s, done {done:.3f} s after activate")
    assert started[0] < 5  # seen at once: about step + debounce, 0.4 s on a quiet machine
    assert not running(d, "v1")
    d.signal(signal.SIGTERM)
    assert d.wait_exit(timeout=10) == 0  # the watcher's thread does not hold the exit


@pytest.mark.timeout(120)
def test_a_fifo_planted_as_the_manifest_is_refused_not_waited_on(
    droot: Root, daemon: Any
) -> None:
    # A FIFO at current's release.yaml once held the daemon's first load until someone
    # wrote to it (a test used that to stall the start). The loader now opens it without
    # blocking and refuses what is not a regular file: the boot says so in one line and
    # exits, nothing running, instead of hanging before systemd ever hears READY=1.
    droot.release(proc("web", SLEEP(3600)))
    manifest = droot.path / "releases" / "v1" / "release.yaml"
    manifest.unlink()
    os.mkfifo(manifest)
    d = daemon("--watch", wait=False)
    code = wait_until(lambda: d.proc.poll(), timeout=30, what="the daemon to give up")
    assert code == 78, d.output()
    assert "not a regular file" in d.output()


@pytest.mark.skipif(not shutil.which("strace"), reason="strace (to hold the watch) is missing")
def test_a_change_between_first_load_and_armed_is_not_lost(droot: Root, tmp_path: Path) -> None:
    # strace holds the watch's inotify_init1 for 3 s: by then the daemon has loaded v1
    # and serves its control socket, but nothing watches current yet when it moves to
    # v2. Once armed, the daemon compares current with what it loaded and reloads.
    droot.release(proc("web", SLEEP(3600)))
    droot.release(proc("web", SLEEP(3600), scale=2), activate=False)
    hold = ["-e", "trace=inotify_init1", "-e", "inject=inotify_init1:delay_enter=3000000"]
    argv = ["strace", "-f", "-qq", "-o", "/dev/null", *hold, DAEMON, "run", "--watch"]
    with (tmp_path / "d.out").open("wb") as out:
        tracer = subprocess.Popen(
            [*argv, "--root", str(droot.path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    daemon_pid = None
    try:
        daemon_pid = wait_until(lambda: children_of(tracer.pid)[:1], what="the daemon")[0]
        wait_until(droot.layout.control_socket.exists, what="v1 loaded, control socket up")
        droot.activate("v2")

        def v2_running() -> bool:
            reply = request(droot.layout.control_socket, {"cmd": "status"})
            reply = reply.get("status", reply)
            procs = [p for p in reply.get("processes", []) if p.get("release") == "v2"]
            return reply.get("release") == "v2" and len(procs) == 2 and all(
                p.get("state") == "RUNNING" for p in procs
            )

        wait_until(v2_running, timeout=90, what="v2 running after the watch was armed")
        said = (tmp_path / "d.out").read_text()
        assert "current moved to v2 while starting: reloading" in said, said
    finally:
        if daemon_pid is not None:
            os.kill(daemon_pid, signal.SIGTERM)
        try:
            tracer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(tracer.pid, signal.SIGKILL)
            tracer.wait()
        kill_previous(droot.layout.run_dir / "children.json", droot.layout.builds)

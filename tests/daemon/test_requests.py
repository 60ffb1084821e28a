"""One request stream and one supervisor loop: folding, order, the daemon's state table,
switch() against a fake host, and a real `stop web` sent in the middle of a switch."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisord_lite.daemon.bus import EventBus, SwitchDone, SwitchFailed
from supervisord_lite.daemon.generation import NotReady
from supervisord_lite.daemon.requests import (
    TRANSITIONS,
    DaemonEvent,
    DaemonState,
    ProcessCommand,
    Reload,
    Requests,
    next_daemon_state,
)
from supervisord_lite.daemon.switch import switch
from supervisord_lite.manifest import ProcessSpec, ReadyCheck, Release, SocketSpec
from tests.daemon.conftest import Root, proc
from tests.helpers import DAEMON, EXIT_1, SLEEP, wait_until

# --- the stream and the state table, no I/O -------------------------------------------------


async def test_reloads_fold_and_commands_keep_their_order() -> None:
    requests = Requests()
    stop, start = ProcessCommand("stop", "web"), ProcessCommand("start", "web")
    for request in (Reload(), Reload(), stop, Reload(), start, Reload()):
        requests.put(request)
    got = [await requests.get() for _ in range(requests.pending())]
    # every reload folded into the one already waiting: it reads `current` when it runs,
    # so it covers them all
    assert got == [Reload(), stop, start]
    requests.put(Reload())  # taken: the next one waits again
    assert await requests.get() == Reload()
    with anyio.move_on_after(0.05):
        await requests.get()
        pytest.fail("an empty stream returned a request")


async def test_a_command_is_answered_once_with_names_or_its_error() -> None:
    ok, bad = ProcessCommand("restart", None), ProcessCommand("stop", "nope")
    ok.answer(["web.1", "web.2"])
    bad.fail(LookupError("no process or type named nope"))
    assert await ok.result() == ["web.1", "web.2"]
    with pytest.raises(LookupError, match="nope"):
        await bad.result()


def test_the_daemon_state_table() -> None:
    S, E = DaemonState, DaemonEvent
    life = [
        (E.UP, S.RUNNING),
        (E.SWITCH, S.SWITCHING),
        (E.SWITCHED, S.RUNNING),
        (E.STOP, S.STOPPING),
    ]
    state = S.STARTING
    for event, expected in life:
        state = next_daemon_state(state, event)
        assert state is expected
    for state, event in itertools.product(S, E):
        if (state, event) not in TRANSITIONS:
            with pytest.raises(ValueError, match="no transition"):
                next_daemon_state(state, event)
    assert all((s, E.STOP) in TRANSITIONS for s in S)  # any state can be shut down


# --- switch() against a fake host ---------------------------------------------------------


class FakeGeneration:
    def __init__(self, release: Release, outcome: str) -> None:
        self.release, self.outcome = release, outcome
        self.stopped = False

    async def wait_ready(self) -> None:
        if self.outcome == "not ready":
            raise NotReady(f"web.1 ({self.release.id}): not ready within 1 s")

    async def hold_running(self, seconds: float) -> None:
        if self.outcome == "exits after ready":
            raise NotReady(f"web.1 ({self.release.id}): exited with code 3 after it was ready")

    async def stop(self) -> None:
        self.stopped = True


class FakeHost:
    def __init__(self, outcomes: dict[str, str]) -> None:
        self.bus = EventBus()
        self.outcomes = outcomes
        self.log: list[str] = []

    async def start_generation(self, release: Release) -> Any:
        self.log.append(f"start {release.id}")
        return FakeGeneration(release, self.outcomes.get(release.id, "ready"))

    async def retire_generation(self, generation: Any, *, keep: Release | None = None) -> None:
        self.log.append(f"retire {generation.release.id}")
        await generation.stop()


def fake_release(rid: str, mode: str = "start-first", shared: bool = False) -> Release:
    """shared: web's tcp check targets its own held socket (switch.SETTLE applies)."""
    if shared:
        spec = ProcessSpec(
            type="web", cmd="true", sockets=("http",), ready=ReadyCheck("tcp", "127.0.0.1:9")
        )
        sockets = {"http": SocketSpec("http", "127.0.0.1:9")}
    else:
        spec, sockets = ProcessSpec(type="web", cmd="true", ready=ReadyCheck("after")), {}
    return Release(
        id=rid,
        created_at="2026-12-06T00:00:00Z",
        build="b-000000000001",
        config={},
        sockets=sockets,
        switch=mode,
        processes={"web": spec},
    )


async def run_switch(outcomes: dict[str, str], new: Release) -> tuple[Any, Any, FakeHost, Any]:
    host = FakeHost(outcomes)
    events = host.bus.subscribe("test")
    old: Any = FakeGeneration(fake_release("v1"), "ready")
    record, running = await switch(host, old, new)
    host.bus.close()
    with events.receive:
        return record, running, host, [e async for e in events.receive]


async def test_start_first_success_retires_the_old_after_the_new_is_ready() -> None:
    record, running, host, events = await run_switch({}, fake_release("v2"))
    assert record.ok and running.release.id == "v2"
    assert host.log == ["start v2", "retire v1"]
    assert isinstance(events[-1], SwitchDone)


async def test_start_first_not_ready_keeps_the_old_generation() -> None:
    record, running, host, events = await run_switch({"v2": "not ready"}, fake_release("v2"))
    assert not record.ok and "not ready within 1 s" in (record.error or "")
    assert running.release.id == "v1" and not running.stopped
    assert host.log == ["start v2", "retire v2"]
    assert isinstance(events[-1], SwitchFailed)


async def test_an_exit_after_ready_during_the_hold_fails_the_switch() -> None:
    # a check on the shared address: the new one must also stay up before the old goes
    new = fake_release("v2", shared=True)
    record, running, host, _ = await run_switch({"v2": "exits after ready"}, new)
    assert not record.ok and "exited with code 3 after it was ready" in (record.error or "")
    assert running.release.id == "v1" and host.log == ["start v2", "retire v2"]


async def test_stop_first_stops_the_old_first_and_restarts_it_on_failure() -> None:
    record, running, host, _ = await run_switch({}, fake_release("v2", "stop-first"))
    assert record.ok and host.log == ["retire v1", "start v2"]
    record, running, host, _ = await run_switch(
        {"v2": "not ready"}, fake_release("v2", "stop-first")
    )
    assert not record.ok and running.release.id == "v1"
    assert host.log == ["retire v1", "start v2", "retire v2", "start v1"]


# --- a real daemon: a stop sent mid-switch ------------------------------------------------


def test_stop_sent_during_a_switch_applies_to_the_generation_that_runs_after(
    droot: Root, daemon: Any
) -> None:
    droot.release(proc("web", SLEEP(600)))
    d = daemon()
    # v2 takes 3 s to be ready: the switch is in progress while the stop arrives
    droot.release(proc("web", SLEEP(600), ready=ReadyCheck("after", seconds=3.0)))
    d.signal(1)  # SIGHUP
    wait_until(lambda: d.status()["state"] == "switching", what="the switch under way")
    stop = subprocess.run(
        [DAEMON, "stop", "web", "--root", str(droot.path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.strip() == "stopped: web.1"
    status = d.status()
    assert status["release"] == "v2" and status["last_switch"]["ok"], json.dumps(status)
    assert [(p["name"], p["release"], p["state"]) for p in status["processes"]] == [
        ("web.1", "v2", "STOPPED")
    ]


def test_a_plugin_sees_every_transition_of_a_crash_loop_in_order(
    droot: Root, daemon: Any, tmp_path: Path
) -> None:
    out = tmp_path / "events.jsonl"
    droot.release(proc("web", SLEEP(600)), proc("crash", EXIT_1))
    d = daemon(
        "--plugin", "exec",
        "--plugin-opt", f"exec.cmd=cat >> {out}; echo >> {out}",
        "--plugin-opt", "exec.on=process_state",
        "--max-backoff", "0.2",
    )  # fmt: skip

    def crash_transitions() -> list[tuple[str, str]]:
        if not out.exists():
            return []
        events = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        return [(e["old"], e["new"]) for e in events if e["name"] == "crash.1"]

    wait_until(lambda: len(crash_transitions()) >= 7, what="three failed starts")
    seen = crash_transitions()
    assert seen[:7] == [
        ("STOPPED", "STARTING"),
        ("STARTING", "BACKOFF"),
        ("BACKOFF", "STARTING"),
        ("STARTING", "BACKOFF"),
        ("BACKOFF", "STARTING"),
        ("STARTING", "BACKOFF"),
        ("BACKOFF", "STARTING"),
    ], seen
    assert d.status()["state"] == "running"

"""The event bus and the plugin runner: order, bounded queues, cut-offs, disabling."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from supervisord_lite.daemon.bus import (
    EVENT_KINDS,
    DaemonStopping,
    EventBus,
    ProcessExited,
    ProcessSpawned,
)
from supervisord_lite.daemon.plugins import (
    PluginRunner,
    load_plugins,
    make_runners,
    parse_plugin_opts,
)
from supervisord_lite.errors import BadInput


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def on_event(self, event: object) -> None:
        self.seen.append(getattr(event, "name", type(event).__name__))


class Raises:
    calls = 0

    async def on_event(self, event: object) -> None:
        self.calls += 1
        raise RuntimeError("plugin bug")


class Hangs:
    async def on_event(self, event: object) -> None:
        await anyio.sleep_forever()

    async def aclose(self) -> None:
        await anyio.sleep_forever()


def spawned(i: int) -> ProcessSpawned:
    return ProcessSpawned(name=f"web.{i}", release="v1", pid=1000 + i)


def test_events_serialize_with_their_kind() -> None:
    data = ProcessExited(
        name="web.1", release="v2", pid=7, exit_code=None, signal=9, expected=False
    ).to_dict()
    assert data["event"] == "process_exited" and data["signal"] == 9 and "at" in data
    assert len(EVENT_KINDS) == 13


async def test_each_subscriber_gets_every_event_in_order() -> None:
    bus = EventBus()
    recorder = Recorder()
    (runner,) = make_runners(bus, {"rec": recorder})
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        for i in range(50):
            bus.publish(spawned(i))
        bus.close()
    assert recorder.seen == [f"web.{i}" for i in range(50)]


async def test_a_full_subscriber_drops_and_counts_without_blocking() -> None:
    bus = EventBus()
    sub = bus.subscribe("slow", maxsize=5)
    t0 = time.monotonic()
    for i in range(100):
        bus.publish(spawned(i))
    assert time.monotonic() - t0 < 1.0
    assert bus.dropped() == {"slow": 95}
    sub.receive.close()
    bus.close()


async def test_a_raising_plugin_is_logged_once_then_disabled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    bad = Raises()
    good = Recorder()
    runners = make_runners(bus, {"bad": bad, "good": good})
    with caplog.at_level(logging.ERROR):
        async with anyio.create_task_group() as tg:
            for r in runners:
                tg.start_soon(r.run)
            for i in range(10):
                bus.publish(spawned(i))
            bus.close()
    assert bad.calls == 3 and runners[0].disabled
    assert good.seen == [f"web.{i}" for i in range(10)], "the good plugin got everything"
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1
    assert any("disabled after 3 failures" in r.getMessage() for r in caplog.records)


async def test_a_hanging_plugin_is_cut_off() -> None:
    bus = EventBus()
    runner = PluginRunner(
        "hang", Hangs(), bus.subscribe("hang"), event_timeout=0.2, close_timeout=0.2
    )
    t0 = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        bus.publish(DaemonStopping(reason="test"))
        bus.publish(DaemonStopping(reason="test"))
        bus.close()
    await runner.close()
    assert runner.failures == 2
    assert time.monotonic() - t0 < 5, "each call and aclose were bounded"


def test_plugin_options_and_unknown_plugins() -> None:
    assert parse_plugin_opts(["exec.cmd=echo hi", "exec.on=switch_done"], ["exec"]) == {
        "exec": {"cmd": "echo hi", "on": "switch_done"}
    }
    with pytest.raises(BadInput, match="expected NAME.KEY=VALUE"):
        parse_plugin_opts(["nodot=1"], ["exec"])
    with pytest.raises(BadInput, match="is not enabled"):
        parse_plugin_opts(["other.k=v"], ["exec"])
    with pytest.raises(BadInput, match="no plugin named 'nope'"):
        load_plugins({"nope": {}})

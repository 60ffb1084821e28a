"""The built-in plugins against real commands, a real HTTP server and a real scrape."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from supervisord_lite.daemon import bus
from supervisord_lite.daemon.plugins import load_plugins
from supervisord_lite.errors import BadInput


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_exec_runs_the_command_with_the_event_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    plugins = load_plugins({"exec": {"cmd": f"cat >> {out}", "on": "switch_done,process_fatal"}})
    plugin = plugins["exec"]
    await plugin.on_event(bus.SwitchDone(from_release="v1", to_release="v2", seconds=1.5))
    await plugin.on_event(bus.ProcessSpawned(name="web.1", release="v2", pid=1))  # filtered
    await plugin.on_event(bus.ProcessFatal(name="web.1", release="v2", failures=10))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["event"] for e in lines] == ["switch_done", "process_fatal"]
    assert lines[0]["to_release"] == "v2" and lines[0]["seconds"] == 1.5
    with pytest.raises(BadInput, match="needs --plugin-opt exec.cmd"):
        load_plugins({"exec": {}})
    with pytest.raises(BadInput, match="unknown event kind 'nope'"):
        load_plugins({"exec": {"cmd": "true", "on": "nope"}})


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, object]]] = []
    fail_first = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Hook.fail_first > 0:
            Hook.fail_first -= 1
            self.send_response(500)
        else:
            Hook.received.append(json.loads(body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Hook.received = []
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


async def test_webhook_posts_and_retries(hook_server: str) -> None:
    plugin = load_plugins({"webhook": {"url": hook_server, "pause": "0.05"}})["webhook"]
    Hook.fail_first = 2  # two 500s, then success on the last allowed attempt
    await plugin.on_event(
        bus.SwitchFailed(from_release="v1", to_release="v3", error="web.1 exited", seconds=2.0)
    )
    assert [e["event"] for e in Hook.received] == ["switch_failed"]
    assert Hook.received[0]["error"] == "web.1 exited"
    Hook.fail_first = 5  # more failures than retries: the event is lost, and counted
    await plugin.on_event(bus.DaemonStopping(reason="test"))
    assert len(Hook.received) == 1 and plugin.lost == 1  # type: ignore[attr-defined]


async def test_webhook_to_a_closed_port_gives_up_quickly() -> None:
    plugin = load_plugins(
        {"webhook": {"url": f"http://127.0.0.1:{free_port()}/", "pause": "0.01"}}
    )["webhook"]
    await plugin.on_event(bus.DaemonStopping(reason="test"))
    assert plugin.lost == 1  # type: ignore[attr-defined]


def changed(name: str, old: str, new: str, event: str) -> bus.ProcessStateChanged:
    return bus.ProcessStateChanged(
        name=name, release="v2", old=old, new=new, event=event, reason=None
    )


async def test_metrics_are_scraped() -> None:
    port = free_port()
    plugin = load_plugins({"metrics": {"address": f"127.0.0.1:{port}"}})["metrics"]
    me = subprocess.Popen(["sleep", "60"])
    try:
        await plugin.on_event(bus.ReleaseLoaded(release="v2", build="b-000000000001"))
        await plugin.on_event(bus.ProcessSpawned(name="web.1", release="v2", pid=me.pid))
        await plugin.on_event(changed("web.1", "STARTING", "RUNNING", "ready"))
        await plugin.on_event(bus.ProcessSpawned(name="web.2", release="v2", pid=999999))
        await plugin.on_event(
            bus.ProcessExited(
                name="web.2", release="v2", pid=999999, exit_code=1, signal=None, expected=False
            )
        )
        await plugin.on_event(bus.ProcessSpawned(name="web.2", release="v2", pid=999998))
        await plugin.on_event(bus.ProcessSpawned(name="web.3", release="v2", pid=999997))
        await plugin.on_event(changed("web.3", "STARTING", "BACKOFF", "retry"))
        await plugin.on_event(bus.SwitchDone(from_release="v1", to_release="v2", seconds=0.8))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        me.kill()
        me.wait()
        await plugin.aclose()  # type: ignore[attr-defined]
    assert 'supervisord_lite_process_state{name="web.1",release="v2",state="RUNNING"} 1.0' in text
    # BACKOFF as BACKOFF: the plugin follows the daemon's own transitions
    assert 'supervisord_lite_process_state{name="web.3",release="v2",state="BACKOFF"} 1.0' in text
    assert 'supervisord_lite_process_restarts_total{name="web.2",release="v2"} 1.0' in text
    assert 'supervisord_lite_release_info{build="b-000000000001",release="v2"} 1.0' in text
    assert 'supervisord_lite_process_rss_bytes{name="web.1",release="v2"}' in text
    assert "supervisord_lite_switch_seconds_count 1.0" in text
    assert 'supervisord_lite_events_total{kind="process_spawned"} 4.0' in text

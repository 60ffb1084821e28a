"""Reload and switch with real processes: start-first, stop-first, failures, HUP storms."""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from pathlib import Path
from typing import Any

import psutil

from supervisord_lite.daemon.generation import shared_address_checks
from supervisord_lite.manifest import ProcessSpec, ReadyCheck, Release, SocketSpec
from tests.daemon.conftest import SERVE_FD3, Root, proc, running
from tests.helpers import EXIT_1, SLEEP, python, wait_until


def timeline_app(path: Path) -> str:
    """Appends `<release> start|stop <time>` to path; stops on SIGTERM."""
    return python(
        "import os, signal, sys, time\n"
        f"log = lambda what: open({str(path)!r}, 'a').write("
        "f\"{os.environ['BRR_RELEASE']} {what} {time.time()}\\n\")\n"
        "def bye(*_):\n    log('stop'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "log('start')\n"
        "while True: time.sleep(3600)"
    )


def events(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in path.read_text().splitlines():
        rel, what, at = line.split()
        out.setdefault(f"{rel} {what}", float(at))
    return out


def switched(d: Any, to: str) -> dict[str, Any] | None:
    last = d.status()["last_switch"]
    return last if last and last["to"] == to else None


def test_start_first_switch_keeps_v1_until_v2_is_ready(
    droot: Root, daemon: Any, tmp_path: Path
) -> None:
    tl = tmp_path / "timeline"
    droot.release(proc("web", timeline_app(tl), scale=2))
    d = daemon()
    wait_until(lambda: len(running(d, "v1")) == 2, what="v1 running")
    droot.release(proc("web", timeline_app(tl), scale=2, ready=ReadyCheck("after", seconds=1.0)))
    d.signal(signal.SIGHUP)
    last = wait_until(lambda: switched(d, "v2"), what="switch done")
    assert last["ok"] and last["from"] == "v1" and last["error"] is None
    assert isinstance(last["finished_at"], float)
    st = d.status()
    assert st["release"] == "v2" and st["state"] == "running"
    assert [p["release"] for p in st["processes"]] == ["v2", "v2"]
    ev = wait_until(lambda: "v1 stop" in (e := events(tl)) and e, what="v1 stop recorded")
    assert ev["v1 stop"] >= ev["v2 start"] + 0.9  # v1 served until v2 was ready
    assert os.readlink(droot.layout.last_good) == "../releases/v2"


def test_a_broken_release_keeps_the_old_one_running(droot: Root, daemon: Any) -> None:
    droot.release(proc("web", SLEEP(3600), scale=2))
    d = daemon()
    wait_until(lambda: len(running(d, "v1")) == 2, what="v1 running")
    pids = sorted(p["pid"] for p in d.procs())
    # v2 exits at once
    droot.release(proc("web", EXIT_1, scale=2))
    d.signal(signal.SIGHUP)
    last = wait_until(lambda: switched(d, "v2"), what="v2 switch over")
    assert not last["ok"]
    assert "web." in last["error"] and "exited with code 1" in last["error"]
    # v3 never gets ready: its check waits on a port nobody listens on
    never = ReadyCheck("tcp", target="127.0.0.1:9")
    droot.release(proc("web", SLEEP(3600), ready=never, ready_timeout=1.0))
    d.signal(signal.SIGHUP)
    last = wait_until(lambda: switched(d, "v3"), what="v3 switch over")
    assert not last["ok"] and "not ready within 1 s" in last["error"]
    st = d.status()
    assert st["release"] == "v1"
    assert sorted(p["pid"] for p in st["processes"]) == pids
    assert all(p["release"] == "v1" and p["state"] == "RUNNING" for p in st["processes"])
    wait_until(lambda: "switch v1 -> v3 failed" in d.output(), what="switch v1 -> v3 failed")
    assert os.readlink(droot.layout.last_good) == "../releases/v1"


def test_stop_first_stops_the_old_before_starting_the_new(
    droot: Root, daemon: Any, tmp_path: Path
) -> None:
    tl = tmp_path / "timeline"
    droot.release(proc("web", timeline_app(tl)))
    d = daemon()
    wait_until(lambda: len(running(d, "v1")) == 1, what="v1 running")
    droot.release(proc("web", timeline_app(tl)), switch="stop-first")
    d.signal(signal.SIGHUP)
    assert wait_until(lambda: switched(d, "v2"), what="switch done")["ok"]
    ev = events(tl)
    assert ev["v1 stop"] <= ev["v2 start"]


def test_an_invalid_current_is_rejected_and_reported(droot: Root, daemon: Any) -> None:
    droot.release(proc("web", SLEEP(3600)))
    d = daemon()
    wait_until(lambda: len(running(d, "v1")) == 1, what="v1 running")
    bad = droot.path / "releases" / "v2"
    bad.mkdir()
    (bad / "release.yaml").write_text("schema: 1\nid: v2\n")
    droot.activate("v2")
    before = time.time()
    d.signal(signal.SIGHUP)
    rejected = wait_until(lambda: d.status()["rejected"], what="rejection")
    assert rejected["id"] == "v2" and rejected["at"] >= before
    assert "release.yaml" in rejected["error"]
    assert d.status()["release"] == "v1" and d.status()["last_switch"] is None
    wait_until(
        lambda: "reload: current is invalid, keeping v1" in d.output(),
        what="reload: current is invalid, keeping v1",
    )


def test_a_storm_of_hups_while_current_flips_settles_on_current(droot: Root, daemon: Any) -> None:
    fast = ReadyCheck("after", seconds=0.05)
    v1 = droot.release(
        proc("web", SLEEP(3600), scale=2, ready=fast), proc("w", SLEEP(3600), ready=fast)
    )
    v2 = droot.release(proc("web", SLEEP(3600), scale=3, ready=fast), activate=False)
    d = daemon()
    wait_until(lambda: len(running(d, v1)) == 3, what="v1 running")
    started = time.monotonic()
    for i in range(100):
        droot.activate(random.choice([v1, v2]))
        d.signal(signal.SIGHUP)
        time.sleep(max(0.0, started + (i + 1) / 100 - time.monotonic()))
    want = os.readlink(droot.path / "current").rsplit("/", 1)[1]
    scale = 3

    def at_rest() -> bool:
        st = d.status()
        procs = st["processes"]
        return (
            st["state"] == "running"
            and st["release"] == want
            and len(procs) == scale
            and all(p["release"] == want and p["state"] == "RUNNING" for p in procs)
        )

    wait_until(at_rest, timeout=60, what=f"exactly {want} running")
    assert d.proc.poll() is None


def test_a_failed_stop_first_switch_brings_the_old_release_back(droot: Root, daemon: Any) -> None:
    droot.release(proc("web", SLEEP(3600), scale=2))
    d = daemon()
    wait_until(lambda: len(running(d, "v1")) == 2, what="v1 running")
    droot.release(proc("web", EXIT_1), switch="stop-first")
    d.signal(signal.SIGHUP)
    last = wait_until(lambda: switched(d, "v2"), what="switch over")
    assert not last["ok"] and "exited with code 1" in last["error"]
    wait_until(lambda: len(running(d, "v1")) == 2, what="v1 running again")
    assert d.status()["release"] == "v1"


NOTIFY_APP = python(
    "import os, socket, time\n"
    "time.sleep(0.5)\n"
    "addr = os.environ['NOTIFY_SOCKET']\n"
    "addr = '\\0' + addr[1:] if addr.startswith('@') else addr\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
    "s.sendto(b'READY=1', addr)\n"
    "time.sleep(3600)"
)


def test_a_notify_ready_release_switches_once_it_says_ready(droot: Root, daemon: Any) -> None:
    droot.release(proc("web", SLEEP(3600)))
    d = daemon()
    wait_until(lambda: len(running(d, "v1")) == 1, what="v1 running")
    droot.release(proc("web", NOTIFY_APP, ready=ReadyCheck("notify")))
    d.signal(signal.SIGHUP)
    last = wait_until(lambda: switched(d, "v2"), what="switch over")
    assert last["ok"], last
    assert last["seconds"] >= 0.4


def listener_inode(pid: int, port: int) -> int:
    found = [
        os.stat(f"/proc/{pid}/fd/{conn.fd}").st_ino
        for conn in psutil.Process(pid).net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port
    ]
    assert len(found) == 1, f"daemon {pid} holds {len(found)} listeners on {port}"
    return found[0]


def test_held_socket_survives_both_kinds_of_switch(droot: Root, daemon: Any) -> None:
    """stop-first keeps the very listener; start-first hands the address to the new
    generation's own listener and closes the old one once drained (steering.py)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = {"http": SocketSpec("http", f"127.0.0.1:{port}")}
    web = proc("web", SERVE_FD3, sockets=("http",))
    droot.release(web, sockets=http)
    d = daemon()
    wait_until(lambda: len(running(d, "v1")) == 1, what="v1 running")
    inode = listener_inode(d.pid, port)
    droot.release(web, sockets=http, switch="stop-first")
    d.signal(signal.SIGHUP)
    assert wait_until(lambda: switched(d, "v2"), what="stop-first switch")["ok"]
    assert listener_inode(d.pid, port) == inode
    droot.release(web, sockets=http)
    d.signal(signal.SIGHUP)
    assert wait_until(lambda: switched(d, "v3"), what="start-first switch")["ok"]
    if "cannot steer connections" not in d.output():  # one listener left: v3's own
        assert listener_inode(d.pid, port) != inode
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        assert c.recv(100) == b"v3"


def test_a_ready_check_on_the_shared_socket_is_flagged() -> None:
    http = {"http": SocketSpec("http", "127.0.0.1:8000")}

    def release(target: str) -> Release:
        web = ProcessSpec("web", "x", sockets=("http",), ready=ReadyCheck("http", target=target))
        return Release("v1", "", "b-000000000000", {}, http, "start-first", {"web": web})

    assert shared_address_checks(release("http://127.0.0.1:8000/healthz")) == ["web"]
    assert shared_address_checks(release("http://127.0.0.1:9000/healthz")) == []


def test_a_crash_after_a_check_any_generation_answers_fails_the_switch(
    droot: Root, daemon: Any
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = {"http": SocketSpec("http", f"127.0.0.1:{port}")}
    droot.release(proc("web", SERVE_FD3, sockets=("http",)), sockets=http)
    d = daemon()
    wait_until(lambda: len(running(d, "v1")) == 1, what="v1 running")
    # the kernel completes a tcp handshake on the held socket whoever runs: always "ready"
    crash = python("import time, sys; time.sleep(0.5); sys.exit(3)")
    on_socket = ReadyCheck("tcp", target=f"127.0.0.1:{port}")
    droot.release(proc("web", crash, sockets=("http",), ready=on_socket), sockets=http)
    d.signal(signal.SIGHUP)
    last = wait_until(lambda: switched(d, "v2"), what="switch over")
    assert not last["ok"] and "exited with code 3 after it was ready" in last["error"], last
    assert d.status()["release"] == "v1"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        assert c.recv(100) == b"v1"
    wait_until(lambda: "targets its shared socket" in d.output(), what="the warning")

"""The fleet, as a user's would run: three hosts (network namespaces with their own sshd,
/srv and daemon), `brr-release fleet` driving the collection's playbooks over SSH."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.hosts import Host, write_inventory
from tests.helpers import BRR, python, wait_until, write_app

# serves on the socket the daemon holds (fd 3), answering each connection with its release
SERVE_FD3 = python(
    "import os, socket\n"
    "s = socket.socket(fileno=3)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(os.environ['BRR_RELEASE'].encode()); c.close()"
)
HTTP_APP = f"""\
sockets:
  http: {{bind: "127.0.0.1:8000"}}
processes:
  web:
    cmd: {json.dumps(SERVE_FD3)}
    sockets: [http]
    ready: {{cmd: "test ! -e /srv/fail-ready"}}
    ready_timeout: 5
    stop_timeout: 2
"""
# connects again and again to the host's app until told to stop (bounded in count and
# time); writes how many connections were answered and how many refused
LOAD = python(
    "import json, os, socket, sys, time\n"
    "stop, out = sys.argv[1], sys.argv[2]\n"
    "ok = refused = 0\n"
    "deadline = time.monotonic() + 400\n"
    "while not os.path.exists(stop) and time.monotonic() < deadline and ok + refused < 200000:\n"
    "    try:\n"
    "        with socket.create_connection(('127.0.0.1', 8000), timeout=10) as c:\n"
    "            ok += bool(c.recv(16))\n"
    "    except ConnectionRefusedError:\n"
    "        refused += 1\n"
    "    time.sleep(0.02)\n"
    "open(out, 'w').write(json.dumps({'ok': ok, 'refused': refused}))"
)

APP = """\
processes:
  web:
    cmd: "sleep 1000"
    ready: {cmd: "test ! -e /srv/fail-ready"}
    ready_timeout: 5
    stop_timeout: 2
"""


def fleet(controller: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BRR, "--root", str(controller), "fleet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fleet_json(controller: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = fleet(controller, *args, "--json")
    return proc.returncode, json.loads(proc.stdout or "{}"), proc.stderr


def host_ledger(h: Host) -> list[dict[str, Any]]:
    text = (h.root / "ledger.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def running(h: Host) -> str | None:
    data = json.loads(h.brr("--json", "status").stdout)
    return (data["running"] or {}).get("release")


def app(tmp_path: Path, version: str = "1") -> Path:
    return write_app(tmp_path / "src", APP, {"VERSION": version})


def deploy(
    controller: Path, src: Path, inventory: Path, *args: str
) -> tuple[int, dict[str, Any], str]:
    return fleet_json(controller, "deploy", str(src), "-i", str(inventory), *args)


def builds_moved(h: Host) -> int:
    return len([e for e in host_ledger(h) if e["event"] == "build"])


# several playbook runs, each some seconds per host on a loaded 2-core machine
@pytest.mark.timeout(900)
def test_deploy_twice_config_change_and_rollback(
    tmp_path: Path, hosts: list[Host], inventory: Path, controller: Path
) -> None:
    src = app(tmp_path)
    code, out, err = deploy(controller, src, inventory)
    assert code == 0, err
    assert out["release"] == "v1"
    assert [r["outcome"] for r in out["hosts"]] == ["changed"] * 3
    for h in hosts:
        assert running(h) == "v1"
        assert h.brr("verify").returncode == 0
        assert builds_moved(h) == 1
        assert host_ledger(h)[0]["imported"] is True
    # the same deploy again: nothing to do anywhere, no new release, no ledger line
    before = [(h.root / "ledger.jsonl").read_bytes() for h in hosts]
    code, out, err = deploy(controller, src, inventory)
    assert code == 0, err
    assert out["release"] == "v1"
    assert [r["outcome"] for r in out["hosts"]] == ["ok"] * 3
    assert [(h.root / "ledger.jsonl").read_bytes() for h in hosts] == before
    # a config change: v2 everywhere, and no build crosses the network again
    code, out, err = deploy(controller, src, inventory, "--set", "COLOR=blue")
    assert code == 0, err
    assert out["release"] == "v2"
    assert [running(h) for h in hosts] == ["v2"] * 3
    assert [builds_moved(h) for h in hosts] == [1, 1, 1]
    # every host's v2 is the controller's v2, byte for byte
    manifest = (controller / "releases/v2/release.yaml").read_bytes()
    assert all((h.root / "releases/v2/release.yaml").read_bytes() == manifest for h in hosts)
    # a fleet rollback to v1 puts every host on it
    code, out, err = fleet_json(controller, "rollback", "v1", "-i", str(inventory))
    assert code == 0, err
    assert [running(h) for h in hosts] == ["v1"] * 3
    assert all(h.root.joinpath("current").readlink().name == "v1" for h in hosts)
    runs = [json.loads(x) for x in (controller / "fleet/ledger.jsonl").read_text().splitlines()]
    assert [(r["command"], r["release"], r["exit"]) for r in runs] == [
        ("deploy", "v1", 0),
        ("deploy", "v1", 0),
        ("deploy", "v2", 0),
        ("rollback", "v1", 0),
    ]
    status = fleet(controller, "status", "-i", str(inventory))
    assert status.returncode == 0, status.stderr
    assert [line.split()[:3] for line in status.stdout.splitlines()[1:]] == [
        [h.name, "v1", "v1"] for h in hosts
    ]


# several playbook runs, each some seconds per host on a loaded 2-core machine
@pytest.mark.timeout(900)
def test_a_release_that_does_not_come_up_on_host2_halts_the_rollout(
    tmp_path: Path, hosts: list[Host], inventory: Path, controller: Path
) -> None:
    src = write_app(tmp_path / "src", HTTP_APP, {"VERSION": "1"})
    code, _out, err = deploy(controller, src, inventory)
    assert code == 0, err
    host1, host2, host3 = hosts
    (host2.srv / "fail-ready").touch()  # host 2's new processes never become ready
    stop = tmp_path / "stop-load"
    loads = [
        subprocess.Popen(h.in_ns("sh", "-c", f"{LOAD} {stop} {h.base / 'load.json'}"))
        for h in hosts
    ]
    host3_ledger = (host3.root / "ledger.jsonl").read_bytes()
    code, out, err = deploy(
        controller, src, inventory, "--set", "COLOR=red", "--serial", "1", "--revert-on-failure"
    )
    assert code == 1
    (line,) = [x for x in err.splitlines() if x.startswith("brr-release: error:")]
    assert "halted at host2" in line and "not reached: host3" in line, line
    assert [r["outcome"] for r in out["hosts"]] == ["changed", "failed", "not reached"]
    # host 2 runs v1 and its current says so; host 3 saw nothing of v2
    assert running(host2) == "v1"
    assert host2.root.joinpath("current").readlink().name == "v1"
    refused = json.loads(host2.brr("--json", "status").stdout)["refused"]
    assert [r["id"] for r in refused] == ["v2"]
    assert (host3.root / "ledger.jsonl").read_bytes() == host3_ledger
    assert not (host3.root / "releases/v2").exists()
    # --revert-on-failure: host 1, upgraded in this run, runs v1 again
    assert running(host1) == "v1"
    assert host1.root.joinpath("current").readlink().name == "v1"
    # the failed deploy released the fleet lock
    assert not (controller / "fleet/lock.json").exists()
    # no host refused a connection while it switched, failed to switch, or switched back
    stop.touch()
    for h, load in zip(hosts, loads, strict=True):
        assert load.wait(timeout=60) == 0
        counts = wait_until(lambda h=h: json.loads((h.base / "load.json").read_text()))
        assert counts["refused"] == 0 and counts["ok"] > 0, (h.name, counts)


# several playbook runs, each some seconds per host on a loaded 2-core machine
@pytest.mark.timeout(900)
def test_an_unreachable_host_halts_the_rollout(
    tmp_path: Path, hosts: list[Host], controller: Path
) -> None:
    # no multiplexing: a dead host must not keep answering through a master connection
    inventory = write_inventory(
        tmp_path / "hosts.ini", hosts, tmp_path / "fleet" / "keys", multiplex=False
    )
    host1, host2, host3 = hosts
    host2.stop_sshd()
    code, out, err = deploy(controller, app(tmp_path), inventory)
    assert code == 1
    (line,) = [x for x in err.splitlines() if x.startswith("brr-release: error:")]
    assert "halted at host2 (unreachable)" in line, line
    assert [r["outcome"] for r in out["hosts"]] == ["changed", "unreachable", "not reached"]
    assert running(host1) == "v1"
    # host 3 was never touched: with any_errors_fatal the rollout would have gone on
    assert (host3.root / "ledger.jsonl").read_text() == ""
    assert not (controller / "fleet/lock.json").exists()


def test_two_deploys_at_once(tmp_path: Path, controller: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[app]\nnowhere.invalid\n")  # the lock is refused before any host
    held = fleet(controller, "lock", "--what", "deploy by the other operator")
    assert held.returncode == 0, held.stderr
    src = str(app(tmp_path))
    proc = fleet(controller, "deploy", src, "-i", str(inventory))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "locked by" in proc.stderr and "deploy by the other operator" in proc.stderr
    proc = fleet(controller, "deploy", src, "-i", str(inventory), "--lock-wait", "1")
    assert proc.returncode == 1 and "locked by" in proc.stderr
    assert fleet(controller, "unlock").returncode == 0
    # a holder that died (its pid is gone) does not block the fleet for ever
    lock = controller / "fleet/lock.json"
    lock.write_text(
        json.dumps(
            {
                "who": "x",
                "what": "crashed deploy",
                "since": "then",
                "host": socket.gethostname(),
                "pid": 2**22 + 1,
            }
        )
    )
    taken = fleet(controller, "lock", "--what", "mine")
    assert taken.returncode == 0 and "dead holder" in taken.stderr
    assert json.loads(lock.read_text())["what"] == "mine"


@pytest.mark.timeout(600)
def test_a_canary_failure_stops_the_whole_rollout(
    tmp_path: Path, hosts: list[Host], inventory: Path, controller: Path
) -> None:
    src = app(tmp_path)
    code, _out, err = deploy(controller, src, inventory)
    assert code == 0, err
    (hosts[0].srv / "fail-ready").touch()  # the canary's new release never becomes ready
    before = [(h.root / "ledger.jsonl").read_bytes() for h in hosts[1:]]
    code, out, err = deploy(controller, src, inventory, "--set", "COLOR=green")
    assert code == 1
    assert "halted at host1" in err and "not reached: host2, host3" in err
    assert [r["outcome"] for r in out["hosts"]] == ["failed", "not reached", "not reached"]
    assert running(hosts[0]) == "v1"
    assert [(h.root / "ledger.jsonl").read_bytes() for h in hosts[1:]] == before


@pytest.mark.timeout(600)
def test_check_mode_changes_no_host(
    tmp_path: Path, hosts: list[Host], inventory: Path, controller: Path
) -> None:
    code, out, err = deploy(controller, app(tmp_path), inventory, "--check")
    assert code == 0, err
    assert [r["outcome"] for r in out["hosts"]] == ["changed"] * 3  # what it would do
    for h in hosts:
        assert (h.root / "ledger.jsonl").read_text() == ""
        assert list((h.root / "builds").iterdir()) == []
    (run,) = [json.loads(x) for x in (controller / "fleet/ledger.jsonl").read_text().splitlines()]
    assert run["command"] == "deploy --check"

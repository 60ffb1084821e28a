"""The fleet, as a user's would run: three hosts (network namespaces with their own sshd,
/srv and daemon), `brr-release fleet` driving the collection's playbooks over SSH."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.fleet.hosts import Host
from tests.helpers import BRR, write_app

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


def test_fresh_deploy_then_nothing_to_do(
    tmp_path: Path, hosts: list[Host], inventory: Path, controller: Path
) -> None:
    code, out, err = fleet_json(controller, "deploy", str(app(tmp_path)), "-i", str(inventory))
    assert code == 0, err
    assert [r["outcome"] for r in out["hosts"]] == ["changed"] * 3
    assert out["release"] == "v1"
    for h in hosts:
        assert running(h) == "v1"
        assert h.brr("verify").returncode == 0
        builds = [e for e in host_ledger(h) if e["event"] == "build"]
        assert len(builds) == 1 and builds[0]["imported"] is True
    before = [h.root.joinpath("ledger.jsonl").read_bytes() for h in hosts]
    code, out, err = fleet_json(controller, "deploy", str(app(tmp_path)), "-i", str(inventory))
    assert code == 0, err
    assert [r["outcome"] for r in out["hosts"]] == ["ok"] * 3
    assert out["release"] == "v1"
    assert [h.root.joinpath("ledger.jsonl").read_bytes() for h in hosts] == before

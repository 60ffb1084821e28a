from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet.hosts import Host, make_hosts, pids_alive, write_inventory
from tests.helpers import run_brr


def missing() -> str | None:
    if os.environ.get("BRR_FLEET_TESTS") != "1":
        return "the fleet tests run in `make test-fleet` (BRR_FLEET_TESTS=1)"
    if os.geteuid() != 0:
        return "the fleet tests make network namespaces: run as root"
    if not Path("/usr/sbin/sshd").exists():
        return "no /usr/sbin/sshd (apt-get install openssh-server)"
    for tool in ("ip", "nsenter", "unshare", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"no {tool}"
    try:
        import ansible_runner  # noqa: F401
    except ImportError:
        return "no ansible-runner (pip install -e '.[fleet]')"
    return None


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[Host]]:
    why = missing()
    if why:
        pytest.skip(why)
    made = make_hosts(tmp_path / "fleet", 3)
    try:
        yield made
    finally:
        for h in made:
            h.cleanup()
        assert pids_alive(made) == []
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(h.ns in left for h in made)


@pytest.fixture
def inventory(tmp_path: Path, hosts: list[Host]) -> Path:
    return write_inventory(tmp_path / "hosts.ini", hosts, tmp_path / "fleet" / "keys")


@pytest.fixture
def controller(tmp_path: Path) -> Path:
    why = missing()
    if why:
        pytest.skip(why)
    r = tmp_path / "controller"
    run_brr(r, "init")
    return r

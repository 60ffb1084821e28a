"""The controller's fleet lock and ledger, without any host."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from supervisord_lite.brr import fleet_state
from supervisord_lite.errors import OperationFailed
from supervisord_lite.layout import DeployRoot


def test_bare_rollback_goes_to_the_run_before_and_never_to_a_failed_release(
    tmp_path: Path,
) -> None:
    root = DeployRoot(tmp_path)
    assert fleet_state.bare_rollback_target(root) is None
    for release, code in (("v1", 0), ("v2", 0), ("v3", 1), ("v2", 0)):
        fleet_state.record(root, command="deploy", release=release, exit=code, hosts={})
    assert fleet_state.bare_rollback_target(root) == "v1"
    # v3 failed on some host: even after a later run of it, a bare rollback skips it
    fleet_state.record(root, command="deploy", release="v3", exit=0, hosts={})
    assert fleet_state.bare_rollback_target(root) == "v2"


def test_the_lock_names_its_holder_and_a_dead_one_is_taken_over(tmp_path: Path) -> None:
    root = DeployRoot(tmp_path)
    fleet_state.acquire(root, "deploy A", wait=0, pid=os.getpid())
    with pytest.raises(OperationFailed, match=r"locked by .* \(deploy A\) since"):
        fleet_state.acquire(root, "deploy B", wait=0.6, pid=None)
    assert fleet_state.release(root) is True
    dead = {
        "who": "x",
        "what": "crashed",
        "since": "t",
        "host": socket.gethostname(),
        "pid": 2**22 + 7,
    }
    fleet_state.lock_path(root).write_text(json.dumps(dead))
    mine = fleet_state.acquire(root, "deploy C", wait=0, pid=None)
    assert mine["what"] == "deploy C"
    fleet_state.release(root)
    # a rollout that fails inside the lock leaves it released
    with pytest.raises(RuntimeError), fleet_state.held(root, "deploy D", wait=0):
        raise RuntimeError("the playbook blew up")
    assert fleet_state.read_holder(root) is None

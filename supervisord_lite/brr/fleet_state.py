"""The controller's side of a fleet: its lock and its ledger, under ROOT/fleet/.

The controller's root numbers the fleet's releases (it builds and releases, and never
runs them). Two rollouts at once would interleave hosts and releases, so a deploy or a
rollback holds the fleet lock: a file made with O_EXCL that says who holds it, for what,
since when, and, when a `brr-release fleet` process holds it, that process's pid. A
holder that died is noticed by its pid (the lock is then taken over, and says so); a
playbook run by hand holds it without a pid, and a crashed one leaves it to
`brr-release fleet unlock`. A flock would vanish with the process that took it, which
for a playbook task is a short-lived child: hence a file.

The fleet ledger, ROOT/fleet/ledger.jsonl, records what ran where: one line a run with
the command, the release, each host's outcome and the exit code.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from supervisord_lite import fsatomic, ledger
from supervisord_lite.errors import OperationFailed
from supervisord_lite.layout import DeployRoot

POLL = 0.5


def fleet_dir(root: DeployRoot) -> Path:
    return root.path / "fleet"


def lock_path(root: DeployRoot) -> Path:
    return fleet_dir(root) / "lock.json"


def ledger_path(root: DeployRoot) -> Path:
    return fleet_dir(root) / "ledger.jsonl"


def who() -> str:
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return f"{user}@{socket.gethostname()}"


def read_holder(root: DeployRoot) -> dict[str, Any] | None:
    try:
        data = json.loads(lock_path(root).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"who": "unknown", "what": "unreadable lock file", "since": "?"}
    return data if isinstance(data, dict) else {"who": "unknown", "what": "?", "since": "?"}


def stale(holder: dict[str, Any]) -> bool:
    pid = holder.get("pid")
    same_host = holder.get("host") == socket.gethostname()
    return isinstance(pid, int) and same_host and not fsatomic.pid_alive(pid)


def describe(holder: dict[str, Any]) -> str:
    return f"{holder.get('who')} ({holder.get('what')}) since {holder.get('since')}"


def acquire(root: DeployRoot, what: str, *, wait: float, pid: int | None) -> dict[str, Any]:
    """Take the fleet lock, waiting up to wait seconds; OperationFailed naming the holder."""
    fleet_dir(root).mkdir(parents=True, exist_ok=True)
    mine: dict[str, Any] = {"who": who(), "what": what, "since": ledger.utc_now()}
    mine["host"] = socket.gethostname()
    if pid is not None:
        mine["pid"] = pid
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = os.open(lock_path(root), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = read_holder(root)
            if holder is not None and stale(holder):
                print(
                    f"fleet: taking over the lock of a dead holder, {describe(holder)}",
                    file=sys.stderr,
                )
                release(root)
                continue
            if holder is not None and time.monotonic() >= deadline:
                raise OperationFailed(
                    f"the fleet is locked by {describe(holder)}; nothing was changed "
                    "(--lock-wait S waits; `brr-release fleet unlock` if that run is gone)"
                ) from None
            time.sleep(POLL)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(mine) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return mine


def release(root: DeployRoot) -> bool:
    """Remove the lock; False when there was none."""
    try:
        lock_path(root).unlink()
    except FileNotFoundError:
        return False
    return True


@contextlib.contextmanager
def held(root: DeployRoot, what: str, *, wait: float) -> Any:
    """The lock for the life of this process's block, released however the block ends."""
    acquire(root, what, wait=wait, pid=os.getpid())
    try:
        yield
    finally:
        release(root)


def record(root: DeployRoot, **fields: Any) -> None:
    """Append one run to the fleet ledger (one write with O_APPEND, then fsync)."""
    fleet_dir(root).mkdir(parents=True, exist_ok=True)
    entry = {"at": ledger.utc_now(), "who": who(), **fields}
    line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
    fd = os.open(ledger_path(root), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def runs(root: DeployRoot) -> list[dict[str, Any]]:
    """Every whole line of the fleet ledger (a torn or foreign line is skipped: the fleet
    ledger is a record for people, never the root's own ledger)."""
    try:
        data = ledger_path(root).read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in data.split(b"\n"):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def bare_rollback_target(root: DeployRoot) -> str | None:
    """The release the fleet ran before its last one: only releases a run completed."""
    real = [r for r in runs(root) if r.get("command") in ("deploy", "rollback")]  # not --check
    done = [r["release"] for r in real if r.get("exit") == 0 and r.get("release")]
    refused = {r.get("release") for r in real if r.get("exit") not in (0, None)}
    if not done:
        return None
    for rid in reversed(done):
        if rid != done[-1] and rid not in refused:
            return str(rid)
    return None

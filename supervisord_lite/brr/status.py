"""`brr-release status`: what a play (or an operator) needs to decide, without parsing text.

current: where `current` points. running: what the daemon runs, asked over its control
socket when it runs (None when it does not: `current` is then what it will run). Last
switch: the daemon's report of its last switch, and the ledger's last activation or
rollback. refused: releases the daemon would not run (never a bare rollback's target).
"""

from __future__ import annotations

from typing import Any

from supervisord_lite import daemon_client, ledger, refusals
from supervisord_lite.errors import OperationFailed
from supervisord_lite.layout import DeployRoot, release_number


def daemon_status(root: DeployRoot) -> dict[str, Any] | None:
    if daemon_client.daemon_pid(root) is None:
        return None
    try:
        reply = daemon_client.request(root.control_socket, {"cmd": "status"}, timeout=10)
    except OperationFailed:
        return None
    status = reply.get("status") if reply.get("ok") else None
    return status if isinstance(status, dict) else None


def refused_releases(root: DeployRoot, entries: list[dict[str, Any]]) -> list[dict[str, str]]:
    """[{id, reason}], oldest ID first (refusals.py: the daemon's record and the ledger's)."""
    found = refusals.refused_releases(root, entries)
    return [{"id": rid, "reason": found[rid]} for rid in sorted(found, key=release_number)]


def status(root: DeployRoot) -> dict[str, Any]:
    root.require_initialized()
    entries = ledger.read_ledger(root.ledger).entries
    switches = [e for e in entries if e.get("event") in ("activate", "rollback")]
    daemon = daemon_status(root)
    running = None
    if daemon is not None:
        running = {"release": daemon.get("release"), "state": daemon.get("state")}
    return {
        "current": root.current_release_id(),
        "running": running,
        "daemon_pid": daemon_client.daemon_pid(root),
        "last_switch": daemon.get("last_switch") if daemon else None,
        "last_activation": switches[-1] if switches else None,
        "releases": root.release_ids(),
        "builds": root.build_ids(),
        "refused": refused_releases(root, entries),
    }


def format_status(data: dict[str, Any]) -> str:
    running = data["running"]
    runs = f"{running['release']} ({running['state']})" if running else "no daemon running"
    lines = [f"current: {data['current'] or 'none'}", f"running: {runs}"]
    last = data["last_activation"]
    if last:
        lines.append(f"last {last['event']}: {last['id']} at {last['at']}")
    for refused in data["refused"]:
        lines.append(f"refused: {refused['id']} ({refused['reason']})")
    return "\n".join(lines)

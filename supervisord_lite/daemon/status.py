"""The status snapshot: SPEC's shape for `status --json`, and a short line for systemd.

Plain functions over the daemon's values, so the shape lives in one place. Beyond the
SPEC example, `brr-release activate --wait` relies on: `last_switch.finished_at` (unix
time) to tell a switch that finished after its activation, and `rejected` (the last
reload that found `current` invalid: `{"at", "id", "error"}`) to fail fast. `fallback`
(`{"current", "running", "reason"}` while last-good runs instead of current) and
`refused` (the daemon's records, `[{"id", "at", "reason"}]`) say what a boot or a
switch would not run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from supervisord_lite.daemon.generation import Generation
from supervisord_lite.daemon.process import Process

DAEMON_STATES = ("starting", "running", "switching", "stopping")


@dataclass(frozen=True)
class SwitchRecord:
    from_id: str | None
    to_id: str
    ok: bool
    error: str | None
    seconds: float
    finished_at: float

    def to_data(self) -> dict[str, Any]:
        return {
            "from": self.from_id,
            "to": self.to_id,
            "ok": self.ok,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True)
class Rejection:
    at: float
    id: str | None
    error: str

    def to_data(self) -> dict[str, Any]:
        return {"at": self.at, "id": self.id, "error": self.error}


def process_entry(proc: Process) -> dict[str, Any]:
    entry = {
        "name": proc.name,
        "type": proc.spec.type,
        "release": proc.release.id,
        "pid": proc.pid,
        "state": proc.state.value,
        "restarts": proc.restarts,
        "uptime": proc.uptime(),
        "exit_code": proc.exit_code,
    }
    note = proc.services.notes.get(proc.pid) if proc.pid else None
    if note:  # heldsocket.py's warning, while that pid lives
        entry["note"] = note
    return entry


def snapshot(
    *,
    state: str,
    active: Generation | None,
    generations: Sequence[Generation],
    last_switch: SwitchRecord | None,
    rejected: Rejection | None,
    fallback: dict[str, Any] | None = None,
    refused: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "release": active.release.id if active else None,
        "build": active.release.build if active else None,
        "state": state,
        "processes": [process_entry(p) for g in generations for p in g.processes],
        "last_switch": last_switch.to_data() if last_switch else None,
        "rejected": rejected.to_data() if rejected else None,
        "fallback": fallback,
        "refused": refused or [],
    }


def status_text(state: str, active: Generation | None) -> str:
    """One short line for systemd's STATUS=."""
    if active is None:
        return state
    running = sum(1 for p in active.processes if p.state.value == "RUNNING")
    return f"{state}: {active.release.id}, {running}/{len(active.processes)} running"

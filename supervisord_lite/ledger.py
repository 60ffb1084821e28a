"""The append-only ledger: `ROOT/ledger.jsonl`, one JSON object a line.

Each event is one write(2) of one whole line with O_APPEND, then fsync. A power loss can
leave a torn last line: readers skip it, and the next writer (holding the root's lock)
truncates it away before appending, so the file never has garbage in its middle. Callers
hold `DeployRoot.locked()` for every append; `seq` is one more than the last good line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EVENTS = ("build", "release", "activate", "rollback", "prune", "release_command_failed")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LedgerRead:
    entries: list[dict[str, Any]]
    good_bytes: int  # length of the prefix made of whole, parseable lines
    torn: bool


def read_ledger(path: Path) -> LedgerRead:
    """Every whole line of the ledger; a torn or unparseable tail is skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return LedgerRead([], 0, False)
    entries: list[dict[str, Any]] = []
    good = 0
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break
        line = data[pos:end]
        try:
            entry = json.loads(line)
        except ValueError:
            break
        if not isinstance(entry, dict):
            break
        entries.append(entry)
        pos = end + 1
        good = pos
    return LedgerRead(entries, good, good != len(data))


def append(path: Path, event: str, entry_id: str, **fields: Any) -> dict[str, Any]:
    """Append one event; the caller holds the root's lock. Returns the entry written."""
    if event not in EVENTS:
        raise ValueError(f"unknown ledger event {event!r}")
    state = read_ledger(path)
    last_seq = max((int(e.get("seq", 0)) for e in state.entries), default=0)
    entry = {"seq": last_seq + 1, "at": utc_now(), "event": event, "id": entry_id, **fields}
    line = (json.dumps(entry, sort_keys=False, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    try:
        if state.torn:
            os.ftruncate(fd, state.good_bytes)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry


def activation_history(entries: list[dict[str, Any]]) -> list[str]:
    """Release IDs in the order they became current (activate and rollback events)."""
    return [str(e["id"]) for e in entries if e.get("event") in ("activate", "rollback")]


def highest_release_number(entries: list[dict[str, Any]]) -> int:
    best = 0
    for e in entries:
        if e.get("event") == "release":
            rid = str(e.get("id", ""))
            if rid[:1] == "v" and rid[1:].isdigit():
                best = max(best, int(rid[1:]))
    return best

"""The append-only ledger: `ROOT/ledger.jsonl`, one JSON object a line.

Each event is one write(2) of one whole line with O_APPEND, then fsync. A power loss can
leave a torn last line: readers skip it, and the next writer (holding the root's lock)
truncates it away before appending, so the file never has garbage in its middle. Callers
hold `DeployRoot.locked()` for every append; `seq` is one more than the last good line.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from supervisord_lite.errors import NO_SPACE, OperationFailed

EVENTS = (
    "build",
    "release",
    "activate",
    "rollback",
    "activate_failed",
    "prune",
    "release_command_failed",
)


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


class LedgerWriteFailed(OperationFailed):
    """An event could not be appended; the ledger is as it was. `cause` is the OSError."""

    def __init__(self, message: str, cause: OSError) -> None:
        super().__init__(message)
        self.cause = cause


def append(path: Path, event: str, entry_id: str, **fields: Any) -> dict[str, Any]:
    """Append one event; the caller holds the root's lock. Returns the entry written.

    Raises LedgerWriteFailed when the line cannot be written (a full disk, a file size
    limit); the ledger is then as it was, with no part of the line in it.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown ledger event {event!r}")
    state = read_ledger(path)
    last_seq = max((int(e.get("seq", 0)) for e in state.entries), default=0)
    entry = {"seq": last_seq + 1, "at": utc_now(), "event": event, "id": entry_id, **fields}
    line = (json.dumps(entry, sort_keys=False, separators=(",", ":")) + "\n").encode()
    try:
        write_line(path, line, state)
    except OSError as exc:
        raise LedgerWriteFailed(
            f"cannot append `{event} {entry_id}` to the ledger {path}: "
            f"{exc.strerror or exc} ({unrecorded(event, entry_id, exc)})",
            exc,
        ) from None
    return entry


def unrecorded(event: str, entry_id: str, exc: OSError) -> str:
    """What a failed append leaves: every event is appended once its change is done."""
    then = "free space, then " if exc.errno in NO_SPACE else ""
    match event:
        case "build" | "release":
            return f"the {event} is stored but not recorded; {then}run it again"
        case "activate" | "rollback":
            # brr/activate.py moves current back and says so itself; this is its fallback
            return (
                f"{entry_id} is current but not recorded and the daemon was not signalled; "
                f"{then}run `brr-release activate {entry_id}`"
            )
        case "prune":
            return "the prune is done but not recorded"
        case "activate_failed":
            return f"current is back at the release that runs, but {entry_id} is not marked"
        case _:
            return "nothing was changed"


def write_line(path: Path, line: bytes, state: LedgerRead) -> None:
    """Write line at the end of the good prefix; on failure cut the file back to it.

    A short write is not an error by itself (a size limit or a full disk lets part of a
    line through): the rest is written until it raises, then the part goes.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    try:
        if state.torn:
            os.ftruncate(fd, state.good_bytes)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, state.good_bytes)
            raise
    finally:
        os.close(fd)


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

"""The append-only ledger: `ROOT/ledger.jsonl`, one JSON object a line.

Each event is one write(2) of one whole line with O_APPEND, then fsync. A power loss can
leave a torn last line (bytes after the last newline): readers skip it, and the next
writer (holding the root's lock) truncates it away before appending. Nothing else is
ever cut: a whole line that does not parse or whose fields are wrong is damage, not a
power loss, and every writer refuses with one line naming its number (so no `seq` is
reused and no history is lost) until an operator repairs it; `verify` exits 1 on it.
Callers hold `DeployRoot.locked()` for every append; `seq` is one more than the last line.
The file is opened without following a symlink (nofollow.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from supervisord_lite import nofollow
from supervisord_lite.errors import NO_SPACE, OperationFailed
from supervisord_lite.layout import BUILD_ID_RE, is_release_id

EVENTS = (
    "build",
    "release",
    "activate",
    "rollback",
    "activate_failed",
    "prune",
    "release_command_failed",
)
RELEASE_EVENTS = ("release", "activate", "rollback", "activate_failed", "release_command_failed")
EVENT_NAME_RE = re.compile(r"[a-z][a-z_]{0,39}")  # kinds added later read as well
MAX_LINE = 1024 * 1024


def utc_now() -> str:
    from datetime import UTC, datetime  # writers only: readers do not pay its import

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LedgerDamaged(OperationFailed):
    """A whole line of the ledger is not a valid event: nothing is written past it."""


class LedgerRead(NamedTuple):  # not a dataclass: see layout.DeployRoot
    entries: list[dict[str, Any]]
    good_bytes: int  # length of the prefix made of whole lines
    torn: bool  # bytes after the last newline: a write cut by a power loss
    damage: str | None = None  # the first bad whole line, as a one-line message


def read_ledger(path: Path, *, strict: bool = True) -> LedgerRead:
    """Every whole line of the ledger; a torn tail is skipped.

    Raises LedgerDamaged when a whole line is bad (strict), or else reports it in
    `damage` with the entries of every good line (for `verify`).
    """
    try:
        fd = nofollow.open_file(path.parent, path.name, os.O_RDONLY)
    except FileNotFoundError:
        return LedgerRead([], 0, False)
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    whole = data.rfind(b"\n") + 1
    entries: list[dict[str, Any]] = []
    damage: str | None = None
    for number, line in enumerate(data[:whole].split(b"\n")[:-1], start=1):
        last = entries[-1]["seq"] if entries else 0
        entry, problem = parse_line(line, last)
        if problem is None and entry is not None:
            entries.append(entry)
        elif damage is None:
            damage = f"{path} line {number}: {problem}"
    state = LedgerRead(entries, whole, whole != len(data), damage)
    if strict and damage is not None:
        raise LedgerDamaged(f"{damage}: the ledger is damaged; nothing was changed ({REPAIR})")
    return state


REPAIR = "see `brr-release verify`; repair or remove that line by hand"


def parse_line(line: bytes, last_seq: int) -> tuple[dict[str, Any] | None, str | None]:
    """(entry, None) for a valid event line; (None, what is wrong) otherwise."""
    if len(line) > MAX_LINE:
        return None, "line too long"
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):
        return None, "not JSON"
    if not isinstance(entry, dict):
        return None, "not a JSON object"
    return entry, entry_problem(entry, last_seq)


def entry_problem(entry: dict[str, Any], last_seq: int) -> str | None:
    seq, event, entry_id = entry.get("seq"), entry.get("event"), entry.get("id")
    if type(seq) is not int or seq <= last_seq:
        return f"seq {seq!r} is not an integer above the line before it ({last_seq})"
    if not isinstance(event, str) or not EVENT_NAME_RE.fullmatch(event):
        return f"event {event!r} is not an event name"
    if not isinstance(entry_id, str) or len(entry_id) > 200:
        return f"id {entry_id!r} is not an ID"
    if event in RELEASE_EVENTS and not is_release_id(entry_id):
        return f"id {entry_id!r} is not a release ID (v1 to v999999999)"
    if event == "build" and not BUILD_ID_RE.fullmatch(entry_id):
        return f"id {entry_id!r} is not a build ID"
    previous = entry.get("previous")
    if previous is not None and not (isinstance(previous, str) and is_release_id(previous)):
        return f"previous {previous!r} is not a release ID"
    digest = entry.get("digest")
    if digest is not None and not isinstance(digest, str):
        return f"digest {digest!r} is not a string"
    return None


def check(path: Path) -> LedgerRead:
    """Raise LedgerDamaged (or PlantedLink) now, before a change the ledger must record.

    The caller holds the root's lock: what it returns can be given to append() below,
    which then need not read the whole ledger a second time."""
    return read_ledger(path)


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
    return append_checked(path, None, event, entry_id, **fields)


def append_checked(
    path: Path, checked: LedgerRead | None, event: str, entry_id: str, **fields: Any
) -> dict[str, Any]:
    """append(), given what check() returned under the same lock (None: read it now)."""
    if event not in EVENTS:
        raise ValueError(f"unknown ledger event {event!r}")
    state = checked if checked is not None else read_ledger(path)
    last_seq = state.entries[-1]["seq"] if state.entries else 0
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
    fd = nofollow.open_file(path.parent, path.name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
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
        rid = e.get("id")
        if e.get("event") == "release" and isinstance(rid, str) and is_release_id(rid):
            best = max(best, int(rid[1:]))
    return best


def release_digests(entries: list[dict[str, Any]]) -> dict[str, str]:
    """The digest each release was recorded with (releases made before it was recorded
    have none)."""
    return {
        str(e["id"]): str(e["digest"])
        for e in entries
        if e.get("event") == "release" and isinstance(e.get("digest"), str)
    }

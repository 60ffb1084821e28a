"""Refused releases: what the daemon would not run, so that nobody runs it by accident.

A release is refused when a switch to it failed (a process exited or missed its ready
timeout before the whole generation was ready), when the daemon booted on it and it never
got ready, or when `current` named something the daemon could not load. Two records say
so, because either writer may be the one still alive:

- `run/refused.json`, the daemon's own: `{"v4": {"at": unix time, "reason": "..."}}`.
  Written whole and renamed into place; a successful run of the release removes its entry.
- the ledger's `activate_failed` event (`id`, `reason`, `current`): written under the
  root's lock by whoever moved `current` back to the release that runs (`activate --wait`
  or the daemon itself), so `releases`, `show` and a bare `rollback` see the refusal.

`current` must name what runs (SPEC, invariants of 2026-12). revert_current() is the one
place that moves it back; it only acts while `current` still names the refused release,
so the daemon and `activate --wait`, racing to do it, record it once.

Why the daemon honours its record at boot only while the record is newer than `current`:
an operator who activates a refused release again (the database it needed is back) means
it, and the symlink's own mtime says when that happened without a second writer of the
daemon's file.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, NamedTuple

from supervisord_lite import ledger, nofollow
from supervisord_lite.errors import BrrError
from supervisord_lite.layout import RELEASE_ID_RE, DeployRoot

REASON_MAX = 400  # a reason is one line in a ledger and a status; a traceback is not


class Refusal(NamedTuple):  # not a dataclass: see layout.DeployRoot
    id: str
    at: float
    reason: str

    def to_data(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "reason": self.reason}


def one_line(reason: str) -> str:
    line = " ".join(reason.split())
    return line if len(line) <= REASON_MAX else line[: REASON_MAX - 3] + "..."


def read_daemon_records(root: DeployRoot) -> dict[str, Refusal]:
    """run/refused.json; a missing, torn or forged file reads as no record at all."""
    try:
        fd = nofollow.open_file(root.path, "run/refused.json", os.O_RDONLY)
        with open(fd, "rb") as f:
            data = json.loads(f.read(1 << 20))
    except (OSError, ValueError, nofollow.PlantedLink):
        return {}  # a planted link reads as no record: never followed by root
    if not isinstance(data, dict):
        return {}
    out: dict[str, Refusal] = {}
    for rid, rec in data.items():
        if not (isinstance(rid, str) and RELEASE_ID_RE.fullmatch(rid) and isinstance(rec, dict)):
            continue
        at, reason = rec.get("at"), rec.get("reason")
        if isinstance(at, int | float) and isinstance(reason, str):
            out[rid] = Refusal(rid, float(at), reason)
    return out


def write_daemon_records(root: DeployRoot, records: dict[str, Refusal]) -> None:
    from supervisord_lite import fsatomic  # the readers (`releases`, `status`) never write

    data = {r.id: {"at": r.at, "reason": r.reason} for r in records.values()}
    fsatomic.write_file(root.refused_file, json.dumps(data, indent=1).encode(), mode=0o644)


def record(root: DeployRoot, refusal: Refusal) -> None:
    """Add (or renew) the daemon's record of a refusal. OSError when it cannot write."""
    records = read_daemon_records(root)
    records[refusal.id] = refusal
    write_daemon_records(root, records)


def clear(root: DeployRoot, release_id: str) -> None:
    """release_id ran: it is no longer refused. OSError when it cannot write."""
    records = read_daemon_records(root)
    if records.pop(release_id, None) is not None:
        write_daemon_records(root, records)


def current_mtime(root: DeployRoot) -> float:
    try:
        return os.lstat(root.current).st_mtime
    except OSError:
        return 0.0


def refused_at_boot(root: DeployRoot, release_id: str) -> Refusal | None:
    """The daemon's refusal of release_id, unless `current` was moved to it since."""
    found = read_daemon_records(root).get(release_id)
    if found is None or found.at < current_mtime(root):
        return None
    return found


def refused_releases(root: DeployRoot, entries: list[dict[str, Any]]) -> dict[str, str]:
    """Release ID -> why it is refused, from the ledger and the daemon's records.

    In the ledger a release is refused when its last activation was followed by an
    `activate_failed`; activating it again (and keeping it) lifts that.
    """
    out: dict[str, str] = {}
    for entry in entries:
        rid, event = str(entry.get("id")), entry.get("event")
        if event == "activate_failed":
            out[rid] = str(entry.get("reason") or "the daemon refused it")
        elif event in ("activate", "rollback"):
            out.pop(rid, None)
    records = read_daemon_records(root)
    activated = last_activations(entries) if records else {}
    for refusal in records.values():
        if refusal.at > activated.get(refusal.id, 0.0):  # not activated again since
            out.setdefault(refusal.id, refusal.reason)
    return out


def last_activations(entries: list[dict[str, Any]]) -> dict[str, float]:
    """Release ID -> when it was last activated (unix time), from the ledger's `at`."""
    from datetime import datetime  # only with a daemon record to weigh: 2 ms of start-up

    out: dict[str, float] = {}
    for entry in entries:
        if entry.get("event") in ("activate", "rollback"):
            with contextlib.suppress(TypeError, ValueError):
                at = datetime.fromisoformat(str(entry.get("at")).replace("Z", "+00:00"))
                out[str(entry.get("id"))] = at.timestamp()
    return out


def revert_current(
    root: DeployRoot, refused: str, running: str, reason: str, *, wait: bool = True
) -> bool:
    """Move `current` from refused back to running and record why; False when not done.

    Not done: `current` no longer names refused (someone else moved it: nothing to undo),
    or, with wait=False, another writer holds the lock (the daemon must not block on an
    operator's long command; its own record covers the next boot).
    """
    from supervisord_lite import fsatomic

    try:
        with root.locked(wait=wait):
            if root.current_release_id() != refused or refused == running:
                return False
            fsatomic.replace_symlink(root.current, f"releases/{running}")
            with contextlib.suppress(BrrError):
                # current is right either way (a full disk, a damaged ledger): the ledger
                # line is only what `releases` shows, and run/refused.json says it too
                ledger.append(
                    root.ledger,
                    "activate_failed",
                    refused,
                    reason=one_line(reason),
                    current=running,
                )
            return True
    except BlockingIOError:
        return False

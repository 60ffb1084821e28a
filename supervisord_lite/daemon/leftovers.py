"""What a SIGKILLed daemon left on this root, found and killed by the next one at start.

run/children.json is written by the daemon but lies in run/, which anyone in the deploy
group can write: each entry is only a hint, acted on when the process proves to be one
a daemon of ours spawned (recorded_child). See reaper.py for the whole design.

Read from /proc directly, as psutil would read it: this runs at every start, and psutil
would stay in the daemon's memory (about 1.5 MB) for one scan.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from supervisord_lite.daemon.proctree import (
    environ,
    killpg,
    session_of,
    signal_pids,
    start_ticks,
    subtree,
)


def kill_previous(record: Path, builds: Path) -> int:
    """At start: SIGKILL what a killed daemon left on this root. How many were killed.

    The record is a file anyone in the deploy group can write: an entry is only a hint,
    acted on when the process proves to be one a daemon spawned (recorded_child).
    """
    doomed: set[int] = set()
    try:
        entries = json.loads(record.read_text())
    except (OSError, ValueError, RecursionError):
        entries = []
    for entry in entries if isinstance(entries, list) else []:
        pid = recorded_child(entry)
        if pid is not None:
            killpg(pid, signal.SIGKILL)
            doomed.update(subtree(pid))
    doomed.update(strays(builds))
    doomed.difference_update({0, 1, os.getpid()})
    signal_pids(doomed, signal.SIGKILL)
    record.unlink(missing_ok=True)
    return len(doomed)


def recorded_child(entry: object) -> int | None:
    """The pid an entry of children.json names, if that process is one a daemon of ours
    spawned: pid == pgid == session (setsid at spawn), the recorded start time (not a
    reused pid), our uid, and BRR_PROCESS in the environment it was started with. A
    forged `pgid: 1` (kill(-1): every process) or a pid of sshd never passes."""
    if not isinstance(entry, dict):
        return None
    pid, pgid, ticks = entry.get("pid"), entry.get("pgid"), entry.get("start_ticks")
    if type(pid) is not int or pid <= 1 or pgid != pid or pid == os.getpid():
        return None
    if type(ticks) is not int or start_ticks(pid) != ticks or session_of(pid) != (pid, pid):
        return None
    if real_uid(pid) != os.getuid() or b"BRR_PROCESS" not in (environ(pid) or {}):
        return None
    return pid


def strays(builds: Path) -> set[int]:
    """Processes of our uid running under builds/ with a BRR_PROCESS in their environment."""
    found: set[int] = set()
    uid = os.getuid()
    prefix = str(builds) + os.sep
    for pid in all_pids():
        if pid <= 1 or real_uid(pid) != uid:
            continue
        cwd = working_directory(pid)
        if cwd is None or not (cwd + os.sep).startswith(prefix):
            continue
        if b"BRR_PROCESS" in (environ(pid) or {}):
            found.update(subtree(pid))
    return found


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def real_uid(pid: int) -> int | None:
    """pid's real uid (the first of /proc/<pid>/status's Uid: line); None when gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return None


def working_directory(pid: int) -> str | None:
    """pid's working directory; one removed since (a pruned build) without the kernel's
    ` (deleted)` mark, as psutil gives it."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    mark = " (deleted)"
    if cwd.endswith(mark) and not os.path.exists(cwd):
        cwd = cwd[: -len(mark)]
    return cwd

"""What a SIGKILLed daemon left on this root, found and killed by the next one at start.

run/children.json is written by the daemon but lies in run/, which anyone in the deploy
group can write: each entry is only a hint, acted on when the process proves to be one
a daemon of ours spawned (recorded_child). See reaper.py for the whole design.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

import psutil

from supervisord_lite.daemon.proctree import killpg, session_of, signal_pids, start_ticks, subtree


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
    try:
        proc = psutil.Process(pid)
        if proc.uids().real != os.getuid() or "BRR_PROCESS" not in proc.environ():
            return None
    except psutil.Error:
        return None
    return pid


def strays(builds: Path) -> set[int]:
    """Processes of our uid running under builds/ with a BRR_PROCESS in their environment."""
    found: set[int] = set()
    uid = os.getuid()
    prefix = str(builds) + os.sep
    for proc in psutil.process_iter(["uids", "pid"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid <= 1 or proc.info["uids"] is None or proc.info["uids"].real != uid:
                continue
            if not (proc.cwd() + os.sep).startswith(prefix):
                continue
            if "BRR_PROCESS" in proc.environ():
                found.update(subtree(proc.pid))
    return found

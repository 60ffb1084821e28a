"""Processes as trees: who descends from whom, when each started, which session it is in.

Read from /proc, per process, so a walk costs O(its tree), not O(host): the children
file of each thread (/proc/<pid>/task/<tid>/children), and field 22 of /proc/<pid>/stat
for the start time, which with the pid names one process ever (pids are reused). Where
the kernel has no children files, psutil's scan of every process stands in: psutil is
imported there only, so the daemon does not carry it (about 1.5 MB) where it never runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

MAX_TREE = 100_000  # a bound on one walk of a tree that forks while it is walked


def listed_children() -> list[int] | None:
    """Our direct children from /proc; None when the kernel does not list them."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return None


def signal_pids(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        if pid <= 1:  # kill(-1), kill(0) and init are never meant
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def killpg(pgid: int, sig: int) -> bool:
    """Signal a process group; False when the group is gone.

    Never a pgid below 2: killpg(1) and kill(-1) reach every process we may signal.
    """
    if pgid <= 1:
        raise ValueError(f"refusing to signal process group {pgid}")
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def subtree(pid: int) -> list[int]:
    """pid and every descendant it has now."""
    if listed_children() is None:  # no children files: psutil's scan of every process
        import psutil

        try:
            proc = psutil.Process(pid)
            return [pid, *(c.pid for c in proc.children(recursive=True))]
        except psutil.Error:
            return []
    return [pid, *(child for child, _ in descendants(pid))]


def children_of(pid: int) -> list[int]:
    """pid's children, from the children file of each of its threads."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for task in tasks:
        with (
            contextlib.suppress(OSError, ValueError),
            open(f"/proc/{pid}/task/{task}/children", "rb") as f,
        ):
            out.extend(int(x) for x in f.read().split())
    return out


def descendants(pid: int) -> set[tuple[int, int]]:
    """Every descendant of pid as (pid, start ticks): O(its tree), not O(host)."""
    found: set[tuple[int, int]] = set()
    todo, seen = [pid], {pid}
    while todo and len(seen) < MAX_TREE:
        for child in children_of(todo.pop()):
            ticks = start_ticks(child)
            if child not in seen and ticks is not None:
                seen.add(child)
                found.add((child, ticks))
                todo.append(child)
    return found


def escaped(pid: int) -> bool:
    """A process that left for a session of its own and cleared its environment
    (`setsid env -i ...`): nothing about it names the process it came from."""
    if session_of(pid) != (pid, pid):
        return False
    env = environ(pid)
    return env is not None and b"BRR_PROCESS" not in env


def start_ticks(pid: int) -> int | None:
    """When pid started, in clock ticks since boot: with the pid, names one process ever.

    Read straight from /proc/<pid>/stat (field 22): psutil's create_time costs a few
    times more, which 500 spawns in a burst feel.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def environ(pid: int) -> dict[bytes, bytes] | None:
    """The environment pid was started with (/proc/<pid>/environ, as psutil reads it);
    None when it is gone, not ours, or no descriptor is left (EMFILE)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return None
    env = {}
    for entry in data.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep:
            env[key] = value
    return env


def tagged_any(pid: int) -> bool:
    env = environ(pid)
    return env is not None and b"BRR_PROCESS" in env


def tag_of(pid: int) -> tuple[str, str] | None:
    """(BRR_PROCESS, BRR_RELEASE) from pid's environment: which process it belongs to."""
    env = environ(pid)
    if env is None or b"BRR_PROCESS" not in env:
        return None
    return os.fsdecode(env[b"BRR_PROCESS"]), os.fsdecode(env.get(b"BRR_RELEASE", b""))


def session_of(pid: int) -> tuple[int, int] | None:
    """(process group, session) of pid, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[2]), int(fields[3])
    except (OSError, IndexError, ValueError):
        return None

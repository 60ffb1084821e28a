"""Nothing the release started outlives it: subreaper, orphan reaping, the kill of a tree,
and the record that lets a restarted daemon finish off what a killed one left.

Choices, and what was rejected:
- The daemon is a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so a double-forked
  grandchild is re-parented to us, not to init, and stays findable.
- Adopted orphans must be reaped when they die, but never with waitpid(-1): that would
  steal the exit status a process task is awaiting on its pidfd. We reap only zombies we
  did not spawn that are still zombies a grace later: other code in the daemon (a `cmd`
  readiness probe via anyio.open_process) waits for its own children in a thread that
  wakes at once, so a zombie still there after the grace has nobody else waiting for it.
  On SIGCHLD we first ask the kernel whether any child is a zombie at all (waitid with
  WNOWAIT, which reaps nothing): almost always the exit was one of ours, already reaped
  by its task, and the pass ends there, at no cost per process. Only when a zombie is
  left do we list our direct children (/proc/self/task/<pid>/children) and look at the
  ones we did not spawn. Where the kernel lacks that file, we do not scan every process
  on the host (psutil's way to find children): waitid shows one zombie at a time, which
  is reaped after its grace before the next one can be seen.
- Which leftovers belong to a process: its process group (pgid == its pid, setsid at
  spawn; the kernel never reuses a pid while its group exists, so killpg is safe), and
  among the orphans we adopted, those whose environment says BRR_PROCESS/BRR_RELEASE of
  that process (with their subtrees). Scanning every process on the host was rejected:
  it costs O(host) per stop and could touch other roots' processes.
- After a SIGKILL of the daemon its children survive (they have their own sessions).
  The record: run/children.json lists every child's pid, pgid and start time, rewritten
  (temp + rename, no fsync: after a power loss nothing of ours runs anyway) by one task
  at most once per RECORD_BATCH, so 500 spawns cost a few writes; a child spawned in
  the last RECORD_BATCH before a SIGKILL is still found by the scan below. At start the
  new daemon kills each recorded process whose start time still matches (pid reuse), its
  group and subtree, and then any process of our uid whose cwd is under ROOT/builds and whose
  environment has BRR_PROCESS: that catches double-forked orphans the record never saw
  (they were re-parented to init when the old daemon died). A process that both left
  its session and changed directory out of the root escapes this; cgroups would close
  that hole but need privileges we cannot count on. PR_SET_PDEATHSIG was rejected too:
  it reaches only the direct child, posix_spawn cannot set it, and setuid exec clears it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import anyio
import psutil

from supervisord_lite.fsatomic import temp_name

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
ORPHAN_GRACE = 0.5
OWN_REAP_WAIT = 0.05  # a zombie of ours hides the others (no children file): look again
RECORD_BATCH = 0.05


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def listed_children() -> list[int] | None:
    """Our direct children from /proc; None when the kernel does not list them."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return None


def direct_children() -> list[int]:
    listed = listed_children()
    if listed is not None:
        return listed
    with contextlib.suppress(psutil.Error):
        return [p.pid for p in psutil.Process().children()]  # a scan of every process
    return []


def first_zombie() -> int | None:
    """The pid of a child that has exited and is not reaped yet, without reaping it."""
    try:
        found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return None
    return found.si_pid if found is not None and found.si_pid else None


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def signal_pids(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def killpg(pgid: int, sig: int) -> bool:
    """Signal a process group; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def subtree(pid: int) -> list[int]:
    try:
        proc = psutil.Process(pid)
        return [pid, *(c.pid for c in proc.children(recursive=True))]
    except psutil.Error:
        return []


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


def tagged(pid: int, name: str, release: str) -> bool:
    try:
        env = psutil.Process(pid).environ()
    except psutil.Error:
        return False
    return env.get("BRR_PROCESS") == name and env.get("BRR_RELEASE") == release


class Reaper:
    """Our own children (pid -> (name, start ticks)) and everything else we adopted."""

    def __init__(self, record: Path) -> None:
        self._record = record
        self._ours: dict[int, str | None] = {}  # pid -> its entry of the record, once made
        self._names: dict[int, str] = {}
        self._written: str | None = None  # the record as last written
        self._dirty = anyio.Event()
        self._sigchld = anyio.Event()

    def add(self, pid: int, name: str) -> None:
        # the start time is read when the record is written, not here: at this moment the
        # child is still in its exec, and /proc/<pid>/stat is slow to answer, 500 times
        self._ours[pid] = None
        self._names[pid] = name
        self._dirty.set()

    def discard(self, pid: int) -> None:
        self._ours.pop(pid, None)
        self._names.pop(pid, None)
        self._dirty.set()

    def orphans(self) -> list[int]:
        return [pid for pid in direct_children() if pid not in self._ours]

    def kill_leftovers(self, pgid: int, name: str, release: str) -> None:
        """SIGKILL what remains of a process: its group, then its adopted orphans."""
        killpg(pgid, signal.SIGKILL)
        for orphan in self.orphans():
            if tagged(orphan, name, release):
                doomed = subtree(orphan)
                log.info("%s: killing %d leftover process(es) outside its group", name, len(doomed))
                signal_pids(doomed, signal.SIGKILL)

    async def run(self) -> None:
        """Reap adopted orphans on SIGCHLD, and keep run/children.json current."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._run_record)
            tg.start_soon(self._run_reaping)
            with anyio.open_signal_receiver(signal.SIGCHLD) as signals:
                async for _ in signals:
                    self._sigchld.set()  # a burst of SIGCHLD folds into one pass

    async def _run_reaping(self) -> None:
        seen: dict[int, float] = {}  # zombie orphan -> when it was first seen
        while True:
            await self._sigchld.wait()
            self._sigchld = anyio.Event()
            while (delay := self.reap_orphans(seen, time.monotonic())) is not None:
                await anyio.sleep(delay)

    def reap_orphans(self, seen: dict[int, float], now: float) -> float | None:
        """Reap the zombies that were seen ORPHAN_GRACE ago and are not ours.

        None when nothing is left to look at; else how long to wait before looking again.
        """
        if first_zombie() is None:
            seen.clear()
            return None
        listed = listed_children()
        if listed is None:
            return self._reap_first(seen, now)
        zombies = {pid for pid in listed if pid not in self._ours and is_zombie(pid)}
        for pid in list(seen):
            if pid not in zombies:
                del seen[pid]
        wait = math.inf
        for pid in zombies:
            since = seen.setdefault(pid, now)
            if now - since >= ORPHAN_GRACE:
                reap(pid)
                del seen[pid]
            else:
                wait = min(wait, since + ORPHAN_GRACE - now)
        return None if wait == math.inf else wait

    def _reap_first(self, seen: dict[int, float], now: float) -> float | None:
        """reap_orphans without the list of children: one zombie at a time."""
        while (pid := first_zombie()) is not None:
            if pid in self._ours:
                return OWN_REAP_WAIT  # its task reaps it at once; the next is behind it
            since = seen.setdefault(pid, now)
            if now - since < ORPHAN_GRACE:
                return since + ORPHAN_GRACE - now
            reap(pid)
            del seen[pid]
        seen.clear()
        return None

    async def _run_record(self) -> None:
        while True:
            await self._dirty.wait()
            await anyio.sleep(RECORD_BATCH)  # a burst of spawns makes one write, not 500
            self._dirty = anyio.Event()
            self.write_record()

    def write_record(self) -> None:
        for pid, entry in self._ours.items():
            if entry is None:  # once per child: a burst of spawns rewrites the rest as is
                item = {"pid": pid, "pgid": pid, "name": self._names[pid]}
                self._ours[pid] = json.dumps({**item, "start_ticks": start_ticks(pid)})
        text = "[" + ", ".join(e for e in self._ours.values() if e) + "]"
        if text == self._written:
            return  # a child that came and went within one batch: a crash loop's restarts
        tmp = temp_name(self._record.parent)
        tmp.write_text(text)
        os.replace(tmp, self._record)
        self._written = text


def kill_previous(record: Path, builds: Path) -> int:
    """At start: SIGKILL what a killed daemon left on this root. How many were killed."""
    doomed: set[int] = set()
    try:
        entries = json.loads(record.read_text())
    except (OSError, ValueError):
        entries = []
    for entry in entries if isinstance(entries, list) else []:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            pid = int(entry["pid"])
            ticks = start_ticks(pid)
            if ticks is not None and ticks == entry["start_ticks"]:  # not a reused pid
                killpg(int(entry["pgid"]), signal.SIGKILL)
                doomed.update(subtree(pid))
    doomed.update(strays(builds))
    doomed.discard(os.getpid())
    signal_pids(doomed, signal.SIGKILL)
    record.unlink(missing_ok=True)
    return len(doomed)


def strays(builds: Path) -> set[int]:
    """Processes of our uid running under builds/ with a BRR_PROCESS in their environment."""
    found: set[int] = set()
    uid = os.getuid()
    prefix = str(builds) + os.sep
    for proc in psutil.process_iter(["uids", "pid"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["uids"] is None or proc.info["uids"].real != uid:
                continue
            if not (proc.cwd() + os.sep).startswith(prefix):
                continue
            if "BRR_PROCESS" in proc.environ():
                found.update(subtree(proc.pid))
    return found

"""Nothing the release started outlives it: subreaper, orphan reaping, the kill of a tree,
and the record that lets a restarted daemon finish off what a killed one left.

Choices, and what was rejected:
- The daemon is a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so a double-forked
  grandchild is re-parented to us, not to init, and stays findable.
- Adopted orphans must be reaped when they die, but never with waitpid(-1): that would
  steal the exit status a process task is awaiting on its pidfd. On SIGCHLD we list our
  direct children (/proc/self/task/<pid>/children) and reap only zombies we did not
  spawn that are still zombies a grace later: other code in the daemon (a `cmd`
  readiness probe via anyio.open_process) waits for its own children in a thread that
  wakes at once, so a zombie still there after the grace has nobody else waiting for it.
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
import os
import signal
from collections.abc import Iterable
from pathlib import Path

import anyio
import psutil

from supervisord_lite.fsatomic import temp_name

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
ORPHAN_GRACE = 0.5
RECORD_BATCH = 0.05


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def direct_children() -> list[int]:
    pid = os.getpid()
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(x) for x in text.split()]
    except OSError:
        with contextlib.suppress(psutil.Error):
            return [p.pid for p in psutil.Process().children()]
        return []


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
        self._ours: dict[int, tuple[str, int | None]] = {}
        self._dirty = anyio.Event()
        self._sigchld = anyio.Event()

    def add(self, pid: int, name: str) -> None:
        self._ours[pid] = (name, start_ticks(pid))
        self._dirty.set()

    def discard(self, pid: int) -> None:
        self._ours.pop(pid, None)
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
        # a zombie is reaped only once seen in two passes ORPHAN_GRACE apart: whoever else
        # in the daemon waits for its own child has had the time to do it
        suspects: set[int] = set()
        while True:
            if not suspects:
                await self._sigchld.wait()
            self._sigchld = anyio.Event()
            await anyio.sleep(ORPHAN_GRACE)
            zombies = {pid for pid in self.orphans() if is_zombie(pid)}
            for pid in zombies & suspects:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            suspects = zombies - suspects

    async def _run_record(self) -> None:
        while True:
            await self._dirty.wait()
            await anyio.sleep(RECORD_BATCH)  # a burst of spawns makes one write, not 500
            self._dirty = anyio.Event()
            self.write_record()

    def write_record(self) -> None:
        data = [
            {"pid": pid, "pgid": pid, "name": name, "start_ticks": ticks}
            for pid, (name, ticks) in self._ours.items()
        ]
        tmp = temp_name(self._record.parent)
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._record)


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

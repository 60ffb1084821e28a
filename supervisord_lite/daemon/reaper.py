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
- Escapes: a descendant that calls `setsid env -i ...` leaves the group and clears the
  environment that tags it. Three nets catch it. (1) Before a process is signalled to
  stop (signal_group), its whole tree is noted by walking the children files, O(tree):
  whatever was under it then is killed with it, by pid and start time. (2) Orphans
  reparented to us (we are the subreaper) that no live process can claim: when a
  process ends, an orphan we had not seen before that is in its group, or is the
  leader of a session of its own with no BRR_PROCESS (escaped), is its leftover: its
  parent died at that exit or since the last look, and a process of ours that still
  runs would have kept it as a descendant (net 1). Orphans seen and left are remembered
  (`_known`), so an escape of another process is not charged to this one a second time.
  (3) At shutdown every orphan that is tagged or escaped is killed, with its tree. What
  stays undetectable: an escape whose parent died long before its own process ends,
  while another process's end claimed nothing (it is then known and left until
  shutdown), and a process that also left our tree by a setuid or a ptrace trick.
  cgroups would close these holes (a cgroup per process, killed whole) but need a
  delegated hierarchy we cannot count on.
- The record is trusted for nothing: anyone in the deploy group can write run/. An
  entry names a process to kill only if it proves to be one a daemon spawned
  (recorded_child: pid == pgid == session, start time, uid, environment), and no group
  below 2 is ever signalled (killpg).
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
import json
import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.lowlevel

from supervisord_lite.daemon.leftovers import kill_previous
from supervisord_lite.daemon.proctree import (
    descendants,
    escaped,
    is_zombie,
    killpg,
    listed_children,
    session_of,
    signal_pids,
    start_ticks,
    subtree,
    tag_of,
    tagged_any,
)
from supervisord_lite.fsatomic import temp_name

__all__ = ["Reaper", "is_zombie", "kill_previous", "killpg", "start_ticks"]

log = logging.getLogger(__name__)

ORPHAN_GRACE = 0.5
OWN_REAP_WAIT = 0.05  # a zombie of ours hides the others (no children file): look again
RECORD_BATCH = 0.05
SHUTDOWN_REAP = 1.0  # SIGKILLed orphans are gone in far less, unless stuck in the kernel


def direct_children() -> list[int]:
    listed = listed_children()
    if listed is not None:
        return listed
    import psutil  # here: the daemon loads it only where the kernel lists no children

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


@dataclass
class Claim:
    """A process that ended, waiting for the orphans it left to be looked for."""

    pgid: int
    name: str
    release: str
    swept: bool = False


class Reaper:
    """Our own children (pid -> (name, start ticks)) and everything else we adopted."""

    def __init__(self, record: Path) -> None:
        self._record = record
        self._ours: dict[int, str | None] = {}  # pid -> its entry of the record, once made
        self._names: dict[int, str] = {}
        self._written: str | None = None  # the record as last written
        self._dirty = anyio.Event()
        self._sigchld = anyio.Event()
        self._trees: dict[int, set[tuple[int, int]]] = {}  # pgid -> its tree when signalled
        self._known: set[int] = set()  # orphans seen and left: they are not one's leftovers
        self._claims: list[Claim] = []  # ended processes whose orphans are not looked for yet
        self._write_error: int | None = None  # the errno of the last failed record write

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

    def signal_group(self, pgid: int, sig: int) -> None:
        """Signal a process's group, noting its whole tree first: a descendant that left
        the group (setsid) is then killed with the rest by kill_leftovers."""
        self._trees.setdefault(pgid, set()).update(descendants(pgid))
        killpg(pgid, sig)

    async def kill_leftovers(self, pgid: int, name: str, release: str) -> None:
        """SIGKILL what remains of a process: its group, the tree noted when it was
        signalled, and the orphans we adopted that are its own (see the module's header).

        The orphans need a list of our children, O(every process we run): when a
        generation of 5,000 stops, one list per exit made the stop quadratic. So the
        processes that end together share one: each files its claim, yields once, and the
        first to run again sweeps every claim filed by then. The list is read after each
        of those exits, so it holds what each left behind.
        """
        noted = self._trees.pop(pgid, set())
        doomed = {pid for pid, ticks in noted if self._not_ours(pid) and start_ticks(pid) == ticks}
        killpg(pgid, signal.SIGKILL)
        if doomed:
            log.info("%s: killing %d leftover process(es) outside its group", name, len(doomed))
            signal_pids(doomed, signal.SIGKILL)
        claim = Claim(pgid, name, release)
        self._claims.append(claim)
        await anyio.lowlevel.cancel_shielded_checkpoint()
        if not claim.swept:
            self._sweep_orphans()

    def _not_ours(self, pid: int) -> bool:
        """Neither the daemon nor a process it spawned (a set built of those per exit
        would cost O(every process) again)."""
        return pid != os.getpid() and pid not in self._ours

    def _sweep_orphans(self) -> None:
        claims, self._claims = self._claims, []
        by_tag = {(c.name, c.release): c for c in claims}
        by_group = {c.pgid: c for c in claims}
        orphans = self.orphans()
        doomed: dict[str, set[int]] = {}
        for orphan in orphans:
            owner = by_tag.get(tag_of(orphan) or ("", ""))
            if owner is None and orphan not in self._known:
                group = (session_of(orphan) or (0, 0))[0]
                owner = by_group.get(group) or (claims[0] if escaped(orphan) else None)
            if owner is None:
                self._known.add(orphan)
            else:
                doomed.setdefault(owner.name, set()).update(subtree(orphan))
        self._known.intersection_update(orphans)
        for claim in claims:
            claim.swept = True
        for name, found in doomed.items():
            pids = {pid for pid in found if self._not_ours(pid)}
            if pids:
                log.info("%s: killing %d leftover process(es) outside its group", name, len(pids))
                signal_pids(pids, signal.SIGKILL)

    def kill_orphans(self) -> int:
        """At shutdown: every adopted orphan of the release, tagged or escaped, with its
        tree. What is left then is the daemon's own (a plugin's command)."""
        doomed: set[int] = set()
        for orphan in self.orphans():
            if escaped(orphan) or tagged_any(orphan):
                doomed.update(subtree(orphan))
        doomed.difference_update({os.getpid(), *self._ours})
        signal_pids(doomed, signal.SIGKILL)
        self._reap_killed(doomed, time.monotonic() + SHUTDOWN_REAP)
        return len(doomed)

    def _reap_killed(self, pids: set[int], deadline: float) -> None:
        """Reap what kill_orphans killed: the reaping task is gone by then, and a daemon
        run inside another program (the tests) must not leave it zombies."""
        pending = set(pids)
        while pending and time.monotonic() < deadline:
            for pid in list(pending):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # not (or no longer) our child
                    done = pid
                if done:
                    pending.discard(pid)
            if pending:
                time.sleep(0.01)
        for pid in listed_children() or []:  # reparented to us as their parents died
            if pid not in self._ours and is_zombie(pid):
                reap(pid)

    async def run(self) -> None:
        """Reap adopted orphans on SIGCHLD, and keep run/children.json current."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._run_record)
                tg.start_soon(self._run_reaping)
                with anyio.open_signal_receiver(signal.SIGCHLD) as signals:
                    async for _ in signals:
                        self._sigchld.set()  # a burst of SIGCHLD folds into one pass
        finally:
            # cancelled once every process has stopped: nothing of the release stays
            killed = self.kill_orphans()
            if killed:
                log.info("killed %d process(es) that outlived the processes they came from", killed)

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
        try:
            write_new(self._record, text.encode())
        except OSError as exc:  # EMFILE, ENOSPC: the record lags; the processes run on
            if self._write_error != exc.errno:
                log.error("cannot write %s: %s; retrying at the next change", self._record, exc)
            self._write_error = exc.errno
            self._dirty.set()
            return
        self._write_error = None
        self._written = text


def write_new(path: Path, data: bytes) -> None:
    """Write a temp file (O_EXCL|O_NOFOLLOW: never a planted name) and rename it to path."""
    tmp = temp_name(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o640)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

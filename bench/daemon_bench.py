#!/usr/bin/env python3
"""supervisord-lite against supervisord and circus, side by side in one run (issue 3).

    .venv/bin/python bench/daemon_bench.py            # full run, about 20 minutes
    .venv/bin/python bench/daemon_bench.py --quick    # smoke run, under 4 minutes
    .venv/bin/python bench/daemon_bench.py --only supervisord-lite --ns 1000

Each supervisor runs N copies of `sleep 100000` (N = 10, 100, 500, 1000, 5000, circus
only up to 500; --quick: 10, 100), one supervisor at a time, all of them for one N
before the next N, and is measured on:

- spawn all: from just before the supervisor is started (interpreter start-up included)
  until N `sleep` processes are alive among its descendants (a /proc scan every 20 ms,
  confirmed with psutil);
- idle CPU: CPU time of the supervisor's own processes (the supervisor and any helper
  process it runs, so not the `sleep`s; every thread; from schedstat, see cpu_seconds)
  over an idle window, which starts a few
  seconds after all are running so that supervisord's startsecs have passed;
- wake-ups / s: voluntary context switches of every thread of those processes over the
  same window (/proc/PID/task/TID/status), per second: how often it blocks, so how often
  something woke it up;
- RSS and threads of those processes, after the window, and the RSS growth per
  supervised process, (RSS(N) - RSS(10)) / (N - 10);
- status: median wall time of the supervisor's own status command (`supervisorctl
  status`, `circusctl status`, `supervisord-lite status`), fork to exit, 10 runs (3
  past N = 500);
- respawn (N = 100 only): kill -9 of the oldest child, 20 times, one after the other
  with a random pause between (see measure_respawn); the time from the kill to a new
  descendant pid appearing (/proc polled every 0.5 ms);
- stop all: from SIGTERM to the supervisor until every child is gone from /proc (reaped),
  and, apart, until the supervisor itself has exited;
- instant commands, once, with no supervisor running: `brr-release releases` on a root
  of 200 releases (made as bench/ledger_bench.py makes them) and each CLI's `--help`,
  compared with `supervisorctl status` at N = 100 in the same run;
- crash loop: a program that exits 1 at once (it appends a line to a file first, so every
  start is counted whoever supervises it), over 20 s: the supervisor's CPU, the number of
  restarts, and the program's state at the end (does it reach FATAL?).

The peers come from their own venv, bench/.venv-peers (created here on first use), never
from the project's. Our daemon runs from the project venv on a deploy root written here
with the manifest module; if it is missing or fails, its rows say `n/a (why)` and the
peers are measured all the same. Our package is byte-compiled first (compileall), as an
install from a wheel is, and as pip compiled the peers' when it installed them: the
project is installed editable, and where PYTHONDONTWRITEBYTECODE is set our daemon would
otherwise compile its own source at every start, about a tenth of a second of "spawn
all" that no deployment pays.

Deadlines grow with N (spawn 0.1 s a process, stop 0.04 s): where a supervisor misses
one, or starts no more programs for STALL (60 s) before all N run, its row says how far
it got, which is where it gives up. Each supervisor runs under
`prlimit --nproc` (checked in /proc/PID/limits; the kernel exempts root, so every poll
also stops a tree that outgrows N + max(64, N / 4)), with RLIMIT_NOFILE raised toward
65,536, the hard limit too where the harness may (supervisord needs about 5 fds a child;
supervisord-lite does not raise its own limit); the table says what it got.
Every process a run starts is killed by pid at the end,
even on error: the supervisor is stopped (SIGSTOP) so it can spawn no more, then every
pid ever seen in its tree is killed (checked against its start time), then its process
group.

A full run saves its tables in the `daemon` section of docs/benchmarks.md and the raw
figures in bench/out/daemon_bench.json; --quick and --only runs only print, unless --save.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib as bl
import psutil

PEER_VENV = bl.REPO / "bench" / ".venv-peers"
PEER_BIN = PEER_VENV / "bin"
PEER_PINS = ("supervisor==4.3.0", "circus==0.19.0")
LITE = bl.VENV_BIN / "supervisord-lite"

PROGRAM = "sleep"
PROGRAM_CMD = "sleep 100000"
# Descendants with these names are supervised programs (or their shell wrappers on the
# way to exec), not part of the supervisor.
NOT_DAEMON = frozenset({"sleep", "sh", "dash", "bash", "false", "crash.sh"})
PEER_NAMES = ("supervisord", "circus", "supervisord-lite")


class BenchFailure(Exception):
    """One measurement could not be made; the message goes into the table as the reason."""


# --- /proc ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    ppid: int
    comm: str
    state: str
    start: int  # clock ticks since boot: with the pid, the identity of a process


def read_stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    close = data.rfind(b")")
    rest = data[close + 2 :].split()
    comm = data[data.find(b"(") + 1 : close].decode(errors="replace")
    return Stat(ppid=int(rest[1]), comm=comm, state=rest[0].decode(), start=int(rest[19]))


def proc_pids() -> set[int]:
    return {int(name) for name in os.listdir("/proc") if name.isdigit()}


def is_descendant(pid: int, root: int, depth: int = 8) -> bool:
    for _ in range(depth):
        st = read_stat(pid)
        if st is None or st.ppid <= 1:
            return False
        if st.ppid == root:
            return True
        pid = st.ppid
    return False


def voluntary_switches(pid: int) -> int:
    """Voluntary context switches summed over every thread of pid."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


class Tree:
    """An incremental view of one supervisor's process tree.

    A full scan of /proc costs about 30 us a process here, so a poll reads only pids it
    has not seen, plus the members whose name may still change (the exec of a wrapper).
    Every member ever seen is remembered with its start time, for the final cleanup.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.members: dict[int, Stat] = {}
        self.outside: set[int] = set()
        self.seen: dict[int, int] = {}

    def refresh(self, *, recheck: bool = False) -> None:
        pids = proc_pids()
        for pid in list(self.members):
            if pid not in pids:
                del self.members[pid]
        self.outside &= pids
        fresh: dict[int, Stat] = {}
        for pid in pids - self.members.keys() - self.outside:
            st = read_stat(pid)
            if st is not None:
                fresh[pid] = st
        for pid, old in list(self.members.items()):
            if recheck or old.comm != PROGRAM:
                st = read_stat(pid)
                if st is None or st.start != old.start:
                    del self.members[pid]
                else:
                    self.members[pid] = st
        changed = True
        while changed:  # parents may come after their children in the listing
            changed = False
            for pid, st in list(fresh.items()):
                if st.ppid == self.root or st.ppid in self.members:
                    self.members[pid] = st
                    self.seen[pid] = st.start
                    del fresh[pid]
                    changed = True
        self.outside |= fresh.keys()

    def programs(self) -> list[int]:
        """Live (not zombie) PROGRAM pids in the tree, oldest first."""
        found = [
            (st.start, pid)
            for pid, st in self.members.items()
            if st.comm == PROGRAM and st.state != "Z"
        ]
        return [pid for _start, pid in sorted(found)]


# --- the supervisors ----------------------------------------------------------------------


StatusCmd = tuple[list[str], dict[str, str] | None]  # argv and env of a status command


@dataclass(frozen=True)
class Program:
    name: str
    cmd: str
    count: int


STALL = 60.0  # seconds without one more program running: the supervisor gave up
MAX_SCALE = 1000  # a release's most instances of one process type


def sleepers(n: int) -> list[Program]:
    """n copies of PROGRAM_CMD, as programs of at most MAX_SCALE (the same for every peer)."""
    names = [PROGRAM, *(f"{PROGRAM}{i}" for i in range(2, n // MAX_SCALE + 2))]
    counts = [min(MAX_SCALE, n - i * MAX_SCALE) for i in range((n + MAX_SCALE - 1) // MAX_SCALE)]
    return [Program(name, PROGRAM_CMD, count) for name, count in zip(names, counts, strict=False)]


@dataclass
class Run:
    peer: str
    popen: subprocess.Popen[bytes]
    workdir: Path
    log: Path
    started: float
    tree: Tree
    state_of: Callable[[str], str]
    status_cmd: StatusCmd
    nproc: int = 0
    ceiling: int = 0
    nproc_checked: bool = False
    cleaned: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " / ".join(line.strip() for line in text[-lines:])[-300:]


def quiet(argv: list[str], env: dict[str, str] | None = None, timeout: float = 20) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"? ({type(exc).__name__})"
    return (done.stdout + done.stderr).strip()


class Supervisord:
    name = "supervisord"

    def configure(
        self, work: Path, programs: list[Program]
    ) -> tuple[list[str], Callable[[str], str], StatusCmd]:
        (work / "childlogs").mkdir()
        conf = work / "supervisord.conf"
        text = (
            f"[unix_http_server]\nfile={work}/supervisor.sock\n\n"
            f"[supervisord]\nnodaemon=true\nlogfile={work}/supervisord.log\n"
            f"pidfile={work}/supervisord.pid\nchildlogdir={work}/childlogs\n"
            # minprocs (default 200) makes supervisord refuse to start below that
            # RLIMIT_NPROC; the launcher's prlimit sets a tighter bound on purpose
            "minprocs=1\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{work}/supervisor.sock\n"
        )
        for p in programs:
            text += f"\n[program:{p.name}]\ncommand={p.cmd}\nautorestart=true\nstartsecs=1\n"
            if p.count > 1:
                text += f"numprocs={p.count}\nprocess_name=%(program_name)s_%(process_num)s\n"
        conf.write_text(text)

        def state_of(name: str) -> str:
            out = quiet([str(PEER_BIN / "supervisorctl"), "-c", str(conf), "status", name])
            parts = out.split()
            return parts[1] if len(parts) > 1 else out or "?"

        status = ([str(PEER_BIN / "supervisorctl"), "-c", str(conf), "status"], None)
        return [str(PEER_BIN / "supervisord"), "-n", "-c", str(conf)], state_of, status


class Circus:
    name = "circus"

    def configure(
        self, work: Path, programs: list[Program]
    ) -> tuple[list[str], Callable[[str], str], StatusCmd]:
        # no stats_endpoint: setting one turns on circusd-stats, a helper process that
        # polls about 100 times a second; the default configuration runs without it
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        text = f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = tcp://127.0.0.1:{free_port()}\n"
        for p in programs:
            text += (
                f"\n[watcher:{p.name}]\ncmd = {p.cmd}\nnumprocesses = {p.count}\ncopy_env = true\n"
            )
        conf = work / "circus.ini"
        conf.write_text(text)

        def state_of(name: str) -> str:
            ctl = [str(PEER_BIN / "circusctl"), "--endpoint", endpoint, "--timeout", "5"]
            return quiet([*ctl, "status", name]) or "?"

        status = ([str(PEER_BIN / "circusctl"), "--endpoint", endpoint, "status"], None)
        return [str(PEER_BIN / "circusd"), str(conf)], state_of, status


class Lite:
    name = "supervisord-lite"

    def configure(
        self, work: Path, programs: list[Program]
    ) -> tuple[list[str], Callable[[str], str], StatusCmd]:
        root = work / "root"
        make_deploy_root(root, programs)
        env = dict(os.environ, BRR_ROOT=str(root))

        def state_of(name: str) -> str:
            out = quiet([str(LITE), "status", "--json"], env=env)  # the root from BRR_ROOT
            try:
                status = json.loads(out)
                procs = [p for p in status["processes"] if p.get("type") == name]
                return ", ".join(f"{p['state']} (restarts {p.get('restarts')})" for p in procs)
            except (ValueError, KeyError, TypeError):
                return f"? (status: {out[:80]})"

        return [str(LITE), "run", "--root", str(root)], state_of, ([str(LITE), "status"], env)


def make_deploy_root(root: Path, programs: list[Program]) -> None:
    """ROOT with one build (an empty app/) and release v1, `current` pointing at it."""
    from supervisord_lite import fsatomic, manifest
    from supervisord_lite.brr.releases import write_twin

    build = "b-000000000000"
    for sub in ("builds", "releases", "run", "logs"):
        (root / sub).mkdir(parents=True)
    (root / "builds" / build / "app").mkdir(parents=True)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (root / "builds" / build / "build.yaml").write_text(
        f"id: {build}\ndigest: 'sha256:0'\nsource: bench\ncreated_at: '{created}'\n"
        "declaration: {}\n"
    )
    processes = {}
    for p in programs:
        # ready at once for the sleeps; the crash loop keeps the default (after 1 s), as
        # supervisord keeps startsecs=1
        ready = manifest.ReadyCheck("after", seconds=0 if p.cmd == PROGRAM_CMD else 1.0)
        processes[p.name] = manifest.ProcessSpec(type=p.name, cmd=p.cmd, scale=p.count, ready=ready)
    release = manifest.Release(
        id="v1",
        created_at=created,
        build=build,
        config={},
        sockets={},
        switch="start-first",
        processes=processes,
    ).sealed()
    (root / "releases" / "v1").mkdir()
    text = manifest.dump_release(release)
    fsatomic.write_file(root / "releases" / "v1" / "release.yaml", text, mode=0o640)
    write_twin(root / "releases" / "v1", text)  # as brr-release writes a release
    fsatomic.replace_symlink(root / "current", "releases/v1")


PEERS: dict[str, Any] = {
    "supervisord": Supervisord(),
    "circus": Circus(),
    "supervisord-lite": Lite(),
}
RUNS: list[Run] = []  # every supervisor started, for the cleanup in main's finally


def own_processes() -> int:
    """Processes of this uid on the host: RLIMIT_NPROC counts them all."""
    uid, count = str(os.getuid()), 0
    for pid in proc_pids():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        count += line.split()[1] == uid
                        break
        except OSError:
            continue
    return count


def tree_ceiling(programs: list[Program]) -> int:
    """More processes than this in a supervisor's tree is a runaway: the bench stops it."""
    total = sum(p.count for p in programs)
    return total + max(64, total // 4)


def nproc_limit(programs: list[Program]) -> int:
    return own_processes() + tree_ceiling(programs)


def nproc_enforced() -> bool:
    """Whether the kernel holds this uid to RLIMIT_NPROC: root (and CAP_SYS_RESOURCE) is
    exempt, and then only the poll loops' ceiling bounds a runaway tree."""
    limit = own_processes()  # already reached: one more fork must fail if enforced
    probe = "sleep 0 & wait $! && echo forked"
    out = quiet(["prlimit", f"--nproc={limit}", "--", "sh", "-c", probe], timeout=10)
    return "forked" not in out


def check_nproc(run: Run) -> None:
    """The supervisor really runs under the RLIMIT_NPROC its launcher set (once)."""
    if run.nproc_checked:
        return
    st = read_stat(run.pid)
    if st is None or st.comm == "prlimit":
        return  # not exec'd yet: the limit is set before the exec, check at the next poll
    try:
        with open(f"/proc/{run.pid}/limits") as f:
            line = next(x for x in f if x.startswith("Max processes"))
    except (OSError, StopIteration):
        return
    if line.split()[2] != str(run.nproc):
        raise BenchFailure(f"RLIMIT_NPROC not set: {' '.join(line.split())}")
    run.nproc_checked = True


def check_tree(run: Run) -> None:
    check_nproc(run)
    if len(run.tree.members) > run.ceiling:
        raise BenchFailure(f"runaway: {len(run.tree.members)} processes in the tree")


def launch(peer_name: str, base: Path, programs: list[Program]) -> Run:
    work = Path(tempfile.mkdtemp(prefix=f"{peer_name}-", dir=base))
    argv, state_of, status_cmd = PEERS[peer_name].configure(work, programs)
    # RLIMIT_NPROC bounds the supervisor's forks for an unprivileged user; root is exempt
    # in the kernel (see nproc_enforced), so the poll loops also stop a runaway tree
    nproc = nproc_limit(programs)
    argv = ["prlimit", f"--nproc={nproc}", "--", *argv]
    log = work / "daemon.out"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    with open(log, "wb") as out:
        started = time.perf_counter()
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=work,
            env=env,
            start_new_session=True,
        )
    run = Run(peer_name, popen, work, log, started, Tree(popen.pid), state_of, status_cmd)
    run.nproc, run.ceiling = nproc, tree_ceiling(programs)
    RUNS.append(run)
    return run


def kill_pid(pid: int, start: int | None = None) -> None:
    if start is not None:
        st = read_stat(pid)
        if st is None or st.start != start:
            return  # gone, or the pid now belongs to someone else
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def cleanup(run: Run) -> None:
    """Kill the supervisor and everything it ever started, by pid; never by name.

    The supervisor's pid (and so its process group's id) is signalled only while it is
    our unreaped child: once Popen has reaped it the pid is free, and where pids wrap
    quickly (5,000 children, pid_max 32768) it can name someone else's process group by
    the time we get here. Its members were all seen in the tree, and go by pid.
    """
    if run.cleaned:
        return
    run.cleaned = True
    alive = run.popen.poll() is None  # until we wait(), the pid stays ours, even a zombie
    if alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(run.pid, signal.SIGSTOP)  # no more spawns while we kill its children
    run.tree.refresh()
    for pid, start in run.tree.seen.items():
        if pid != run.pid:
            kill_pid(pid, start)
    if alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pid, signal.SIGKILL)
        kill_pid(run.pid)
    try:
        run.popen.wait(timeout=10)
    except subprocess.TimeoutExpired:
        print(f"warning: {run.peer} pid {run.pid} did not die", file=sys.stderr)


# --- measurements -------------------------------------------------------------------------


def check_alive(run: Run) -> None:
    rc = run.popen.poll()
    if rc is not None:
        raise BenchFailure(f"daemon exited with {rc}: {tail(run.log)}")


def wait_running(run: Run, n: int, timeout: float) -> float:
    """Seconds from the supervisor's start until n programs are alive in its tree."""
    deadline = run.started + timeout
    grown_at, grown_to = run.started, 0
    while True:
        check_alive(run)
        run.tree.refresh()
        check_tree(run)
        now = time.perf_counter()
        count = len(run.tree.programs())
        if count > grown_to:
            grown_at, grown_to = now, count
        elif 0 < count < n and now - grown_at > STALL:  # where it gives up, without the wait
            raise BenchFailure(f"{count}/{n} running, and no more in {STALL:g} s")
        if count >= n:
            confirmed = sum(
                1
                for c in psutil.Process(run.pid).children(recursive=True)
                if c.name() == PROGRAM and c.status() != psutil.STATUS_ZOMBIE
            )
            if confirmed >= n:
                return now - run.started
        if now > deadline:
            last = tail(run.log, 1) or tail(run.workdir / "supervisord.log", 1)
            raise BenchFailure(f"{count}/{n} running after {timeout:g} s; last logged: {last}")
        time.sleep(0.02)


def wait_count(run: Run, n: int, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while True:
        check_alive(run)
        run.tree.refresh(recheck=True)
        check_tree(run)
        count = len(run.tree.programs())
        if count >= n:
            return
        if time.perf_counter() > deadline:
            raise BenchFailure(f"back to {count}/{n} only, {timeout:g} s after a kill")
        time.sleep(0.02)


def daemon_processes(run: Run) -> list[psutil.Process]:
    root = psutil.Process(run.pid)
    helpers = [c for c in root.children(recursive=True) if c.name() not in NOT_DAEMON]
    return [root, *helpers]


def cpu_seconds(procs: list[psutil.Process]) -> dict[int, float]:
    """CPU time of each process, all its threads: the scheduler's nanosecond count
    (/proc/PID/task/TID/schedstat), since psutil's cpu_times come in 10 ms ticks, too
    coarse for a window in which a good supervisor uses next to nothing; psutil where
    schedstat is missing."""
    out = {}
    for p in procs:
        try:
            total = 0
            for tid in os.listdir(f"/proc/{p.pid}/task"):
                with open(f"/proc/{p.pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            out[p.pid] = total / 1e9
        except (OSError, ValueError, IndexError):
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            out[p.pid] = t.user + t.system
    return out


def delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[pid] - before[pid] for pid in after if pid in before)


def measure_idle(run: Run, window: float) -> dict[str, Any]:
    procs = daemon_processes(run)
    cpu0 = cpu_seconds(procs)
    sw0 = {p.pid: voluntary_switches(p.pid) for p in procs}
    time.sleep(window)
    check_alive(run)
    cpu1 = cpu_seconds(procs)
    sw1 = {p.pid: voluntary_switches(p.pid) for p in procs}
    rss = threads = 0
    for p in procs:
        try:
            rss += p.memory_info().rss
            threads += p.num_threads()
        except psutil.Error:
            continue
    return {
        "idle_cpu_ms": delta(cpu0, cpu1) * 1000,
        "wakeups_per_s": sum(sw1[p] - sw0[p] for p in sw1 if p in sw0) / window,
        "rss": rss,
        "threads": threads,
        "daemon_processes": len(procs),
    }


def measure_respawn(run: Run, n: int, kills: int, timeout: float) -> dict[str, Any]:
    latencies: list[float] = []
    missed = 0
    rng = random.Random(3)
    for _ in range(kills):
        wait_count(run, n, timeout)
        victim = run.tree.programs()[0]  # the oldest: past any startsecs, so RUNNING
        baseline = proc_pids()
        checked: set[int] = set()
        t0 = time.perf_counter()
        kill_pid(victim, run.tree.members[victim].start)  # only if it is still that sleep
        found = None
        while found is None and time.perf_counter() - t0 < timeout:
            for pid in proc_pids() - baseline - checked:
                st = read_stat(pid)
                if st is None:
                    continue
                checked.add(pid)
                if st.state != "Z" and is_descendant(pid, run.pid):
                    found = time.perf_counter() - t0
                    break
            else:
                time.sleep(0.0005)
        if found is None:
            missed += 1
        else:
            latencies.append(found)
        # A supervisor that respawns on a timer would be hit at the same phase of it every
        # time if we killed right after each respawn: pause a random part of the longest
        # respawn seen so far (about the timer's period).
        time.sleep(0.05 + rng.uniform(0, min(max(latencies, default=0.0), 5.0)))
    wait_count(run, n, timeout)
    return {
        "respawn_ms": [x * 1000 for x in latencies],
        "respawn_median_ms": bl.median(latencies) * 1000,
        "respawn_p90_ms": bl.percentile(latencies, 90) * 1000,
        "respawn_max_ms": max(latencies, default=math.nan) * 1000,
        "respawn_missed": missed,
    }


def measure_stop(run: Run, timeout: float) -> dict[str, Any]:
    run.tree.refresh(recheck=True)
    kids = {pid for pid, st in run.tree.members.items() if st.comm == PROGRAM}
    t0 = time.perf_counter()
    os.kill(run.pid, signal.SIGTERM)
    all_gone = exited = None
    left = kids
    while time.perf_counter() - t0 < timeout:
        now = time.perf_counter() - t0
        left = kids & proc_pids()
        if all_gone is None and not left:
            all_gone = now
        if exited is None and run.popen.poll() is not None:
            exited = now
        if all_gone is not None and exited is not None:
            break
        time.sleep(0.005)
    return {
        "stop_all_s": all_gone if all_gone is not None else math.nan,
        "daemon_exit_s": exited if exited is not None else math.nan,
        "stop_left": len(left),
        "stop_timeout_s": timeout,
    }


def timed_runs(argv: list[str], env: dict[str, str] | None, runs: int) -> dict[str, Any]:
    """Median wall time of `runs` runs of a command, fork to exit; the last exit code."""
    times, code = [], 0
    full_env = None if env is None else {**os.environ, **env}
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, env=full_env, timeout=300)
        times.append(time.perf_counter() - t0)
        code = done.returncode
    return {"median_s": bl.median(times), "runs": runs, "exit": code}


def measure_status(run: Run, n: int, runs: int) -> dict[str, Any]:
    """The supervisor's own status command with n processes running, `runs` times."""
    argv, env = run.status_cmd
    res = timed_runs(argv, env, runs)
    # supervisorctl exits 3 when a process is not RUNNING; circusctl and ours 0
    if res["exit"] not in (0, 3):
        raise BenchFailure(f"`{Path(argv[0]).name} status` exited {res['exit']}")
    return {"status_s": res["median_s"], "status_runs": runs}


def bench_formation(peer: str, n: int, base: Path, cfg: Config) -> dict[str, Any]:
    result: dict[str, Any] = {}
    run = launch(peer, base, sleepers(n))
    # supervisord spawns about 100 a second here, and stops as slowly: scale the deadlines
    spawn_timeout = max(cfg.spawn_timeout, n * 0.1)
    try:
        result["spawn_all_s"] = wait_running(run, n, timeout=spawn_timeout)
        time.sleep(cfg.settle)
        wait_count(run, n, timeout=max(10, n * 0.01))
        result.update(measure_idle(run, cfg.idle_window))
        result.update(measure_status(run, n, cfg.status_runs if n <= 500 else 3))
        if n == cfg.respawn_n:
            result.update(measure_respawn(run, n, cfg.kills, timeout=15))
        result.update(measure_stop(run, timeout=max(30, n * 0.04)))
    except BenchFailure as exc:
        result["error"] = str(exc)
    except Exception as exc:  # the bench goes on with the next supervisor
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        cleanup(run)
    return result


def bench_crash_loop(peer: str, base: Path, cfg: Config) -> dict[str, Any]:
    result: dict[str, Any] = {}
    starts = base / f"{peer}-crash-starts"
    script = base / "crash.sh"
    script.write_text('#!/bin/sh\necho x >> "$1"\nexit 1\n')
    script.chmod(0o755)
    run = launch(peer, base, [Program("crash", f"{script} {starts}", 1)])

    def count() -> int:
        try:
            return len(starts.read_text().splitlines())
        except FileNotFoundError:
            return 0

    try:
        deadline = time.perf_counter() + 20
        while count() == 0:
            check_alive(run)
            if time.perf_counter() > deadline:
                raise BenchFailure("the program was not started within 20 s")
            time.sleep(0.01)
        procs = daemon_processes(run)
        cpu0, n0 = cpu_seconds(procs), count()
        time.sleep(cfg.crash_window)
        check_alive(run)
        cpu1, n1 = cpu_seconds(procs), count()
        result.update(
            crash_cpu_ms=delta(cpu0, cpu1) * 1000,
            crash_restarts=n1 - n0,
            crash_starts_total=n1,
            crash_state=run.state_of("crash"),
        )
    except BenchFailure as exc:
        result["error"] = str(exc)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        cleanup(run)
    return result


# --- set-up -------------------------------------------------------------------------------


@dataclass
class Config:
    ns: list[int]
    idle_window: float
    crash_window: float
    kills: int
    settle: float
    respawn_n: int = 100
    status_runs: int = 10
    big_peers: tuple[str, ...] = ("supervisord", "supervisord-lite")  # past N = 500
    spawn_timeout: float = 60.0
    peers: list[str] = field(default_factory=lambda: list(PEER_NAMES))


def ensure_peer_venv() -> dict[str, str]:
    """bench/.venv-peers with supervisor and circus; their versions."""
    py = PEER_BIN / "python"
    if not ((PEER_BIN / "supervisord").exists() and (PEER_BIN / "circusd").exists()):
        print(f"creating {PEER_VENV} with {', '.join(PEER_PINS)} ...", file=sys.stderr)
        base_python = shutil.which("python3") or sys.executable
        subprocess.run([base_python, "-m", "venv", str(PEER_VENV)], check=True, timeout=300)
        subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PEER_PINS],
            check=True,
            timeout=900,
        )
    code = "import importlib.metadata as m; print(m.version('supervisor'), m.version('circus'))"
    out = subprocess.run(
        [str(py), "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    return {"supervisord": out[0], "circus": out[1]}


def lite_unavailable() -> str | None:
    """Why our daemon cannot be benchmarked, or None when it looks runnable."""
    if not LITE.exists():
        return f"{LITE.relative_to(bl.REPO)} is not installed"
    package = bl.REPO / "supervisord_lite"
    subprocess.run(
        [str(bl.VENV_BIN / "python"), "-m", "compileall", "-q", str(package)],
        capture_output=True,
        timeout=120,
    )
    try:
        import supervisord_lite.manifest  # noqa: F401
    except ImportError as exc:
        return f"cannot import supervisord_lite.manifest: {exc}"
    try:
        done = subprocess.run(
            [str(LITE), "run", "--help"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "`supervisord-lite run --help` hung"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["exit " + str(done.returncode)])[-1]
        return f"`supervisord-lite run --help` fails: {last[:120]}"
    return None


# --- report -------------------------------------------------------------------------------


def cell(
    res: dict[str, Any],
    key: str,
    fmt: Callable[[float], str],
    base: dict[str, Any] | None,
    show_ratio: bool,
) -> str:
    value = res.get(key)
    if key == "stop_all_s" and res.get("stop_left"):
        return f"{res['stop_left']} still alive after {res.get('stop_timeout_s', 30):g} s"
    if value is None:
        return "n/a"
    text = fmt(value)
    if show_ratio and base is not None:
        ratio = bl.fmt_ratio(value, base.get(key))
        if ratio:
            text += f" ({ratio})"
    return text


def one_line(text: str, limit: int = 160) -> str:
    """text fit for one table cell."""
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def na_row(name: str, reason: str, width: int) -> list[str]:
    return [name, f"n/a ({one_line(reason)})"] + [""] * (width - 2)


def render(
    results: dict[str, Any], cfg: Config, versions: dict[str, str], quick: bool, note: str = ""
) -> str:
    w = cfg.idle_window
    out = [
        "## Daemon: supervisord-lite, supervisord and circus side by side",
        "",
        f"`{bl.command_line('bench/daemon_bench.py', sys.argv[1:])}` on {bl.machine_line()}; "
        f"supervisord {versions.get('supervisord', '?')}, circus {versions.get('circus', '?')}"
        f"{' (--quick: shorter windows, fewer kills)' if quick else ''}. "
        "Each supervisor runs N copies of `sleep 100000`; figures in parentheses are the "
        "ratio to supervisord in this run. What each column means is in the script's header. "
        f"Load average (1 min) at the start and the end: {results['loadavg'][0]:.2f}, "
        f"{results['loadavg'][1]:.2f} (anything else running skews the figures)."
        + (f" {note}" if note else ""),
    ]
    per_n = results["formation"]
    fmt_cpu = lambda v: f"{v:.0f} ms" if v >= 10 else f"{v:.2f} ms"  # noqa: E731
    columns: list[tuple[str, str, Callable[[float], str]]] = [
        ("spawn all", "spawn_all_s", bl.fmt_seconds),
        (f"idle CPU / {w:g} s", "idle_cpu_ms", fmt_cpu),
        ("wake-ups / s", "wakeups_per_s", lambda v: f"{v:.2f}"),
        ("RSS", "rss", bl.fmt_mb),
        ("threads", "threads", lambda v: f"{v:.0f}"),
        ("status", "status_s", bl.fmt_seconds),
        ("stop all", "stop_all_s", bl.fmt_seconds),
        ("daemon exited", "daemon_exit_s", bl.fmt_seconds),
    ]
    for n in cfg.ns:
        rows = []
        base = per_n.get("supervisord", {}).get(str(n))
        for peer in cfg.peers:
            res = per_n.get(peer, {}).get(str(n), {})
            if "error" in res and "spawn_all_s" not in res:
                rows.append(na_row(peer, res["error"], len(columns) + 1))
                continue
            row = [peer] + [
                cell(res, key, fmt, base, peer != "supervisord") for _title, key, fmt in columns
            ]
            if "error" in res:
                row[0] += f" (then failed: {one_line(res['error'])})"
            rows.append(row)
        out += ["", bl.table([f"N = {n}"] + [c[0] for c in columns], rows)]

    if cfg.respawn_n in cfg.ns:
        rows = []
        base = per_n.get("supervisord", {}).get(str(cfg.respawn_n))
        for peer in cfg.peers:
            res = per_n.get(peer, {}).get(str(cfg.respawn_n), {})
            if "respawn_median_ms" not in res:
                rows.append(na_row(peer, res.get("error", "not measured"), 5))
                continue
            ratio = peer != "supervisord"
            rows.append(
                [
                    peer,
                    cell(res, "respawn_median_ms", bl.fmt_ms, base, ratio),
                    cell(res, "respawn_p90_ms", bl.fmt_ms, base, ratio),
                    cell(res, "respawn_max_ms", bl.fmt_ms, None, False),
                    f"{res['respawn_missed']} of {cfg.kills}",
                ]
            )
        out += [
            "",
            bl.table(
                [
                    f"N = {cfg.respawn_n}, {cfg.kills} x kill -9",
                    "respawn median",
                    "p90",
                    "max",
                    "no respawn in 15 s",
                ],
                rows,
            ),
        ]

    rows = []
    crash = results["crash"]
    base = crash.get("supervisord")
    for peer in cfg.peers:
        res = crash.get(peer, {})
        if "error" in res:
            rows.append(na_row(peer, res["error"], 4))
            continue
        rows.append(
            [
                peer,
                cell(res, "crash_cpu_ms", fmt_cpu, base, peer != "supervisord"),
                str(res["crash_restarts"]),
                one_line(res["crash_state"]),
            ]
        )
    out += [
        "",
        bl.table(
            [f"crash loop, {cfg.crash_window:g} s", "daemon CPU", "restarts", "state at the end"],
            rows,
        ),
    ]
    out += [
        "",
        "Instant commands, median wall time from fork to exit (interpreter start-up "
        "included), the commands taking turns run by run, with every supervisor running "
        "100 `sleep`s at once (each status asks its own):",
        "",
        render_commands(results, cfg),
    ]
    if len(cfg.ns) > 1:
        out += ["", "RSS growth per supervised process:", "", render_growth(results, cfg)]
    out += ["", nproc_note(results, cfg), "", render_targets(results, cfg)]
    return "\n".join(out) + "\n"


def nproc_note(results: dict[str, Any], cfg: Config) -> str:
    enforced = results.get("nproc_enforced")
    how = (
        "enforced by the kernel"
        if enforced
        else "set but not enforced: this run is root, which the kernel exempts, so the "
        "bench's own ceiling (N + max(64, N / 4) processes in a tree, checked at every "
        "poll) is what bounds a runaway"
    )
    return (
        "Every supervisor runs under `prlimit --nproc` (checked in /proc/PID/limits): "
        f"{how}. RLIMIT_NOFILE for the harness and what it starts: "
        f"{results.get('nofile', '?')} (65,536 asked; the hard limit is raised only "
        "where the harness may)."
    )


def render_commands(results: dict[str, Any], cfg: Config) -> str:
    """The instant commands against `supervisorctl status` (N = 100), interleaved."""
    commands = results.get("commands", {})
    base = commands.get("status_supervisord", {}).get("median_s")
    rows = []
    for key, name in (
        ("status_supervisord", "`supervisorctl status` (N = 100)"),
        ("status_circus", "`circusctl status` (N = 100)"),
        ("status_supervisord-lite", "`supervisord-lite status` (N = 100)"),
        ("releases_200", "`brr-release releases` (200 releases)"),
        ("brr_help", "`brr-release --help`"),
        ("lite_help", "`supervisord-lite --help`"),
    ):
        if key in commands:
            value = commands[key].get("median_s")
            rows.append([name, bl.fmt_seconds(value), bl.fmt_ratio(value, base)])
    if "error" in commands:
        rows.append([f"n/a ({one_line(commands['error'])})", "", ""])
    head = ["command", f"median of {cfg.status_runs}", "vs `supervisorctl status`"]
    return bl.table(head, rows)


def render_growth(results: dict[str, Any], cfg: Config) -> str:
    """RSS growth per supervised process, (RSS(N) - RSS(smallest N)) / (N - smallest N)."""
    small = str(min(cfg.ns))
    rows = []
    for peer in cfg.peers:
        per = results["formation"].get(peer, {})
        row = [peer]
        for n in cfg.ns[1:]:
            a, b = per.get(small, {}).get("rss"), per.get(str(n), {}).get("rss")
            row.append(
                "n/a" if a is None or b is None else f"{(b - a) / (n - int(small)) / 1024:.1f}"
            )
        rows.append(row)
    return bl.table(["KiB per process, from N = " + small, *(f"N = {n}" for n in cfg.ns[1:])], rows)


def render_targets(results: dict[str, Any], cfg: Config) -> str:
    """Our figures against the aims of shared/PEERS.md and issue 16, N by N."""
    formation = results["formation"]
    rows = []
    for n in cfg.ns:
        ours = formation.get("supervisord-lite", {}).get(str(n), {})
        sup = formation.get("supervisord", {}).get(str(n), {})
        rows.append(ratio_row(f"RSS, N = {n}", "at most 0.8x supervisord", ours, sup, "rss", 0.8))
        if n >= 500:
            rows.append(
                ratio_row(f"spawn all {n}", "at most 0.25x", ours, sup, "spawn_all_s", 0.25)
            )
            rows.append(ratio_row(f"stop all {n}", "at most 0.1x", ours, sup, "stop_all_s", 0.1))
            rows.append(idle_row(n, ours, cfg.idle_window))
        if n >= 1000:
            status = ours.get("status_s")
            met = "n/a" if status is None else ("yes" if status < 0.5 else "NO")
            rows.append([f"status, N = {n}", "under 0.5 s", bl.fmt_seconds(status), met])
    resp = formation.get("supervisord-lite", {}).get(str(cfg.respawn_n), {})
    med = resp.get("respawn_median_ms")
    rows.append(
        [
            f"respawn median (N = {cfg.respawn_n})",
            "under 20 ms",
            bl.fmt_ms(med) if med is not None else "n/a",
            "n/a" if med is None or math.isnan(med) else ("yes" if med < 20 else "NO"),
        ]
    )
    commands = results.get("commands", {})
    base = {"s": commands.get("status_supervisord", {}).get("median_s")}
    for key, name in (
        ("status_supervisord-lite", "status (N = 100)"),
        ("releases_200", "releases (200)"),
        ("brr_help", "brr-release --help"),
    ):
        ours = {"s": commands.get(key, {}).get("median_s")}
        rows.append(ratio_row(name, "at most 0.5x supervisorctl status", ours, base, "s", 0.5))
    return "Against the aims in PEERS.md and issue 16:\n\n" + bl.table(
        ["supervisord-lite", "aim", "measured", "met"], rows, right_from=2
    )


def ratio_row(
    label: str, aim: str, ours: dict[str, Any], sup: dict[str, Any], key: str, limit: float
) -> list[str]:
    a, b = ours.get(key), sup.get(key)
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return [label, aim, "n/a", "n/a"]
    return [label, aim, bl.fmt_ratio(a, b), "yes" if a / b <= limit else "NO"]


def idle_row(n: int, ours: dict[str, Any], window: float) -> list[str]:
    aim = "near zero: CPU < 1 ms / s of window, < 0.2 wake-ups / s"
    idle, wake = ours.get("idle_cpu_ms"), ours.get("wakeups_per_s")
    if idle is None or wake is None:
        return [f"idle, N = {n}", aim, "n/a", "n/a"]
    met = idle < window and wake < 0.2
    return [f"idle, N = {n}", aim, f"{idle:.2f} ms, {wake:.2f} / s", "yes" if met else "NO"]


# --- main ---------------------------------------------------------------------------------


def raise_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        with contextlib.suppress(ValueError, OSError):  # not privileged: keep the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, want))
            hard = want
    target = want if hard == resource.RLIM_INFINITY else min(hard, want)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def measure_commands(base: Path, cfg: Config, skip: dict[str, str]) -> dict[str, Any]:
    """The operator's instant commands, interleaved run by run so that a loaded machine
    slows each alike: each supervisor's status with 100 `sleep`s (all of them running at
    once), `brr-release releases` on a root of 200 releases, each CLI's --help."""
    import ledger_bench

    root = base / "releases-200"
    ledger_bench.make_root(root, 200)
    brr = str(bl.VENV_BIN / "brr-release")
    commands: dict[str, StatusCmd] = {
        "releases_200": ([brr, "--root", str(root), "releases"], None),
        "brr_help": ([brr, "--help"], None),
        "lite_help": ([str(LITE), "--help"], None),
    }
    runs = []
    try:
        for peer in cfg.peers:
            if peer not in skip:
                run = launch(peer, base, [Program(PROGRAM, PROGRAM_CMD, 100)])
                runs.append(run)
                wait_running(run, 100, timeout=cfg.spawn_timeout)
                commands[f"status_{peer}"] = run.status_cmd
        time.sleep(cfg.settle)
        times: dict[str, list[float]] = {key: [] for key in commands}
        for _ in range(cfg.status_runs + 1):  # the first round only warms the caches
            for key, (argv, env) in commands.items():
                times[key].append(timed_runs(argv, env, 1)["median_s"])
    except BenchFailure as exc:
        return {"error": str(exc)}
    finally:
        for run in runs:
            cleanup(run)
        shutil.rmtree(root, ignore_errors=True)
    return {key: {"median_s": bl.median(t[1:]), "runs": len(t) - 1} for key, t in times.items()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="N = 10, 100, 5 s windows, 5 kills: a smoke run"
    )
    ap.add_argument(
        "--only",
        action="append",
        choices=PEER_NAMES,
        metavar="NAME",
        help=f"only this supervisor (repeatable): {', '.join(PEER_NAMES)}",
    )
    ap.add_argument(
        "--save", action="store_true", help="save to docs/benchmarks.md even with --quick or --only"
    )
    ap.add_argument("--no-save", action="store_true", help="only print")
    ap.add_argument("--ns", help="comma-separated N to run instead (implies no save)")
    ap.add_argument("--note", default="", help="a sentence added to the section's header")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        cfg = Config(
            ns=[10, 100], idle_window=5, crash_window=10, kills=5, settle=1.5, status_runs=5
        )
    else:
        cfg = Config(
            ns=[10, 100, 500, 1000, 5000], idle_window=20, crash_window=20, kills=20, settle=3
        )
    if args.ns:
        cfg.ns = sorted(int(x) for x in args.ns.split(","))
    if args.only:
        cfg.peers = [p for p in PEER_NAMES if p in args.only]
    save = not args.no_save and (args.save or not (args.quick or args.only or args.ns))

    # supervisord holds about 5 fds a child (3 pipes, 2 log files): 500 children need a
    # higher soft limit than the usual 1024. It is raised here, not with supervisord's
    # minfds, because supervisord closes fds 3..minfds in every child it forks, one
    # close(2) at a time in Python, which would slow its spawning down for our config's sake.
    # 5,000 children need about 25,000: the hard limit is raised too where we may (root).
    # supervisord-lite does not raise its own limit at start yet, so this raise is what
    # lets it hold 5,000 as well.
    raise_nofile(65536)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    t_start = time.monotonic()
    versions: dict[str, str] = {}
    skip: dict[str, str] = {}
    if {"supervisord", "circus"} & set(cfg.peers):
        try:
            versions = ensure_peer_venv()
        except (subprocess.SubprocessError, OSError) as exc:
            for p in ("supervisord", "circus"):
                skip[p] = f"peer venv: {exc}"
    if "supervisord-lite" in cfg.peers:
        reason = lite_unavailable()
        if reason:
            skip["supervisord-lite"] = reason

    load_start = os.getloadavg()[0]
    results: dict[str, Any] = {
        "formation": {},
        "crash": {},
        "config": cfg.__dict__,
        "versions": versions,
    }
    results["nproc_enforced"] = nproc_enforced()
    results["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    base = Path(tempfile.mkdtemp(prefix="daemon-bench-"))
    try:
        if "supervisord-lite" not in skip and "supervisord-lite" in cfg.peers:
            print("commands ...", file=sys.stderr, flush=True)
            results["commands"] = measure_commands(base, cfg, skip)
        for n in cfg.ns:
            for peer in cfg.peers:
                if peer in skip:
                    res: dict[str, Any] = {"error": skip[peer]}
                elif n > 500 and peer not in cfg.big_peers:
                    res = {"error": "not run past N = 500 (time)"}
                else:
                    print(f"{peer}, N = {n} ...", file=sys.stderr, flush=True)
                    res = bench_formation(peer, n, base, cfg)
                print(f"  {peer} N={n}: {summary(res)}", file=sys.stderr, flush=True)
                results["formation"].setdefault(peer, {})[str(n)] = res
        for peer in cfg.peers:
            if peer in skip:
                res = {"error": skip[peer]}
            else:
                print(f"{peer}, crash loop ...", file=sys.stderr, flush=True)
                res = bench_crash_loop(peer, base, cfg)
            print(f"  {peer} crash loop: {summary(res)}", file=sys.stderr, flush=True)
            results["crash"][peer] = res
    finally:
        for run in RUNS:
            cleanup(run)
        shutil.rmtree(base, ignore_errors=True)

    results["loadavg"] = [load_start, os.getloadavg()[0]]
    text = render(results, cfg, versions, args.quick, args.note)
    print(text)
    print(f"(bench took {time.monotonic() - t_start:.0f} s)", file=sys.stderr)
    bl.OUT.mkdir(parents=True, exist_ok=True)
    name = "daemon_bench" + ("_quick" if args.quick else "") + ".json"
    (bl.OUT / name).write_text(json.dumps(results, indent=2, default=str) + "\n")
    if save:
        print(f"saved to {bl.save_section('daemon', text)}", file=sys.stderr)
    return 0


def summary(res: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in res.items()
        if k != "respawn_ms"
    )


if __name__ == "__main__":
    sys.exit(main())

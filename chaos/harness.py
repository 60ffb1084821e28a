"""What every chaos phase shares: the processes we started, the daemon we restart, the
invariants, and the counters the report is made of.

Choices:
- Every process the harness starts goes through Procs.spawn, in its own session, so the
  end (normal or not) kills each one by its process group. Processes the daemon started
  are found by what makes them ours: their cwd is under one of our temp roots. Nothing is
  ever killed by name.
- Invariants on disk are checked with run/lock held, as a writer would hold it: a check
  then sees a quiescent root, never one half-way through a writer's critical section, so
  every violation is real. `verify` does not take the lock itself.
- The status monitor is a thread: it must measure the daemon while the harness's main
  loop is busy waiting for writers.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from supervisord_lite.brr.maintenance import verify
from supervisord_lite.daemon_client import request
from supervisord_lite.errors import BrrError
from supervisord_lite.layout import BUILD_ID_RE, RELEASE_ID_RE, DeployRoot
from supervisord_lite.manifest import Release, load_release

T = TypeVar("T")

BIN = Path(sys.executable).parent
# the slowest status answer allowed while the daemon is under fire; the smoke test, which
# shares a CI machine with the whole suite, allows more
STATUS_LIMIT = float(os.environ.get("CHAOS_STATUS_LIMIT", "1.0"))


def tool(name: str) -> str:
    local = BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"chaos: {name} not found next to {sys.executable} nor on PATH")
    return found


BRR = tool("brr-release")
DAEMON = tool("supervisord-lite")
PY = sys.executable


def log(msg: str) -> None:
    print(f"chaos: {msg}", file=sys.stderr, flush=True)


def wait_until(predicate: Callable[[], T], *, timeout: float, interval: float = 0.05) -> T | None:
    """The first truthy value of predicate within timeout, else None."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


# --- counters --------------------------------------------------------------------------


@dataclass
class Stats:
    ops: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # the clean error lines, generalized
    faults: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    daemon_restarts: int = 0
    checks: int = 0
    latency: dict[str, float] = field(default_factory=dict)
    status_calls: Counter[str] = field(default_factory=Counter)
    max_rss: int = 0
    rss: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def violation(self, phase: str, message: str) -> None:
        with self.lock:
            self.violations.append(f"{phase}: {message}")
        log(f"VIOLATION {phase}: {message}")

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)
        log(message)

    def to_data(self) -> dict[str, Any]:
        return {
            "ops": dict(self.ops),
            "outcomes": dict(self.outcomes),
            "errors": dict(self.errors),
            "faults": dict(self.faults),
            "violations": list(self.violations),
            "daemon_restarts": self.daemon_restarts,
            "checks": self.checks,
            "max_status_latency": dict(self.latency),
            "status_calls": dict(self.status_calls),
            "daemon_max_rss": self.max_rss,
            "daemon_max_rss_by_phase": dict(self.rss),
            "notes": list(self.notes),
            "seconds": dict(self.seconds),
        }


# --- processes we start ----------------------------------------------------------------


class Procs:
    """Every process the harness starts; kill_all() ends each by its process group."""

    def __init__(self) -> None:
        self.live: list[subprocess.Popen[bytes]] = []
        self.roots: list[Path] = []

    def spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw["start_new_session"] = True
        proc: subprocess.Popen[bytes] = subprocess.Popen(argv, **kw)
        self.live.append(proc)
        self.live = [p for p in self.live if p.returncode is None]
        return proc

    def kill_all(self) -> None:
        for proc in self.live:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        self.live.clear()
        for root in self.roots:
            kill_under(root)


def processes_under(root: Path) -> list[psutil.Process]:
    """Live processes whose working directory is under root: ones our daemons started."""
    found = []
    prefix = str(root.resolve()) + os.sep
    for proc in psutil.process_iter():
        try:
            cwd = proc.cwd()
            if (cwd + os.sep).startswith(prefix) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def kill_under(root: Path) -> int:
    killed = 0
    for proc in processes_under(root):
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
            killed += 1
    return killed


def descendants(pid: int) -> dict[int, psutil.Process]:
    try:
        return {p.pid: p for p in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return {}


def environ(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except (psutil.Error, OSError):
        return {}


# --- the brr-release CLI ---------------------------------------------------------------


class Op:
    """One brr-release command running as a writer; its stderr drained by a thread.

    A pipe, not a file: a writer under RLIMIT_FSIZE could not write its error to a file.
    """

    def __init__(
        self, kind: str, procs: Procs, argv: list[str], kill_at: float | None = None, **kw: Any
    ) -> None:
        self.kind = kind
        self.proc = procs.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
        self.kill_at = kill_at
        self.killed = False
        self._err = bytearray()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr as pipe:
            for chunk in iter(lambda: pipe.read1(65536), b""):
                self._err += chunk[: max(0, 1_000_000 - len(self._err))]

    def kill(self) -> None:
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def stderr(self) -> str:
        self._reader.join(timeout=10)
        return self._err.decode(errors="replace")


def brr(root: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BRR, "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


CLEAN_ERROR = re.compile(r"^brr-release: error: \S.*$")


FRAME = re.compile(r'File ".*?(supervisord_lite/[^"]+)", line (\d+), in (\S+)')


def where(lines: list[str]) -> str:
    """The last frame of ours in a traceback, and the exception: enough to find the bug."""
    frames = [m for m in (FRAME.search(line) for line in lines) if m]
    site = f"{frames[-1][1]}:{frames[-1][2]} in {frames[-1][3]}" if frames else "?"
    last = re.sub(r"'/[^']*'( -> '/[^']*')?", "'PATH'", lines[-1]) if lines else ""
    return f"{last[:160]} (at {site})"


def judge_exit(phase: str, op_kind: str, rc: int, stderr: str, stats: Stats) -> str:
    """Classify a finished writer: ok, a clean error, or a violation (traceback etc.)."""
    if rc == 0:
        return "ok"
    lines = [line for line in stderr.splitlines() if line.strip()]
    if "Traceback" in stderr:
        stats.violation(phase, f"{op_kind} exited {rc} with a traceback: {where(lines)}")
        return "traceback"
    if rc not in (1, 2):
        stats.violation(phase, f"{op_kind} exited {rc}: {' | '.join(lines[-2:])[:300]}")
        return "bad-exit"
    errors = [line for line in lines if line.startswith("brr-release: error:")]
    if len(errors) != 1 or not CLEAN_ERROR.match(errors[0]):
        stats.violation(phase, f"{op_kind} exited {rc} without one error line: {lines[-3:]}")
        return "unclear-error"
    with stats.lock:
        stats.errors[f"{op_kind}: {general(errors[0])}"] += 1
    return f"error {rc}"


def general(line: str) -> str:
    """An error line without its paths, IDs and numbers: what an operator read, by kind."""
    line = line.removeprefix("brr-release: error: ")
    line = re.sub(r"/\S*?(?=[:;,)`]?(\s|$))", "PATH", line)
    line = re.sub(r"\bb-[0-9a-f]{12}\b", "b-ID", line)
    line = re.sub(r"\bv\d+\b", "vN", line)
    return re.sub(r"\b\d+\b", "N", line)[:200]


# --- invariants on disk ----------------------------------------------------------------


@contextlib.contextmanager
def root_lock(d: DeployRoot, timeout: float = 120.0) -> Iterator[None]:
    """run/lock, as every writer takes it; waits at most timeout."""
    fd = os.open(d.lock_file, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o660)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"run/lock held for over {timeout:g} s") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)


def check_ledger(d: DeployRoot) -> list[str]:
    problems: list[str] = []
    try:
        raw = d.ledger.read_bytes()
    except FileNotFoundError:
        return problems
    lines = raw.split(b"\n")
    # lines[-1] is b"" or a torn tail (a killed writer): ignored on read, cut by the next
    seqs: list[int] = []
    numbers: list[int] = []
    for n, line in enumerate(lines[:-1], 1):
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError:
            problems.append(f"ledger line {n} does not parse: {line[:80]!r}")
            continue
        seqs.append(int(entry.get("seq", -1)))
        if entry.get("event") == "release":
            rid = str(entry.get("id"))
            if not RELEASE_ID_RE.fullmatch(rid):
                problems.append(f"ledger line {n}: bad release id {rid!r}")
            else:
                numbers.append(int(rid[1:]))
    if any(b <= a for a, b in itertools.pairwise(seqs)):
        problems.append(f"ledger seq not strictly increasing: {seqs[-10:]}")
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        problems.append(f"ledger release ids not unique and increasing: {numbers[-10:]}")
    return problems


def check_entries(d: DeployRoot) -> list[str]:
    """Every visible entry of builds/ and releases/ is a whole one; temps stay hidden."""
    problems: list[str] = []
    for directory, pattern, meta in (
        (d.releases, RELEASE_ID_RE, "release.yaml"),
        (d.builds, BUILD_ID_RE, "build.yaml"),
    ):
        for entry in directory.iterdir():
            if entry.name.startswith("."):
                continue
            if not pattern.fullmatch(entry.name):
                problems.append(f"{directory.name}/{entry.name} is visible but not an ID")
            elif not (entry / meta).is_file():
                problems.append(f"{directory.name}/{entry.name} has no {meta}")
    return problems


def check_current(d: DeployRoot) -> tuple[Release | None, list[str]]:
    if not os.path.lexists(d.current):
        return None, []
    cid = d.current_release_id()
    if cid is None:
        return None, [f"current -> {os.readlink(d.current)!r} names no release"]
    try:
        return load_release(d.release_manifest(cid), builds_dir=d.builds), []
    except BrrError as exc:
        return None, [f"current names an incomplete release {cid}: {exc.message}"]


def check_root(d: DeployRoot, *, cli: bool) -> list[str]:
    """Every on-disk invariant, under run/lock; with cli, `brr-release verify` too."""
    with root_lock(d):
        report = verify(d)
        problems = [f"verify: {p}" for p in report.problems]
        problems += check_ledger(d)
        problems += check_entries(d)
        problems += check_current(d)[1]
        if cli:
            proc = brr(d.path, "--json", "verify")
            if proc.returncode != 0:
                problems.append(f"brr-release verify exited {proc.returncode}: {proc.stdout}")
            listed = json.loads(brr(d.path, "--json", "releases").stdout or "{}")
            ids = sorted(r["id"] for r in listed.get("releases", []))
            if ids != sorted(d.release_ids()):
                problems.append(f"`releases` lists {ids}, disk has {d.release_ids()}")
    return problems


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited {code}"


# --- the daemon ------------------------------------------------------------------------


class DaemonCtl:
    """One daemon per root, restarted at once when killed, as systemd would."""

    def __init__(self, root: Path, procs: Procs, stats: Stats, out: Path, phase: str) -> None:
        self.phase = phase
        self.root = root
        self.d = DeployRoot(root)
        self.procs = procs
        self.stats = stats
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarting = threading.Event()
        self.stopping = threading.Event()
        procs.roots.append(root)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, timeout: float = 30.0) -> bool:
        """Start it and wait for its control socket; a daemon that dies on the way is a
        violation, and is started again (systemd's Restart=), at most 3 times."""
        for _ in range(3):
            with self.out.open("ab") as f:
                self.proc = self.procs.spawn(
                    [DAEMON, "run", "--root", str(self.root)], stdout=f, stderr=subprocess.STDOUT
                )
            up = wait_until(
                lambda: not self.alive() or self.status(timeout=2.0) is not None, timeout=timeout
            )
            if up and self.alive():
                return True
            if self.alive():
                return False
            self.died("while starting")
        return False

    def died(self, when: str) -> None:
        """Record a daemon that died on its own (not by our SIGKILL)."""
        self.stats.violation(
            self.phase, f"daemon {describe_exit(self.exit_code())} {when}: {self.last_words()}"
        )
        self.stats.daemon_restarts += 1

    def revive(self) -> bool:
        """A daemon found dead is a violation; start a new one as systemd would."""
        if self.alive() or self.restarting.is_set():
            return True
        self.restarting.set()
        try:
            self.died("on its own")
            return self.start()
        finally:
            self.restarting.clear()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self, timeout: float = 5.0) -> dict[str, Any] | None:
        return self.status_or_error(timeout)[0]

    def status_or_error(self, timeout: float = 5.0) -> tuple[dict[str, Any] | None, str]:
        try:
            reply = request(self.d.control_socket, {"cmd": "status"}, timeout=timeout)
        except BrrError as exc:
            return None, exc.message
        status = reply.get("status")
        if reply.get("ok") and isinstance(status, dict):
            return status, ""
        return None, str(reply.get("error"))

    def crash_and_restart(self) -> bool:
        """SIGKILL the daemon alone (its children live on) and start a new one at once."""
        self.restarting.set()
        try:
            if self.alive():
                os.kill(self.pid, signal.SIGKILL)
                assert self.proc is not None
                self.proc.wait(timeout=10)
            self.stats.daemon_restarts += 1
            return self.start()
        finally:
            self.restarting.clear()

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, as systemctl stop; SIGKILL the group after timeout."""
        if self.proc is None:
            return None
        self.stopping.set()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
                return None
        return self.proc.returncode

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def last_words(self, n: int = 3) -> str:
        """The daemon's last output lines, for a violation's message."""
        try:
            lines = self.out.read_text(errors="replace").splitlines()
        except OSError:
            return "(no output)"
        return " | ".join(line[:200] for line in lines[-n:])

    def rss(self) -> int:
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except (psutil.Error, AssertionError):
            return 0

    def expected(self, release: Release) -> Counter[tuple[str, str]]:
        want: Counter[tuple[str, str]] = Counter()
        for type_, spec in release.processes.items():
            for n in range(1, spec.scale + 1):
                want[(f"{type_}.{n}", release.id)] += 1
        return want

    def observed(self) -> tuple[Counter[tuple[str, str]], list[str]]:
        """(BRR_PROCESS, BRR_RELEASE) of every process under builds/; orphans named."""
        tree = descendants(self.pid)
        seen: Counter[tuple[str, str]] = Counter()
        orphans = []
        for proc in processes_under(self.d.builds):
            env = environ(proc)
            if proc.pid not in tree:
                orphans.append(f"pid {proc.pid} {env.get('BRR_PROCESS')} not under the daemon")
            if "BRR_PROCESS" in env and proc.pid in tree and proc.ppid() == self.pid:
                seen[(env["BRR_PROCESS"], env.get("BRR_RELEASE", "?"))] += 1
        return seen, orphans

    def check_at_rest(
        self,
        *,
        timeout: float = 40.0,
        reload: bool = True,
        types: set[str] | None = None,
        kept: bool = False,
    ) -> list[str]:
        """The daemon runs exactly the processes of current, and nothing is orphaned.

        With types, only processes of those types must be RUNNING (the others misbehave
        on purpose), and names are compared as a set (a double-forked grandchild that
        the subreaper adopted carries its parent's BRR_PROCESS).
        """
        release, problems = check_current(self.d)
        if release is None:
            return problems or ["at rest: no current release"]
        if not self.alive():
            return [f"at rest: the daemon exited {self.exit_code()}: {self.last_words()}"]
        if reload:
            # a writer SIGKILLed between moving current and signalling leaves the daemon
            # on the old release by design: this is the operator's (or --watch's) HUP
            os.kill(self.pid, signal.SIGHUP)
        last: list[str] = []

        def settled() -> bool:
            nonlocal last, release
            status = self.status()
            if status is None:
                last = ["status unanswered"]
                return False
            if kept and status.get("release"):
                rid = status["release"]
                release = load_release(self.d.release_manifest(rid), builds_dir=self.d.builds)
            want = self.expected(release)
            last = []
            if status.get("release") != release.id or status.get("state") != "running":
                last.append(
                    f"status: {status.get('release')} {status.get('state')}, "
                    f"current is {release.id}"
                )

            def counted(name: str) -> bool:
                return types is None or name.split(".")[0] in types

            states = [
                (p["name"], p["release"], p["state"])
                for p in status["processes"]
                if counted(p["name"]) and (p["state"] != "RUNNING" or p["release"] != release.id)
            ]
            if states:
                last.append(f"status lists {states}")
            listed = sorted(p["name"] for p in status["processes"])
            if listed != sorted(name for name, _ in want):
                last.append(f"status lists {listed}, want {sorted(n for n, _ in want)}")
            seen, orphans = self.observed()
            if types is not None:
                seen = Counter({k: 1 for k in seen if counted(k[0])})
                mine = Counter({k: 1 for k in want if counted(k[0])})
            else:
                mine = want
            if seen != mine:
                last.append(f"running {sorted(seen.elements())}, want {sorted(mine.elements())}")
            last += orphans
            return not last

        if wait_until(settled, timeout=timeout, interval=0.2):
            return []
        return [f"at rest: {p}" for p in last]


# --- the status monitor ----------------------------------------------------------------


class Monitor:
    """Ask status every interval; record the slowest answer and the daemon's RSS."""

    def __init__(
        self, ctl: DaemonCtl, stats: Stats, phase: str, *, strict: bool, interval: float = 0.1
    ) -> None:
        self.ctl = ctl
        self.stats = stats
        self.phase = phase
        self.strict = strict
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"monitor-{phase}", daemon=True)
        self.failures = 0

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.ctl.restarting.is_set() or self.ctl.stopping.is_set() or not self.ctl.alive():
                continue
            t0 = time.monotonic()
            status, error = self.ctl.status_or_error(timeout=5.0)
            dt = time.monotonic() - t0
            if self.ctl.restarting.is_set() or self.ctl.stopping.is_set():
                continue
            self.stats.status_calls[self.phase] += 1
            if status is None:
                self.failures += 1
                if self.strict:
                    self.stats.violation(self.phase, f"status failed after {dt:.2f} s: {error}")
                continue
            with self.stats.lock:
                self.stats.latency[self.phase] = max(self.stats.latency.get(self.phase, 0.0), dt)
                rss = self.ctl.rss()
                self.stats.max_rss = max(self.stats.max_rss, rss)
                self.stats.rss[self.phase] = max(self.stats.rss.get(self.phase, 0), rss)
            if self.strict and dt > STATUS_LIMIT:
                self.stats.violation(
                    self.phase, f"status took {dt:.2f} s (over {STATUS_LIMIT:g} s)"
                )

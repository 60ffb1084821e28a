"""Faults the daemon meets from its own children and from its control socket.

Process faults: a release whose process types misbehave on purpose (exit at once, ignore
SIGTERM, double-fork, fork a hundred children, close stdout, write binary garbage, write a
10 MB line, hang in readiness), switched again and again and restarted over the control
socket. Socket abuse: garbage bytes, truncated JSON, a 100 MB line, 200 concurrent
clients, a client that never reads its replies, idle clients. Throughout, a monitor asks
`status` every 0.1 s (each answer must take under a second) and samples the daemon's RSS;
a steady process is SIGKILLed now and then and must come back (the daemon still
supervises). At the end nothing the releases started may outlive the daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness import PY, DaemonCtl, Monitor, Procs, Stats, brr, log, processes_under, wait_until

from supervisord_lite.daemon_client import request
from supervisord_lite.layout import DeployRoot

PROGRAMS = r"""
import os, sys, time, signal
mode = sys.argv[1]
if mode == "exit":
    raise SystemExit(0)
if mode == "ignoreterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif mode == "doublefork":
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(100000)
        os._exit(0)
elif mode == "forker":
    for _ in range(100):
        if os.fork() == 0:
            time.sleep(100000)
            os._exit(0)
elif mode == "closeout":
    os.close(1)
    os.close(2)
elif mode == "garbage":
    while True:
        for _ in range(64):
            os.write(1, os.urandom(16384))
        time.sleep(0.2)
elif mode == "bigline":
    while True:
        os.write(1, b"x" * (10 * 1024 * 1024) + b"\n")
        time.sleep(1.0)
time.sleep(100000)
"""


# the types that stay RUNNING however badly they behave otherwise
WELL_BEHAVED = {"steady", "ignoreterm", "doublefork", "forker", "closeout", "garbage", "bigline"}


def faulty_app(src: Path) -> Path:
    src.mkdir(parents=True, exist_ok=True)
    (src / "faults.py").write_text(PROGRAMS)
    py = shlex.quote(PY)

    def proc(name: str, mode: str, extra: str = "") -> str:
        return (
            f"  {name}:\n"
            f'    cmd: "{py} faults.py {mode}"\n'
            "    ready: {after: 0.2}\n"
            "    stop_timeout: 1\n"
            f"{extra}"
        )

    (src / "brr.yaml").write_text(
        "switch: stop-first\n"
        "processes:\n"
        + proc("steady", "sleep", "    scale: 2\n")
        + proc("exits", "exit")
        + proc("ignoreterm", "ignoreterm")
        + proc("doublefork", "doublefork")
        + proc("forker", "forker")
        + proc("closeout", "closeout")
        + proc("garbage", "garbage")
        + proc("bigline", "bigline")
        + "  hangready:\n"
        '    cmd: "sleep 100000"\n'
        '    ready: {cmd: "sleep 100000"}\n'
        "    ready_timeout: 2\n"
        "    stop_timeout: 1\n"
    )
    return src


def calm_app(src: Path) -> Path:
    src.mkdir(parents=True, exist_ok=True)
    (src / "brr.yaml").write_text(
        "processes:\n"
        "  steady:\n"
        '    cmd: "sleep 100000"\n'
        "    scale: 2\n"
        "    ready: {after: 0.1}\n"
        "    stop_timeout: 2\n"
    )
    return src


def kill_steady(ctl: DaemonCtl, stats: Stats, phase: str) -> None:
    """SIGKILL a steady process; the daemon must start a new one (it still supervises).

    Only one whose restart backoff is at its start (never restarted, or RUNNING for over
    the daemon's 10 s stability period): a process killed again and again is rightly
    restarted later and later, up to 30 s, and that is not what this measures.
    """
    status = ctl.status()
    if status is None:
        return
    eligible = [
        p
        for p in status["processes"]
        if p["type"] == "steady"
        and p["state"] == "RUNNING"
        and p["release"] == status["release"]
        and p["pid"]
        and (p["restarts"] == 0 or (p["uptime"] or 0) > 11)
    ]
    if not eligible:
        return
    victim = eligible[0]
    with contextlib.suppress(ProcessLookupError):
        os.kill(victim["pid"], signal.SIGKILL)
    stats.faults["SIGKILL a supervised process"] += 1

    def back() -> bool:
        s = ctl.status()
        return s is not None and any(
            p["name"] == victim["name"] and p["state"] == "RUNNING" and p["pid"] != victim["pid"]
            for p in s["processes"]
        )

    if not wait_until(back, timeout=10):
        stats.violation(phase, f"{victim['name']} was not restarted within 10 s of its SIGKILL")


def start_daemon(
    root: Path, src: Path, stats: Stats, procs: Procs, work: Path, phase: str
) -> DaemonCtl | None:
    brr(root, "init")
    first = brr(root, "deploy", str(src))
    if first.returncode != 0:
        stats.violation(phase, f"deploy failed: {first.stderr.strip()[-300:]}")
        return None
    ctl = DaemonCtl(root, procs, stats, work / f"{phase}-daemon.out", phase)
    if not ctl.start():
        stats.violation(phase, f"the daemon did not come up: {ctl.last_words()}")
        return None
    return ctl


def finish_daemon(
    ctl: DaemonCtl,
    stats: Stats,
    phase: str,
    *,
    types: set[str] | None = None,
    kept: bool = False,
) -> None:
    """At rest: exactly current runs, no orphan; after SIGTERM nothing is left.

    With kept, the release the daemon reports running stands in for current: switches
    to a release with a process that cannot start are refused by design.
    """
    stats.checks += 1
    for problem in ctl.check_at_rest(reload=False, types=types, kept=kept):
        stats.violation(phase, problem)
    code = ctl.stop()
    if code != 0:
        stats.violation(phase, f"daemon exited {code} on SIGTERM")
    stats.checks += 1
    left = wait_until(lambda: not processes_under(ctl.d.builds), timeout=10)
    if not left:
        names = [(p.pid, p.name()) for p in processes_under(ctl.d.builds)]
        stats.violation(phase, f"outlived the daemon: {names[:10]}")


def run_process_faults(
    budget: float, rng: random.Random, stats: Stats, procs: Procs, work: Path
) -> None:
    phase = "process"
    root = work / "procfaults"
    src = faulty_app(work / "procfaults-src")
    ctl = start_daemon(root, src, stats, procs, work, phase)
    if ctl is None:
        return
    kinds = (
        "exits at once",
        "ignores SIGTERM",
        "double-forks",
        "forks 100 children",
        "closes stdout",
        "writes binary garbage",
        "writes a 10 MB line",
        "hangs in readiness",
    )
    t_end = time.monotonic() + budget
    n = 0
    with Monitor(ctl, stats, phase, strict=True):
        while time.monotonic() < t_end and n < 1000:
            n += 1
            for kind in kinds:  # each switch starts a new generation of every misbehaver
                stats.faults[f"child {kind}"] += 1
            action = rng.choice(["switch", "restart", "kill"])
            if action == "switch":
                # stop-first: hangready never becomes ready, so a start-first switch
                # would (rightly) keep the old release; no --wait for the same reason
                r = brr(root, "config", "set", f"ROUND={n}", "--activate")
                stats.ops["config set --activate"] += 1
                if r.returncode != 0:
                    stats.violation(phase, f"config set --activate: {r.stderr.strip()[-200:]}")
            elif action == "restart":
                target = rng.choice(["forker", "ignoreterm", "doublefork", "garbage", None])
                payload = {"cmd": "restart", **({"target": target} if target else {})}
                try:
                    request(ctl.d.control_socket, payload, timeout=30)
                    stats.ops["control restart"] += 1
                except Exception as exc:
                    stats.violation(phase, f"restart {target}: {exc}")
            else:
                kill_steady(ctl, stats, phase)
            time.sleep(min(1.0, max(0.0, t_end - time.monotonic())))
        finish_daemon(ctl, stats, phase, types=WELL_BEHAVED, kept=True)
        status = ctl.status() or {}
        switch = status.get("last_switch") or {}
        if switch and not switch.get("ok"):
            stats.note(
                "process phase: a release with a process that exits at once never goes live "
                "(by design: a switch needs every process to start), so each switch stopped "
                "and restarted the misbehaving generation"
            )
    log(f"process faults: {n} rounds")


# --- control socket abuse --------------------------------------------------------------


def connect(path: Path, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    return s


def read_line(s: socket.socket, limit: int = 1 << 20) -> bytes:
    buf = b""
    while b"\n" not in buf and len(buf) < limit:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0]


def garbage(path: Path, rng: random.Random) -> bool:
    with connect(path) as s:
        s.sendall(rng.randbytes(rng.randrange(1, 4096)).replace(b"\n", b" ") + b"\n")
        reply = json.loads(read_line(s))
        s.sendall(b'{"cmd": "status"}\n')  # the connection stays usable
        again = json.loads(read_line(s))
    return reply.get("ok") is False and again.get("ok") is True


def truncated(path: Path, rng: random.Random) -> bool:
    text = b'{"cmd": "status", "x": [1, 2'
    with connect(path) as s:
        s.sendall(text[: rng.randrange(1, len(text))])
        s.shutdown(socket.SHUT_WR)
        read_line(s)  # nothing, or an error: either way the daemon must go on
    return True


def huge_line(path: Path) -> bool:
    """100 MB without a newline: the daemon stops reading at its bound and says so."""
    chunk = b"a" * (1 << 20)
    with connect(path, timeout=10) as s:
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 100 * (1 << 20):
                s.sendall(chunk)
                sent += len(chunk)
        with contextlib.suppress(OSError, ValueError):
            reply = json.loads(read_line(s) or b"{}")
            return reply.get("ok") is False or sent < 100 * (1 << 20)
    return True


def crowd(path: Path, n: int = 200) -> tuple[int, int]:
    """n clients connected at once, then all ask status: (connected, answered ok).

    The listen backlog is 128, so a connect may find it full (EAGAIN on a Unix socket):
    the client retries, as a real one would, until all n are connected.
    """
    answered = 0
    connected = 0
    lock = threading.Lock()
    go = threading.Event()

    def one() -> None:
        nonlocal answered, connected
        deadline = time.monotonic() + 20
        s = None
        while s is None and time.monotonic() < deadline:
            try:
                s = connect(path, timeout=20)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                return
        if s is None:
            return
        with s, contextlib.suppress(OSError, ValueError):
            with lock:
                connected += 1
            go.wait(timeout=30)
            s.sendall(b'{"cmd": "status"}\n')
            if json.loads(read_line(s)).get("ok"):
                with lock:
                    answered += 1

    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    wait_until(lambda: connected >= n, timeout=20)
    go.set()
    for t in threads:
        t.join(timeout=60)
    return connected, answered


def never_reads(path: Path) -> socket.socket:
    """Floods requests and never reads a reply; kept open until the end of the phase."""
    s = connect(path, timeout=30)
    flood = b'{"cmd": "status"}\n' * 20_000

    def send() -> None:
        with contextlib.suppress(OSError):
            s.sendall(flood)

    threading.Thread(target=send, daemon=True).start()
    return s


def attempt(stats: Stats, phase: str, what: str, action: Callable[[], bool]) -> bool:
    """Run one abuse; a daemon that does not answer in time is a violation, not a crash."""
    try:
        return action()
    except (OSError, ValueError) as exc:
        stats.violation(phase, f"{what}: no proper answer: {type(exc).__name__}: {exc}")
        return True


def run_socket_abuse(
    budget: float, rng: random.Random, stats: Stats, procs: Procs, work: Path
) -> None:
    phase = "socket"
    root = work / "sockabuse"
    ctl = start_daemon(root, calm_app(work / "sockabuse-src"), stats, procs, work, phase)
    if ctl is None:
        return
    path = DeployRoot(root).control_socket
    held: list[socket.socket] = []
    t_end = time.monotonic() + budget
    n = 0
    try:
        with Monitor(ctl, stats, phase, strict=True):
            for _ in range(20):
                held.append(connect(path))
            stats.faults["idle client (never sends)"] += 20
            while time.monotonic() < t_end and n < 1000:
                n += 1
                for _ in range(5):
                    stats.faults["garbage bytes"] += 1
                    if not attempt(stats, phase, "garbage bytes", lambda: garbage(path, rng)):
                        stats.violation(phase, "garbage did not get an error reply")
                    stats.faults["truncated JSON"] += 1
                    attempt(stats, phase, "truncated JSON", lambda: truncated(path, rng))
                with contextlib.suppress(OSError):
                    held.append(never_reads(path))
                    stats.faults["client that never reads"] += 1
                stats.faults["100 MB line"] += 1
                if not attempt(stats, phase, "a 100 MB line", lambda: huge_line(path)):
                    stats.violation(phase, "a 100 MB line did not get an error reply")
                stats.faults["200 concurrent clients"] += 1
                connected, got = crowd(path)
                stats.status_calls[f"{phase} (crowd)"] += got
                if got != 200:
                    stats.violation(
                        phase, f"{got} of 200 concurrent clients answered ({connected} connected)"
                    )
                kill_steady(ctl, stats, phase)
                if len(held) > 40:  # stay under the daemon's client limit of 256
                    for s in held[20:]:
                        s.close()
                    del held[20:]
            for s in held:
                s.close()
            held.clear()
            finish_daemon(ctl, stats, phase)
    finally:
        for s in held:
            s.close()
    log(f"socket abuse: {n} rounds")

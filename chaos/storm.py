"""The deploy storm: four writers deploying, changing config, rolling back and pruning at
once, SIGKILLed at random moments, while the daemon is SIGKILLed and restarted under them.

After every writer step the on-disk invariants are checked (harness.check_root, under
run/lock); at a few rest points and at the end the daemon must run exactly `current`.
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

from harness import (
    BRR,
    DaemonCtl,
    Monitor,
    Op,
    Procs,
    Stats,
    brr,
    check_root,
    judge_exit,
    log,
)

from supervisord_lite.layout import DeployRoot

PHASE = "storm"
WRITERS = 4
VARIANTS = 4
MAX_OPS = 20_000
KILL_WRITER_P = 0.3


def storm_app(src: Path, variant: int) -> Path:
    src.mkdir(parents=True, exist_ok=True)
    (src / "brr.yaml").write_text(
        "build:\n"
        "  - echo built > built.txt\n"
        "processes:\n"
        "  web:\n"
        '    cmd: "sleep 100000"\n'
        f"    scale: {1 + variant % 2}\n"
        "    ready: {after: 0.1}\n"
        "    stop_timeout: 2\n"
        "  worker:\n"
        '    cmd: "sleep 100000"\n'
        "    ready: {after: 0.1}\n"
        "    stop_timeout: 2\n"
    )
    (src / "VERSION").write_text(f"{variant}\n")
    return src


def start_op(
    root: Path, rng: random.Random, procs: Procs, sources: list[Path], n: int
) -> tuple[str, list[str]]:
    kind = rng.choices(["deploy", "config set", "rollback", "prune"], weights=[3, 3, 2, 1])[0]
    match kind:
        case "deploy":
            args = ["deploy", str(rng.choice(sources)), "--set", f"DEPLOY={n}"]
        case "config set":
            args = ["config", "set", f"K{rng.randrange(5)}={n}"]
            if rng.random() < 0.6:
                args.append("--activate")
        case "rollback":
            args = ["rollback"]
        case _:
            args = ["prune", "--keep", "5"]
    return kind, [BRR, "--root", str(root), *args]


def run_storm(budget: float, rng: random.Random, stats: Stats, procs: Procs, work: Path) -> None:
    root = work / "storm"
    d = DeployRoot(root)
    sources = [storm_app(work / f"storm-src-{v}", v) for v in range(VARIANTS)]
    brr(root, "init")
    first = brr(root, "deploy", str(sources[0]))
    if first.returncode != 0:
        stats.violation(PHASE, f"first deploy failed: {first.stderr.strip()}")
        return
    ctl = DaemonCtl(root, procs, stats, work / "storm-daemon.out", PHASE)
    if not ctl.start():
        stats.violation(PHASE, f"the daemon did not come up: {ctl.last_words()}")
        return
    t_end = time.monotonic() + budget
    rests = [time.monotonic() + budget * f for f in (0.35, 0.7)]
    next_daemon_kill = time.monotonic() + rng.uniform(1.0, 4.0)
    slots: list[Op | None] = [None] * WRITERS
    n = 0
    with Monitor(ctl, stats, PHASE, strict=False):
        while time.monotonic() < t_end and n < MAX_OPS:
            now = time.monotonic()
            for i, op in enumerate(slots):
                if op is None:
                    n += 1
                    kind, argv = start_op(root, rng, procs, sources, n)
                    kill_at = now + rng.uniform(0.0, 0.8) if rng.random() < KILL_WRITER_P else None
                    slots[i] = Op(kind, procs, argv, kill_at)
                    stats.ops[kind] += 1
                elif op.proc.poll() is not None:
                    finish(op, stats, d)
                    slots[i] = None
                elif op.kill_at is not None and now >= op.kill_at and not op.killed:
                    op.kill()
                    stats.faults["SIGKILL writer"] += 1
            if not ctl.alive() and not ctl.revive():
                stats.violation(PHASE, f"the daemon cannot be revived: {ctl.last_words()}")
                return
            if now >= next_daemon_kill:
                stats.faults["SIGKILL daemon"] += 1
                if not ctl.crash_and_restart():
                    stats.violation(PHASE, f"the restarted daemon is not up: {ctl.last_words()}")
                    return
                next_daemon_kill = time.monotonic() + rng.uniform(2.0, 6.0)
            if rests and now >= rests[0]:
                rests.pop(0)
                drain(slots, stats, d)
                at_rest(ctl, stats, cli=True)
            time.sleep(0.02)
        drain(slots, stats, d)
        at_rest(ctl, stats, cli=True)
    code = ctl.stop()
    if code != 0:
        stats.violation(PHASE, f"daemon exited {code} on SIGTERM")
    log(
        f"storm: {n} writer ops, {stats.faults['SIGKILL writer']} writers and "
        f"{stats.faults['SIGKILL daemon']} daemons killed"
    )


def finish(op: Op, stats: Stats, d: DeployRoot) -> None:
    rc = op.proc.wait()
    stderr = op.stderr()
    killed = op.killed and rc == -9
    outcome = "killed" if killed else judge_exit(PHASE, op.kind, rc, stderr, stats)
    stats.outcomes[f"{op.kind}: {outcome}"] += 1
    step_check(stats, d, PHASE)


def step_check(stats: Stats, d: DeployRoot, phase: str, *, cli: bool = False) -> None:
    stats.checks += 1
    for problem in check_root(d, cli=cli):
        stats.violation(phase, problem)


def drain(slots: list[Op | None], stats: Stats, d: DeployRoot) -> None:
    for i, op in enumerate(slots):
        if op is not None:
            try:
                op.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                stats.violation(PHASE, f"{op.kind} still running after 60 s")
                op.kill()
            finish(op, stats, d)
            slots[i] = None


def at_rest(ctl: DaemonCtl, stats: Stats, *, cli: bool) -> None:
    step_check(stats, ctl.d, PHASE, cli=cli)
    stats.checks += 1
    for problem in ctl.check_at_rest():
        stats.violation(PHASE, problem)

"""Crash consistency on the filesystem: writers on a full disk and over their file-size
limit must fail cleanly (exit 1 or 2, one line, no traceback), leave nothing corrupt
(verify passes), and work must resume once space returns.

- ENOSPC: the root sits on an 8 MiB tmpfs (we mount it: root only; when mounting is
  refused the part is skipped and the report says so) that the writers' own builds fill.
- EFBIG: each writer gets a random RLIMIT_FSIZE (resource.setrlimit in its preexec);
  Python ignores SIGXFSZ, so writes past the limit fail with EFBIG, while build steps run
  by sh get SIGXFSZ back (subprocess restores it) and die of it: both must be clean.
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from harness import BRR, Op, Procs, Stats, brr, check_root, judge_exit, log

from supervisord_lite.layout import DeployRoot

PHASE = "fs"
MiB = 1024 * 1024
TMPFS_SIZE = "8m"
MAX_CYCLES = 5_000


def fs_app(src: Path, blob: int, seed: int) -> Path:
    """A source tree with a random blob of the given size: every one a new build."""
    src.mkdir(parents=True, exist_ok=True)
    (src / "brr.yaml").write_text(
        'build:\n  - cp blob.bin blob2.bin\nprocesses:\n  web: "sleep 100000"\n'
    )
    (src / "blob.bin").write_bytes(random.Random(seed).randbytes(blob))
    return src


def run_writers(
    argvs: list[tuple[str, list[str]]],
    rng: random.Random,
    stats: Stats,
    procs: Procs,
    *,
    preexec: Callable[[], None] | None = None,
    kill_p: float = 0.15,
) -> list[tuple[Op, int, str]]:
    """Run the writers at once, SIGKILL some at random moments; (op, rc, stderr) each."""
    ops = []
    for kind, argv in argvs:
        kill_at = time.monotonic() + rng.uniform(0, 0.6) if rng.random() < kill_p else None
        ops.append(Op(kind, procs, argv, kill_at, preexec_fn=preexec))
        stats.ops[kind] += 1
    deadline = time.monotonic() + 120
    while any(op.proc.poll() is None for op in ops) and time.monotonic() < deadline:
        now = time.monotonic()
        for op in ops:
            if op.kill_at and now >= op.kill_at and not op.killed and op.proc.poll() is None:
                op.kill()
                stats.faults["SIGKILL writer"] += 1
        time.sleep(0.01)
    results = []
    for op in ops:
        if op.proc.poll() is None:
            stats.violation(PHASE, f"{op.kind} hung for 120 s")
            op.kill()
        rc = op.proc.wait()
        results.append((op, rc, op.stderr()))
    return results


def judge(op: Op, rc: int, stderr: str, stats: Stats) -> str:
    killed = op.killed and rc == -9
    outcome = "killed" if killed else judge_exit(PHASE, op.kind, rc, stderr, stats)
    stats.outcomes[f"{op.kind}: {outcome}"] += 1
    return outcome


def check(stats: Stats, d: DeployRoot, *, cli: bool = False) -> None:
    stats.checks += 1
    for problem in check_root(d, cli=cli):
        stats.violation(PHASE, problem)


def writer_argvs(
    root: Path, rng: random.Random, work: Path, n: int, blob_sizes: list[int]
) -> list[tuple[str, list[str]]]:
    argvs = []
    for w in range(4):
        kind = rng.choices(["deploy", "config set", "rollback", "prune"], weights=[4, 2, 1, 1])[0]
        match kind:
            case "deploy":
                src = fs_app(work / f"fs-src-{n}-{w}", rng.choice(blob_sizes), rng.getrandbits(32))
                args = ["deploy", str(src)]
            case "config set":
                args = ["config", "set", f"N{w}={n}", "--activate"]
            case "rollback":
                args = ["rollback"]
            case _:
                args = ["prune", "--keep", "5"]
        argvs.append((kind, [BRR, "--root", str(root), *args]))
    return argvs


def resume(root: Path, work: Path, stats: Stats, n: int, why: str) -> None:
    """With space (or the limit) back, the next deploy must work."""
    d = DeployRoot(root)
    pruned = brr(root, "prune", "--keep", "1")
    stats.ops["prune (space returns)"] += 1
    if pruned.returncode != 0:
        stats.violation(PHASE, f"prune after {why} failed: {pruned.stderr.strip()[-300:]}")
    src = fs_app(work / f"fs-resume-{n}", 64 * 1024, n)
    again = brr(root, "deploy", str(src))
    stats.ops["deploy (space returns)"] += 1
    if again.returncode != 0:
        stats.violation(PHASE, f"work did not resume after {why}: {again.stderr.strip()[-300:]}")
    else:
        stats.outcomes["resumed after a full disk or a size limit"] += 1
    shutil.rmtree(src, ignore_errors=True)
    check(stats, d, cli=True)


def mount_tmpfs(mnt: Path, stats: Stats) -> bool:
    mnt.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        stats.note("tmpfs part skipped: not root (mount -t tmpfs needs it)")
        return False
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "chaos-tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        stats.note(f"tmpfs part skipped: mount refused: {r.stderr.strip()}")
        return False
    stats.note(f"tmpfs part ran as root on a {TMPFS_SIZE} tmpfs mounted by the harness")
    return True


def run_tmpfs(budget: float, rng: random.Random, stats: Stats, procs: Procs, work: Path) -> None:
    mnt = work / "tmpfs"
    if not mount_tmpfs(mnt, stats):
        return
    try:
        root = mnt / "root"
        d = DeployRoot(root)
        brr(root, "init")
        t_end = time.monotonic() + budget
        n = 0
        while time.monotonic() < t_end and n < MAX_CYCLES:
            n += 1
            argvs = writer_argvs(root, rng, work, n, [256 * 1024, MiB, 2 * MiB])
            full = False
            for op, rc, stderr in run_writers(argvs, rng, stats, procs):
                judge(op, rc, stderr, stats)
                if "No space left" in stderr or "ENOSPC" in stderr:
                    full = True
                    stats.faults["ENOSPC (tmpfs full)"] += 1
            check(stats, d)
            for path in work.glob(f"fs-src-{n}-*"):
                shutil.rmtree(path, ignore_errors=True)
            if full or shutil.disk_usage(mnt).free < 2 * MiB:
                resume(root, work, stats, n, "a full disk")
        check(stats, d, cli=True)
        log(f"tmpfs: {n} rounds of 4 writers, {stats.faults['ENOSPC (tmpfs full)']} ENOSPC")
    finally:
        procs.kill_all()
        for flags in ([], ["-l"]):
            if subprocess.run(["umount", *flags, str(mnt)], capture_output=True).returncode == 0:
                break


def fsize_limit(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def run_fsize(budget: float, rng: random.Random, stats: Stats, procs: Procs, work: Path) -> None:
    root = work / "fsize"
    d = DeployRoot(root)
    brr(root, "init")
    brr(root, "deploy", str(fs_app(work / "fsize-src-0", 1024, 0)))
    t_end = time.monotonic() + budget
    n = 0
    while time.monotonic() < t_end and n < MAX_CYCLES:
        n += 1
        limit = rng.choice([1, 200, 1024, 4096, 16 * 1024, 128 * 1024])
        argvs = writer_argvs(root, rng, work, n, [8 * 1024, 64 * 1024, 512 * 1024])
        hit = False
        results = run_writers(argvs, rng, stats, procs, preexec=fsize_limit(limit), kill_p=0.1)
        for op, rc, stderr in results:
            if judge(op, rc, stderr, stats) not in ("ok", "killed"):
                hit = True
                stats.faults["RLIMIT_FSIZE hit"] += 1
        check(stats, d)
        for path in work.glob(f"fs-src-{n}-*"):
            shutil.rmtree(path, ignore_errors=True)
        if hit and n % 3 == 0:
            resume(root, work, stats, n, f"a {limit}-byte file size limit")
    check(stats, d, cli=True)
    log(f"fsize: {n} rounds of 4 writers, {stats.faults['RLIMIT_FSIZE hit']} limit hits")


def run_fs_faults(
    budget: float, rng: random.Random, stats: Stats, procs: Procs, work: Path
) -> None:
    run_tmpfs(budget * 0.6, rng, stats, procs, work)
    run_fsize(budget * 0.4, rng, stats, procs, work)

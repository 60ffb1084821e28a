"""`make chaos`: a bounded chaos run against the real CLIs and daemon; prints a table and
saves it to docs/reliability.md.

    python chaos/run.py [--seconds S] [--quick] [--seed N] [--out FILE | --no-save] [--json F]

CHAOS_SECONDS sets the default length (300 s); --quick is 20 s. The time is shared by
four phases: the deploy storm (storm.py), filesystem faults (fsfaults.py), process faults
under the daemon and control socket abuse (procfaults.py). Everything runs in a temp
directory on this host and loopback only; every process started is killed by its pid or
process group at the end, even after an error or Ctrl-C. Exit 0 when no invariant was
violated, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fsfaults import run_fs_faults
from harness import Procs, Stats, log
from procfaults import run_process_faults, run_socket_abuse
from storm import run_storm

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "docs" / "reliability.md"

# share of the time budget per phase
PHASES: list[tuple[str, float, Callable[..., None]]] = [
    ("storm", 0.40, run_storm),
    ("fs", 0.25, run_fs_faults),
    ("process", 0.20, run_process_faults),
    ("socket", 0.15, run_socket_abuse),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="chaos/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=float(os.environ.get("CHAOS_SECONDS", 300)))
    p.add_argument("--quick", action="store_true", help="a 20 s run (the smoke test's)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report file")
    p.add_argument("--no-save", action="store_true", help="print the table only")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--only", action="append", choices=[name for name, _, _ in PHASES])
    return p.parse_args(argv)


def fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n else "-"


def kind_of(violation: str) -> str:
    """A violation without its paths, pids and daemon output: what to group by."""
    text = re.sub(r"'/[^']*'?( -> '/[^']*'?)?", "'PATH'", violation)
    text = re.sub(r" at /\S+", " at SOCKET", text)
    text = re.sub(r": supervisord-lite \|.*", "", text)
    text = re.sub(r"after \d+\.\d+ s", "after T s", text)
    return text.replace("|", "/")[:240]


def table(stats: Stats, seconds: float, seed: int) -> str:
    d = stats.to_data()
    ops = sum(stats.ops.values())
    faults = sum(stats.faults.values())
    lat = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in d["max_status_latency"].items())
    rows = [
        ("run length", f"{seconds:.0f} s (seed {seed})"),
        ("operations run (brr-release and control commands)", str(ops)),
        ("faults injected", str(faults)),
        ("invariant checks", str(stats.checks)),
        ("**invariant violations**", f"**{len(stats.violations)}**"),
        ("daemon restarts (our SIGKILLs and deaths)", str(stats.daemon_restarts)),
        ("max status latency", lat or "-"),
        ("status requests answered", str(sum(stats.status_calls.values()))),
        ("invariant violations by kind", str(len({kind_of(v) for v in stats.violations}))),
        ("daemon max RSS", ", ".join(f"{k} {fmt_bytes(v)}" for k, v in stats.rss.items()) or "-"),
    ]
    out = ["| measure | value |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in rows]
    out += ["", "| operation | count |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in sorted(stats.ops.items())]
    out += ["", "| fault injected | count |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in sorted(stats.faults.items())]
    out += ["", "| outcome | count |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in sorted(stats.outcomes.items())]
    if stats.errors:
        out += ["", "| error line of a failed writer (generalized) | count |", "| --- | --- |"]
        out += [f"| {k.replace('|', '/')} | {n} |" for k, n in stats.errors.most_common()]
    out += ["", "| phase | seconds |", "| --- | --- |"]
    out += [f"| {k} | {v:.1f} |" for k, v in stats.seconds.items()]
    if stats.violations:
        kinds = Counter(kind_of(v) for v in stats.violations)
        out += ["", "| violation (paths and pids left out) | count |", "| --- | --- |"]
        out += [f"| {k} | {n} |" for k, n in kinds.most_common()]
    if stats.notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in stats.notes]
    return "\n".join(out) + "\n"


def save(path: Path, body: str) -> None:
    """Replace the generated part of the report, keep the hand-written text above it."""
    marker = "<!-- chaos/run.py writes below this line -->"
    head = path.read_text().split(marker)[0] if path.exists() else "# Reliability\n\n"
    path.write_text(head.rstrip("\n") + "\n\n" + marker + "\n\n" + body)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds = 20.0 if args.quick else max(args.seconds, 10.0)
    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000
    rng = random.Random(seed)
    stats = Stats()
    procs = Procs()
    work = Path(tempfile.mkdtemp(prefix="chaos-"))
    started = time.monotonic()

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    log(f"seed {seed}, {seconds:.0f} s, work dir {work}")
    interrupted = False
    try:
        for name, share, phase in PHASES:
            if args.only and name not in args.only:
                continue
            t0 = time.monotonic()
            log(f"phase {name}: {seconds * share:.0f} s")
            try:
                phase(seconds * share, rng, stats, procs, work)
            except Exception as exc:  # a harness bug must still end in a report
                stats.violation(name, f"harness error: {type(exc).__name__}: {exc}")
                import traceback

                traceback.print_exc()
            finally:
                procs.kill_all()
            stats.seconds[name] = time.monotonic() - t0
    except KeyboardInterrupt:
        interrupted = True
        stats.note("interrupted")
    finally:
        procs.kill_all()
        if not args.keep:
            with contextlib.suppress(OSError):
                shutil.rmtree(work)
    elapsed = time.monotonic() - started
    body = table(stats, elapsed, seed)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"Last run: {when}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
        f"{', as root' if os.geteuid() == 0 else ''}.\n\n"
    )
    print(header + body)
    if args.json:
        args.json.write_text(json.dumps({**stats.to_data(), "seed": seed, "seconds": elapsed}))
    if not args.no_save and not args.quick and not interrupted:
        save(args.out, header + body)
        log(f"saved to {args.out}")
    return 1 if stats.violations or interrupted else 0


if __name__ == "__main__":
    sys.exit(main())

"""What the benchmarks share: statistics, number formatting, Markdown tables, and the
one docs/benchmarks.md that each benchmark rewrites its own section of.

Each benchmark owns the text between `<!-- bench:NAME start -->` and
`<!-- bench:NAME end -->` and replaces only that; a section that is not there yet is
appended. Two benchmarks may finish at the same moment, so the read-modify-write holds a
flock on bench/out/docs.lock and publishes the file with one rename.
"""

from __future__ import annotations

import fcntl
import math
import os
import platform
import re
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
OUT = REPO / "bench" / "out"
VENV_BIN = REPO / ".venv" / "bin"

DOC_HEADER = (
    "# Benchmarks\n\n"
    "Each section below is written by one script under `bench/` (named in the section) and\n"
    "rewritten whole by its next run. Absolute numbers move from machine to machine and run\n"
    "to run; compare figures measured in the same run.\n"
)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: a value that was really measured, never interpolated."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def fmt_seconds(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if value < 0.01:
        return f"{value * 1000:.2f} ms"
    if value < 1.0:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def fmt_ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if value < 10:
        return f"{value:.1f} ms"
    return f"{value:,.0f} ms"


def fmt_mb(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value / 1e6:.1f} MB"


def fmt_ratio(value: float | None, base: float | None) -> str:
    """value / base as `0.25x`; blank when either is missing or base is zero."""
    if value is None or base is None or math.isnan(value) or math.isnan(base):
        return ""
    if base == 0:
        return ""
    ratio = value / base
    return f"{ratio:.3f}x" if ratio < 0.1 else f"{ratio:.2f}x"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> str:
    """A Markdown table; columns from right_from on are right-aligned."""
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def command_line(script: str, argv: list[str]) -> str:
    """How the benchmark was run, for its section's header; a --note is shown as a note."""
    shown, skip = [script], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--note":
            skip = True
        elif not arg.startswith("--note="):
            shown.append(arg)
    return " ".join(shown)


def machine_line() -> str:
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def save_section(name: str, body: str) -> Path:
    """Replace (or append) the section `name` of docs/benchmarks.md with body."""
    start = f"<!-- bench:{name} start -->"
    end = f"<!-- bench:{name} end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    OUT.mkdir(parents=True, exist_ok=True)
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT / "docs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = DOCS.read_text() if DOCS.exists() else DOC_HEADER
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        if pattern.search(text):
            text = pattern.sub(lambda _m: block, text, count=1)
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        tmp = DOCS.with_name(f".{DOCS.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, DOCS)
    return DOCS

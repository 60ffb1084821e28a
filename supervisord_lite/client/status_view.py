"""`supervisord-lite status` as an operator reads it: a table of the processes, then the
release, the daemon's state, the last switch, a rejected or refused release, a fallback.
"""

from __future__ import annotations

import time
from typing import Any

COLUMNS = ("NAME", "STATE", "PID", "RESTARTS", "UPTIME", "RELEASE")


def format_uptime(seconds: object) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def cell(value: object) -> str:
    return "-" if value is None else str(value)


def format_time(at: object) -> str:
    if not isinstance(at, int | float):
        return "?"
    # time, not datetime: the daemon's `run` imports this module too, and datetime is
    # half a megabyte of its RSS (issue 16)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def format_status(status: dict[str, Any]) -> str:
    """The table of processes, then one line per fact about the daemon."""
    return "\n".join(process_table(status.get("processes") or []) + daemon_lines(status))


def process_table(processes: list[dict[str, Any]]) -> list[str]:
    rows = [list(COLUMNS)]
    for p in processes:
        rows.append(
            [
                cell(p.get("name")),
                cell(p.get("state")),
                cell(p.get("pid")),
                cell(p.get("restarts")),
                format_uptime(p.get("uptime")),
                cell(p.get("release")),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    if len(rows) == 1:
        lines.append("(no processes)")
    for p in processes:
        if p.get("note"):
            lines.append(f"note: {cell(p.get('name'))}: {p['note']}")
    return lines


def daemon_lines(status: dict[str, Any]) -> list[str]:
    lines = [
        f"release: {cell(status.get('release'))} (build {cell(status.get('build'))})",
        f"state: {cell(status.get('state'))}",
    ]
    last = status.get("last_switch")
    if isinstance(last, dict):
        outcome = "ok" if last.get("ok") else f"FAILED: {last.get('error')}"
        lines.append(
            f"last switch: {cell(last.get('from'))} -> {cell(last.get('to'))} {outcome} "
            f"in {cell(last.get('seconds'))} s at {format_time(last.get('finished_at'))}"
        )
    else:
        lines.append("last switch: none")
    rejected = status.get("rejected")
    if isinstance(rejected, dict):
        lines.append(
            f"rejected: {cell(rejected.get('id'))} at {format_time(rejected.get('at'))}: "
            f"{rejected.get('error')}"
        )
    fallback = status.get("fallback")
    if isinstance(fallback, dict):
        lines.append(
            f"current {cell(fallback.get('current'))} not run ({fallback.get('reason')}): "
            f"FALLING BACK to last-good {cell(fallback.get('running'))}"
        )
    for refusal in status.get("refused") or []:
        if isinstance(refusal, dict):
            lines.append(
                f"refused: {cell(refusal.get('id'))} at {format_time(refusal.get('at'))}: "
                f"{refusal.get('reason')}"
            )
    return lines

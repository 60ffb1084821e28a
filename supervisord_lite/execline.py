"""What a process's command line and environment are made of, for the daemon, the release
phase and `brr-release run` alike: a module of its own so that the daemon, which needs
these and nothing else of declaration.py, does not carry the declaration's parsers
(issue 16)."""

from __future__ import annotations

import re

ASSIGNMENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
# the only variables of the daemon's (or brr-release's) own environment that a process,
# the release phase and `brr-release run` get (SPEC "The run stage"): one definition
BASE_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ")
# set for every process, the release phase and `run`: a build is read-only, but not to
# root, and Python run as root would write __pycache__ into it (verify then fails).
# Byte-compile at build time instead (`python -m compileall .`); config may override it.
RUNTIME_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}


def split_assignments(cmd: str) -> tuple[str, str]:
    """(leading `VAR=value ` words, the rest) of a shell command line.

    `exec PORT=3000 puma` runs a program named `PORT=3000`; `PORT=3000 exec puma`
    runs puma with PORT set (POSIX: assignments before a special built-in apply), so
    the caller puts `exec` between the two parts. Quotes and backslashes in the values
    are skipped over as the shell would read them.
    """
    i = 0
    n = len(cmd)
    while True:
        j = i
        while j < n and cmd[j] in " \t":
            j += 1
        m = ASSIGNMENT_RE.match(cmd, j)
        if not m:
            assigns = cmd[:i].strip()
            return (assigns + " " if assigns else ""), cmd[i:].lstrip(" \t")
        end = skip_word(cmd, m.end())
        if end is None or (end < n and cmd[end] not in " \t"):
            # an unterminated quote, `$(...)`, `;`: beyond this reader; the shell decides
            return "", cmd
        i = end


def skip_word(cmd: str, i: int) -> int | None:
    """Index after the shell word starting at i; None if a quote is not closed."""
    n = len(cmd)
    while i < n and cmd[i] not in " \t\n;&|<>()":
        c = cmd[i]
        if c == "\\":
            i += 2
        elif cmd.startswith("${", i):
            close = cmd.find("}", i + 2)
            if close < 0:
                return None
            i = close + 1
        elif c == "'":
            close = cmd.find("'", i + 1)
            if close < 0:
                return None
            i = close + 1
        elif c == '"':
            i += 1
            while i < n and cmd[i] != '"':
                i += 2 if cmd[i] == "\\" else 1
            if i >= n:
                return None
            i += 1
        else:
            i += 1
    return min(i, n)


def exec_line(cmd: str) -> str:
    """`exec <cmd>` with any leading assignments kept as assignments (see above)."""
    assigns, rest = split_assignments(cmd)
    if not rest:
        return cmd  # nothing but assignments: no program to exec
    return f"{assigns}exec {rest}"

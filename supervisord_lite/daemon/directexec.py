"""A command of plain words is exec'd as `/bin/sh -c "exec <cmd>"` would exec it, without
the shell.

Why: posix_spawn returns once the child has exec'd, and a shell that then execs the
program costs the daemon most of a second exec: 0.56 ms a spawn through the shell
against 0.34 ms direct on the 2-core machine of docs/benchmarks.md, the larger part of
starting 1,000 processes (issue 16).

What the shell does with such a command is exactly this: cd to the app, look the first
word up in the PATH of the child's own environment (a word with a slash is a path from
the app; an empty PATH entry is the app itself), exec it with the words as its argv, and
export PWD and OLDPWD (dash does; the program sees the same environment either way).
Everything else goes through the shell, which keeps its own meaning and its own error
messages: quotes, `$`, globs, `~`, redirections, `;|&`, leading assignments, a first
word not found or not a regular executable file, a file the kernel will not exec (a
script without `#!`, ENOEXEC: spawn.py retries it through the shell), a PATH with
dash's `%` entries. A process handed sockets goes through the shell too: LISTEN_PID
must be its own pid, which only `export LISTEN_PID=$$` knows before the exec.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

PLAIN = re.compile(r"[A-Za-z0-9_./:=,@%+-]+(?: +[A-Za-z0-9_./:=,@%+-]+)*")


def plain_words(cmd: str) -> list[str] | None:
    """cmd's words when the shell would read it as words and nothing else; else None."""
    if not PLAIN.fullmatch(cmd):
        return None
    words = cmd.split()
    if words[0].startswith("-") or "=" in words[0]:  # an option to exec, an assignment
        return None
    return words


def find_program(word: str, env: Mapping[str, str], cwd: Path) -> str | None:
    """The file `exec word` runs from cwd with env's PATH, named as sh names it (relative
    to cwd where the word or the PATH entry is); None where sh is better left to find it
    (no PATH: sh has a default of its own) or to say why not."""
    if "/" in word:
        candidates = [word]
    else:
        path = env.get("PATH")
        if path is None or "%" in path:
            return None
        # dash's padvance: an empty entry is the word alone, looked up from the cwd
        candidates = [os.path.join(entry, word) if entry else word for entry in path.split(":")]
    for candidate in candidates:
        full = os.path.join(cwd, candidate)  # an absolute candidate stays as it is
        try:
            st = os.stat(full)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(full, os.X_OK):
            # as the shell names it: a script's $0 is that name; the exec is from cwd
            return candidate
    return None


def direct_exec(
    cmd: str, env: Mapping[str, str], cwd: Path, *, fds: bool
) -> tuple[str, list[str]] | None:
    """(program, argv) to exec without the shell, or None to go through it."""
    if fds:
        return None
    words = plain_words(cmd)
    if words is None:
        return None
    program = find_program(words[0], env, cwd)
    return None if program is None else (program, words)

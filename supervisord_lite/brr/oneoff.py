"""`brr-release run`: a one-off command in a release's environment (`heroku run`).

The command runs in the release's app directory (the immutable build) with the same
clean environment as the release phase: the daemon's base variables, the release's
config, BRR_RELEASE, BRR_BUILD, BRR_SHARED, and BRR_PROCESS=run. brr-release replaces
itself with the command (exec), so the exit code, signals and the terminal are the
command's own: `brr-release run -- python manage.py shell` is interactive on a tty, and
`$?` is what the command returned. One argument is a shell command line (as a Procfile's,
assignments first allowed); several are the argv, run as they are.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from supervisord_lite.brr.release_phase import release_command_env
from supervisord_lite.errors import BadInput
from supervisord_lite.execline import exec_line
from supervisord_lite.layout import DeployRoot, check_release_id
from supervisord_lite.manifest import load_release

SHELL = "/bin/sh"
NOT_FOUND = 127
NOT_EXECUTABLE = 126
# Python ignores these; an ignored signal stays ignored across exec
RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


@dataclass(frozen=True)
class OneOff:
    release: str
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path


def plan(root: DeployRoot, release_id: str | None, command: list[str]) -> OneOff:
    """What `run` will exec; BadInput (exit 2) names what is missing."""
    if not command:
        raise BadInput("run: name a command after --, e.g. brr-release run -- python -V")
    if release_id is None:
        release_id = root.current_release_id()
        if release_id is None:
            raise BadInput("run: no release is current (pass --release ID)")
    check_release_id(release_id)
    if not root.release_dir(release_id).is_dir():
        raise BadInput(f"run: no such release: {release_id}")
    release = load_release(root.release_manifest(release_id), builds_dir=root.builds)
    cwd = root.build_app(release.build)
    if not cwd.is_dir():
        raise BadInput(f"run: release {release_id}'s build {release.build} is missing")
    env = release_command_env(root, release)
    env["BRR_PROCESS"] = "run"
    if len(command) == 1:
        argv: tuple[str, ...] = (SHELL, "-c", exec_line(command[0]))
    else:
        argv = tuple(command)
    return OneOff(release_id, argv, env, cwd)


def exec_oneoff(oneoff: OneOff) -> NoReturn:
    """Become the command; a program that cannot be run exits 127 (126), as in a shell."""
    os.chdir(oneoff.cwd)
    for signum in RESET_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    try:
        os.execvpe(oneoff.argv[0], list(oneoff.argv), oneoff.env)
    except OSError as exc:
        code = NOT_FOUND if isinstance(exc, FileNotFoundError) else NOT_EXECUTABLE
        reason = "command not found" if code == NOT_FOUND else (exc.strerror or str(exc))
        print(f"brr-release: error: run: {oneoff.argv[0]}: {reason}", file=sys.stderr)
        raise SystemExit(code) from None

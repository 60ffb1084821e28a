"""What build steps run with: a clean environment, a fixed time, a cache kept between builds.

Build steps get the same small base the release phase and the processes get (PATH, HOME,
USER, LANG, LC_ALL, TZ), not the operator's whole shell: a build must not depend on who
ran it from which terminal. On top of it:

- SOURCE_DATE_EPOCH: the operator's if set, else the commit time of a git source, else
  315532800 (1980-01-01, the earliest time a zip file can hold). Tools that honour it
  write that time instead of "now"; Python's py_compile and compileall (and pip, which
  uses them) then write hash-based .pyc files that carry no timestamp at all.
- PYTHONHASHSEED=0: a tool that writes a set or a dict of strings writes it in the same
  order every time.
- BRR_BUILD_CACHE: ROOT/build-cache, a directory kept between builds (never part of
  one) for what a build step may reuse; pip's cache (PIP_CACHE_DIR) and XDG_CACHE_HOME
  point into it, so a rebuild with unchanged requirements downloads nothing.
- whatever `--build-env NAME` (the operator's value) or `--build-env NAME=VALUE` passes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from supervisord_lite.errors import BadInput, OperationFailed

BASE_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_EPOCH = 315532800
CACHE_DIR = "build-cache"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def cache_dir(root: Path) -> Path:
    """ROOT/build-cache, made on first use; a symlink planted there is refused."""
    path = root / CACHE_DIR
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o770 if root.stat().st_mode & stat.S_ISGID else 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OperationFailed(f"{path} is not a directory (a symlink?); no build was stored")
    return path


def source_date_epoch(environ: Mapping[str, str], commit_time: int | None) -> str:
    given = environ.get("SOURCE_DATE_EPOCH", "")
    if given.isdigit():
        return given
    return str(commit_time if commit_time is not None else DEFAULT_EPOCH)


def step_env(
    environ: Mapping[str, str],
    *,
    cache: Path,
    epoch: str,
    passed: Sequence[str] = (),
) -> dict[str, str]:
    """The environment of every build step; passed holds `NAME` or `NAME=VALUE` items."""
    env = {k: environ[k] for k in BASE_ENV if k in environ}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(
        SOURCE_DATE_EPOCH=epoch,
        PYTHONHASHSEED="0",
        BRR_BUILD_CACHE=str(cache),
        PIP_CACHE_DIR=str(cache / "pip"),
        XDG_CACHE_HOME=str(cache),
    )
    for item in passed:
        name, eq, value = item.partition("=")
        if not ENV_NAME.fullmatch(name):
            raise BadInput(f"--build-env {item!r}: not NAME or NAME=VALUE")
        if eq:
            env[name] = value
        elif name in environ:
            env[name] = environ[name]
    return env


def run_steps(steps: tuple[str, ...], cwd: Path, env: Mapping[str, str]) -> None:
    """Run each build step in cwd; output goes to stderr as it comes (it is progress)."""
    for n, step in enumerate(steps, 1):
        print(f"-----> build step {n}/{len(steps)}: {step}", file=sys.stderr, flush=True)
        proc = subprocess.run(
            ["/bin/sh", "-c", step],
            cwd=cwd,
            env=dict(env),
            stdout=sys.stderr,
            stderr=subprocess.STDOUT,
        )
        if proc.returncode != 0:
            raise OperationFailed(
                f"build step {n} `{step}` {exit_text(proc.returncode)} (its output is above); "
                "no build was stored"
            )


def exit_text(returncode: int) -> str:
    if returncode >= 0:
        return f"exited {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    # a step over the file size limit dies of SIGXFSZ: the limit is the news
    why = ", over the file size limit" if -returncode == signal.SIGXFSZ else ""
    return f"was killed by {name}{why}"

"""A vocabulary for tests: child programs, deadlines, and the real CLIs in a temp root.

Every wait is a poll with a deadline that fails with what was last seen; deadlines are
generous because a shared 2-core CI machine can be ten times slower for a while.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio

T = TypeVar("T")

PY = sys.executable
BIN = Path(PY).parent
BRR = str(BIN / "brr-release")
DAEMON = str(BIN / "supervisord-lite")


def python(code: str) -> str:
    """A shell command line that runs code with this interpreter."""
    return f"{shlex.quote(PY)} -c {shlex.quote(code)}"


EXIT_0 = python("raise SystemExit(0)")
EXIT_1 = python("raise SystemExit(1)")


def SLEEP(seconds: float) -> str:
    return python(f"import time; time.sleep({seconds})")


IGNORE_TERM = python(
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ignoring TERM', flush=True)\n"
    "time.sleep(3600)"
)

# Forks a grandchild that leaves the process group and session, writes its pid, sleeps.
DOUBLE_FORK = python(
    "import os, sys, time\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        path = os.environ.get('GRANDCHILD_PIDFILE', 'grandchild.pid')\n"
    "        open(path, 'w').write(str(os.getpid()))\n"
    "        time.sleep(3600)\n"
    "    os._exit(0)\n"
    "time.sleep(3600)"
)


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll predicate until it returns a truthy value; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except Exception as exc:  # a predicate may race with the thing it watches
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}; last: {last!r}"
            )
        time.sleep(interval)


async def until(
    predicate: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.01,
    what: str = "condition",
) -> T:
    """wait_until for async tests: polls without blocking the event loop."""
    last: Any = None
    with anyio.move_on_after(timeout):
        while True:
            try:
                last = predicate()
            except Exception as exc:  # a predicate may race with the thing it watches
                last = exc
            else:
                if last:
                    return last
            await anyio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0): look at its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def run_brr(
    root: Path | None,
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run the real brr-release CLI; with check, fail showing stderr on a non-zero exit."""
    argv = [BRR, *args] if root is None else [BRR, "--root", str(root), *args]
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def brr_json(root: Path, *args: str) -> Any:
    return json.loads(run_brr(root, "--json", *args).stdout)


def write_app(src: Path, brr_yaml: str, files: dict[str, str] | None = None) -> Path:
    """A source tree with a brr.yaml and the given files."""
    src.mkdir(parents=True, exist_ok=True)
    (src / "brr.yaml").write_text(brr_yaml)
    for name, text in (files or {}).items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return src

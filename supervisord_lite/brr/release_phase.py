"""The release phase (Heroku's): a release's `release_command`, run before it becomes
current, in the build's app directory with the release's config and a clean environment.

Its output is streamed to stderr as it comes; it has the build's `release_timeout`, and
its whole process group is killed at the end, so nothing of it outlives it. A failure is
recorded in the ledger (`release_command_failed`) and `current` does not move. Apart
from activate.py because most releases have no release command: `activate` imports
subprocess and the build's metadata reader only when one has.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time

from supervisord_lite import ledger
from supervisord_lite.brr.build import load_build_meta
from supervisord_lite.brr.buildenv import exit_text
from supervisord_lite.declaration import DEFAULT_RELEASE_TIMEOUT
from supervisord_lite.errors import BrrError, OperationFailed
from supervisord_lite.execline import BASE_ENV, RUNTIME_ENV
from supervisord_lite.layout import DeployRoot
from supervisord_lite.manifest import Release

TAIL = 200  # bytes of output kept: enough to know whether it printed anything
KILL_GRACE = 5.0  # seconds a release phase's group gets between TERM and KILL


def release_command_env(root: DeployRoot, release: Release) -> dict[str, str]:
    """The release phase's (and `run`'s) clean environment: base, config, ours on top."""
    env = {k: os.environ[k] for k in BASE_ENV if k in os.environ} | RUNTIME_ENV
    env.update(release.config)
    env.update(BRR_RELEASE=release.id, BRR_BUILD=release.build, BRR_SHARED=str(root.shared))
    return env


def run_release_command(root: DeployRoot, release: Release) -> None:
    """Heroku's release phase, its output streamed to stderr as it comes.

    Raises OperationFailed, one line, when it fails or outlives its release_timeout (its
    process group is then killed); its output is already above that line.
    """
    if not release.release_command:
        return
    timeout = release_timeout(root, release)
    print(f"-----> release command of {release.id}: {release.release_command}", file=sys.stderr)
    sys.stderr.flush()
    proc = subprocess.Popen(
        ["/bin/sh", "-c", release.release_command],
        cwd=root.build_app(release.build),
        env=release_command_env(root, release),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its whole group can be killed at the timeout
    )
    try:
        tail, timed_out = stream_output(proc, time.monotonic() + timeout)
    finally:
        kill_group(proc)
    if proc.returncode == 0 and not timed_out:
        return
    raise phase_failed(root, release, proc.returncode, timeout if timed_out else None, tail)


def phase_failed(
    root: DeployRoot, release: Release, code: int, timed_out: float | None, tail: bytes
) -> OperationFailed:
    """Record a failed release phase in the ledger; the one line that says so."""
    why = exit_text(code) if timed_out is None else f"was stopped after {timed_out:g} s"
    ledger.append(
        root.ledger,
        "release_command_failed",
        release.id,
        exit_code=code if timed_out is None else None,
        command=release.release_command,
        **({} if timed_out is None else {"timed_out": timed_out}),
    )
    current = root.current_release_id()
    still = f"current stays at {current}" if current else "nothing is active"
    above = " (its output is above)" if tail.strip() else ""
    where = "" if timed_out is None else " (release_timeout)"
    return OperationFailed(f"release command of {release.id} {why}{where}; {still}{above}")


def release_timeout(root: DeployRoot, release: Release) -> float:
    """The build's declared release_timeout, else the default."""
    try:
        declared = load_build_meta(root, release.build).declaration.release_timeout
    except BrrError:  # activate() verified the build; a declaration it cannot read has none
        declared = None
    return DEFAULT_RELEASE_TIMEOUT if declared is None else declared


def stream_output(proc: subprocess.Popen[bytes], deadline: float) -> tuple[bytes, bool]:
    """Copy proc's output to stderr until it exits or deadline; (its tail, timed out)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    tail = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return tail, True
            if not sel.select(min(left, 0.2)):
                if proc.poll() is not None:  # exited; a leftover child holds the pipe
                    return tail, False
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                proc.wait(max(deadline - time.monotonic(), 0.001))
                return tail, False
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
            tail = (tail + chunk)[-TAIL:]


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Nothing of the release phase outlives it: TERM, a grace, then KILL its group."""
    if proc.poll() is None:  # timed out, or brr-release was interrupted
        signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(KILL_GRACE)
    signal_group(proc.pid, signal.SIGKILL)  # and whatever it left behind in its group
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)

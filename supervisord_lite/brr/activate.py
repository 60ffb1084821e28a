"""Activation: run the release phase, move `current` in one rename, tell the daemon.

Order matters for "nothing half-done": with the root's lock held, the release is loaded
and verified, its `release_command` runs (a failure stops here: `current` has not moved,
and the ledger says `release_command_failed`), then `current` is replaced by a symlink
renamed over it, then the ledger records the move. The daemon is signalled after the
lock is released; a daemon that is down picks `current` up when it starts, so a lost
signal loses nothing.

`--wait` asks the daemon's control socket for `status` until the switch to the release
settled one way or the other. It compares times with the daemon's reports, which is
sound because both run on the same host's clock.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from supervisord_lite import fsatomic, ledger, refusals
from supervisord_lite.brr.build import load_build_meta
from supervisord_lite.brr.buildenv import exit_text
from supervisord_lite.client.connection import signal_daemon as signal_running_daemon
from supervisord_lite.client.settle import DaemonAbsent, NotSettled, wait_settled
from supervisord_lite.declaration import BASE_ENV, DEFAULT_RELEASE_TIMEOUT, RUNTIME_ENV
from supervisord_lite.errors import NO_SPACE, BadInput, BrrError, OperationFailed
from supervisord_lite.layout import DeployRoot, check_release_id
from supervisord_lite.manifest import Release, load_release

TAIL = 200  # bytes of output kept: enough to know whether it printed anything
KILL_GRACE = 5.0  # seconds a release phase's group gets between TERM and KILL
# seconds --wait gives a daemon that is not running yet to appear: generous, since a
# daemon started a moment before on a loaded host may need several to import and bind
GRACE = 15.0


class SwitchRefused(OperationFailed):
    """The daemon refused the release; `running` is what it runs instead."""

    def __init__(self, message: str, *, refused: str, running: str | None, reason: str) -> None:
        super().__init__(message)
        self.refused, self.running, self.reason = refused, running, reason


@dataclass(frozen=True)
class Activation:
    release: Release
    previous: str | None
    signalled_pid: int | None


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


def previous_active(root: DeployRoot) -> str | None:
    """The release that was active before the current one, if it still exists.

    A refused release is never the answer: rolling back to what the daemon would not
    run is the one rollback that cannot help.
    """
    current = root.current_release_id()
    entries = ledger.read_ledger(root.ledger).entries
    refused = refusals.refused_releases(root, entries)
    on_disk = set(root.release_ids())
    for rid in reversed(ledger.activation_history(entries)):
        if rid != current and rid in on_disk and rid not in refused:
            return rid
    return None


def activate(root: DeployRoot, release_id: str, *, event: str = "activate") -> Activation:
    """Make release_id current. Caller holds the lock."""
    check_release_id(release_id)
    if not root.release_dir(release_id).is_dir():
        raise BadInput(f"no such release: {release_id}")
    release = load_release(root.release_manifest(release_id), builds_dir=root.builds)
    root.shared.mkdir(exist_ok=True)  # a root made before shared/ existed
    run_release_command(root, release)
    previous = root.current_release_id()
    ledger.check(root.ledger)  # a damaged ledger refuses now, before current moves
    fsatomic.remove_stale_temps(root.path)
    fsatomic.replace_symlink(root.current, f"releases/{release.id}")
    try:
        ledger.append(root.ledger, event, release.id, previous=previous)
    except ledger.LedgerWriteFailed as exc:
        # an activation the ledger does not record would be invisible to rollback and to
        # `releases`: undo it, so that the failure changed nothing
        raise undo_activation(root, f"{event} {release.id}", previous, exc) from None
    return Activation(release, previous, None)


def undo_activation(
    root: DeployRoot, what: str, previous: str | None, failed: ledger.LedgerWriteFailed
) -> OperationFailed:
    """Move current back to previous; the error to raise says where current is now."""
    try:
        if previous is None:
            root.current.unlink()
        else:
            fsatomic.replace_symlink(root.current, f"releases/{previous}")
    except OSError:
        return failed  # its message says current moved and what to run
    where = f"current is back at {previous}" if previous else "nothing is current again"
    hint = "; free space and run it again" if failed.cause.errno in NO_SPACE else ""
    reason = failed.cause.strerror or str(failed.cause)
    return OperationFailed(
        f"cannot append `{what}` to the ledger {root.ledger}: {reason} "
        f"({where}: nothing was changed{hint})"
    )


def rollback_target(root: DeployRoot, release_id: str | None) -> str:
    if release_id is not None:
        return check_release_id(release_id)
    target = previous_active(root)
    if target is None:
        raise BadInput("nothing to roll back to: no earlier active release is left")
    return target


def signal_daemon(root: DeployRoot) -> int | None:
    return signal_running_daemon(root, signal.SIGHUP)


def wait_for_daemon(root: DeployRoot, release_id: str, since: float, timeout: float) -> None:
    """Block until the daemon runs release_id; SwitchRefused if it did not take it."""
    try:
        settled = wait_settled(
            root,
            lambda status: switch_outcome(status, release_id, since),
            timeout=timeout,
            grace=GRACE,
        )
    except DaemonAbsent:
        raise OperationFailed(
            f"daemon not running: {release_id} is current and will run when it starts"
        ) from None
    except NotSettled as exc:
        raise OperationFailed(
            f"daemon did not report {release_id} running within {timeout:g} s "
            f"(it runs {exc.last.get('release') or 'nothing'}, state {exc.last.get('state')})"
        ) from None
    if settled.error:
        running = settled.status.get("release")
        raise SwitchRefused(
            f"daemon did not switch to {release_id}: {settled.error}; "
            f"still running {running or 'nothing'}",
            refused=release_id,
            running=running if isinstance(running, str) else None,
            reason=settled.error,
        )


def switch_outcome(status: dict[str, Any], release_id: str, since: float) -> str | None:
    """Empty once the daemon runs release_id; else why the switch failed; None: unsettled."""
    rejected = status.get("rejected")
    if isinstance(rejected, dict) and float(rejected.get("at") or 0) >= since:
        return str(rejected.get("error") or "the daemon rejected the release")
    last = status.get("last_switch")
    if (
        isinstance(last, dict)
        and last.get("to") == release_id
        and not last.get("ok")
        and float(last.get("finished_at") or 0) >= since
    ):
        return str(last.get("error") or "the switch failed")
    if status.get("release") == release_id and status.get("state") == "running":
        return ""
    return None


def signal_and_wait(
    root: DeployRoot,
    release_id: str,
    *,
    send_signal: bool,
    wait: bool,
    timeout: float,
    since: float,
) -> int | None:
    """After activation: SIGHUP the daemon, and with wait, block until it settled."""
    pid = signal_daemon(root) if send_signal else None
    if wait:
        try:
            wait_for_daemon(root, release_id, since, timeout)
        except SwitchRefused as exc:
            raise undo_refused(root, exc) from None
    return pid


def undo_refused(root: DeployRoot, refused: SwitchRefused) -> OperationFailed:
    """current back on the release that runs, the refusal in the ledger; the error to raise."""
    running = refused.running
    if running is None:
        return OperationFailed(f"{refused.message}; current stays at {refused.refused}")
    try:
        refusals.revert_current(root, refused.refused, running, refused.reason)
    except OSError as exc:
        return OperationFailed(
            f"{refused.message}; current stays at {refused.refused} "
            f"(cannot move it back: {exc.strerror or exc}); "
            f"run `brr-release activate {running}`"
        )
    where = root.current_release_id()
    return OperationFailed(f"{refused.message}; current is {where or 'unset'}")

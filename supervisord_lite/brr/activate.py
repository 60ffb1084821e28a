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

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from supervisord_lite import daemon_client, fsatomic, ledger
from supervisord_lite.errors import NO_SPACE, BadInput, OperationFailed
from supervisord_lite.layout import DeployRoot, check_release_id
from supervisord_lite.manifest import Release, load_release

BASE_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ")
OUTPUT_TAIL = 4000
# seconds --wait gives a daemon that is not running yet to appear: generous, since a
# daemon started a moment before on a loaded host may need several to import and bind
GRACE = 15.0


@dataclass(frozen=True)
class Activation:
    release: Release
    previous: str | None
    signalled_pid: int | None


def release_command_env(release: Release) -> dict[str, str]:
    env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
    env.update(release.config)
    env.update(BRR_RELEASE=release.id, BRR_BUILD=release.build)
    return env


def run_release_command(root: DeployRoot, release: Release) -> None:
    """Heroku's release phase; raises OperationFailed with the command's output."""
    if not release.release_command:
        return
    proc = subprocess.run(
        ["/bin/sh", "-c", release.release_command],
        cwd=root.build_app(release.build),
        env=release_command_env(release),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    output = proc.stdout.decode("utf-8", "replace")
    if proc.returncode == 0:
        print(f"-----> release command of {release.id}: {release.release_command}", file=sys.stderr)
        sys.stderr.write(output)
        return
    output = output[-OUTPUT_TAIL:]
    ledger.append(
        root.ledger,
        "release_command_failed",
        release.id,
        exit_code=proc.returncode,
        command=release.release_command,
    )
    current = root.current_release_id()
    still = f"current stays at {current}" if current else "nothing is active"
    raise OperationFailed(
        f"release command of {release.id} exited {proc.returncode}; {still}\n{output.rstrip()}"
    )


def previous_active(root: DeployRoot) -> str | None:
    """The release that was active before the current one, if it still exists."""
    current = root.current_release_id()
    history = ledger.activation_history(ledger.read_ledger(root.ledger).entries)
    on_disk = set(root.release_ids())
    for rid in reversed(history):
        if rid != current and rid in on_disk:
            return rid
    return None


def activate(root: DeployRoot, release_id: str, *, event: str = "activate") -> Activation:
    """Make release_id current. Caller holds the lock."""
    check_release_id(release_id)
    if not root.release_dir(release_id).is_dir():
        raise BadInput(f"no such release: {release_id}")
    release = load_release(root.release_manifest(release_id), builds_dir=root.builds)
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
    return daemon_client.signal_daemon(root, signal.SIGHUP)


def wait_for_daemon(root: DeployRoot, release_id: str, since: float, timeout: float) -> None:
    """Block until the daemon runs release_id; OperationFailed if the switch failed."""
    started = time.monotonic()
    deadline = started + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            reply = daemon_client.request(root.control_socket, {"cmd": "status"}, timeout=10)
        except OperationFailed:
            # a daemon being started (by systemd, or by hand a moment ago) is given a
            # few seconds to appear before "not running" is the answer
            if daemon_client.daemon_pid(root) is None and time.monotonic() > started + GRACE:
                raise OperationFailed(
                    f"daemon not running: {release_id} is current and will run when it starts"
                ) from None
            time.sleep(0.1)
            continue
        status = reply.get("status") if reply.get("ok") else None
        if isinstance(status, dict):
            last = status
            outcome = switch_outcome(status, release_id, since)
            if outcome is True:
                return
            if isinstance(outcome, str):
                running = status.get("release") or "nothing"
                raise OperationFailed(
                    f"daemon did not switch to {release_id}: {outcome}; still running {running}"
                )
        time.sleep(0.1)
    raise OperationFailed(
        f"daemon did not report {release_id} running within {timeout:g} s "
        f"(it runs {last.get('release') or 'nothing'}, state {last.get('state')})"
    )


def switch_outcome(status: dict[str, Any], release_id: str, since: float) -> bool | str | None:
    """True: running release_id; a string: why the switch failed; None: not settled."""
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
        return True
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
        wait_for_daemon(root, release_id, since, timeout)
    return pid

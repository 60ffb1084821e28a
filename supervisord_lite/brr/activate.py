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

import signal
from typing import Any, NamedTuple

from supervisord_lite import fsatomic, ledger, refusals
from supervisord_lite.errors import NO_SPACE, BadInput, OperationFailed
from supervisord_lite.layout import DeployRoot, check_release_id
from supervisord_lite.manifest import Release, load_release

# seconds --wait gives a daemon that is not running yet to appear: generous, since a
# daemon started a moment before on a loaded host may need several to import and bind
GRACE = 15.0


class SwitchRefused(OperationFailed):
    """The daemon refused the release; `running` is what it runs instead."""

    def __init__(self, message: str, *, refused: str, running: str | None, reason: str) -> None:
        super().__init__(message)
        self.refused, self.running, self.reason = refused, running, reason


class Activation(NamedTuple):
    release: Release
    previous: str | None
    signalled_pid: int | None


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
    if release.release_command:
        from supervisord_lite.brr.release_phase import run_release_command

        run_release_command(root, release)
    previous = root.current_release_id()
    checked = ledger.check(root.ledger)  # a damaged ledger refuses now, before current moves
    fsatomic.remove_stale_temps(root.path)
    fsatomic.replace_symlink(root.current, f"releases/{release.id}")
    try:
        ledger.append_checked(root.ledger, checked, event, release.id, previous=previous)
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
    from supervisord_lite.client.connection import signal_daemon as signal_running_daemon

    return signal_running_daemon(root, signal.SIGHUP)


def wait_for_daemon(root: DeployRoot, release_id: str, since: float, timeout: float) -> None:
    """Block until the daemon runs release_id; SwitchRefused if it did not take it."""
    from supervisord_lite.client.settle import DaemonAbsent, NotSettled, wait_settled

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

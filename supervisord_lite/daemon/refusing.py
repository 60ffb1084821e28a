"""The daemon's side of a refusal: remember it, and put `current` back on what runs.

A failed switch, an invalid `current` and a first release that never got ready all end
here. The record (run/refused.json) is what a later boot reads; moving `current` back
(with an `activate_failed` ledger line) is what keeps `releases`, `rollback` and the
next reboot honest. Both are file I/O with fsync, so they run in a worker thread; both
may fail (a read-only or full disk) without harming what runs, so a failure is one log
line. The lock is only tried, never waited for: an operator's command that holds it
must not stall the supervisor, and the record alone protects the next boot.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import anyio.to_thread

from supervisord_lite import refusals
from supervisord_lite.errors import BrrError
from supervisord_lite.layout import DeployRoot

log = logging.getLogger("supervisord_lite.daemon")


async def refuse(root: DeployRoot, release_id: str, reason: str, running_id: str | None) -> None:
    """Record that release_id was refused; move `current` back to running_id if it names it."""
    refusal = refusals.Refusal(release_id, time.time(), refusals.one_line(reason))
    try:
        await anyio.to_thread.run_sync(refusals.record, root, refusal)
    except (OSError, BrrError) as exc:
        log.error("cannot record the refusal of %s in %s: %s", release_id, root.refused_file, exc)
    if running_id is None:
        return
    revert = partial(refusals.revert_current, root, release_id, running_id, reason, wait=False)
    try:
        moved = await anyio.to_thread.run_sync(revert)
    except (OSError, BrrError) as exc:  # a planted link at run/lock is refused, not followed
        log.error("cannot move current back from %s to %s: %s", release_id, running_id, exc)
        return
    if moved:
        log.error(
            "current moved back from %s to %s, which runs (`brr-release releases` marks %s "
            "refused)",
            release_id,
            running_id,
            release_id,
        )


async def accept(root: DeployRoot, release_id: str) -> None:
    """release_id runs: a refusal of it on record no longer holds."""
    try:
        await anyio.to_thread.run_sync(refusals.clear, root, release_id)
    except OSError as exc:
        log.error("cannot update %s: %s", root.refused_file, exc)

"""`--watch`: reload when the `current` symlink changes, for deployers that cannot signal.

watchfiles (inotify underneath) watches ROOT itself, not the link's target: activation
replaces `current` by renaming a new symlink over it, which is an event in ROOT. Every
change to `current` becomes the same reload request SIGHUP makes, so bursts fold the
same way. Only the name `current` matters; the rest of ROOT (ledger, temp names) is
filtered out before it wakes anyone.

Cost: watchfiles' Rust loop checks its stop flag every `step` ms in its own thread, so
with --watch on, that thread wakes 5 times a second (step=200 ms); a change is seen
within about 0.4 s (step + debounce). Without --watch, nothing of this runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import anyio
from watchfiles import Change, awatch

log = logging.getLogger(__name__)


async def watch_current(
    root_dir: Path,
    on_change: Callable[[], None],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call on_change each time ROOT/current is replaced; runs until cancelled."""
    target = str(root_dir / "current")

    def only_current(change: Change, path: str) -> bool:
        return path == target

    stop = anyio.Event()
    watcher = awatch(
        root_dir,
        watch_filter=only_current,
        stop_event=stop,
        debounce=200,
        step=200,
        recursive=False,
        rust_timeout=0,
        yield_on_timeout=False,
    )
    task_status.started()
    try:
        async for _changes in watcher:
            log.info("current changed: reloading")
            on_change()
    finally:
        stop.set()

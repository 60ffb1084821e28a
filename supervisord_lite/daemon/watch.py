"""`--watch`: reload when the `current` symlink changes, for deployers that cannot signal.

watchfiles (inotify underneath) watches ROOT itself, not the link's target: activation
replaces `current` by renaming a new symlink over it, which is an event in ROOT. Every
change to `current` becomes the same reload request SIGHUP makes, so bursts fold the
same way. Only the name `current` matters; the rest of ROOT (ledger, temp names) is
filtered out before it wakes anyone.

Started means armed. awatch() is an async generator: inotify is armed when its first
iteration has begun, and nothing tells the caller when. Reporting "started" before that
loses a change made right after (a deploy script that starts the daemon, then
activates). So ROOT/run is watched too, and a probe file (a temp name, ours alone) is
made and removed there until the watcher reports it: from then on both watches are
armed, since watchfiles adds every path before it waits. The probe lives in ROOT/run
because ROOT itself may be read-only for the daemon (the systemd unit's
ReadWritePaths). Rejected: watchfiles' private RustNotify (armed by its constructor,
but not a public API); a sleep after starting (a guess that a slow machine defeats).
Costs: a start with --watch takes about two steps longer (0.4 s); each write of
run/children.json wakes the watcher thread once, to be filtered out.

Stopping: the watcher thread waits in Rust with no timeout, and anyio does not abandon
a thread on cancel, so a cancelled awatch() would wait for the next change in ROOT.
The stop event is set by the task that owns the watch when it is cancelled, and the
thread sees it within one step: cancellation returns within STEP_MS.

Cost: watchfiles' Rust loop checks its stop flag every step in its own thread, so with
--watch on, that thread wakes 5 times a second; a change is seen within about 0.4 s
(step + debounce). Without --watch, nothing of this runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc
from watchfiles import Change, awatch

from supervisord_lite.fsatomic import temp_name

log = logging.getLogger(__name__)
# watchfiles says "N changes detected" at INFO for every batch, the probe's included: noise
# in the daemon's output beside the one line that matters ("current changed: reloading")
logging.getLogger("watchfiles").setLevel(logging.WARNING)

STEP_MS = 200
DEBOUNCE_MS = 200
PROBE_EVERY = 0.1  # seconds between probes until the watcher reports one
ARM_DEADLINE = 30.0  # then the watch is reported started anyway, with a warning


async def watch_current(
    root_dir: Path,
    on_change: Callable[[], None],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call on_change each time ROOT/current is replaced; runs until cancelled.

    task_status.started() is called once a change to current is sure to be seen (or,
    with a warning, after ARM_DEADLINE). Cancellation returns within STEP_MS. Raises
    OSError (from watchfiles) when ROOT cannot be watched.
    """
    current = str(root_dir / "current")
    probe_dir = root_dir / "run"
    probe_dir.mkdir(exist_ok=True)
    probe = temp_name(probe_dir, ".watch-probe")
    armed = anyio.Event()
    stop = anyio.Event()

    def wanted(_change: Change, path: str) -> bool:
        return path == current or path == str(probe)

    async def run_watcher() -> None:
        async for changes in awatch(
            root_dir,
            probe_dir,
            watch_filter=wanted,
            stop_event=stop,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            recursive=False,
            rust_timeout=0,
        ):
            paths = {path for _change, path in changes}
            if str(probe) in paths:
                armed.set()
            if current in paths:
                log.info("current changed: reloading")
                on_change()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_watcher)
        try:
            await wait_armed(probe, armed)
            task_status.started()
            await anyio.sleep_forever()
        finally:
            stop.set()  # the one way out of the watcher's thread, which anyio awaits


async def wait_armed(probe: Path, armed: anyio.Event) -> None:
    """Make and remove probe until the watcher has reported it, or ARM_DEADLINE passes."""
    with anyio.move_on_after(ARM_DEADLINE):
        while not armed.is_set():
            try:
                poke(probe)
            except OSError as exc:
                log.warning(
                    "--watch: cannot make %s (%s): changes right after start may be missed",
                    probe,
                    exc.strerror or exc,
                )
                return
            with anyio.move_on_after(PROBE_EVERY):
                await armed.wait()
        return
    log.warning("--watch: not armed after %g s: changes may be missed until it is", ARM_DEADLINE)


def poke(probe: Path) -> None:
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(probe)

"""One start of a process, from its spawn until it is reaped: the Attempt record (its
child, when it was spawned, became ready, was signalled; whether a stop was asked or the
readiness check failed), the spawn itself and the bounded stop of its child.

A fresh Attempt per start, instead of flags on the Process reset by hand at each start:
nothing of one attempt can leak into the next. The Process task owns its Attempt and is
the only one to await on it; `signal_stop` is the one method called from outside the
task (a stop request), and it only sends a signal and moves a deadline.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from supervisord_lite.daemon.ready import ReadyContext
from supervisord_lite.daemon.services import Services
from supervisord_lite.daemon.spawn import Child, child_env, plan, spawn
from supervisord_lite.manifest import ProcessSpec, Release

if TYPE_CHECKING:  # loaded only for a process that is ready by notify (process.py)
    from supervisord_lite.daemon.ready_notify import ChildNotify

log = logging.getLogger(__name__)

SignalGroup = Callable[[int, int], None]  # (pgid, signal)


@dataclass(eq=False, slots=True)
class Attempt:
    """One start: None and zero until the spawn; `child` is None again once reaped."""

    child: Child | None = None
    pid: int | None = None  # from the spawn until the exit is handled
    spawned_at: float = 0.0  # time.monotonic(), for uptime
    ready_at: float = 0.0  # Services.clock(), for the policy's stable-run rule
    signalled_at: float | None = None  # when the stop signal went to the child
    stop_asked: bool = False  # the child is to be stopped
    not_ready: bool = False  # the readiness check failed
    waiter: anyio.CancelScope | None = None  # only while the task waits for the exit

    def signal_stop(self, spec: ProcessSpec, signal_group: SignalGroup) -> None:
        """Send the stop signal now, once; the wait for the exit gets stop_timeout to run.

        Does nothing more before the spawn or after the exit: escalate does what is left.
        signal_group is Reaper.signal_group, which notes the tree before it signals.
        """
        self.stop_asked = True
        child = self.child
        if child is None or child.exit_code is not None or self.signalled_at is not None:
            return
        signal_group(child.pid, spec.signal_number)
        self.signalled_at = time.monotonic()
        if self.waiter is not None:
            self.waiter.deadline = anyio.current_time() + spec.stop_timeout

    async def wait_exit(self, child: Child, timeout: float = math.inf) -> int | None:
        """The exit code; None after the timeout (or the stop's), or when interrupted."""
        if self.stop_asked:
            return None
        with anyio.move_on_after(timeout) as scope:
            self.waiter = scope
            try:
                # not child.wait(): one coroutine less to keep for each RUNNING process
                await anyio.wait_readable(child.pidfd)
            finally:
                self.waiter = None
            return child.reap()
        return None

    async def escalate(
        self, child: Child, name: str, spec: ProcessSpec, signal_group: SignalGroup
    ) -> int:
        """The rest of the bounded stop: SIGKILL once stop_timeout has passed."""
        if self.signalled_at is None:  # asked before it was spawned
            signal_group(child.pid, spec.signal_number)
            self.signalled_at = time.monotonic()
        left = self.signalled_at + spec.stop_timeout - time.monotonic()
        with anyio.move_on_after(left):
            return await child.wait()
        log.warning(
            "%s: still running %g s after SIG%s; killing it",
            name,
            spec.stop_timeout,
            spec.stop_signal,
        )
        signal_group(child.pid, signal.SIGKILL)
        return await child.wait()


def spawn_child(
    services: Services,
    release: Release,
    spec: ProcessSpec,
    index: int,
    notify: ChildNotify | None,
) -> tuple[Child, ReadyContext]:
    """Start `<type>.<index>` with its sockets, environment and working directory.

    Raises OSError (or KeyError for a socket not bound) when it cannot.
    """
    name = f"{spec.type}.{index}"
    fds = services.sockets.fds_for(spec, release.sockets, release)
    env = child_env(
        services.base_env,
        release,
        spec,
        index,
        socket_names=[socket_name for socket_name, _ in fds],
        notify_address=notify.address if notify else None,
    )
    cwd = services.app_dir(release.build)
    child = spawn(plan(name, spec.cmd, env, cwd, [fd for _, fd in fds]))
    services.reaper.add(child.pid, name)
    return child, ReadyContext(name, cwd, env, notify)

"""One task per `web.1`: spawn, wait for ready, wait for the exit, apply the policy, back off.

The task is the only owner of its child: it spawns it, it awaits the pidfd, it reaps it.
Everything else talks to it through three methods (`request_stop`, `request_start`,
`retire`) that set a flag and wake it; the task then acts, so there is never a second
place that changes the state. Every change goes through `_apply`, which looks the pair up
in states.TRANSITIONS, logs it and tells the owner (`on_change`).

Timers belong to this task alone and exist only while needed: the backoff before a
restart, the fatal cool-off, the ready timeout, the stop timeout. An idle RUNNING
process has no timer at all; the task sleeps on its child's pidfd.

Backoff: 0.1 s doubling per failure in a row, capped (30 s), with "equal jitter" (half
fixed, half random) so that a whole generation that crashes together does not restart
in lockstep. The first death of a process that had reached RUNNING is restarted at once
(PEERS: respawn under 20 ms); the backoff starts with the second death in a row. The
count resets when the process had been RUNNING for STABLE seconds before it died, judged
from the real times (no timer). After MAX_FAILED failed starts in a row (exited, or not
ready, before RUNNING) it is FATAL; after the cool-off it gets one more try (and is FATAL
again if that fails); `start`/`restart` give it a fresh set of tries.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

from supervisord_lite.daemon.bus import (
    EventBus,
    ProcessExited,
    ProcessFatal,
    ProcessReady,
    ProcessSpawned,
)
from supervisord_lite.daemon.notify import ChildNotify, open_child_notify
from supervisord_lite.daemon.output import Output
from supervisord_lite.daemon.ready import ReadyContext, ReadyFailed, ReadyRegistry
from supervisord_lite.daemon.reaper import Reaper, killpg
from supervisord_lite.daemon.sockets import SocketPool
from supervisord_lite.daemon.spawn import Child, child_env, plan, spawn
from supervisord_lite.daemon.states import RESTING, ProcEvent, ProcState, next_state
from supervisord_lite.layout import DeployRoot
from supervisord_lite.manifest import ProcessSpec, Release

log = logging.getLogger(__name__)

MAX_FAILED = 10
STABLE = 10.0
BACKOFF_FIRST = 0.1
DRAIN = 2.0  # how long the output of a dead child may still be read


@dataclass
class Services:
    """What every process task shares: one of each, owned by the daemon."""

    root: DeployRoot
    output: Output
    reaper: Reaper
    ready: ReadyRegistry
    base_env: dict[str, str]
    sockets: SocketPool = field(default_factory=SocketPool)
    bus: EventBus = field(default_factory=EventBus)
    max_backoff: float = 30.0


def backoff_delay(failures: int, cap: float) -> float:
    full = min(cap, BACKOFF_FIRST * 2.0 ** max(failures - 1, 0))
    return full / 2 + random.uniform(0, full / 2)


@dataclass
class Process:
    """The supervised `<type>.<index>` of one release."""

    services: Services
    release: Release
    spec: ProcessSpec
    index: int
    on_change: Callable[[Process], None] = lambda p: None
    state: ProcState = ProcState.STOPPED
    pid: int | None = None
    restarts: int = 0
    exit_code: int | None = None
    error: str | None = None  # why the last start failed, for status and switch
    failures: int = 0  # failed starts in a row
    crashes: int = 0  # exits in a row, for the backoff
    spawned_at: float = 0.0
    ready_at: float = 0.0
    _want: bool = True
    _kicked: bool = False
    _retired: bool = False
    _resume_at: float = 0.0
    _wake: anyio.Event = field(default_factory=anyio.Event)
    _stop_now: anyio.Event = field(default_factory=anyio.Event)
    _spawns: int = 0

    @property
    def name(self) -> str:
        return f"{self.spec.type}.{self.index}"

    def uptime(self) -> float | None:
        return round(time.monotonic() - self.spawned_at, 3) if self.pid else None

    # --- requests from outside -----------------------------------------------------------

    def request_stop(self) -> None:
        self._want = False
        if self.state in RESTING:
            self._apply(ProcEvent.STOP)
        elif self.state is not ProcState.STOPPING:
            self._apply(ProcEvent.STOP)
            self._stop_now.set()
        self._wake.set()

    def request_start(self) -> None:
        """Start it now, with a fresh set of tries (also out of FATAL or BACKOFF)."""
        if self._retired:
            return  # its generation is on its way out: a start must not revive it
        self._want = True
        if self.state in RESTING:
            self._kicked = True
            self.failures = 0
        self._wake.set()

    def retire(self) -> None:
        """Stop it for good: the task returns once it is stopped."""
        self._retired = True
        self.request_stop()

    # --- the task -----------------------------------------------------------------------

    async def run(self) -> None:
        """Supervise until retired and stopped."""
        while True:
            if self._retired and self.state in RESTING:
                return
            delay = self._delay_before_start()
            if delay is None or delay > 0:
                self._wake = anyio.Event()
                with anyio.move_on_after(delay if delay is not None else float("inf")):
                    await self._wake.wait()
                continue
            self._kicked = False
            await self._attempt()

    def _delay_before_start(self) -> float | None:
        """0: start now; a number: wait that long first; None: wait to be asked."""
        if not self._want:
            return None
        if self._kicked or self.state is ProcState.STOPPED:
            return 0.0
        if self.state in (ProcState.BACKOFF, ProcState.FATAL):
            return max(0.0, self._resume_at - time.monotonic())
        return None  # EXITED: its policy said leave it

    async def _attempt(self) -> None:
        self._stop_now = anyio.Event()
        self._apply(ProcEvent.START)
        async with self._maybe_notify() as notify:
            try:
                child, ctx = self._spawn(notify)
            except (OSError, KeyError) as exc:
                self._after_exit(127, not_ready=False, error=f"cannot spawn: {exc}")
                return
            try:
                code, not_ready = await self._supervise(child, ctx)
            finally:
                with anyio.CancelScope(shield=True):
                    child.reap_now()
                    self.services.reaper.discard(child.pid)
        self.services.bus.publish(
            ProcessExited(
                self.name,
                self.release.id,
                child.pid,
                exit_code=code if code >= 0 else None,
                signal=-code if code < 0 else None,
                expected=not self._want,
            )
        )
        self._after_exit(code, not_ready=not_ready)

    def _spawn(self, notify: ChildNotify | None) -> tuple[Child, ReadyContext]:
        """Start the child; OSError (or KeyError for a socket not bound) when it cannot."""
        fds = self.services.sockets.fds_for(self.spec, self.release.sockets)
        env = child_env(
            self.services.base_env,
            self.release,
            self.spec,
            self.index,
            socket_names=[name for name, _ in fds],
            notify_address=notify.address if notify else None,
        )
        cwd = self.services.root.build_app(self.release.build)
        child = spawn(plan(self.name, self.spec.cmd, env, cwd, [fd for _, fd in fds]))
        self.services.reaper.add(child.pid, self.name)
        self._spawns += 1
        self.restarts = self._spawns - 1
        self.pid, self.spawned_at, self.exit_code = child.pid, time.monotonic(), None
        log.info("%s: spawned pid %d (%s)", self.name, child.pid, self.release.id)
        self.services.bus.publish(ProcessSpawned(self.name, self.release.id, child.pid))
        return child, ReadyContext(self.name, cwd, env, notify)

    @asynccontextmanager
    async def _maybe_notify(self) -> AsyncIterator[ChildNotify | None]:
        if self.spec.ready.kind != "notify":
            yield None
            return
        async with open_child_notify(self.name) as notify:
            yield notify

    async def _supervise(self, child: Child, ctx: ReadyContext) -> tuple[int, bool]:
        """Wait for ready and for the exit, stopping it when asked; (exit code, not ready)."""
        not_ready: list[bool] = [False]
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.services.output.pump, self.name, child.output_fd)
            async with anyio.create_task_group() as inner:
                inner.start_soon(self._readiness, ctx, not_ready)
                inner.start_soon(self._stopper, child)
                code = await child.wait()
                inner.cancel_scope.cancel()
            self.services.reaper.kill_leftovers(child.pid, self.name, self.release.id)
            # the pipe closes once every holder is dead; its last lines are worth a wait
            tg.cancel_scope.deadline = anyio.current_time() + DRAIN
        return code, not_ready[0]

    async def _readiness(self, ctx: ReadyContext, not_ready: list[bool]) -> None:
        try:
            with anyio.fail_after(self.spec.ready_timeout):
                await self.services.ready.wait_ready(self.spec.ready, ctx)
        except TimeoutError:
            reason = f"not ready within {self.spec.ready_timeout:g} s"
        except ReadyFailed as exc:
            reason = f"readiness check failed: {exc}"
        else:
            if self.state is ProcState.STARTING:
                self.ready_at = time.monotonic()
                self.failures = 0
                self.error = None
                self._apply(ProcEvent.READY)
                if self.pid is not None:
                    self.services.bus.publish(ProcessReady(self.name, self.release.id, self.pid))
            return
        if self.state is ProcState.STARTING:
            not_ready[0] = True
            self.error = reason
            log.warning("%s: %s; stopping it", self.name, reason)
            self._apply(ProcEvent.NOT_READY)
            self._stop_now.set()

    async def _stopper(self, child: Child) -> None:
        """The bounded escalation: stop_signal to the group, then SIGKILL after the timeout."""
        await self._stop_now.wait()
        killpg(child.pid, self.spec.signal_number)
        with anyio.move_on_after(self.spec.stop_timeout):
            await child.exited.wait()
            return
        log.warning(
            "%s: still running %g s after SIG%s; killing it",
            self.name,
            self.spec.stop_timeout,
            self.spec.stop_signal,
        )
        killpg(child.pid, signal.SIGKILL)

    def _after_exit(self, code: int, *, not_ready: bool, error: str | None = None) -> None:
        was = self.state
        self.pid, self.exit_code = None, code
        if not self._want:
            log.info("%s: stopped (exit code %d)", self.name, code)
            self._apply(ProcEvent.HALTED)
            return
        now = time.monotonic()
        failed_start = not_ready or was is ProcState.STARTING
        stable = was is ProcState.RUNNING and now - self.ready_at >= STABLE
        self.crashes = 0 if stable else self.crashes + 1
        if failed_start:
            self.failures += 1
            if not not_ready:
                self.error = error or f"exited with code {code} before it was ready"
        else:
            self.error = f"exited with code {code} after it was ready"
        success = code == 0 and not not_ready
        policy = self.spec.restart
        if policy == "never" or (policy == "on-failure" and success):
            log.info("%s: exited with code %d; restart policy %s", self.name, code, policy)
            self._apply(ProcEvent.DONE)
        elif failed_start and self.failures >= MAX_FAILED:
            self._resume_at = now + self.spec.fatal_cooloff
            log.error(
                "%s: FATAL after %d failed starts in a row (%s); next try in %g s",
                self.name,
                self.failures,
                self.error,
                self.spec.fatal_cooloff,
            )
            self._apply(ProcEvent.GIVE_UP)
            self.services.bus.publish(ProcessFatal(self.name, self.release.id, self.failures))
        else:
            # the first death of a process that was up is not a loop: restart at once
            first = self.crashes == 1 and was is ProcState.RUNNING
            delay = 0.0 if first else backoff_delay(self.crashes, self.services.max_backoff)
            self._resume_at = now + delay
            log.info("%s: exited with code %d; restarting in %.2f s", self.name, code, delay)
            self._apply(ProcEvent.RETRY)

    def _apply(self, event: ProcEvent) -> None:
        old, self.state = self.state, next_state(self.state, event)
        log.debug("%s: %s -> %s on %s", self.name, old.value, self.state.value, event.value)
        with contextlib.suppress(Exception):
            self.on_change(self)

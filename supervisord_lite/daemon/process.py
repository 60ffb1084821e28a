"""One task per `web.1`: spawn, wait for ready, wait for the exit, apply the policy, back off.

The task is the only owner of its child: it spawns it, it awaits the pidfd, it reaps it.
Everything else talks to it through three methods (`request_stop`, `request_start`,
`retire`) that set a flag and wake it; the task then acts, so there is never a second
place that changes the state. Every change goes through `_apply`, which looks the pair up
in states.TRANSITIONS, logs it and tells the owner (`on_change`).

Timers belong to this task alone and exist only while needed: the backoff before a
restart, the fatal cool-off, the ready timeout, the stop timeout. An idle RUNNING
process has no timer and no other task: its task sleeps on its child's pidfd, inside a
cancel scope to which a stop request gives a deadline (the stop signal itself is sent at
once, see _stop_child); the child's output is read by the one reader in pipes.py.
Helper tasks per child (a stopper, a readiness task, a pump) were rejected: with their
task groups, scopes and events they cost several KiB and many task switches per child,
and the daemon's spawn time and memory at 500 processes are both judged against
supervisord's (PEERS). Only a readiness check other than `after` runs in a task of its
own, and only while the process is STARTING; `after` is a timer, which this task owns
anyway.

What an exit leads to (restart now, back off, FATAL, done) is policy.py, a pure function
of the exit, the streak and the clock (Services.clock); this task only carries it out.
What belongs to one start (the child, its times, a stop asked, a failed readiness
check) is one Attempt record (attempt.py), made afresh at each start; what stays here is
the operator's intent (wanted, kicked, retired) and the state.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import anyio

from supervisord_lite.daemon.attempt import Attempt, spawn_child
from supervisord_lite.daemon.bus import (
    ProcessExited,
    ProcessFatal,
    ProcessReady,
    ProcessSpawned,
    ProcessStateChanged,
)
from supervisord_lite.daemon.policy import Exit, Streak, after_exit, exit_line
from supervisord_lite.daemon.ready import ReadyContext, ReadyFailed
from supervisord_lite.daemon.services import Services
from supervisord_lite.daemon.spawn import Child
from supervisord_lite.daemon.states import RESTING, ProcEvent, ProcState, next_state
from supervisord_lite.manifest import ProcessSpec, Release

if TYPE_CHECKING:
    from supervisord_lite.daemon.ready_notify import ChildNotify

log = logging.getLogger(__name__)

DRAIN = 2.0  # how long the output of a dead child may still be read


@dataclass(eq=False, slots=True)
class Process:
    """The supervised `<type>.<index>` of one release."""

    services: Services
    release: Release
    spec: ProcessSpec
    index: int
    on_change: Callable[[Process], None] = lambda p: None
    state: ProcState = ProcState.STOPPED
    restarts: int = 0
    exit_code: int | None = None
    error: str | None = None  # why the last start failed, for status and switch
    streak: Streak = field(default_factory=Streak)  # exits and failed starts in a row
    attempt: Attempt = field(default_factory=Attempt)  # the current or the last start
    _want: bool = True
    _kicked: bool = False
    _retired: bool = False
    _resume_at: float = 0.0
    _wake: anyio.Event | None = None  # only while the task waits to start
    _spawns: int = 0
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = f"{self.spec.type}.{self.index}"

    @property
    def pid(self) -> int | None:
        """The child's, from its spawn until its exit is handled."""
        return self.attempt.pid

    @property
    def failures(self) -> int:
        """Failed starts in a row."""
        return self.streak.failures

    def done(self) -> bool:
        """It exited 0 and its restart policy leaves it: a one-shot that did its job."""
        return self.state is ProcState.EXITED and self.exit_code == 0 and self.error is None

    def settled(self) -> bool:
        """RUNNING, or done: what a switch or a boot waits for."""
        return self.state is ProcState.RUNNING or self.done()

    def uptime(self) -> float | None:
        return round(time.monotonic() - self.attempt.spawned_at, 3) if self.pid else None

    # --- requests from outside -----------------------------------------------------------

    def request_stop(self) -> None:
        self._want = False
        if self.state in RESTING:
            self._apply(ProcEvent.STOP)
        elif self.state is not ProcState.STOPPING:
            self._apply(ProcEvent.STOP)
            self._stop_child()
        self._wake_up()

    def request_start(self) -> None:
        """Start it now, with a fresh set of tries (also out of FATAL or BACKOFF)."""
        if self._retired:
            return  # its generation is on its way out: a start must not revive it
        self._want = True
        if self.state in RESTING:
            self._kicked = True
            self.streak = replace(self.streak, failures=0)
        self._wake_up()

    def retire(self) -> None:
        """Stop it for good: the task returns once it is stopped."""
        self._retired = True
        self.request_stop()

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _stop_child(self) -> None:
        """Send the stop signal now; the task's wait for the exit gets stop_timeout to run.

        Sent from here rather than by the woken task: stopping a generation of 500 would
        otherwise cancel 500 waits, and unwinding them all in one pass of the loop, while
        the children die, takes long enough for their SIGCHLDs to fill the loop's wake-up
        socket. The task is not interrupted: it wakes when the child exits, or at the
        deadline, and then escalates to SIGKILL (Attempt.escalate).
        """
        self.attempt.signal_stop(self.spec, self.services.reaper.signal_group)

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
                self._wake = None
                continue
            self._kicked = False
            self.attempt = Attempt()
            self._apply(ProcEvent.START)
            if self.spec.ready.kind == "notify":
                # imported here: most releases never wait for a READY=1 (issue 16, memory)
                from supervisord_lite.daemon.ready_notify import open_child_notify

                async with open_child_notify(self.name) as notify:
                    await self._run_child(notify)
            else:
                await self._run_child(None)

    def _delay_before_start(self) -> float | None:
        """0: start now; a number: wait that long first; None: wait to be asked."""
        if not self._want:
            return None
        if self._kicked or self.state is ProcState.STOPPED:
            return 0.0
        if self.state in (ProcState.BACKOFF, ProcState.FATAL):
            return max(0.0, self._resume_at - self.services.clock())
        return None  # EXITED: its policy said leave it

    async def _run_child(self, notify: ChildNotify | None) -> None:
        attempt = self.attempt
        try:
            child, ctx = self._spawn(notify)
        except (OSError, KeyError) as exc:
            self._after_exit(127, error=f"cannot spawn: {exc}")
            return
        output = self.services.output
        pipe = output.watch(self.name, child.output_fd, self.release.id)
        try:
            code = await self._wait_starting(child, ctx)
            del ctx  # its environment and paths are not kept for the whole run
            if code is None and not attempt.stop_asked:
                code = await attempt.wait_exit(child)  # RUNNING: the pidfd and nothing else
            if code is None:
                code = await attempt.escalate(
                    child, self.name, self.spec, self.services.reaper.signal_group
                )
            await self.services.reaper.kill_leftovers(child.pid, self.name, self.release.id)
            # the pipe closes once every holder is dead; its last lines are worth a wait
            await output.wait_eof(pipe, DRAIN)
        finally:
            with anyio.CancelScope(shield=True):
                child.reap_now()
                attempt.child = None
                self.services.reaper.discard(child.pid)
                output.unwatch(pipe)
        exited = ProcessExited(
            self.name,
            self.release.id,
            child.pid,
            exit_code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            expected=not self._want,
        )
        self.services.bus.publish(exited)
        self._after_exit(code)

    def _spawn(self, notify: ChildNotify | None) -> tuple[Child, ReadyContext]:
        """Start the child; OSError (or KeyError for a socket not bound) when it cannot."""
        child, ctx = spawn_child(self.services, self.release, self.spec, self.index, notify)
        self._spawns += 1
        self.restarts = self._spawns - 1
        self.attempt.child, self.attempt.pid = child, child.pid
        self.attempt.spawned_at, self.exit_code = time.monotonic(), None
        log.info("%s: spawned pid %d (%s)", self.name, child.pid, self.release.id)
        self.services.bus.publish(ProcessSpawned(self.name, self.release.id, child.pid))
        return child, ctx

    async def _wait_starting(self, child: Child, ctx: ReadyContext) -> int | None:
        """Until ready: the exit code if it exited first, else None."""
        check, attempt = self.spec.ready, self.attempt
        if check.kind == "after":
            if check.seconds <= 0:
                self._ready()  # no timer to set and cancel, 500 times at a start
                return None
            if check.seconds < self.spec.ready_timeout:
                code = await attempt.wait_exit(child, check.seconds)
                if code is None and not attempt.stop_asked:
                    self._ready()
                return code
            code = await attempt.wait_exit(child, self.spec.ready_timeout)
            if code is None and not attempt.stop_asked:
                self._not_ready_now(f"not ready within {self.spec.ready_timeout:g} s")
            return code
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._readiness, ctx)
            code = await attempt.wait_exit(child)
            tg.cancel_scope.cancel()
        return code

    async def _readiness(self, ctx: ReadyContext) -> None:
        try:
            with anyio.fail_after(self.spec.ready_timeout):
                await self.services.ready.wait_ready(self.spec.ready, ctx)
        except TimeoutError:
            self._not_ready_now(f"not ready within {self.spec.ready_timeout:g} s")
        except ReadyFailed as exc:
            self._not_ready_now(f"readiness check failed: {exc}")
        else:
            self._ready()
            if self.state is ProcState.RUNNING and self.attempt.waiter is not None:
                self.attempt.waiter.cancel()  # out of the task group: RUNNING needs none

    def _ready(self) -> None:
        if self.state is ProcState.STARTING:
            self.attempt.ready_at = self.services.clock()
            self.streak = replace(self.streak, failures=0)
            self.error = None
            self._apply(ProcEvent.READY)
            if self.pid is not None:
                self.services.bus.publish(ProcessReady(self.name, self.release.id, self.pid))

    def _not_ready_now(self, reason: str) -> None:
        if self.state is ProcState.STARTING:
            self.attempt.not_ready = True
            self.error = reason
            log.warning("%s: %s; stopping it", self.name, reason)
            self._apply(ProcEvent.NOT_READY)
            self._stop_child()

    def _after_exit(self, code: int, *, error: str | None = None) -> None:
        was, attempt = self.state, self.attempt
        attempt.pid, self.exit_code = None, code
        if not self._want:
            log.info("%s: stopped (exit code %d)", self.name, code)
            self._apply(ProcEvent.HALTED)
            return
        decision = after_exit(
            Exit(code, was, attempt.not_ready, attempt.ready_at, error),
            self.streak,
            policy=self.spec.restart,
            now=self.services.clock(),
            max_backoff=self.services.max_backoff,
            fatal_cooloff=self.spec.fatal_cooloff,
            previous_error=self.error,
        )
        self.streak, self.error = decision.streak, decision.error
        self._resume_at = decision.resume_at
        level, line = exit_line(
            self.name,
            code,
            decision,
            policy=self.spec.restart,
            fatal_cooloff=self.spec.fatal_cooloff,
            now=self.services.clock(),
        )
        log.log(level, "%s", line)
        self._apply(decision.event)
        if decision.event is ProcEvent.GIVE_UP:
            self.services.bus.publish(ProcessFatal(self.name, self.release.id, self.failures))

    def _apply(self, event: ProcEvent) -> None:
        old, self.state = self.state, next_state(self.state, event)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s -> %s on %s", self.name, old.value, self.state.value, event.value)
        with contextlib.suppress(Exception):
            self.on_change(self)
        if self.services.bus.subscribed:
            self.services.bus.publish(
                ProcessStateChanged(
                    self.name, self.release.id, old.value, self.state.value, event.value, self.error
                )
            )

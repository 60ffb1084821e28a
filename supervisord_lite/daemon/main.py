"""The daemon: the root task group, the one request stream, and the control target.

Task tree (structured concurrency: cancellation is the stop path):

    root        output (one writer, and one reader of every child's pipe in one epoll
                set), reaper (SIGCHLD, children.json), signals, control socket,
                systemd watchdog, --watch
      plugins   one runner per plugin, fed by the bus
        gens    one task per live generation -> one task per process (sleeping on its
                child's pidfd; a readiness check other than `after` in a task of its own
                while STARTING)
        loop    the supervisor: first start, then one reload at a time

Every trigger of a reload (SIGHUP, the control socket's `reload`) calls request_reload(),
which only sets a flag in the Inbox and wakes the loop; a burst that arrives while a
switch runs folds into exactly one more reload after it. The signal task only hands
signals on; it does no work in signal context (anyio delivers them to a task already).

Shutdown (SIGTERM, SIGINT, `shutdown`): the loop is cancelled wherever it is (even
mid-switch), then every live generation is stopped at once, in parallel; then the bus
closes and plugins get PLUGIN_DRAIN seconds for the events still queued; then the root
group is cancelled, which flushes the output.

The systemd watchdog is pinged from a task of this loop, and only while every vital task
(notify.Vitals) is still there. Descriptors the daemon inherited (a shell's fd 10, a
deploy tool's pipe) are made close-on-exec before anything is spawned: children get
exactly what spawn.py places at 0, 1, 2 and 3...
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from supervisord_lite.daemon.bus import (
    DaemonStarted,
    DaemonStopping,
    ReleaseLoaded,
    ReloadRejected,
)
from supervisord_lite.daemon.control import serve_control
from supervisord_lite.daemon.generation import Generation, NotReady, shared_address_checks
from supervisord_lite.daemon.heldsocket import HeldSocketCheck
from supervisord_lite.daemon.notify import SystemdNotifier, Vitals, run_watchdog
from supervisord_lite.daemon.output import Output
from supervisord_lite.daemon.process import Process, Services
from supervisord_lite.daemon.sockets import SocketBindError
from supervisord_lite.daemon.startup import load_manifest, seal_inherited_fds
from supervisord_lite.daemon.states import ProcState
from supervisord_lite.daemon.status import Rejection, SwitchRecord, snapshot, status_text
from supervisord_lite.daemon.switch import switch
from supervisord_lite.errors import BrrError
from supervisord_lite.fsatomic import replace_symlink
from supervisord_lite.layout import DeployRoot
from supervisord_lite.manifest import Release

if TYPE_CHECKING:
    from supervisord_lite.daemon.plugins import PluginRunner

log = logging.getLogger("supervisord_lite.daemon")

PLUGIN_DRAIN = 5.0  # how long plugins may take over the last events at shutdown


class Inbox:
    """A one-slot stream of reload requests: any number of puts fold into one get."""

    def __init__(self) -> None:
        self._pending = False
        self._event = anyio.Event()

    def put(self) -> None:
        self._pending = True
        self._event.set()

    async def get(self) -> None:
        while not self._pending:
            self._event = anyio.Event()
            await self._event.wait()
        self._pending = False


class Daemon:
    """The run stage of one root; implements control.ControlTarget."""

    def __init__(
        self,
        root: DeployRoot,
        services: Services,
        *,
        runners: Sequence[PluginRunner] = (),
        watch: bool = False,
        early: list[int] | None = None,
    ) -> None:
        self.root = root
        self.services = services
        self.bus = services.bus
        self._runners = list(runners)
        self._watch = watch
        self._early = early if early is not None else []  # signals noted before the loop
        self._stop_reason = "shutdown requested"
        self.output: Output = services.output
        self.notifier = SystemdNotifier.from_environ()
        self.state = "starting"
        self.active: Generation | None = None
        self.generations: list[Generation] = []
        self.last_switch: SwitchRecord | None = None
        self.rejected: Rejection | None = None
        self._inbox = Inbox()
        self._shutdown = anyio.Event()
        self._gens: anyio.abc.TaskGroup | None = None
        self._loop: anyio.abc.TaskGroup | None = None
        self.exit_code = 0
        self.vitals = Vitals()

    # --- the tree -------------------------------------------------------------------------

    async def run(self, first: Release) -> None:
        """Run until shutdown; every process is stopped when this returns."""
        sealed = seal_inherited_fds()
        if sealed:
            log.info("inherited fd %s: kept from children", ", ".join(map(str, sealed)))
        async with anyio.create_task_group() as root_tg:
            root_tg.start_soon(self.output.run_writer)
            root_tg.start_soon(self._run_vital, "reaper", self.services.reaper.run)
            root_tg.start_soon(HeldSocketCheck(self.services).run)  # heldsocket.py
            await root_tg.start(self._run_signals)
            root_tg.start_soon(run_watchdog, self.notifier, self.vitals.healthy)
            await root_tg.start(self._serve_control)
            if self._watch:
                await root_tg.start(self._run_watch)
                # current may have moved between the first load and the watch being armed
                if self.root.current_release_id() != first.id:
                    self.request_reload()
            self.bus.publish(DaemonStarted(os.getpid(), str(self.root.path)))
            async with anyio.create_task_group() as plugins:
                for runner in self._runners:
                    plugins.start_soon(runner.run)
                await self._run_generations(first)
                self.bus.close()  # the runners deliver what is queued, then end
                plugins.cancel_scope.deadline = anyio.current_time() + PLUGIN_DRAIN
            for runner in self._runners:
                await runner.close()
            self.services.sockets.close_all()
            log.info("all stopped; exiting")
            await self.output.drain()
            self.output.close()
            root_tg.cancel_scope.cancel()

    async def _run_vital(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        with self.vitals.vital(name):
            await fn()

    async def _serve_control(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with self.vitals.vital("control server"):
            await serve_control(self.root.control_socket, self, task_status=task_status)

    async def _run_watch(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        # imported here: watchfiles costs 7 MB of RSS, paid only with --watch
        from supervisord_lite.daemon.watch import watch_current

        with self.vitals.vital("--watch"):
            await watch_current(self.root.path, self.request_reload, task_status=task_status)

    async def _run_generations(self, first: Release) -> None:
        async with anyio.create_task_group() as gens:
            self._gens = gens
            async with anyio.create_task_group() as loop:
                self._loop = loop
                loop.start_soon(self._run_vital, "supervisor loop", partial(self._run_loop, first))
                await self._shutdown.wait()
                loop.cancel_scope.cancel()
            self.state = "stopping"
            log.info("stopping every process (%s)", self._stop_reason)
            self.bus.publish(DaemonStopping(self._stop_reason))
            self.notifier.stopping()
            async with anyio.create_task_group() as stopping:
                for generation in list(self.generations):
                    stopping.start_soon(self.retire_generation, generation)

    async def _run_signals(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        wanted = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
        with self.vitals.vital("signal task"), anyio.open_signal_receiver(*wanted) as signals:
            for signum in self._early:  # arrived before we owned the signals
                self._on_signal(signum)
            self._early.clear()
            task_status.started()  # no child is spawned before SIGTERM is ours
            async for signum in signals:
                self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        match signum:
            case signal.SIGTERM | signal.SIGINT:
                self._stop_reason = signal.Signals(signum).name
                self.request_shutdown()
            case signal.SIGHUP:
                self.request_reload()
            case signal.SIGUSR1:
                self.output.reopen()

    async def _run_loop(self, first: Release) -> None:
        # loaded comes before the spawns it causes: subscribers see cause, then effects
        self.bus.publish(ReleaseLoaded(first.id, first.build))
        try:
            generation = await self.start_generation(first)
        except NotReady as exc:
            log.error("cannot start %s: %s", first.id, exc)
            self.exit_code = 1
            self.request_shutdown()
            return
        self.active = generation
        log.info("running %s (build %s)", first.id, first.build)
        try:
            await generation.wait_ready()
            self._mark_good(first)
        except NotReady as exc:
            log.error("%s is not ready: %s", first.id, exc)
            assert self._loop is not None
            self._loop.start_soon(self._mark_good_once_running, generation)
        self.state = "running"
        self.notifier.ready()
        self.notifier.status(status_text(self.state, self.active))
        while True:
            await self._inbox.get()
            await self._reload()

    async def _reload(self) -> None:
        try:
            new = load_manifest(self.root.current, self.root)
        except BrrError as exc:
            kept = self.active.release.id if self.active else None
            log.error("reload: current is invalid, keeping %s: %s", kept, exc.message)
            self.rejected = Rejection(time.time(), self.root.current_release_id(), exc.message)
            self.bus.publish(ReloadRejected(self.rejected.id, exc.message))
            return
        old = self.active.release if self.active else None
        if old is not None and (old.id, old.digest) == (new.id, new.digest):
            log.info("reload: %s already runs", new.id)
            return
        self.state = "switching"
        self.notifier.reloading()
        self.bus.publish(ReleaseLoaded(new.id, new.build))
        try:
            self.last_switch = await switch(self, new)
        finally:
            self.state = "running"
        if self.last_switch.ok:
            self._mark_good(new)
        self.notifier.ready()
        self.notifier.status(status_text(self.state, self.active))

    async def _mark_good_once_running(self, generation: Generation) -> None:
        """A first release that comes up late is still good once it is all RUNNING."""
        while generation is self.active and not generation.all_running():
            await generation.wait_changed()
        if generation is self.active:
            self._mark_good(generation.release)

    def _mark_good(self, release: Release) -> None:
        try:
            replace_symlink(self.root.last_good, f"../releases/{release.id}")
        except OSError as exc:
            log.error("cannot update %s: %s", self.root.last_good, exc.strerror)

    # --- switch.Host ------------------------------------------------------------------

    async def start_generation(self, release: Release) -> Generation:
        """Bind its sockets and start it; NotReady when a socket cannot be bound."""
        assert self._gens is not None
        try:
            self.services.sockets.bind_all(release.sockets.values())
        except SocketBindError as exc:
            raise NotReady(exc.message) from None
        for type_ in shared_address_checks(release):
            log.warning(
                "%s: %s's ready check targets its shared socket, which the running generation "
                "also answers: it cannot tell whether the new processes are ready",
                release.id,
                type_,
            )
        generation = Generation(release, self.services)
        self.generations.append(generation)
        await self._gens.start(generation.run)
        return generation

    async def retire_generation(
        self, generation: Generation, *, keep: Release | None = None
    ) -> None:
        """Stop it; close the sockets that neither a live generation nor keep declares."""
        await generation.stop()
        if generation in self.generations:
            self.generations.remove(generation)
        releases = [g.release for g in self.generations] + ([keep] if keep else [])
        binds = {s.bind for r in releases for s in r.sockets.values()}
        self.services.sockets.retain_only(binds)

    # --- control.ControlTarget ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return snapshot(
            state=self.state,
            active=self.active,
            generations=self.generations,
            last_switch=self.last_switch,
            rejected=self.rejected,
        )

    def request_reload(self) -> None:
        self._inbox.put()

    def request_shutdown(self) -> None:
        self.vitals.stopping()
        self._shutdown.set()

    async def restart(self, target: str | None) -> list[str]:
        generation, procs = self._targets(target)
        for proc in procs:
            proc.request_stop()
        await self._wait_stopped(generation, procs)
        for proc in procs:
            proc.request_start()
        return [p.name for p in procs]

    async def stop(self, target: str | None) -> list[str]:
        generation, procs = self._targets(target)
        for proc in procs:
            proc.request_stop()
        await self._wait_stopped(generation, procs)
        return [p.name for p in procs]

    async def start(self, target: str | None) -> list[str]:
        _, procs = self._targets(target)
        for proc in procs:
            proc.request_start()
        return [p.name for p in procs]

    def log_tail(self, name: str | None, n: int) -> list[str]:
        return self.output.tail(name, n)

    def subscribe_logs(self, name: str | None) -> anyio.abc.ObjectReceiveStream[str]:
        return self.output.follow(name)

    def _targets(self, target: str | None) -> tuple[Generation, list[Process]]:
        if self.active is None:
            raise LookupError("no release is running")
        return self.active, self.active.find(target)

    @staticmethod
    async def _wait_stopped(generation: Generation, procs: list[Process]) -> None:
        while not all(p.state is ProcState.STOPPED for p in procs):
            await generation.wait_changed()

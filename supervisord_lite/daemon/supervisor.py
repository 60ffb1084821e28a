"""The supervisor loop: the one owner of the active generation, the generations and last-good.

It consumes one request at a time from requests.Requests (Reload, folded; restart, stop,
start, in order), so nothing acts on `active` while a switch runs. Its own state is a
DaemonState moved only by _enter(). It is switch.Host: switch() starts and retires
generations through it and returns the generation that runs afterwards; the supervisor
alone writes `active`.

Boot: the first release (or the fallback startup.py chose) is started; a new release that
fails its first start gives way to last-good (_boot). Reload: an invalid `current` is
rejected, the release already running is nothing to do, anything else is a switch; a
refused release is recorded and `current` put back on what runs (refusing.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from supervisord_lite import refusals
from supervisord_lite.daemon.bus import DaemonStopping, ReleaseLoaded, ReloadRejected
from supervisord_lite.daemon.generation import Generation, NotReady, shared_address_checks
from supervisord_lite.daemon.notify import SystemdNotifier, Vitals
from supervisord_lite.daemon.process import Process
from supervisord_lite.daemon.refusing import accept, refuse
from supervisord_lite.daemon.requests import (
    DaemonEvent,
    DaemonState,
    ProcessCommand,
    Reload,
    Requests,
    next_daemon_state,
)
from supervisord_lite.daemon.services import Services
from supervisord_lite.daemon.sockets import SocketBindError
from supervisord_lite.daemon.startup import Fallback, load_last_good, load_manifest
from supervisord_lite.daemon.states import ProcState
from supervisord_lite.daemon.status import Rejection, SwitchRecord, snapshot, status_text
from supervisord_lite.daemon.steering import drain
from supervisord_lite.daemon.switch import switch
from supervisord_lite.errors import BrrError
from supervisord_lite.fsatomic import replace_symlink
from supervisord_lite.layout import DeployRoot
from supervisord_lite.manifest import Release

log = logging.getLogger("supervisord_lite.daemon")


class Supervisor:
    def __init__(
        self, root: DeployRoot, services: Services, notifier: SystemdNotifier, vitals: Vitals
    ) -> None:
        self.root = root
        self.vitals = vitals
        self.services = services
        self.bus = services.bus
        self.notifier = notifier
        self.requests = Requests()
        self.state = DaemonState.STARTING
        self.active: Generation | None = None
        self.generations: list[Generation] = []
        self.last_switch: SwitchRecord | None = None
        self.rejected: Rejection | None = None
        self.fallback: Fallback | None = None  # last-good runs instead of current
        self.refused: list[dict[str, Any]] = []  # run/refused.json, as of this loop's last write
        self._gens: anyio.abc.TaskGroup | None = None

    def _enter(self, event: DaemonEvent) -> None:
        self.state = next_daemon_state(self.state, event)

    # --- the tree below the loop ------------------------------------------------------------

    async def run(
        self,
        first: Release,
        fallback: Fallback | None,
        shutdown: anyio.Event,
        *,
        stop_reason: Callable[[], str],
        on_failed_start: Callable[[], None],
    ) -> None:
        """Supervise until shutdown is set, then stop every generation at once.

        on_failed_start: the first release (and any fallback) could not start at all.
        """
        self.fallback = fallback
        self._read_refused()
        async with anyio.create_task_group() as gens:
            self._gens = gens
            async with anyio.create_task_group() as loop:
                loop.start_soon(self._run_vital_loop, first, loop, on_failed_start)
                await shutdown.wait()
                loop.cancel_scope.cancel()
            await self.stop_all(stop_reason())

    async def _run_vital_loop(
        self, first: Release, loop: anyio.abc.TaskGroup, on_failed_start: Callable[[], None]
    ) -> None:
        with self.vitals.vital("supervisor loop"):
            if not await self._run_loop(first, loop):
                on_failed_start()

    async def stop_all(self, reason: str) -> None:
        self._enter(DaemonEvent.STOP)
        log.info("stopping every process (%s)", reason)
        self.bus.publish(DaemonStopping(reason))
        self.notifier.stopping()
        async with anyio.create_task_group() as stopping:
            for generation in list(self.generations):
                stopping.start_soon(self.retire_generation, generation)

    async def _run_loop(self, first: Release, loop: anyio.abc.TaskGroup) -> bool:
        """Boot, then serve requests until cancelled; False when nothing could start."""
        fallback = self.fallback
        if fallback is not None and fallback.current_id is not None:
            await self._refuse(fallback.current_id, fallback.reason, fallback.running_id)
        if not await self._boot(first, loop):
            return False
        self._enter(DaemonEvent.UP)
        self._tell_status()  # before READY=1: systemctl start then shows it at once
        self.notifier.ready()  # the release runs, or the fallback does
        while True:
            match await self.requests.get():
                case Reload():
                    await self._reload()
                case ProcessCommand() as command:
                    await self._apply(command)

    # --- boot -----------------------------------------------------------------------------

    async def _boot(self, first: Release, loop: anyio.abc.TaskGroup) -> bool:
        """Start the first release; a new one that never gets ready gives way to last-good.

        A release counts as new when it is not run/last-good: it never ran here. It gives
        way at its first failed start (an exit before ready, a missed ready timeout), the
        same rule as a start-first switch. A release that ran before is kept and retried
        with backoff, since its failure is more likely the host's (a database not up yet).
        """
        generation = await self._start_release(first)
        if generation is None:
            return False
        try:
            await generation.wait_ready()
            await self._accepted(first)
            return True
        except NotReady as exc:
            reason = str(exc)
        last_good = None if self.fallback else self._last_good_instead_of(first, reason)
        if last_good is None:
            log.error("%s is not ready: %s", first.id, reason)
            loop.start_soon(self._mark_good_once_running, generation)
            return True
        self.fallback = Fallback(first.id, last_good.id, f"never got ready: {reason}")
        log.error("%s", self.fallback.text())
        await self.retire_generation(generation)
        self.active = None
        await self._refuse(first.id, self.fallback.reason, last_good.id)
        generation = await self._start_release(last_good)
        if generation is None:
            return False
        try:
            await generation.wait_ready()
        except NotReady as exc:
            log.error("%s is not ready either: %s", last_good.id, exc)
            loop.start_soon(self._mark_good_once_running, generation)
        return True

    async def _start_release(self, release: Release) -> Generation | None:
        # loaded comes before the spawns it causes: subscribers see cause, then effects
        self.bus.publish(ReleaseLoaded(release.id, release.build))
        try:
            generation = await self.start_generation(release)
        except NotReady as exc:
            log.error("cannot start %s: %s", release.id, exc)
            return None
        self.active = generation
        log.info("running %s (build %s)", release.id, release.build)
        return generation

    def _last_good_instead_of(self, release: Release, reason: str) -> Release | None:
        """run/last-good's release when it is another one than release and loads."""
        try:
            last_good = load_last_good(self.root, reason)
        except BrrError as exc:
            log.error("no fallback for %s: %s", release.id, exc.message)
            return None
        return last_good if last_good is not None and last_good.id != release.id else None

    async def _mark_good_once_running(self, generation: Generation) -> None:
        """A first release that comes up late is still good once it is all RUNNING."""
        while generation is self.active and not generation.all_running():
            await generation.wait_changed()
        if generation is self.active:
            self._mark_good(generation.release)

    # --- reload -----------------------------------------------------------------------------

    async def _reload(self) -> None:
        kept = self.active.release.id if self.active else None
        try:
            new = load_manifest(self.root.current, self.root)
        except BrrError as exc:
            log.error("reload: current is invalid, keeping %s: %s", kept, exc.message)
            self.rejected = Rejection(time.time(), self.root.current_release_id(), exc.message)
            self.bus.publish(ReloadRejected(self.rejected.id, exc.message))
            if self.rejected.id is not None:
                await self._refuse(self.rejected.id, exc.message)
            return
        old = self.active.release if self.active else None
        if old is not None and (old.id, old.digest) == (new.id, new.digest):
            log.info("reload: %s already runs", new.id)
            return
        self._enter(DaemonEvent.SWITCH)
        self.notifier.reloading()
        self.bus.publish(ReleaseLoaded(new.id, new.build))
        try:
            self.last_switch, self.active = await switch(self, self.active, new)
            # still "switching" until current is back on what runs: `reload --wait`
            # returns on "running", and then current must already name it
            if self.last_switch.ok:
                self.fallback = None
                await self._accepted(new)
            else:
                await self._refuse(new.id, self.last_switch.error or "the switch failed")
        finally:
            self._enter(DaemonEvent.SWITCHED)
        self._tell_status()
        self.notifier.ready()

    async def _refuse(self, release_id: str, reason: str, running: str | None = None) -> None:
        """Record the refusal (refusing.py); running: what runs, else the active release."""
        if running is None and self.active is not None:
            running = self.active.release.id
        await refuse(self.root, release_id, reason, running)
        self._read_refused()

    async def _accepted(self, release: Release) -> None:
        self._mark_good(release)
        await accept(self.root, release.id)
        self._read_refused()

    def _read_refused(self) -> None:
        # read when this loop changed the file, not at every `status`: status is the
        # operator's most frequent command, and a busy daemon's hottest reply
        records = refusals.read_daemon_records(self.root).values()
        self.refused = [r.to_data() for r in records]

    def _mark_good(self, release: Release) -> None:
        try:
            replace_symlink(self.root.last_good, f"../releases/{release.id}")
        except OSError as exc:
            log.error("cannot update %s: %s", self.root.last_good, exc.strerror)

    def _tell_status(self) -> None:
        text = status_text(self.state.value, self.active)
        if self.fallback is not None:
            text += "; " + self.fallback.text()
        last = self.last_switch
        if last is not None and not last.ok:  # until the next switch that works
            text += f"; refused {last.to_id}: {last.error}"
        self.notifier.status(text)

    # --- switch.Host ------------------------------------------------------------------------

    async def start_generation(self, release: Release) -> Generation:
        """Bind its sockets and start it; NotReady when a socket cannot be bound."""
        assert self._gens is not None
        beside = self.active if self.active in self.generations else None
        try:
            self.services.sockets.bind_all(release.sockets.values())
        except SocketBindError as exc:
            raise NotReady(exc.message) from None
        if beside is not None and release.switch == "start-first":
            self.services.sockets.open_lanes(release, beside.release)  # sockets.py: draining
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
        """Stop it; close the sockets that neither a live generation nor keep declares.

        Beside a generation with listeners of its own (a start-first switch), new
        connections go there first and this one's accept queue is drained (sockets.py).
        """
        if self.state is not DaemonState.STOPPING:
            for other in self.generations:
                if other is not generation:
                    retiring = self.services.sockets.steer_to(other.release)
                    await drain([s for _, s in retiring], ", ".join(b for b, _ in retiring))
        await generation.stop()
        if generation in self.generations:
            self.generations.remove(generation)
        self.services.sockets.forget(generation.release, [g.release for g in self.generations])
        releases = [g.release for g in self.generations] + ([keep] if keep else [])
        binds = {s.bind for r in releases for s in r.sockets.values()}
        self.services.sockets.retain_only(binds)

    # --- process commands, in the loop's turn -----------------------------------------------

    async def _apply(self, command: ProcessCommand) -> None:
        if self.active is None:
            command.fail(LookupError("no release is running"))
            return
        try:
            procs = self.active.find(command.target)
        except LookupError as exc:
            command.fail(exc)
            return
        if command.verb in ("restart", "stop"):
            for proc in procs:
                proc.request_stop()
            await self._wait_stopped(self.active, procs)
        if command.verb in ("restart", "start"):
            for proc in procs:
                proc.request_start()
        command.answer([p.name for p in procs])

    @staticmethod
    async def _wait_stopped(generation: Generation, procs: list[Process]) -> None:
        while not all(p.state is ProcState.STOPPED for p in procs):
            await generation.wait_changed()

    def status(self) -> dict[str, Any]:
        return snapshot(
            state=self.state.value,
            active=self.active,
            generations=self.generations,
            last_switch=self.last_switch,
            rejected=self.rejected,
            fallback=self.fallback.to_data() if self.fallback else None,
            refused=self.refused,
        )

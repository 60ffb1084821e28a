"""The daemon: the task tree, and the doors into the supervisor (signals, control socket).

Task tree (structured concurrency: cancellation is the stop path):

    root        output (one writer; pipes.py: one reader of every child's pipe in one
                epoll set), reaper (SIGCHLD, children.json), signals, control socket,
                systemd watchdog, --watch
      plugins   one runner per plugin, fed by the bus
        gens    one task per live generation -> one task per process (sleeping on its
                child's pidfd; a readiness check other than `after` in a task of its own
                while STARTING)
        loop    the supervisor (supervisor.py): first start, then one request at a time

One request stream (requests.py): SIGHUP, the control socket's `reload` and --watch put a
Reload (folded: a burst during a switch makes exactly one more); the control socket's
`restart`, `stop` and `start` put a ProcessCommand and wait for the supervisor to answer
it in its turn. The signal task only hands signals on; it does no work in signal context
(anyio delivers them to a task already).

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
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from supervisord_lite.daemon.bus import DaemonStarted
from supervisord_lite.daemon.control import serve_control
from supervisord_lite.daemon.heldsocket import HeldSocketCheck
from supervisord_lite.daemon.notify import SystemdNotifier, Vitals, run_watchdog
from supervisord_lite.daemon.output import Output
from supervisord_lite.daemon.requests import ProcessCommand, Reload, Verb
from supervisord_lite.daemon.services import Services
from supervisord_lite.daemon.startup import Start, seal_inherited_fds
from supervisord_lite.daemon.supervisor import Supervisor
from supervisord_lite.layout import DeployRoot

if TYPE_CHECKING:
    from supervisord_lite.daemon.plugins import PluginRunner

log = logging.getLogger("supervisord_lite.daemon")

PLUGIN_DRAIN = 5.0  # how long plugins may take over the last events at shutdown


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
        self.vitals = Vitals()
        self.supervisor = Supervisor(root, services, self.notifier, self.vitals)
        self._shutdown = anyio.Event()
        self.exit_code = 0

    async def run(self, start: Start) -> None:
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
                moved_to = self.root.current_release_id()
                if moved_to != start.release.id:
                    log.info("current moved to %s while starting: reloading", moved_to)
                    self.request_reload()
            self.bus.publish(DaemonStarted(os.getpid(), str(self.root.path)))
            async with anyio.create_task_group() as plugins:
                for runner in self._runners:
                    plugins.start_soon(runner.run)
                await self.supervisor.run(
                    start.release,
                    start.fallback,
                    self._shutdown,
                    stop_reason=lambda: self._stop_reason,
                    on_failed_start=self._failed_start,
                )
                self.bus.close()  # the runners deliver what is queued, then end
                plugins.cancel_scope.deadline = anyio.current_time() + PLUGIN_DRAIN
            for runner in self._runners:
                await runner.close()
            self.services.sockets.close_all()
            log.info("all stopped; exiting")
            await self.output.drain()
            self.output.close()
            root_tg.cancel_scope.cancel()

    def _failed_start(self) -> None:
        self.exit_code = 1
        self.request_shutdown()

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

    # --- control.ControlTarget ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self.supervisor.status()

    def request_reload(self) -> None:
        self.supervisor.requests.put(Reload())

    def request_shutdown(self) -> None:
        self.vitals.stopping()
        self._shutdown.set()

    async def restart(self, target: str | None) -> list[str]:
        return await self._command("restart", target)

    async def stop(self, target: str | None) -> list[str]:
        return await self._command("stop", target)

    async def start(self, target: str | None) -> list[str]:
        return await self._command("start", target)

    async def _command(self, verb: Verb, target: str | None) -> list[str]:
        """Queued behind any switch in progress; LookupError when nothing is named target."""
        command = ProcessCommand(verb, target)
        self.supervisor.requests.put(command)
        return await command.result()

    def log_tail(self, name: str | None, n: int) -> list[str]:
        return self.output.tail(name, n)

    def subscribe_logs(self, name: str | None) -> anyio.abc.ObjectReceiveStream[str]:
        return self.output.follow(name)

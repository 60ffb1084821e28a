"""One running release: its processes, whether they are all ready, and stopping them all.

A generation is created for a release and never edited: a switch makes a new one and
retires the old (gunicorn's lesson, and circus's 130 lines of patching live objects are
the counter-example). Its task (`run`) owns one task per process and returns when every
one of them has stopped after `stop()`; stopping is all at once, never one by one.

`wait_ready` is what a switch waits on: it returns when every process is RUNNING and
raises NotReady at the first failed start (an exit before ready, a ready timeout), with
the process's own reason. It wakes on state changes only (an Event made when someone
waits, set by the next change).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import anyio
import anyio.abc

from supervisord_lite.daemon.process import Process
from supervisord_lite.daemon.services import Services
from supervisord_lite.daemon.states import ProcState
from supervisord_lite.manifest import Release

FAILED = frozenset({ProcState.BACKOFF, ProcState.FATAL, ProcState.EXITED})


class NotReady(Exception):
    """A process of the generation failed before it was ready."""


def shared_address_checks(release: Release) -> list[str]:
    """Types whose tcp/http ready check targets one of their own held sockets.

    Any generation holding that socket answers such a check, so it cannot vouch for the
    new one: during a start-first switch the old processes pass it for the new ones.
    """
    found = []
    for spec in release.processes.values():
        if spec.ready.kind not in ("tcp", "http"):
            continue
        target = (
            urlsplit(spec.ready.target).netloc if spec.ready.kind == "http" else spec.ready.target
        )
        if any(release.sockets[name].bind == target for name in spec.sockets):
            found.append(spec.type)
    return found


class Generation:
    def __init__(self, release: Release, services: Services) -> None:
        self.release = release
        self.processes: list[Process] = [
            Process(services, release, spec, index, on_change=self._changed)
            for spec in release.processes.values()
            for index in range(1, spec.scale + 1)
        ]
        self._changed_event: anyio.Event | None = None  # only while someone waits
        self._done = anyio.Event()
        self._stopping = False

    def _changed(self, proc: Process | None) -> None:
        # called on every transition of every process: 2,000 at the start of 500
        if self._changed_event is not None:
            self._changed_event.set()
            self._changed_event = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Supervise every process until stop() has stopped them all."""
        try:
            async with anyio.create_task_group() as tg:
                for proc in self.processes:
                    tg.start_soon(proc.run, name=proc.name)
                task_status.started()
        finally:
            self._done.set()

    def all_running(self) -> bool:
        """Every process RUNNING, or done (a one-shot that exited 0: Process.done)."""
        return all(p.settled() for p in self.processes)

    async def wait_ready(self) -> None:
        """Return once all are RUNNING (or done); NotReady naming the first that failed."""
        while True:
            for proc in self.processes:
                if proc.done():
                    continue
                if proc.state in FAILED or proc.failures:
                    why = proc.error or proc.state.value
                    raise NotReady(f"{proc.name} ({self.release.id}): {why}")
            if self.all_running():
                return
            if self._stopping:
                raise NotReady(f"{self.release.id} was stopped before it was ready")
            await self.wait_changed()

    async def hold_running(self, seconds: float) -> None:
        """Return once all stayed RUNNING for seconds; NotReady at the first that did not."""
        with anyio.move_on_after(seconds):
            while True:
                for proc in self.processes:
                    if not proc.settled():
                        why = proc.error or f"left RUNNING ({proc.state.value})"
                        raise NotReady(f"{proc.name} ({self.release.id}): {why}")
                await self.wait_changed()

    async def wait_changed(self) -> None:
        """Return after the next state change of any of its processes."""
        if self._changed_event is None:
            self._changed_event = anyio.Event()
        await self._changed_event.wait()

    async def stop(self) -> None:
        """Stop every process at once and wait until all have exited."""
        self._stopping = True
        for proc in self.processes:
            proc.retire()
        self._changed(None)
        await self._done.wait()

    def find(self, target: str | None) -> list[Process]:
        """Processes named target (`web.1`), of type target (`web`), or all (None)."""
        if target is None:
            return list(self.processes)
        found = [p for p in self.processes if target in (p.name, p.spec.type)]
        if not found:
            raise LookupError(f"no process or type named {target}")
        return found

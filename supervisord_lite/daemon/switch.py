"""Switching between generations: start-first or stop-first, keeping the old on failure.

A switch never edits a live generation: it starts a whole new one and retires the old
one, or gives the new one up. start-first keeps the old release serving until every new
process is RUNNING (its readiness check passed); at the first failed start of a new
process (an exit, a ready timeout) the new generation is stopped and the old one never
noticed anything. stop-first stops the old release first (for apps that cannot run two
copies at once); if the new one then fails, a fresh generation of the old release is
started, because leaving the host with nothing running is the one outcome an operator
would not expect.

A tcp/http ready check aimed at the process's own daemon-held socket is answered by
whichever generation accepts first, so during a start-first switch the old processes
pass it for the new ones, and a release that crashes at start would look ready. For
such releases the new generation must also stay RUNNING for SETTLE seconds before the
old one is retired (Kubernetes calls it minReadySeconds); the daemon logs a warning
that the check should target the process's own port instead.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from supervisord_lite.daemon.bus import EventBus, SwitchDone, SwitchFailed, SwitchStarted
from supervisord_lite.daemon.generation import Generation, NotReady, shared_address_checks
from supervisord_lite.daemon.status import SwitchRecord
from supervisord_lite.manifest import Release

log = logging.getLogger(__name__)

SETTLE = 2.0


class Host(Protocol):
    """What a switch needs from the supervisor: starting and retiring generations."""

    bus: EventBus

    async def start_generation(self, release: Release) -> Generation: ...

    async def retire_generation(
        self, generation: Generation, *, keep: Release | None = None
    ) -> None: ...


class SwitchFailure(Exception):
    """The new release failed; `running` is the generation that runs instead."""

    def __init__(self, reason: NotReady, running: Generation | None) -> None:
        super().__init__(str(reason))
        self.running = running


async def switch(
    host: Host, old: Generation | None, new: Release
) -> tuple[SwitchRecord, Generation | None]:
    """Replace old with a generation of new: how it went, and the generation that runs."""
    from_id = old.release.id if old else None
    started = time.monotonic()
    log.info("switch %s -> %s (%s)", from_id, new.id, new.switch)
    host.bus.publish(SwitchStarted(from_id, new.id, new.switch))
    try:
        if new.switch == "stop-first":
            running = await stop_first(host, old, new)
        else:
            running = await start_first(host, old, new)
    except SwitchFailure as exc:
        error = f"{new.id} failed to start: {exc}"
        log.error("switch %s -> %s failed, %s keeps running: %s", from_id, new.id, from_id, exc)
        seconds = time.monotonic() - started
        host.bus.publish(SwitchFailed(from_id, new.id, error, seconds))
        return SwitchRecord(from_id, new.id, False, error, seconds, time.time()), exc.running
    seconds = time.monotonic() - started
    log.info("switch %s -> %s done in %.2f s", from_id, new.id, seconds)
    host.bus.publish(SwitchDone(from_id, new.id, seconds))
    return SwitchRecord(from_id, new.id, True, None, seconds, time.time()), running


async def start_first(host: Host, old: Generation | None, new: Release) -> Generation:
    try:
        generation = await host.start_generation(new)
    except NotReady as exc:
        raise SwitchFailure(exc, old) from None
    try:
        await generation.wait_ready()
        if old is not None and shared_address_checks(new):
            # the old generation answered those checks too: staying up must vouch instead
            await generation.hold_running(SETTLE)
    except NotReady as exc:
        await host.retire_generation(generation)
        raise SwitchFailure(exc, old) from None
    if old is not None:
        await host.retire_generation(old)
    return generation


async def stop_first(host: Host, old: Generation | None, new: Release) -> Generation:
    if old is not None:
        # the sockets both releases declare stay open: no connection is refused between
        await host.retire_generation(old, keep=new)
    try:
        generation = await host.start_generation(new)
    except NotReady as exc:
        raise SwitchFailure(exc, await start_again(host, old)) from None
    try:
        await generation.wait_ready()
    except NotReady as exc:
        await host.retire_generation(generation, keep=old.release if old else None)
        raise SwitchFailure(exc, await start_again(host, old)) from None
    return generation


async def start_again(host: Host, old: Generation | None) -> Generation | None:
    """After a failed stop-first switch: the old release, since nothing runs otherwise."""
    if old is None:
        return None
    log.warning("stop-first switch failed: starting %s again", old.release.id)
    try:
        return await host.start_generation(old.release)
    except NotReady as exc:
        log.error("cannot start %s again: %s", old.release.id, exc)
        return None

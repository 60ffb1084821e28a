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
    """What a switch needs from the daemon: starting, retiring and naming generations."""

    active: Generation | None
    bus: EventBus

    async def start_generation(self, release: Release) -> Generation: ...

    async def retire_generation(
        self, generation: Generation, *, keep: Release | None = None
    ) -> None: ...


async def switch(host: Host, new: Release) -> SwitchRecord:
    """Replace the active generation with one of new; the record says how it went."""
    old = host.active
    from_id = old.release.id if old else None
    started = time.monotonic()
    log.info("switch %s -> %s (%s)", from_id, new.id, new.switch)
    host.bus.publish(SwitchStarted(from_id, new.id, new.switch))
    try:
        if new.switch == "stop-first":
            await stop_first(host, old, new)
        else:
            await start_first(host, old, new)
    except NotReady as exc:
        error = f"{new.id} failed to start: {exc}"
        log.error("switch %s -> %s failed, %s keeps running: %s", from_id, new.id, from_id, exc)
        seconds = time.monotonic() - started
        host.bus.publish(SwitchFailed(from_id, new.id, error, seconds))
        return SwitchRecord(from_id, new.id, False, error, seconds, time.time())
    seconds = time.monotonic() - started
    log.info("switch %s -> %s done in %.2f s", from_id, new.id, seconds)
    host.bus.publish(SwitchDone(from_id, new.id, seconds))
    return SwitchRecord(from_id, new.id, True, None, seconds, time.time())


async def start_first(host: Host, old: Generation | None, new: Release) -> None:
    generation = await host.start_generation(new)
    try:
        await generation.wait_ready()
        if old is not None and shared_address_checks(new):
            # the old generation answered those checks too: staying up must vouch instead
            await generation.hold_running(SETTLE)
    except NotReady:
        await host.retire_generation(generation)
        raise
    host.active = generation
    if old is not None:
        await host.retire_generation(old)


async def stop_first(host: Host, old: Generation | None, new: Release) -> None:
    if old is not None:
        # the sockets both releases declare stay open: no connection is refused between
        await host.retire_generation(old, keep=new)
    generation = await host.start_generation(new)
    host.active = generation
    try:
        await generation.wait_ready()
    except NotReady:
        await host.retire_generation(generation, keep=old.release if old else None)
        if old is not None:
            log.warning("stop-first switch failed: starting %s again", old.release.id)
            host.active = await host.start_generation(old.release)
        raise

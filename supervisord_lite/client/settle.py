"""Waiting for the daemon to settle after a reload or an activation: one poll loop for
`supervisord-lite reload --wait` and `brr-release activate --wait`.

The daemon pushes nothing to a client that is not following logs, so the loop polls
`status` every POLL_INTERVAL (a short command polling a local socket costs nothing).
What "settled" means is the caller's rule, a function of one status object: None while
not settled, "" once it succeeded, else why it failed. The caller takes its `since`
before it sends the request or the signal, so a switch that finishes at once is not
missed.

A daemon that cannot be reached ends the wait at once, unless the caller gives it a
`grace`: `activate --wait` may run a moment after systemd started the daemon, which then
needs a few seconds to import and bind; the wait goes on while a daemon process exists,
and gives up `grace` seconds after the start when none does (DaemonAbsent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from supervisord_lite.client.connection import daemon_pid, fetch_status
from supervisord_lite.errors import OperationFailed
from supervisord_lite.layout import DeployRoot

POLL_INTERVAL = 0.1

Outcome = Callable[[dict[str, Any]], str | None]


class DaemonAbsent(OperationFailed):
    """No daemon answered, and no daemon process appeared within the grace."""


class NotSettled(OperationFailed):
    """The timeout passed first; `last` is the last status seen (may be empty)."""

    def __init__(self, message: str, last: dict[str, Any]) -> None:
        super().__init__(message)
        self.last = last


class Settled(NamedTuple):  # not a dataclass: see layout.DeployRoot
    status: dict[str, Any]
    error: str  # "" when the reload or the switch succeeded


def wait_settled(
    root: DeployRoot, outcome: Outcome, *, timeout: float, grace: float | None = None
) -> Settled:
    """Poll the daemon's status until outcome(status) is not None, for at most timeout."""
    started = time.monotonic()
    deadline = started + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = fetch_status(root)
        except OperationFailed as exc:
            if grace is None:
                raise
            if daemon_pid(root) is None and time.monotonic() > started + grace:
                raise DaemonAbsent(exc.message) from None
        else:
            result = outcome(last)
            if result is not None:
                return Settled(last, result)
        time.sleep(POLL_INTERVAL)
    raise NotSettled(f"not settled within {timeout:g} s", last)

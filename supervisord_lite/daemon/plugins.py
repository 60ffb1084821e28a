"""Plugins: entry points in `supervisord_lite.plugins`, a small Protocol, and a runner each.

A plugin is whatever the entry point names (usually a class), called with its options
(`--plugin-opt NAME.KEY=VALUE`, as a dict of strings), returning an object with an async
`on_event(event)`. Optional: `ready_checks()` returning {kind: async check} added to the
readiness registry, and an async `aclose()` called at shutdown.

Each plugin gets its own bus subscription and one task (`PluginRunner.run`) that feeds it
events in order. The daemon never waits for a plugin: a slow one loses events (the bus
counts them), a call that takes longer than `event_timeout` is cancelled, one that raises
is logged with its traceback once (then one line each time), and after `max_failures`
failures in a row the plugin is disabled. `aclose` is bounded by `close_timeout`.

Rejected: plugins as separate processes (one more thing to supervise, and events would
need a wire format for no gain at this size); a metaclass or decorator registry (entry
points are the packaging system's own registry).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import anyio

from supervisord_lite.daemon.bus import Event, EventBus, Subscription
from supervisord_lite.errors import BadInput

log = logging.getLogger(__name__)

GROUP = "supervisord_lite.plugins"


@runtime_checkable
class Plugin(Protocol):
    async def on_event(self, event: Event) -> None: ...


ReadyCheckFn = Callable[..., Awaitable[None]]


def parse_plugin_opts(items: Sequence[str], enabled: Sequence[str]) -> dict[str, dict[str, str]]:
    """`NAME.KEY=VALUE` items -> {NAME: {KEY: VALUE}}; BadInput for a malformed one."""
    out: dict[str, dict[str, str]] = {name: {} for name in enabled}
    for item in items:
        target, sep, value = item.partition("=")
        name, dot, key = target.partition(".")
        if not sep or not dot or not name or not key:
            raise BadInput(f"--plugin-opt {item!r}: expected NAME.KEY=VALUE")
        if name not in out:
            raise BadInput(f"--plugin-opt {item!r}: plugin {name!r} is not enabled (--plugin)")
        out[name][key] = value
    return out


def available() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_plugins(options: Mapping[str, Mapping[str, str]]) -> dict[str, Plugin]:
    """Instantiate each named plugin with its options; BadInput (one line) on failure."""
    found = available()
    plugins: dict[str, Plugin] = {}
    for name, opts in options.items():
        if name not in found:
            known = ", ".join(sorted(found)) or "none"
            raise BadInput(f"no plugin named {name!r} (installed: {known})")
        try:
            factory = found[name].load()
            plugin = factory(dict(opts))
        except BadInput:
            raise
        except Exception as exc:
            raise BadInput(f"plugin {name}: cannot start: {type(exc).__name__}: {exc}") from None
        if not isinstance(plugin, Plugin):
            raise BadInput(f"plugin {name}: has no async on_event(event)")
        plugins[name] = plugin
    return plugins


def ready_checks_of(plugin: Plugin) -> dict[str, ReadyCheckFn]:
    hook = getattr(plugin, "ready_checks", None)
    return dict(hook()) if callable(hook) else {}


@dataclass
class PluginRunner:
    name: str
    plugin: Plugin
    subscription: Subscription
    event_timeout: float = 5.0
    close_timeout: float = 5.0
    max_failures: int = 3
    failures: int = 0
    delivered: int = 0
    disabled: bool = False
    _traceback_shown: bool = False

    async def run(self) -> None:
        """Deliver events until the subscription closes or the plugin is disabled."""
        async with self.subscription.receive:
            async for event in self.subscription.receive:
                await self._deliver(event)
                if self.disabled:
                    return

    async def _deliver(self, event: Event) -> None:
        try:
            with anyio.fail_after(self.event_timeout):
                await self.plugin.on_event(event)
        except TimeoutError:
            self._failed(f"on_event({event.kind}) took over {self.event_timeout:g} s: cut off")
        except Exception as exc:
            if not self._traceback_shown:
                self._traceback_shown = True
                log.exception("plugin %s: on_event(%s) raised", self.name, event.kind)
            self._failed(f"on_event({event.kind}) raised {type(exc).__name__}: {exc}")
        else:
            self.delivered += 1
            self.failures = 0

    def _failed(self, why: str) -> None:
        self.failures += 1
        log.error("plugin %s: %s (%d in a row)", self.name, why, self.failures)
        if self.failures >= self.max_failures:
            self.disabled = True
            log.error("plugin %s: disabled after %d failures in a row", self.name, self.failures)

    async def close(self) -> None:
        """Call the plugin's aclose, if any, bounded by close_timeout."""
        hook = getattr(self.plugin, "aclose", None)
        if not callable(hook):
            return
        with anyio.move_on_after(self.close_timeout) as scope:
            try:
                await hook()
            except Exception as exc:
                log.error("plugin %s: aclose raised %s: %s", self.name, type(exc).__name__, exc)
        if scope.cancelled_caught:
            log.error("plugin %s: aclose took over %g s: cut off", self.name, self.close_timeout)


def make_runners(
    bus: EventBus,
    plugins: Mapping[str, Plugin],
    *,
    event_timeout: float = 5.0,
    close_timeout: float = 5.0,
) -> list[PluginRunner]:
    """One subscription and runner per plugin; run each `runner.run` in the daemon's group."""
    return [
        PluginRunner(
            name,
            plugin,
            bus.subscribe(f"plugin:{name}"),
            event_timeout=event_timeout,
            close_timeout=close_timeout,
        )
        for name, plugin in plugins.items()
    ]

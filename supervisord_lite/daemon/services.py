"""What every process task shares, one of each, owned by the daemon: the output, the
reaper, the readiness registry, the held sockets, the event bus, the policy's clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from supervisord_lite.daemon.bus import EventBus
from supervisord_lite.daemon.output import Output
from supervisord_lite.daemon.ready import ReadyRegistry
from supervisord_lite.daemon.reaper import Reaper
from supervisord_lite.daemon.sockets import SocketPool
from supervisord_lite.layout import DeployRoot


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
    clock: Callable[[], float] = time.monotonic  # the policy's time; tests give their own
    notes: dict[int, str] = field(default_factory=dict)  # pid -> a warning for `status`
    _app_dirs: dict[str, Path] = field(default_factory=dict)

    def app_dir(self, build: str) -> Path:
        """The working directory of a build's processes: one Path for all 500 of them."""
        found = self._app_dirs.get(build)
        if found is None:
            found = self._app_dirs[build] = self.root.build_app(build)
        return found

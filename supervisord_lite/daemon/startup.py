"""What the daemon finds when it starts: the release to run, and descriptors it inherited.

The release: `current`, else `run/last-good` (the last release a daemon ran), loudly;
neither usable is ConfigMissing (exit 78), since a daemon with nothing to run is a
configuration error systemd should not restart in a loop. `current` counts as unusable
too when this daemon (or an earlier one) refused it and nobody activated it since
(refusals.refused_at_boot): a failed deploy at 5 p.m. must not be the outage of the
3 a.m. reboot. Reloads use load_manifest alone: once running, an unusable `current` is
rejected and the old release kept.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from supervisord_lite import refusals
from supervisord_lite.errors import BrrError, ConfigMissing
from supervisord_lite.layout import DeployRoot
from supervisord_lite.manifest import Release, load_release

log = logging.getLogger("supervisord_lite.daemon")


def seal_inherited_fds() -> list[int]:
    """Make every descriptor >= 3 close-on-exec; those that were not, in order.

    The daemon creates its own descriptors close-on-exec (PEP 446), and it adopts none
    from systemd (no LISTEN_FDS of its own: sockets.py binds), so an inheritable one was
    inherited. It is left open: closing it could harm whoever shares it, while keeping
    it only in the daemon costs nothing. /proc is needed anyway (reaper.py).
    """
    sealed = []
    for fd in sorted(int(name) for name in os.listdir("/proc/self/fd")):
        try:
            if fd >= 3 and os.get_inheritable(fd):
                os.set_inheritable(fd, False)
                sealed.append(fd)
        except OSError:  # the listing's own descriptor, closed since
            continue
    return sealed


def load_manifest(link: Path, root: DeployRoot) -> Release:
    """The release a symlink (current, last-good) names; ValidationError when unusable."""
    return load_release(Path(os.path.realpath(link)) / "release.yaml", builds_dir=root.builds)


@dataclass(frozen=True)
class Fallback:
    """last-good runs instead of `current` (current_id, None when it names nothing)."""

    current_id: str | None
    running_id: str
    reason: str

    def text(self) -> str:
        what = f"current {self.current_id}" if self.current_id else "current"
        return f"{what} not run ({self.reason}): FALLING BACK to last-good {self.running_id}"

    def to_data(self) -> dict[str, str | None]:
        return {"current": self.current_id, "running": self.running_id, "reason": self.reason}


@dataclass(frozen=True)
class Start:
    release: Release
    fallback: Fallback | None = None


def load_first(root: DeployRoot) -> Start:
    """current, else run/last-good (loudly); ConfigMissing when neither is usable."""
    current_id = root.current_release_id()
    refused = refusals.refused_at_boot(root, current_id) if current_id else None
    if refused is not None:
        problem = f"refused at {time.strftime('%F %T', time.localtime(refused.at))}: "
        problem += refused.reason
    else:
        try:
            return Start(load_manifest(root.current, root))
        except BrrError as exc:
            problem = exc.message
    release = load_last_good(root, problem)
    if release is None:
        raise ConfigMissing(f"no release to run: {problem}; and no {root.last_good}")
    fallback = Fallback(current_id, release.id, problem)
    log.error("%s", fallback.text())
    return Start(release, fallback)


def load_last_good(root: DeployRoot, problem: str) -> Release | None:
    """run/last-good's release, None when there is none; ConfigMissing when unusable."""
    if not os.path.lexists(root.last_good):
        return None
    try:
        return load_manifest(root.last_good, root)
    except BrrError as exc:
        raise ConfigMissing(f"no release to run: {problem}; last-good: {exc.message}") from None

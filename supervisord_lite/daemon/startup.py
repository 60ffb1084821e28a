"""What the daemon finds when it starts: the release to run, and descriptors it inherited.

The release: `current`, else `run/last-good` (the last release a daemon ran), loudly;
neither usable is ConfigMissing (exit 78), since a daemon with nothing to run is a
configuration error systemd should not restart in a loop. Reloads use load_manifest
alone: once running, an unusable `current` is rejected and the old release kept.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

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


def load_first(root: DeployRoot) -> Release:
    """current, else run/last-good (loudly); ConfigMissing when neither is usable."""
    try:
        return load_manifest(root.current, root)
    except BrrError as exc:
        problem = exc.message
    if not os.path.lexists(root.last_good):
        raise ConfigMissing(f"no release to run: {problem}; and no {root.last_good}")
    try:
        release = load_manifest(root.last_good, root)
    except BrrError as exc:
        raise ConfigMissing(f"no release to run: {problem}; last-good: {exc.message}") from None
    log.error("current is unusable (%s); FALLING BACK to last-good %s", problem, release.id)
    return release

"""The daemon's own resource limits, raised at start so that a big formation fits.

Each process costs the daemon two or three descriptors (its output pipe, its pidfd, a
notify socket): with the usual soft RLIMIT_NOFILE of 1024, scale 600 would leave no
descriptor for a control client or a state write. The hard limit is what the operator
(or systemd's LimitNOFILE=) allows, so the daemon takes all of it. Its children inherit
the raised limit (posix_spawn cannot set one per child; systemd itself raises the soft
limit of its services the same way since v240), which only a program that still uses
select(2) on descriptors past 1024 could notice.
"""

from __future__ import annotations

import contextlib
import resource


def raise_nofile() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard one; returns (old soft, new soft)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]

"""One daemon per root: run/daemon.lock (flock) for its life, and run/supervisord-lite.pid.

The flock is the truth: the kernel drops it when the daemon dies, even by SIGKILL, so
a stale pidfile can never keep a new daemon out, and two daemons starting at the same
moment cannot both win (checking the pidfile and then writing it would be a race). The
pidfile is for the outside (brr-release sends SIGHUP to it): written atomically after
the lock is held, removed at exit, overwritten when a killed daemon left one behind.
run/daemon.lock is not run/lock: that one is held by brr-release writers for a moment,
this one by the daemon for its whole life.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from supervisord_lite import nofollow
from supervisord_lite.errors import OperationFailed
from supervisord_lite.fsatomic import write_file
from supervisord_lite.layout import DeployRoot


def lock_path(root: DeployRoot) -> os.PathLike[str]:
    return root.run_dir / "daemon.lock"


@contextmanager
def hold_daemon_lock(root: DeployRoot) -> Iterator[None]:
    """Hold the daemon lock and the pidfile; OperationFailed if another daemon runs."""
    # never through a planted symlink: root would create its target (nofollow.py)
    fd = nofollow.open_file(root.path, "run/daemon.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = root.pidfile.read_text().strip() if root.pidfile.exists() else "?"
            raise OperationFailed(
                f"another supervisord-lite runs on {root.path} (pid {other}); not starting"
            ) from None
        write_file(root.pidfile, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                if root.pidfile.read_text().strip() == str(os.getpid()):
                    root.pidfile.unlink()
    finally:
        os.close(fd)

"""Becoming the subreaper of the daemon's children (prctl PR_SET_CHILD_SUBREAPER, see
reaper.py), through ctypes since Python has no prctl.

The first image of `run` does it before it execs the daemon's own (runner.py): the
attribute survives execve (prctl(2)), so the image that runs for months never loads
ctypes (0.3 MB of its RSS, issue 16).
"""

from __future__ import annotations

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Whether this process is now its descendants' subreaper."""
    import ctypes  # here: only the image that calls it pays for ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False

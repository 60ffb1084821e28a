"""The staging directory of a build: the same path for every build of a root, when it can.

Build steps may write the path they run in into what they make: pip records the URL of
a local wheel (`file:///.../builds/<staging>/app/wheels/x.whl`) in `direct_url.json`,
a tool its own absolute path in a generated file. A random staging name would then give
every build of the same source a new build ID. So a build stages in `builds/.stage-0`,
held by an flock on `build-cache/stage-0.lock` for as long as the build runs; a second
build at the same moment takes `.stage-1`, and so on. Builds one after the other (the
usual case) all run in `.stage-0`. A staging directory whose lock is free is what a
killed build left behind: the next build to take the slot removes it first.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from supervisord_lite import fsatomic

SLOTS = 16  # more builds at once than this stage under a random name


@dataclass(frozen=True)
class Staging:
    path: Path
    lock_fd: int | None  # held until the build is published or discarded

    def release(self) -> None:
        """Drop the directory if it is still there, then the slot."""
        if self.path.exists():
            fsatomic.make_writable(self.path)
            shutil.rmtree(self.path, ignore_errors=True)
        if self.lock_fd is not None:
            os.close(self.lock_fd)


def claim(builds: Path, locks: Path) -> Staging:
    """The first free slot's directory (not yet created), or a random temp name.

    The slots' lock files live in locks (the build cache), not in builds/, which holds
    builds only.
    """
    mode = 0o660 if builds.stat().st_mode & stat.S_ISGID else 0o600
    for n in range(SLOTS):
        lock = locks / f"stage-{n}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        slot = Staging(builds / f".stage-{n}", fd)
        try:
            remove_leftover(slot.path)
        except BaseException:
            os.close(fd)
            raise
        return slot
    return Staging(fsatomic.temp_name(builds), None)


def remove_leftover(path: Path) -> None:
    """Remove what a killed build left at path; a planted symlink is removed, not followed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    fsatomic.make_writable(path)
    shutil.rmtree(path)

"""Opening paths under ROOT without following a symlink someone planted there.

Every member of the deploy group can write under ROOT, and the tools run as root: a
symlink at `ledger.jsonl`, `run/lock` or `logs/` would make root write, create, chmod or
chown whatever it points at. So a writer never opens such a path by name. It opens the
top directory (ROOT, or a log directory: named by the operator, so trusted), then each
component below it with openat(2) and O_NOFOLLOW from the directory fd above, and
works on the fd it got (fchmod, fchown, flock, write). A symlink anywhere below the top
is refused with one line naming it; nothing outside the top is touched, not even
looked at. A hard link would do the same harm as a symlink where the kernel lets an
unprivileged user make one (fs.protected_hardlinks=0): files opened for a change of
owner or mode must have a single link.

A Unix socket cannot be connected to with O_NOFOLLOW, but it can through
/proc/self/fd/N of an O_PATH fd opened without following: `socket_path_fd` gives that fd.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from supervisord_lite.errors import OperationFailed

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PlantedLink(OperationFailed):
    """A symlink (or something else) where a file or directory of ROOT belongs."""


def refusal(path: Path, what: str) -> PlantedLink:
    try:
        st = os.lstat(path)
    except OSError:
        return PlantedLink(f"{path} is not a {what} (refusing to follow it)")
    if stat.S_ISLNK(st.st_mode):
        return PlantedLink(f"{path} is a symlink, not a {what}: refusing to follow it (remove it)")
    return PlantedLink(f"{path} is not a {what}: refusing to use it (remove it)")


def open_dir(top: Path, rel: str = "", *, create: bool = False) -> int:
    """An fd of top/rel, a real directory; each component below top opened with O_NOFOLLOW.

    With create, missing components are made (mode 0755 less the umask). Raises
    PlantedLink for a symlink or a non-directory below top, OSError otherwise.
    """
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    here = top
    try:
        for part in Path(rel).parts:
            here = here / part
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            try:
                below = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                    raise refusal(here, "directory") from None
                raise
            os.close(fd)
            fd = below
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(top: Path, rel: str, flags: int, mode: int = 0o640) -> int:
    """An fd of the regular file top/rel opened with flags, never through a symlink.

    Raises PlantedLink when a component is a symlink or the file is not a regular one.
    """
    parent, name = os.path.split(rel)
    dir_fd = open_dir(top, parent)
    # O_NONBLOCK: a FIFO planted there must not hang the opener (it is refused below)
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        try:
            fd = os.open(name, flags, mode, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise refusal(top / rel, "file") from None
            raise
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refusal(top / rel, "regular file")
    os.set_blocking(fd, True)
    return fd


def require_single_link(fd: int, path: Path) -> None:
    """Refuse to change the owner or mode of a file that has another name somewhere."""
    if os.fstat(fd).st_nlink > 1:
        raise PlantedLink(f"{path} has more than one hard link: refusing to change it (remove it)")


@contextlib.contextmanager
def socket_path_fd(path: Path) -> Iterator[str]:
    """A name to connect(2) to that reaches the socket at path, never through a symlink.

    Neither the socket nor its directory may be a symlink: a planted one could send a
    `shutdown` meant for this root to another root's daemon.
    """
    dir_fd = open_dir(path.parent.parent, path.parent.name) if path.parent.name else None
    try:
        try:
            fd = os.open(
                path.name if dir_fd is not None else path,
                os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                dir_fd=dir_fd,
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise refusal(path, "socket") from None
            raise
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISLNK(mode):
            raise refusal(path, "socket")
        if not stat.S_ISSOCK(mode):
            raise PlantedLink(f"{path} is not a socket")
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)

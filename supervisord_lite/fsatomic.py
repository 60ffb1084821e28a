"""Atomic publication of files, directories and symlinks.

The only module that knows the dance: write under a temp name in the same directory,
fsync, rename over the final name, fsync the directory. A reader (or a machine that lost
power) sees the old thing or the new one, never half of one. Temp names start with
`.tmp-<pid>-` so a later writer can tell a stale one (its writer is dead) from one in use.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from supervisord_lite.layout import TEMP_PREFIX


def temp_name(directory: Path, hint: str = "") -> Path:
    return directory / f"{TEMP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}{hint}"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace path with data atomically, with the given mode.

    Raises OSError naming path (not its temp name, which is gone by then); path is
    untouched. It stays an OSError, not an OperationFailed: the daemon writes its
    pidfile with this too and handles OSError itself.
    """
    tmp = temp_name(path.parent)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # the first error is the one to report
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            name_file(exc, path)
        raise
    fsync_dir(path.parent)


def name_file(exc: OSError, path: Path) -> None:
    """Make exc name path: errors of write(2) and fsync(2) name no file by themselves."""
    exc.filename, exc.filename2 = str(path), None


def fsync_tree(top: Path) -> None:
    """Make every file and directory under top durable.

    syncfs(2) flushes the whole filesystem in one call: for a build of 20,000 files that
    is one syscall instead of 20,000 fsyncs (seconds instead of tens of seconds). Where
    it is missing, fall back to fsync of each entry, deepest first.
    """
    if syncfs(top):
        return
    for dirpath, _dirnames, filenames in os.walk(top, topdown=False):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if stat.S_ISREG(os.lstat(p).st_mode):
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(Path(dirpath))


def syncfs(path: Path) -> bool:
    """syncfs(2) on the filesystem holding path; False where it is unavailable."""
    import ctypes  # here: only builds call it, and the daemon need not load it for them

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return bool(call(fd) == 0)
    finally:
        os.close(fd)


def publish_dir(tmp: Path, final: Path) -> bool:
    """Rename a fully written temp directory to final; False if final already exists.

    The tree must already be fsynced. rename(2) of a directory onto an existing
    non-empty directory fails, which is what makes a content-addressed publish safe
    against a concurrent writer of the same content.
    """
    try:
        os.rename(tmp, final)
    except OSError:
        if final.exists():
            return False
        raise
    fsync_dir(final.parent)
    return True


def replace_symlink(link: Path, target: str) -> None:
    """Point link at target with one rename: there is no moment without a link.

    Raises OSError naming link; link is untouched then.
    """
    tmp = temp_name(link.parent, ".link")
    try:
        os.symlink(target, tmp)
        try:
            os.replace(tmp, link)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        name_file(exc, link)
        raise
    fsync_dir(link.parent)


def make_writable(top: Path) -> None:
    """Give the owner write access back on a frozen tree, so it can be removed.

    Through directory fds (fwalk) and files opened with O_NOFOLLOW: the tree lies in a
    directory the deploy group can write, and a link swapped in mid-walk must not get
    root to chmod its target.
    """
    for _dirpath, _dirnames, filenames, dir_fd in os.fwalk(top):
        os.fchmod(dir_fd, os.fstat(dir_fd).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        for name in filenames:
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            try:
                fd = os.open(name, flags, dir_fd=dir_fd)
            except OSError:  # a symlink (ELOOP), or unreadable: rmtree removes it as is
                continue
            try:
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode):
                    os.fchmod(fd, st.st_mode | stat.S_IWUSR)
            finally:
                os.close(fd)


def remove_tree(top: Path) -> None:
    """Remove a (possibly frozen) tree; first renamed to a temp name so no half is seen."""
    if not top.exists() and not top.is_symlink():
        return
    doomed = temp_name(top.parent, ".rm")
    os.rename(top, doomed)
    fsync_dir(top.parent)
    make_writable(doomed)
    import shutil  # here: it brings zlib, bz2 and lzma, which the daemon need not keep

    shutil.rmtree(doomed)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: Path) -> list[str]:
    """Remove temp entries whose writer is dead; returns the names removed.

    Call with the root's lock held. An entry of a live writer (a build still staging)
    is left alone.
    """
    removed: list[str] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        pid_part = entry.name[len(TEMP_PREFIX) :].split("-", 1)[0]
        if pid_part.isdigit() and pid_alive(int(pid_part)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            import shutil

            make_writable(entry)
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed

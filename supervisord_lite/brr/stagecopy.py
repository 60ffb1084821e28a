"""Copy the selected source files into a staging directory: in parallel, sparse, faithful.

- A sparse file is copied region by region (SEEK_DATA/SEEK_HOLE): a 2 GB file that is
  mostly hole stays a few blocks of real disk in the build, as it was in the source.
- Each file is hashed as it is written: a build without steps needs no second read of
  its files for its digest.
- Each file keeps its source mtime: tools that byte-compile (compileall, pip) record it
  in what they write, so a copy stamped "now" would make every build of the same source
  differ.
- Each file gets the mode it will have frozen (digest.frozen_mode), plus the owner's
  write bit while build steps may still change it.
- Many files are copied at once on threads: the syscalls release the GIL, and a build of
  20,000 small files is a long row of open/copy/close that one thread would do in turn.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from supervisord_lite import fsatomic
from supervisord_lite.brr.digest import (
    CHUNK,
    Entry,
    data_regions,
    feed_zeros,
    frozen_mode,
    in_parallel,
)
from supervisord_lite.brr.sourcetree import unreadable
from supervisord_lite.errors import BadInput


@dataclass(frozen=True)
class SourceTree:
    """The selected entries of a source, looked at once: files, links and directories."""

    src: Path
    files: dict[str, os.stat_result]
    links: dict[str, str]

    def entries(self) -> list[Entry]:
        """What the bundle will hold before build steps, with its frozen modes."""
        top = os.fsencode(self.src)
        out = [
            Entry(
                os.fsencode(rel), "F", frozen_mode(st.st_mode), os.path.join(top, os.fsencode(rel))
            )
            for rel, st in self.files.items()
        ]
        out += [Entry(os.fsencode(r), "L", 0, os.fsencode(t)) for r, t in self.links.items()]
        out += [Entry(os.fsencode(d), "D", 0o555) for d in self.directories()]
        return out

    @functools.cached_property
    def dirs(self) -> list[str]:
        """Every directory the entries need, parents first."""
        found: set[str] = set()
        for rel in (*self.files, *self.links):
            pos = rel.rfind("/")
            while pos > 0 and rel[:pos] not in found:
                found.add(rel[:pos])
                pos = rel.rfind("/", 0, pos)
        return sorted(found)

    def directories(self) -> list[str]:
        return self.dirs


def look(src: Path, selected: list[str]) -> SourceTree:
    """lstat each selected path; a link's target is read, anything else but a file refused."""
    files: dict[str, os.stat_result] = {}
    links: dict[str, str] = {}
    top = str(src)
    for rel in selected:
        path = os.path.join(top, rel)
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                links[rel] = os.readlink(path)
                continue
        except OSError as exc:
            raise unreadable(Path(path), exc) from None
        if not stat.S_ISREG(st.st_mode):
            raise BadInput(f"{path}: not a regular file or symlink; cannot go into a build")
        files[rel] = st
    return SourceTree(src, files, links)


def copy_tree(tree: SourceTree, dest: Path, *, writable: bool) -> dict[bytes, bytes]:
    """Copy tree into dest (created); the SHA-256 of each file as written, by rel path.

    OSError names the file written when space runs out.
    """
    dest.mkdir(parents=True)
    src, out = str(tree.src), str(dest)
    for d in tree.directories():
        os.mkdir(os.path.join(out, d))
    for rel, target in tree.links.items():
        os.symlink(target, os.path.join(out, rel))
    extra = stat.S_IWUSR if writable else 0
    jobs = [
        (os.path.join(src, rel), os.path.join(out, rel), frozen_mode(st.st_mode) | extra, st)
        for rel, st in tree.files.items()
    ]
    # files are created with their final mode (no chmod each): the umask must not cut it
    umask = os.umask(0)
    try:
        sums = in_parallel(copy_one, jobs)
    finally:
        os.umask(umask)
    return dict(zip((os.fsencode(r) for r in tree.files), sums, strict=True))


def copy_one(job: tuple[str, str, int, os.stat_result]) -> bytes:
    """Copy one file, hashing what is written (the build's digest needs no second read).

    st is the file's lstat from the selection: its size, holes and times are what the
    copy keeps. Six syscalls for a small file: open, open, read, write, futimens, close x2.
    """
    src, dest, mode, st = job
    try:
        # O_NONBLOCK: a file swapped for a FIFO after the selection must not hang the build
        fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise unreadable(Path(src), exc) from None
    h = hashlib.sha256()
    try:
        fd_out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            if st.st_blocks * 512 < st.st_size:
                copy_sparse(fd_in, fd_out, st.st_size, h)
            else:
                copy_whole(fd_in, fd_out, h)
            os.utime(fd_out, ns=(st.st_atime_ns, st.st_mtime_ns))
        except OSError as exc:
            if exc.filename is None:  # write errors name nothing by themselves
                fsatomic.name_file(exc, Path(dest))
            raise
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
    return h.digest()


def copy_whole(fd_in: int, fd_out: int, h: hashlib._Hash) -> None:
    while True:
        chunk = os.read(fd_in, CHUNK)
        h.update(chunk)
        write_all(fd_out, chunk)
        if len(chunk) < CHUNK:  # a short read of a regular file is its end: no extra read
            return


def write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        if offset is not None:
            offset += n
        view = view[n:]


def copy_sparse(fd_in: int, fd_out: int, size: int, h: hashlib._Hash) -> None:
    """Copy the data regions only; the holes stay holes (ftruncate sets the length)."""
    for hole, offset, chunk in data_regions(fd_in, size):
        feed_zeros(h, hole)
        h.update(chunk)
        write_all(fd_out, chunk, offset)
    os.ftruncate(fd_out, size)

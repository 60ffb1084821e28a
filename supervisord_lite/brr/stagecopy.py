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
- Many files are copied at once, in forked processes (forked.py says why not threads):
  a build of 20,000 small files is a long row of open/copy/close that one process would
  do in turn. A unit is one directory's files, opened by name in the directory's fd.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from supervisord_lite import fsatomic
from supervisord_lite.brr import forked
from supervisord_lite.brr.digest import (
    CHUNK,
    FORK_FROM,
    Entry,
    data_regions,
    feed_zeros,
    frozen_mode,
    workers,
)
from supervisord_lite.brr.sourcetree import unreadable
from supervisord_lite.errors import BadInput

R = TypeVar("R")
UNIT = 256  # files of one directory per unit: enough to spread, few enough to balance
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
# O_PATH: a directory the files are opened in needs search permission only, as for a path
DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


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
    # files are created with their final mode (no chmod each): the umask must not cut it
    umask = os.umask(0)
    try:
        done = in_units(lambda unit: copy_unit(src, out, unit), units(tree.files, extra))
    finally:
        os.umask(umask)
    return dict(done)


@dataclass(frozen=True)
class Unit:
    """Files of one directory, copied by one worker: each is opened relative to its
    directory's fd (no path walk per file), and the workers mostly create in different
    directories (a create holds its directory's lock)."""

    dir: str  # relative to the top; "" for the top itself
    files: list[tuple[str, int, os.stat_result]]  # (name, mode to create, lstat)


def units(files: dict[str, os.stat_result], extra: int) -> list[Unit]:
    by_dir: dict[str, list[tuple[str, int, os.stat_result]]] = {}
    for rel, st in files.items():
        d, _, name = rel.rpartition("/")
        by_dir.setdefault(d, []).append((name, frozen_mode(st.st_mode) | extra, st))
    return [
        Unit(d, items[i : i + UNIT])
        for d, items in by_dir.items()
        for i in range(0, len(items), UNIT)
    ]


def in_units(work: Callable[[Unit], list[R]], items: list[Unit]) -> list[R]:
    """Every work(u) for u in items, joined: the units dealt by file count to workers()
    processes (forked.py: threads do not speed up this row of small syscalls).

    Each failure waits for every worker; the first, in share order, is raised.
    """
    few = sum(len(u.files) for u in items) < FORK_FROM  # copied sooner than forked
    shares = forked.balanced(items, lambda u: len(u.files), 1 if few else workers())
    parts = forked.in_children(lambda share: [r for u in share for r in work(u)], shares)
    return [r for part in parts for r in part]


def copy_unit(src: str, out: str, unit: Unit) -> list[tuple[bytes, bytes]]:
    """Copy one unit's files; (rel path, SHA-256 as written) of each."""
    src_dir = os.path.join(src, unit.dir) if unit.dir else src
    out_dir = os.path.join(out, unit.dir) if unit.dir else out
    try:
        src_fd = os.open(src_dir, DIR_FLAGS)
    except OSError as exc:
        raise unreadable(Path(src_dir), exc) from None
    done: list[tuple[bytes, bytes]] = []
    try:
        out_fd = os.open(out_dir, DIR_FLAGS)
        try:
            for name, mode, st in unit.files:
                try:
                    # O_NONBLOCK: a file swapped for a FIFO since the selection must not hang
                    fd_in = os.open(name, READ_FLAGS, dir_fd=src_fd)
                except OSError as exc:
                    raise unreadable(Path(src_dir, name), exc) from None
                try:
                    rel = os.path.join(unit.dir, name) if unit.dir else name
                    done.append((os.fsencode(rel), copy_one(fd_in, out_fd, name, mode, st)))
                except OSError as exc:  # write errors name nothing by themselves
                    fsatomic.name_file(exc, Path(out_dir, name))
                    raise
                finally:
                    os.close(fd_in)
        finally:
            os.close(out_fd)
    finally:
        os.close(src_fd)
    return done


def copy_one(fd_in: int, out_fd: int, name: str, mode: int, st: os.stat_result) -> bytes:
    """Create name in out_fd as a copy of fd_in, hashing what is written (the build's
    digest needs no second read).

    st is the file's lstat from the selection: its size, holes and times are what the
    copy keeps. Seven syscalls for a small file: open x2, read, write, futimens, close x2.
    """
    fd_out = os.open(name, CREATE_FLAGS, mode, dir_fd=out_fd)
    try:
        if st.st_blocks * 512 < st.st_size:
            h = hashlib.sha256()
            copy_sparse(fd_in, fd_out, st.st_size, h)
            digest = h.digest()
        else:
            digest = copy_data(fd_in, fd_out, st.st_size)
        os.utime(fd_out, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(fd_out)
    return digest


def copy_data(fd_in: int, fd_out: int, size: int) -> bytes:
    """Copy and hash a file expected to hold size bytes; more, if it grew, is copied too.

    A file read in one call of its size + 1 bytes (not a CHUNK): a 1 MiB buffer per file
    is an mmap, mremap and munmap each.
    """
    want = min(size + 1, CHUNK)
    data = os.read(fd_in, want)
    h = hashlib.sha256(data)
    write_all(fd_out, data)
    if len(data) == want:  # a short read of a regular file is its end: no extra read
        copy_whole(fd_in, fd_out, h)
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

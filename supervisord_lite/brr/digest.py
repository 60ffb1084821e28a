"""The tree digest that names a build: SHA-256 over typed, length-prefixed records.

Format 2 (the build ID's format since the hostile-input issue): the bytes `brr-tree\\0v2\\0`,
then one record per entry in byte order of its path:

    kind (1 byte: F file, D directory, L symlink) | mode (2 bytes, big-endian)
    | path length (4 bytes) | path bytes | payload

where the payload of a file is the 32-byte SHA-256 of its content, of a symlink the
target's length (4 bytes) and bytes, and of a directory nothing. Every field has a fixed
size or a length in front of it, so no file name (newlines, NULs of the encoding, any
byte) can make two different trees give the same stream. Format 1 wrote text lines
joined by `\\n` and `\\0`, which a name with a newline could forge; it is kept only so
that `verify` can still check builds made before (their build.yaml has no
`digest_format`).

Hashing runs on every core, in forked processes (forked.py): a tree of small files is a
row of open/read/close whose every syscall gives the GIL up and takes it back, and
threads spend those hand-offs waiting for each other (20,000 small files: 0.25 s on one
thread, 0.27 s on two, 0.19 s in two processes). Holes of a sparse file are hashed as the
zeros they read as, without reading them.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from supervisord_lite.brr import forked

CHUNK = 1 << 20
FORK_FROM = 512  # files: fewer are hashed here
FORMAT = 2
HEADER = b"brr-tree\0v2\0"
ZEROS = bytes(CHUNK)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Entry:
    """One entry of a tree: rel is its path under the top, as bytes."""

    rel: bytes
    kind: str  # "F", "D" or "L"
    mode: int
    source: bytes = b""  # the file to hash (F) or the link's target (L)


def workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def in_parallel(work: Callable[[T], R], items: list[T]) -> list[R]:
    """[work(i) for i in items] in workers() processes, each given one contiguous slice.

    A few hundred files take less time than a fork. The first exception is raised once
    every slice has finished.
    """
    n = workers()
    if n == 1 or len(items) < FORK_FROM:
        return [work(i) for i in items]
    size = -(-len(items) // n)
    slices = [items[i : i + size] for i in range(0, len(items), size)]
    done = forked.in_children(lambda part: [work(i) for i in part], slices)
    return [r for part in done for r in part]


def file_sha256(path: str | bytes) -> bytes:
    """SHA-256 of a file's content; holes are hashed without reading them."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if st.st_blocks * 512 < st.st_size:
            hash_sparse(fd, st.st_size, h)
        else:
            # a small file in one read of its size + 1: a CHUNK buffer for 20 bytes costs
            # an mmap and munmap, and each munmap stalls the other threads (TLB flush)
            want = min(st.st_size + 1, CHUNK)
            chunk = os.read(fd, want)
            h.update(chunk)
            while len(chunk) == want:  # a short read of a regular file is its end
                chunk = os.read(fd, want := CHUNK)
                h.update(chunk)
    finally:
        os.close(fd)
    return h.digest()


def hash_sparse(fd: int, size: int, h: hashlib._Hash) -> None:
    for hole, _, chunk in data_regions(fd, size):
        feed_zeros(h, hole)
        h.update(chunk)


def data_regions(fd: int, size: int) -> Iterator[tuple[int, int, bytes]]:
    """A sparse file's data as (zeros before it, offset, chunk), holes skipped by
    SEEK_DATA/SEEK_HOLE; the last item's chunk is empty and carries the trailing hole.

    Raises OSError when the file shrinks while it is read.
    """
    pos = 0
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: nothing but a hole up to the end
            data = size
        if data >= size:
            break
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        zeros = data - pos
        while data < hole:
            chunk = os.pread(fd, min(CHUNK, hole - data), data)
            if not chunk:
                raise OSError(f"file shrank while it was read at byte {data}")
            yield zeros, data, chunk
            zeros = 0
            data += len(chunk)
        pos = hole
    yield size - pos, size, b""


def feed_zeros(h: hashlib._Hash, count: int) -> None:
    while count > 0:
        n = min(count, CHUNK)
        h.update(ZEROS[:n] if n < CHUNK else ZEROS)
        count -= n


def scan(top: Path) -> list[Entry]:
    """Every entry under top (top excluded), symlinks not followed; OSError on any error."""
    out: list[Entry] = []
    root = os.fsencode(top)
    stack = [b""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as it:
            for de in it:
                rel = os.path.join(rel_dir, de.name) if rel_dir else de.name
                st = de.stat(follow_symlinks=False)
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISLNK(st.st_mode):
                    out.append(Entry(rel, "L", 0, os.readlink(de.path)))
                elif stat.S_ISDIR(st.st_mode):
                    out.append(Entry(rel, "D", mode))
                    stack.append(rel)
                else:
                    out.append(Entry(rel, "F", mode, de.path))
    return out


def record(entry: Entry, content: bytes) -> bytes:
    head = struct.pack(">cHI", entry.kind.encode(), entry.mode, len(entry.rel)) + entry.rel
    if entry.kind == "F":
        return head + content
    if entry.kind == "L":
        return head + struct.pack(">I", len(entry.source)) + entry.source
    return head


def digest_entries(entries: Iterable[Entry], known: dict[bytes, bytes] | None = None) -> str:
    """`sha256:<hex>` of entries; known maps a file's rel to its content hash if computed."""
    ordered = sorted(entries, key=lambda e: e.rel)
    files = [e for e in ordered if e.kind == "F" and (known is None or e.rel not in known)]
    hashes = dict(known or {})
    if files:
        sums = in_parallel(file_sha256, [e.source for e in files])
        hashes.update(zip((e.rel for e in files), sums, strict=True))
    h = hashlib.sha256(HEADER)
    for e in ordered:
        h.update(record(e, hashes.get(e.rel, b"")))
    return "sha256:" + h.hexdigest()


def tree_digest(top: Path, fmt: int = FORMAT) -> str:
    """`sha256:<hex>` of the tree under top (top itself excluded), in format fmt."""
    if fmt == 1:
        return tree_digest_v1(top)
    return digest_entries(scan(top))


def tree_digest_v1(top: Path) -> str:
    """The ambiguous format of builds made before format 2, for `verify` only."""
    h = hashlib.sha256()
    entries = sorted(scan(top), key=lambda e: os.fsdecode(e.rel))
    for e in entries:
        rel = os.fsdecode(e.rel)
        if e.kind == "L":
            line = f"L {rel}\0{os.fsdecode(e.source)}"
        elif e.kind == "D":
            line = f"D {e.mode:o} {rel}"
        else:
            line = f"F {e.mode:o} {rel}\0{file_sha256(e.source).hex()}"
        h.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return "sha256:" + h.hexdigest()


def build_id_for(digest: str) -> str:
    return "b-" + digest.removeprefix("sha256:")[:12]


def frozen_mode(mode: int) -> int:
    """The read-only mode a file gets in a build: write bits dropped, nothing widened.

    Read bits are kept as the source had them (the owner's always set), and execute is
    given to each class that can read when the owner could execute: 0644 -> 0444,
    0755 -> 0555, 0600 -> 0400, 0700 -> 0500, 0640 -> 0440. A private file stays private.
    """
    read = (mode & 0o444) | 0o400
    return read | (read >> 2 if mode & stat.S_IXUSR else 0)


def freeze(top: Path) -> None:
    """Make the tree read-only: files by frozen_mode, directories 0555."""
    for dirpath, _dirnames, filenames in os.walk(top, topdown=False):
        for name in filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                continue
            os.chmod(full, frozen_mode(st.st_mode))
        os.chmod(dirpath, 0o555)

"""Reading the per-process log files the daemon writes (daemon/logfiles.py), for
`supervisord-lite logs NAME` when no daemon runs: `tail_lines`, and `follow_lines`,
which follows a name the way `tail -F` does. Files are opened without following a symlink
(nor waiting on a planted FIFO): `logs` runs as root over a group-writable logs/.

Following polls (POLL_INTERVAL): inotify is not in the stdlib, and a short-lived client
polling one local file costs nothing. A rotation is seen as the name now being another
file with data in it: the writer has moved to it by then, so the old one is read to its
end first and no line written around the rotation is lost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from supervisord_lite import nofollow
from supervisord_lite.nofollow import PlantedLink

POLL_INTERVAL = 0.2
READ_BLOCK = 64 * 1024


def tail_lines(path: Path, n: int) -> list[bytes]:
    """The last n lines of path (without their newlines), reading only what it needs."""
    fd = open_for_reading(path)
    try:
        return _tail_of(fd, n, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def open_for_reading(path: Path) -> int:
    """A log file opened without following a symlink (nor waiting on a planted FIFO):
    `logs` is run as root, and ROOT/logs is writable by the deploy group.

    Raises OSError (FileNotFoundError when there is none) or PlantedLink.
    """
    return nofollow.open_file(path.parent.parent, f"{path.parent.name}/{path.name}", os.O_RDONLY)


def _tail_of(fd: int, n: int, end: int) -> list[bytes]:
    if n <= 0:
        return []
    data = b""
    # n + 1 newlines: the one ending the last line, and the one before the first line
    while end > 0 and data.count(b"\n") <= n:
        start = max(0, end - READ_BLOCK)
        data = os.pread(fd, end - start, start) + data
        end = start
    return data.splitlines()[-n:]


def follow_lines(path: Path, n: int, *, poll: float = POLL_INTERVAL) -> Iterator[bytes]:
    """The last n lines of path, then every line appended to that name, forever.

    Like `tail -F`: when the name is another file (a rotation renamed the old one), the
    new one is taken once it has data: the writer has moved to it by then, so the old
    one is read to its end first and no line written around the rotation is lost. A
    file that shrank (truncated) is read again from its start. A line is yielded once
    whole; a last line with no newline, in a file left behind, as it is. Raises OSError
    when path cannot be opened at the start.
    """
    fd = open_for_reading(path)
    try:
        offset = os.fstat(fd).st_size
        partial = b""
        if offset and os.pread(fd, 1, offset - 1) != b"\n":  # caught in mid-write
            *tail, partial = _tail_of(fd, n + 1, offset)
            yield from tail[-n:] if n else []
        else:
            yield from _tail_of(fd, n, offset)
        while True:
            data = _read_from(fd, offset)
            if data:
                offset += len(data)
                *whole, partial = (partial + data).split(b"\n")
                yield from whole
                continue
            if os.fstat(fd).st_size < offset:
                offset = 0
                continue
            moved = _open_if_moved(fd, path)
            if moved is None:
                time.sleep(poll)
                continue
            *whole, partial = (partial + _read_from(fd, offset)).split(b"\n")
            yield from whole
            if partial:
                yield partial
            os.close(fd)
            fd, offset, partial = moved, 0, b""
    finally:
        os.close(fd)


def _read_from(fd: int, offset: int) -> bytes:
    chunks: list[bytes] = []
    while chunk := os.pread(fd, READ_BLOCK, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _open_if_moved(held: int, path: Path) -> int | None:
    """An fd on path if path is now a file other than held's, with data in it."""
    try:
        fd = open_for_reading(path)
    except (FileNotFoundError, PlantedLink):
        return None
    new, old = os.fstat(fd), os.fstat(held)
    if (new.st_dev, new.st_ino) != (old.st_dev, old.st_ino) and new.st_size > 0:
        return fd
    os.close(fd)
    return None

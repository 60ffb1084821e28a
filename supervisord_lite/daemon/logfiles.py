"""Per-process log files under ROOT/logs (`--log-dir`), rotated by size, reopened on SIGUSR1.

One file per process name (`web.1.log`); a line goes in whole or not at all. When a
file would pass `max_bytes`, it is renamed to `.1` (older ones shift up to `keep`, the
oldest is removed) and a new file is started: at most keep + 1 files per process, ever.
A file passes `max_bytes` only when one line alone is longer. `max_bytes=0` turns size
rotation off, for an external logrotate: two rotators would fight over the `.1` names.
For that logrotate, `reopen()` (SIGUSR1) closes every file so the next line opens the
name afresh: rotation by rename with no copytruncate, so no line is lost.

Writes are plain blocking writes to a local file from the output task; a line is at most
64 KiB (output.py splits longer ones), so a write never stalls the loop for long. A file
that cannot be written (disk full, permissions) is reported once per file and skipped:
stdout (journald) still has every line. Neither the directory nor a file is followed
through a symlink (nofollow.py: the daemon runs as root, and anyone who can write to
ROOT/logs could point `web.1.log` at /etc/passwd); a rotation renames and unlinks by
the directory's fd. A symlink at `--log-dir` itself is refused the same way.

The reading side, for `supervisord-lite logs NAME` when no daemon runs, is
client/logread.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from supervisord_lite import nofollow
from supervisord_lite.nofollow import PlantedLink

log = logging.getLogger(__name__)



@dataclass
class OpenLog:
    fd: int
    size: int


@dataclass
class LogFiles:
    directory: Path
    max_bytes: int = 10 * 1024 * 1024
    keep: int = 5
    _open: dict[str, OpenLog] = field(default_factory=dict)
    _broken: set[str] = field(default_factory=set)

    def path(self, name: str, generation: int = 0) -> Path:
        suffix = f".{generation}" if generation else ""
        return self.directory / f"{name}.log{suffix}"

    def write(self, name: str, line: bytes) -> None:
        """Append one line (with its newline) to name's file, rotating first if needed."""
        try:
            current = self._open.get(name) or self._open_file(name)
            if self.max_bytes and current.size and current.size + len(line) > self.max_bytes:
                self._rotate(name)
                current = self._open_file(name)
            os.write(current.fd, line)
            current.size += len(line)
        except (OSError, PlantedLink) as exc:
            if name not in self._broken:
                self._broken.add(name)
                reason = exc.message if isinstance(exc, PlantedLink) else exc.strerror
                log.error("log file of %s: %s; its lines still go to stdout", name, reason)
            self._close(name)
        else:
            self._broken.discard(name)

    def _open_file(self, name: str) -> OpenLog:
        rel = f"{self.directory.name}/{self.path(name).name}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        fd = nofollow.open_file(self.directory.parent, rel, flags, 0o640)
        entry = OpenLog(fd, os.fstat(fd).st_size)
        self._open[name] = entry
        return entry

    def _rotate(self, name: str) -> None:
        self._close(name)
        dir_fd = nofollow.open_dir(self.directory.parent, self.directory.name)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(name, self.keep).name, dir_fd=dir_fd)
            for n in range(self.keep - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    older, newer = self.path(name, n).name, self.path(name, n + 1).name
                    os.rename(older, newer, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            current = self.path(name).name
            if self.keep > 0:
                first = self.path(name, 1).name
                os.rename(current, first, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                os.unlink(current, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)

    def _close(self, name: str) -> None:
        entry = self._open.pop(name, None)
        if entry is not None:
            with contextlib.suppress(OSError):
                os.close(entry.fd)

    def reopen(self) -> None:
        """Close every file; the next line of each process opens its name afresh."""
        for name in list(self._open):
            self._close(name)

    def close(self) -> None:
        self.reopen()

"""Every line -> `web.1 | line` on the daemon's stdout (one writer thread), rings for
`logs`, live followers of `logs -f`.

Choices, and what was rejected:
- The children's pipes are read by pipes.py (one epoll reader, line framing, the end of
  a pipe); every line it frames comes here through `emit`, like the daemon's own lines.
- The daemon never blocks on its own stdout: lines are queued in memory and one writer
  task hands them to a worker thread in batches. If stdout is slower than the children
  (a stuck journald, a paused terminal), the queue is capped and the excess lines are
  dropped and counted, rather than stalling every child behind one slow reader.
  Setting fd 1 non-blocking was rejected: the flag belongs to the open file description,
  which a shell or systemd shares with us.
- Rings (per process and one for all) hold recent lines for `logs -n`, bounded in lines
  and in size (a child writing 64 KiB lines must not make the daemon keep 64 MiB).
  Followers of `logs -f` get a bounded stream fed with send_nowait; one that falls
  behind loses lines, it never slows the daemon.
- Per-process log files (logfiles.py, when enabled) get every line too, without the
  `web.1 | ` prefix; SIGUSR1 reopens them.
- While children of two releases have open pipes (a start-first switch), every child's
  line names its release: `web.1 v7 | ...` next to `web.1 v8 | ...`, on stdout, in the
  rings and to `logs -f` alike. Once one generation is left, lines are `web.1 | ...`
  again: labelling always was rejected because it lengthens every line of every day
  for the minute a switch takes.
"""

from __future__ import annotations

import logging
import os
import select
from collections import deque
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from supervisord_lite.daemon.pipes import MAX_LINE, Pipe, Pipes

if TYPE_CHECKING:  # imported by whoever makes one: only --log-files loads it
    from supervisord_lite.daemon.logfiles import LogFiles

__all__ = ["MAX_LINE", "Output", "Pipe", "Ring"]

RING = 1000
RING_BYTES = 1024 * 1024  # per process: 1000 lines of 64 KiB would be 64 MiB
RING_BYTES_ALL = 8 * 1024 * 1024
MAX_QUEUED = 8 * 1024 * 1024
FOLLOW_BUFFER = 1000
FINAL_FLUSH = 1.0


class Ring:
    """The last lines, bounded both in count and in characters."""

    def __init__(self, max_lines: int, max_chars: int) -> None:
        self.lines: deque[str] = deque()
        self._max_lines = max_lines
        self._max_chars = max_chars
        self._chars = 0

    def append(self, line: str) -> None:
        self.lines.append(line)
        self._chars += len(line)
        while len(self.lines) > self._max_lines or (
            self._chars > self._max_chars and len(self.lines) > 1
        ):
            self._chars -= len(self.lines.popleft())


class Output:
    """Every line of every child passes through `emit`."""

    def __init__(self, fd: int = 1, *, files: LogFiles | None = None) -> None:
        self._fd = fd
        self._files = files
        self._rings: dict[str, Ring] = {}
        self._all = Ring(RING, RING_BYTES_ALL)
        self._followers: list[tuple[str | None, MemoryObjectSendStream[str]]] = []
        self._queue: list[bytes] = []
        self._queued = 0
        self._dropped = 0
        self._failed = 0  # writes stdout refused
        self._closing = False
        self._drained = anyio.Event()
        self._wake = anyio.Event()
        self.pipes = Pipes(self.emit)

    # --- producers ---------------------------------------------------------------------

    def emit(self, name: str, text: str, *, keep: bool = False, release: str | None = None) -> None:
        """One line of name; keep: never dropped for a slow stdout (the daemon's own).

        release: the child's, shown while two generations live.
        """
        label = f"{name} {release}" if release and self.pipes.releases() > 1 else name
        line = f"{label} | {text}"
        ring = self._rings.get(name)
        if ring is None:
            ring = self._rings[name] = Ring(RING, RING_BYTES)
        ring.append(line)
        self._all.append(line)
        self._enqueue(line, keep)
        if self._files is not None:
            self._files.write(name, (text + "\n").encode("utf-8", "replace"))
        if self._followers:
            self._feed(name, line)

    def watch(self, name: str, fd: int, release: str | None = None) -> Pipe:
        """Read name's lines from the non-blocking fd from now on (see Pipes.watch)."""
        return self.pipes.watch(name, fd, release)

    async def wait_eof(self, pipe: Pipe, timeout: float) -> None:
        """Wait until the pipe's end, at most timeout (see Pipes.wait_eof)."""
        await self.pipes.wait_eof(pipe, timeout)

    def unwatch(self, pipe: Pipe) -> None:
        """Stop reading the pipe and close it (see Pipes.unwatch)."""
        self.pipes.unwatch(pipe)

    # --- the writer ----------------------------------------------------------------------

    def _enqueue(self, line: str, keep: bool) -> None:
        data = (line + "\n").encode("utf-8", "replace")
        if self._queued + len(data) > MAX_QUEUED and not keep:
            self._dropped += 1
            return
        self._queue.append(data)
        self._queued += len(data)
        self._wake.set()

    async def run_writer(self) -> None:
        """Read the children's pipes, and write queued lines to the daemon's stdout, until
        cancelled or drained.

        A stdout that fails (EPIPE: the reader went away) loses lines, never the daemon.
        """
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.pipes.run)
            await self._run_writing()
            tg.cancel_scope.cancel()

    async def _run_writing(self) -> None:
        writing = False
        try:
            while not (self._closing and not self._queue):
                await self._wake.wait()
                self._wake = anyio.Event()
                batch = self._take()
                writing = True
                # abandoned on cancel: a write stuck on a full pipe must not hold shutdown
                await anyio.to_thread.run_sync(self._write, batch, abandon_on_cancel=True)
                writing = False
        finally:
            self._drained.set()
            if not writing:  # cancelled: a last best effort, bounded
                self._write(self._take(), timeout=FINAL_FLUSH)

    async def drain(self, timeout: float = FINAL_FLUSH) -> None:
        """Write out everything queued so far, then end run_writer (bounded by timeout).

        The pipes still watched are read no more: by now every child is gone.
        """
        self._closing = True
        self._wake.set()
        with anyio.move_on_after(timeout):
            await self._drained.wait()

    def _take(self) -> bytes:
        if self._dropped:
            note = f"supervisord-lite | stdout too slow: dropped {self._dropped} lines\n"
            self._queue.append(note.encode())
            self._dropped = 0
        batch = b"".join(self._queue)
        self._queue.clear()
        self._queued = 0
        return batch

    def _write(self, data: bytes, timeout: float | None = None) -> None:
        view = memoryview(data)
        try:
            while view:
                if timeout is not None and not select.select([], [self._fd], [], timeout)[1]:
                    return
                view = view[os.write(self._fd, view) :]
        except OSError:
            self._failed += 1

    def reopen(self) -> None:
        """SIGUSR1: reopen the log files (after logrotate renamed them)."""
        if self._files is not None:
            self._files.reopen()

    def close(self) -> None:
        self.pipes.close()
        if self._files is not None:
            self._files.close()

    # --- readers -------------------------------------------------------------------------

    def tail(self, name: str | None, n: int) -> list[str]:
        """The last n lines of a process, of a type (`web`), or of all (None)."""
        if n <= 0:
            return []
        if name is None:
            return list(self._all.lines)[-n:]
        if name in self._rings:
            return list(self._rings[name].lines)[-n:]
        prefix = name + "."
        return [line for line in self._all.lines if line.startswith(prefix)][-n:]

    def follow(self, name: str | None) -> anyio.abc.ObjectReceiveStream[str]:
        """New lines from now on; the stream is dropped when its reader closes it."""
        send, receive = anyio.create_memory_object_stream[str](FOLLOW_BUFFER)
        self._followers.append((name, send))
        return receive

    def _feed(self, name: str, line: str) -> None:
        keep: list[tuple[str | None, MemoryObjectSendStream[str]]] = []
        for wanted, stream in self._followers:
            if wanted is None or wanted == name or name.startswith(wanted + "."):
                try:
                    stream.send_nowait(line)
                except anyio.WouldBlock:
                    pass  # a slow follower loses lines
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    stream.close()
                    continue
            keep.append((wanted, stream))
        self._followers = keep


class OutputHandler(logging.Handler):
    """The daemon's own log lines go to the same ordered stream as its children's."""

    def __init__(self, output: Output, prog: str) -> None:
        super().__init__()
        self.output = output
        self.prog = prog

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.output.emit(self.prog, self.format(record), keep=True)
        except Exception:
            self.handleError(record)

"""Child output -> `web.1 | line` on the daemon's stdout, rings for `logs`, live followers.

Choices, and what was rejected:
- One reader task per child, reading its non-blocking pipe after `anyio.wait_readable`,
  at most CHUNK bytes per wake-up: a flooding child gets its turn like every other and
  cannot starve them. A line longer than MAX_LINE is split into lines of MAX_LINE bytes
  as it arrives, so a 10 MB line costs 64 KiB of memory, not 10 MB, and nothing the
  child wrote is lost (truncating was rejected for that reason).
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
"""

from __future__ import annotations

import os
import select
from collections import deque

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from supervisord_lite.daemon.logfiles import LogFiles

CHUNK = 64 * 1024
MAX_LINE = 64 * 1024
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

    # --- producers ---------------------------------------------------------------------

    def emit(self, name: str, text: str, *, keep: bool = False) -> None:
        """One line of name; keep: never dropped for a slow stdout (the daemon's own)."""
        line = f"{name} | {text}"
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

    async def pump(self, name: str, fd: int) -> None:
        """Read the child's output until EOF; closes fd. Cancellation is the way out too."""
        partial = bytearray()
        try:
            while True:
                await anyio.wait_readable(fd)
                try:
                    data = os.read(fd, CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    break
                *lines, rest = data.split(b"\n")
                for piece in lines:
                    partial += piece
                    self._emit_split(name, partial)
                    partial.clear()
                partial += rest
                while len(partial) >= MAX_LINE:
                    self.emit(name, self._decode(partial[:MAX_LINE]))
                    del partial[:MAX_LINE]
            if partial:
                self.emit(name, self._decode(partial))
        finally:
            os.close(fd)

    def _emit_split(self, name: str, line: bytearray) -> None:
        for start in range(0, max(len(line), 1), MAX_LINE):
            self.emit(name, self._decode(line[start : start + MAX_LINE]))

    @staticmethod
    def _decode(data: bytes | bytearray) -> str:
        return bytes(data).decode("utf-8", "replace").rstrip("\r")

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
        """Write queued lines to the daemon's stdout until cancelled or drained.

        A stdout that fails (EPIPE: the reader went away) loses lines, never the daemon.
        """
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
        """Write out everything queued so far, then end run_writer (bounded by timeout)."""
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

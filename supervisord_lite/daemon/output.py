"""Child output -> `web.1 | line` on the daemon's stdout, rings for `logs`, live followers.

Choices, and what was rejected:
- One reader for every child: the pipes are registered in one epoll set, which the
  reader task awaits; each wake-up reads at most CHUNK bytes from each pipe that has
  data, so a flooding child gets its turn like every other and cannot starve them. A
  reader task per child was rejected: with its task group, cancel scope and events it
  cost about 4 KiB and a few task switches per child, for pipes that are silent most of
  the time; a registered pipe costs one small record. The process task hands its pipe
  over (`watch`) and, after the exit, waits a bounded time for its end (`wait_eof`).
- A line longer than MAX_LINE is split into lines of MAX_LINE bytes as it arrives, so a
  10 MB line costs 64 KiB of memory, not 10 MB, and nothing the child wrote is lost
  (truncating was rejected for that reason).
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

import contextlib
import os
import select
from collections import deque

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream

from supervisord_lite.daemon.logfiles import LogFiles

CHUNK = 64 * 1024
PASS_BUDGET = 1024 * 1024  # bytes read between two checkpoints of the reader
EOF_PEEK = 4  # chunks read at once when a child has exited, before waiting for the rest
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


class Pipe:
    """The read end of one child's output, while Output reads it."""

    __slots__ = ("eof", "fd", "name", "open", "partial", "release")

    def __init__(self, name: str, fd: int, release: str | None = None) -> None:
        self.name = name
        self.fd = fd
        self.release = release
        self.partial = b""  # the start of a line whose end has not come yet
        self.open = True
        self.eof: anyio.Event | None = None  # only while someone waits for the end


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
        self._pipes: dict[int, Pipe] = {}
        self._generations: dict[str, int] = {}  # release -> its open pipes
        self._epoll = select.epoll()

    # --- producers ---------------------------------------------------------------------

    def emit(self, name: str, text: str, *, keep: bool = False, release: str | None = None) -> None:
        """One line of name; keep: never dropped for a slow stdout (the daemon's own).

        release: the child's, shown while two generations live.
        """
        label = f"{name} {release}" if release and len(self._generations) > 1 else name
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
        """Read name's lines from the non-blocking fd from now on; Output owns fd now."""
        pipe = Pipe(name, fd, release)
        if release is not None:
            self._generations[release] = self._generations.get(release, 0) + 1
        self._pipes[fd] = pipe
        self._epoll.register(fd, select.EPOLLIN)
        return pipe

    async def wait_eof(self, pipe: Pipe, timeout: float) -> None:
        """Wait until the pipe's end (at most timeout), then stop reading it in any case."""
        for _ in range(EOF_PEEK):  # usually the end is there already: no need to wait
            if not self._read(pipe):
                break
        if pipe.open:
            pipe.eof = anyio.Event()
            with anyio.move_on_after(timeout):
                await pipe.eof.wait()
        self.unwatch(pipe)

    def unwatch(self, pipe: Pipe) -> None:
        """Stop reading the pipe and close it; what it held back is emitted. Idempotent."""
        if not pipe.open:
            return
        pipe.open = False
        del self._pipes[pipe.fd]
        # closed already when a crash cancels the reader before the process tasks
        with contextlib.suppress(ValueError):
            self._epoll.unregister(pipe.fd)
        os.close(pipe.fd)
        if pipe.partial:
            self.emit(pipe.name, self._decode(pipe.partial), release=pipe.release)
            pipe.partial = b""
        self._forget_pipe_of(pipe.release)
        if pipe.eof is not None:
            pipe.eof.set()

    def _forget_pipe_of(self, release: str | None) -> None:
        if release is None:
            return
        left = self._generations.get(release, 0) - 1
        if left > 0:
            self._generations[release] = left
        else:
            self._generations.pop(release, None)

    async def _run_reader(self) -> None:
        while True:
            await anyio.wait_readable(self._epoll.fileno())
            taken = 0
            for fd, _events in self._epoll.poll(0):
                pipe = self._pipes.get(fd)  # None: unwatched since the poll
                if pipe is not None:
                    taken += self._read(pipe)
                if taken >= PASS_BUDGET:  # many flooding children: let the others run
                    taken = 0
                    await anyio.lowlevel.checkpoint()

    def _read(self, pipe: Pipe) -> int:
        """Read one chunk of the pipe and emit its whole lines; the bytes read."""
        if not pipe.open:
            return 0
        try:
            data = os.read(pipe.fd, CHUNK)
        except BlockingIOError:
            return 0
        except OSError:
            data = b""
        if not data:
            self.unwatch(pipe)
            return 0
        *lines, rest = data.split(b"\n")
        for piece in lines:
            if pipe.partial:
                piece, pipe.partial = pipe.partial + piece, b""
            self._emit_split(pipe, piece)
        partial = pipe.partial + rest if pipe.partial else rest
        while len(partial) >= MAX_LINE:
            self.emit(pipe.name, self._decode(partial[:MAX_LINE]), release=pipe.release)
            partial = partial[MAX_LINE:]
        pipe.partial = partial
        return len(data)

    def _emit_split(self, pipe: Pipe, line: bytes) -> None:
        for start in range(0, max(len(line), 1), MAX_LINE):
            text = self._decode(line[start : start + MAX_LINE])
            self.emit(pipe.name, text, release=pipe.release)

    @staticmethod
    def _decode(data: bytes) -> str:
        return data.decode("utf-8", "replace").rstrip("\r")

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
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._run_reader)
                await self._run_writing()
                tg.cancel_scope.cancel()
        finally:
            self._epoll.close()

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
        for pipe in list(self._pipes.values()):
            self.unwatch(pipe)
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

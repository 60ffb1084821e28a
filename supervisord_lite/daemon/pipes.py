"""The one reader of every child's output pipe: epoll, line framing, the end of a pipe.

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
- Each whole line goes to one callback (Output.emit); what the lines become (stdout,
  rings, followers, files) is output.py's concern, not the reader's.
"""

from __future__ import annotations

import contextlib
import os
import select
from typing import Protocol

import anyio
import anyio.lowlevel

CHUNK = 64 * 1024
PASS_BUDGET = 1024 * 1024  # bytes read between two checkpoints of the reader
EOF_PEEK = 4  # chunks read at once when a child has exited, before waiting for the rest
MAX_LINE = 64 * 1024


class Emit(Protocol):
    def __call__(self, name: str, text: str, *, release: str | None = None) -> None: ...


class Pipe:
    """The read end of one child's output, while Pipes reads it."""

    __slots__ = ("eof", "fd", "name", "open", "partial", "release")

    def __init__(self, name: str, fd: int, release: str | None = None) -> None:
        self.name = name
        self.fd = fd
        self.release = release
        self.partial = b""  # the start of a line whose end has not come yet
        self.open = True
        self.eof: anyio.Event | None = None  # only while someone waits for the end


class Pipes:
    """Every watched pipe in one epoll set; each line read goes to emit."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._pipes: dict[int, Pipe] = {}
        self._generations: dict[str, int] = {}  # release -> its open pipes
        self._epoll = select.epoll()

    def releases(self) -> int:
        """How many releases have a pipe open (two during a start-first switch)."""
        return len(self._generations)

    def watch(self, name: str, fd: int, release: str | None = None) -> Pipe:
        """Read name's lines from the non-blocking fd from now on; Pipes owns fd now."""
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
            self._emit(pipe.name, decode(pipe.partial), release=pipe.release)
            pipe.partial = b""
        self._forget_pipe_of(pipe.release)
        if pipe.eof is not None:
            pipe.eof.set()

    def close(self) -> None:
        """Close every pipe still watched (what each held back is emitted)."""
        for pipe in list(self._pipes.values()):
            self.unwatch(pipe)

    def _forget_pipe_of(self, release: str | None) -> None:
        if release is None:
            return
        left = self._generations.get(release, 0) - 1
        if left > 0:
            self._generations[release] = left
        else:
            self._generations.pop(release, None)

    async def run(self) -> None:
        """Read every watched pipe until cancelled; the epoll set is closed then."""
        try:
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
        finally:
            self._epoll.close()

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
            self._emit(pipe.name, decode(partial[:MAX_LINE]), release=pipe.release)
            partial = partial[MAX_LINE:]
        pipe.partial = partial
        return len(data)

    def _emit_split(self, pipe: Pipe, line: bytes) -> None:
        for start in range(0, max(len(line), 1), MAX_LINE):
            text = decode(line[start : start + MAX_LINE])
            self._emit(pipe.name, text, release=pipe.release)


def decode(data: bytes) -> str:
    return data.decode("utf-8", "replace").rstrip("\r")

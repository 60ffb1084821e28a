"""The log ring by itself, and the one reader of every child's pipe."""

from __future__ import annotations

import os

import anyio

from supervisord_lite.daemon.output import MAX_LINE, Output, Ring
from tests.helpers import until


def test_the_log_ring_is_bounded_in_lines_and_in_size() -> None:
    ring = Ring(3, 100)
    for i in range(5):
        ring.append(f"line {i}")
    assert list(ring.lines) == ["line 2", "line 3", "line 4"]
    ring.append("x" * 80)
    assert list(ring.lines) == ["line 3", "line 4", "x" * 80]
    ring.append("z" * 20)  # 3 lines, but 112 characters: the oldest go
    assert list(ring.lines) == ["x" * 80, "z" * 20]
    ring.append("y" * 500)  # one line over the budget is still kept whole
    assert list(ring.lines) == ["y" * 500]


async def test_the_shared_reader_joins_split_lines_splits_long_ones_and_flushes_at_eof() -> None:
    output = Output(fd=os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC))
    r, w = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(r, False)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(output.run_writer)
            pipe = output.watch("web.1", r)
            os.write(w, b"one\ntw")
            # the reader task, not wait_eof, got it
            await until(lambda: output.tail("web.1", 1), what="the first line")
            more = b"o\r\n" + b"x" * (MAX_LINE + 10) + b"\nlast"  # more than a pipe holds
            await anyio.to_thread.run_sync(os.write, w, more)
            os.close(w)
            await output.wait_eof(pipe, 10)
            tg.cancel_scope.cancel()
    assert output.tail("web.1", 10) == [
        "web.1 | one",
        "web.1 | two",
        "web.1 | " + "x" * MAX_LINE,
        "web.1 | " + "x" * 10,
        "web.1 | last",  # no newline before the end: still a line
    ]
    assert not pipe.open
    output.close()

"""forked.in_children: the copy's workers are forked processes; what a user of a build
sees of them is the result, or one failure that names what went wrong, and no process
left behind."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from supervisord_lite.brr import forked
from supervisord_lite.errors import OperationFailed
from tests.helpers import wait_until


def gone(pid: int) -> bool:
    """Reaped: no process, not even a zombie, has the pid any more (or another's now)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[3] != str(os.getpid())  # ppid: not ours
    except FileNotFoundError:
        return True


def report(share: str) -> tuple[str, int]:
    return share, os.getpid()


def test_each_share_runs_in_its_own_process_and_results_keep_share_order() -> None:
    out = forked.in_children(report, ["a", "b", "c"])
    assert [s for s, _ in out] == ["a", "b", "c"]
    pids = [p for _, p in out]
    assert pids[0] == os.getpid()  # the first share is the caller's own
    assert len(set(pids)) == 3
    assert all(gone(p) for p in pids[1:])


def fail_in(share: str) -> str:
    if share == "bad":
        raise OperationFailed(f"cannot read /src/{share}: Permission denied; no build was stored")
    return share


def test_a_childs_failure_is_raised_here_with_its_message() -> None:
    with pytest.raises(OperationFailed, match=r"^cannot read /src/bad: Permission denied"):
        forked.in_children(fail_in, ["ok", "bad", "ok"])


def test_an_oserror_keeps_its_errno_and_file_name() -> None:
    def write_err(share: str) -> None:
        if share == "b":
            raise OSError(28, "No space left on device", "/builds/.stage-0/app/x")

    with pytest.raises(OSError) as err:
        forked.in_children(write_err, ["a", "b"])
    assert (err.value.errno, err.value.filename) == (28, "/builds/.stage-0/app/x")


def test_a_child_killed_by_a_signal_is_named() -> None:
    def die(share: str) -> str:
        if share == "killed":
            os.kill(os.getpid(), signal.SIGKILL)
        return share

    with pytest.raises(OperationFailed, match=r"^worker process \d+ died \(killed by signal 9\)$"):
        forked.in_children(die, ["here", "killed"])


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("held a lock")
        self.lock = threading.Lock()


def test_an_exception_that_cannot_travel_is_described() -> None:
    def raise_it(share: str) -> str:
        if share == "x":
            raise Unpicklable()
        return share

    with pytest.raises(
        OperationFailed, match=r"^worker process \d+ failed: Unpicklable: held a lock"
    ):
        forked.in_children(raise_it, ["here", "x"])


def test_a_large_result_comes_back_whole() -> None:
    """More than a pipe holds (64 KiB): the child blocks in write until it is read."""

    def big(share: int) -> bytes:
        return bytes([share]) * (4 << 20)

    out = forked.in_children(big, [1, 2, 3])
    assert [len(b) for b in out] == [4 << 20] * 3
    assert [b[-1] for b in out] == [1, 2, 3]


def test_the_callers_own_interrupt_kills_and_reaps_every_child(tmp_path: Path) -> None:
    def work(share: str) -> str:
        if share != "here":
            (tmp_path / str(os.getpid())).touch()
            while True:  # only a kill ends it
                signal.pause()
        wait_until(lambda: len(list(tmp_path.iterdir())) == 2, what="both children started")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        forked.in_children(work, ["here", "b", "c"])
    pids = [int(p.name) for p in tmp_path.iterdir()]
    assert len(pids) == 2
    assert all(gone(p) for p in pids)


def test_a_result_that_cannot_be_read_back_is_named() -> None:
    def odd(share: str) -> object:
        return Odd("x", 1) if share == "b" else share

    with pytest.raises(
        OperationFailed, match=r"^worker process \d+ \(exit 0\) sent back TypeError"
    ):
        forked.in_children(odd, ["a", "b"])


class Odd:
    """Pickles, but cannot be rebuilt: its class needs two arguments."""

    def __init__(self, a: str, b: int) -> None:
        self.a, self.b = a, b

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (Odd, (self.a,))


def test_balanced_shares_by_weight() -> None:
    items = [9, 1, 1, 1, 4, 4, 2, 2]
    shares = forked.balanced(items, lambda x: x, 2)
    assert sorted(x for s in shares for x in s) == sorted(items)
    assert sorted(sum(s) for s in shares) == [12, 12]
    assert forked.balanced([5], lambda x: x, 8) == [[5]]
    assert forked.balanced([], lambda x: x, 2) == [[]]

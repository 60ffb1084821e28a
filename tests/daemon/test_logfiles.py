"""Log files: size rotation keeps a bounded number of files; reopen loses no line."""

from __future__ import annotations

import os
from pathlib import Path

from supervisord_lite.daemon.logfiles import LogFiles


def all_lines(directory: Path, name: str, keep: int) -> list[bytes]:
    lines: list[bytes] = []
    for n in range(keep, -1, -1):
        path = directory / (f"{name}.log.{n}" if n else f"{name}.log")
        if path.exists():
            lines += path.read_bytes().splitlines()
    return lines


def test_rotation_bounds_files_and_keeps_whole_lines(tmp_path: Path) -> None:
    logs = LogFiles(tmp_path, max_bytes=10_000, keep=3)
    for i in range(5_000):  # about 100 KB
        logs.write("web.1", f"line {i:06d} of the flood\n".encode())
    logs.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["web.1.log", "web.1.log.1", "web.1.log.2", "web.1.log.3"]
    assert all(p.stat().st_size <= 10_000 for p in tmp_path.iterdir())
    kept = all_lines(tmp_path, "web.1", 3)
    numbers = [int(line.split()[1]) for line in kept]
    assert numbers == list(range(numbers[0], 5_000)), "the newest lines, whole and in order"


def test_reopen_after_external_rename_loses_nothing(tmp_path: Path) -> None:
    logs = LogFiles(tmp_path)
    for i in range(100):
        logs.write("worker.1", f"{i}\n".encode())
    os.rename(tmp_path / "worker.1.log", tmp_path / "worker.1.log-rotated")  # logrotate
    logs.write("worker.1", b"100\n")  # written before the signal: still the old file
    logs.reopen()  # SIGUSR1
    for i in range(101, 200):
        logs.write("worker.1", f"{i}\n".encode())
    logs.close()
    old = (tmp_path / "worker.1.log-rotated").read_bytes().splitlines()
    new = (tmp_path / "worker.1.log").read_bytes().splitlines()
    assert [int(x) for x in old + new] == list(range(200))


def test_an_unwritable_directory_is_reported_once_not_raised(tmp_path: Path) -> None:
    logs = LogFiles(tmp_path / "missing")
    logs.write("web.1", b"x\n")
    logs.write("web.1", b"y\n")
    assert logs._broken == {"web.1"}

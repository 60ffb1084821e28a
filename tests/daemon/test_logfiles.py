"""Log files: size rotation keeps a bounded number of files; reopen loses no line."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

from supervisord_lite.daemon.cli import byte_size
from supervisord_lite.daemon.logfiles import LogFiles
from tests.daemon.conftest import Root
from tests.helpers import DAEMON


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


def test_max_bytes_0_never_rotates(tmp_path: Path) -> None:
    logs = LogFiles(tmp_path, max_bytes=0, keep=3)
    for i in range(2_000):
        logs.write("web.1", f"{i}\n".encode())
    logs.close()
    assert [p.name for p in tmp_path.iterdir()] == ["web.1.log"]
    assert len((tmp_path / "web.1.log").read_bytes().splitlines()) == 2_000


def test_sizes_take_k_m_g_suffixes() -> None:
    assert byte_size("1048576") == 1024 * 1024
    assert byte_size("512K") == 512 * 1024
    assert byte_size("1M") == byte_size("1m") == 1024 * 1024
    assert byte_size("2G") == 2 * 1024**3
    assert byte_size("0") == 0
    for bad in ("", "1.5M", "-1", "M", "1MB", "1T", "ten"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a size"):
            byte_size(bad)


def test_rotation_options_without_log_files_are_bad_usage(droot: Root) -> None:
    proc = subprocess.run(
        [DAEMON, "run", "--root", str(droot.path), "--log-keep", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "supervisord-lite: error: --log-max-bytes and --log-keep need --log-files or --log-dir\n"
    )
    assert not droot.layout.pidfile.exists()

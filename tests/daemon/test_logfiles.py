"""Log files: size rotation keeps a bounded number of files; reopen loses no line."""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from supervisord_lite.client.logread import follow_lines, tail_lines
from supervisord_lite.daemon.cli import byte_size
from supervisord_lite.daemon.logfiles import LogFiles
from tests.daemon.conftest import Root, proc
from tests.helpers import DAEMON, python, wait_until


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


# --- end to end, on a real daemon --------------------------------------------------------

LINE_BYTES = 100
FLOOD_LINES = 1_000_000  # 100 MB
# numbered 100-byte lines, written 10,000 at a time, then a last line that says so
FLOOD = python(
    "import sys, time\n"
    f"n = {FLOOD_LINES}\n"
    "pad = b'x' * 88\n"
    "for start in range(1, n + 1, 10_000):\n"
    "    sys.stdout.buffer.write(b''.join(b'%010d %s\\n' % (i, pad)"
    " for i in range(start, min(start + 10_000, n + 1))))\n"
    "sys.stdout.buffer.flush()\n"
    "time.sleep(3600)"
)


def last_line(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 4 * LINE_BYTES))
        return f.read().splitlines()[-1]


@pytest.mark.timeout(180)
def test_100_mb_at_1m_rotation_keeps_keep_plus_1_files_of_whole_lines(
    droot: Root, daemon: Any
) -> None:
    droot.release(proc("web", FLOOD))
    started = time.monotonic()
    d = daemon("--log-files", "--log-max-bytes", "1M", "--log-keep", "3")
    logs = droot.path / "logs"
    final = b"%010d " % FLOOD_LINES + b"x" * 88
    wait_until(lambda: last_line(logs / "web.1.log") == final, timeout=150, what="the last line")
    elapsed = time.monotonic() - started
    files = sorted(p.name for p in logs.iterdir() if p.name.startswith("web.1."))
    assert files == ["web.1.log", "web.1.log.1", "web.1.log.2", "web.1.log.3"]
    numbers: list[int] = []
    for name in ("web.1.log.3", "web.1.log.2", "web.1.log.1", "web.1.log"):
        data = (logs / name).read_bytes()
        assert 0 < len(data) <= 1024 * 1024, name
        assert data.endswith(b"\n"), name
        lines = data.splitlines()
        assert all(len(line) == LINE_BYTES - 1 and line[10:11] == b" " for line in lines), name
        numbers += [int(line[:10]) for line in lines]
    # the newest lines, whole, in order, none lost between the kept files
    assert numbers == list(range(numbers[0], FLOOD_LINES + 1))
    assert len(numbers) > 3 * (1024 * 1024 // LINE_BYTES)
    print(f"100 MB through the daemon into 1 MiB files in {elapsed:.1f} s")
    assert d.proc.poll() is None


CONTRIB_LOGROTATE = Path(__file__).parents[2] / "contrib" / "logrotate" / "supervisord-lite"
LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"
ROTATIONS = 5


def numbered_lines(directory: Path, name: str) -> list[bytes]:
    """Every line of name's files, rotated (and compressed) ones included."""
    lines: list[bytes] = []
    for path in directory.glob(f"{name}.log*"):
        data = path.read_bytes()
        lines += (gzip.decompress(data) if path.suffix == ".gz" else data).splitlines()
    return lines


@pytest.mark.skipif(
    not os.access(LOGROTATE, os.X_OK),
    reason="logrotate is not installed (.ci/run installs it where it can)",
)
@pytest.mark.timeout(120)
def test_logrotate_with_the_contrib_config_and_sigusr1_loses_no_line(
    droot: Root, daemon: Any, tmp_path: Path
) -> None:
    stop = tmp_path / "stop"
    writer = python(
        "import os, time\n"
        "i = 0\n"
        f"while not os.path.exists({str(stop)!r}):\n"
        "    i += 1\n"
        "    print(i, flush=True)\n"
        "    time.sleep(0.001)\n"
        "print('end', i, flush=True)\n"
        "time.sleep(3600)"
    )
    droot.release(proc("web", writer))
    daemon("--log-files", "--log-max-bytes", "0")
    config = [
        line
        for line in CONTRIB_LOGROTATE.read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    assert sum("/srv/*" in line for line in config) == 2, "logs and pidfiles: both to the test's"
    conf = tmp_path / "logrotate.conf"
    conf.write_text("\n".join(config).replace("/srv/*", str(droot.path)) + "\n")
    log = droot.path / "logs" / "web.1.log"
    wait_until(lambda: log.exists() and log.stat().st_size > 0, what="the first lines")
    for _ in range(ROTATIONS):
        before = log.stat().st_ino
        res = subprocess.run(
            [LOGROTATE, "-f", "-s", str(tmp_path / "state"), str(conf)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert (droot.path / "logs" / "web.1.log.1").stat().st_ino == before, "renamed"
        # reopened after SIGUSR1: the name is a new file, and lines go there (a few
        # hundred, so that the next rotation happens as steadily under way as this one)
        wait_until(
            lambda b=before: log.stat().st_ino != b and log.read_bytes().count(b"\n") >= 300,
            what="the daemon to reopen web.1.log",
        )
    stop.touch()
    end = wait_until(
        lambda: [line for line in log.read_bytes().splitlines() if line.startswith(b"end ")],
        what="the writer's last line",
    )
    last = int(end[0].split()[1])
    lines = numbered_lines(droot.path / "logs", "web.1")
    numbers = sorted(int(line) for line in lines if not line.startswith(b"end "))
    assert numbers == list(range(1, last + 1)), "every line once, none lost, none doubled"
    assert len(list((droot.path / "logs").glob("web.1.log*"))) == ROTATIONS + 1
    print(f"{last} lines over {ROTATIONS} rotations by logrotate")


def test_tail_lines_reads_back_only_what_it_needs(tmp_path: Path) -> None:
    path = tmp_path / "web.1.log"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(30_000)))  # several blocks
    assert tail_lines(path, 3) == [b"line 29997", b"line 29998", b"line 29999"]
    assert tail_lines(path, 20_000) == [b"line %d" % i for i in range(10_000, 30_000)]
    assert tail_lines(path, 0) == []
    path.write_bytes(b"a\nb\nno newline yet")
    assert tail_lines(path, 2) == [b"b", b"no newline yet"]
    assert tail_lines(path, 10) == [b"a", b"b", b"no newline yet"]
    path.write_bytes(b"")
    assert tail_lines(path, 10) == []


def test_logs_asks_a_running_daemon_and_reads_the_file_once_it_stopped(
    droot: Root, daemon: Any
) -> None:
    logs = droot.path / "logs"
    (logs / "web.1.log").write_bytes(b"from an earlier daemon\n")
    code = "import time\nprint('from this one', flush=True)\ntime.sleep(3600)"
    droot.release(proc("web", python(code)))
    d = daemon("--log-files")
    wait_until(lambda: b"from this one" in (logs / "web.1.log").read_bytes(), what="the line")
    argv = [DAEMON, "logs", "web.1", "--root", str(droot.path)]
    asked = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert (asked.returncode, asked.stdout, asked.stderr) == (0, "web.1 | from this one\n", "")
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    read = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read.stderr
    assert read.stdout == "web.1 | from an earlier daemon\nweb.1 | from this one\n"
    assert "daemon not running; lines from" in read.stderr


def test_follow_lines_holds_a_line_caught_in_mid_write_until_it_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "web.1.log"
    path.write_bytes(b"1\n2\n3\nhal")
    lines = follow_lines(path, 2, poll=0.01)
    assert [next(lines), next(lines)] == [b"2", b"3"]
    with path.open("ab") as f:
        f.write(b"f a line\n")
    assert next(lines) == b"half a line"
    lines.close()
    path.write_bytes(b"a\nno newline")
    lines = follow_lines(path, 1, poll=0.01)
    assert next(lines) == b"a"  # the last whole line: n counts whole lines
    with path.open("ab") as f:
        f.write(b" until now\n")
    assert next(lines) == b"no newline until now"
    lines.close()

"""The leftovers of a killed daemon, found from /proc without psutil (issue 16).

kill_previous runs at every start; it reads /proc itself so the daemon does not keep
psutil in memory for one scan. These tests pin what it must still tell apart, on real
processes: a stray of ours (cwd under builds/, BRR_PROCESS in the environment it was
started with) and its children, from a bystander in the same directory without the tag,
from a tagged process elsewhere; a stray whose build was removed meanwhile; and a
children.json entry that names one of ours, from one whose start time or tag is wrong.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisord_lite.daemon.leftovers import kill_previous, recorded_child, strays
from supervisord_lite.daemon.proctree import environ, start_ticks, tag_of, tagged_any
from tests.helpers import pid_alive, wait_until

# a parent that starts one child and both sleep; the child's pid on stdout
PARENT_AND_CHILD = (
    "import subprocess, sys, time\n"
    "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "print(c.pid, flush=True)\n"
    "time.sleep(600)\n"
)


class Started:
    """Processes a test starts, each in a session of its own, all killed at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(
        self, cwd: Path, env: dict[str, str], code: str = PARENT_AND_CHILD
    ) -> tuple[int, int]:
        """(pid, its child's pid) of a new process running code in cwd with env."""
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=cwd,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        return proc.pid, child

    def kill_all(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def started() -> Iterator[Started]:
    s = Started()
    try:
        yield s
    finally:
        s.kill_all()


@pytest.fixture
def builds(tmp_path: Path) -> Path:
    app = tmp_path / "builds" / "b-000000000001" / "app"
    app.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    return tmp_path / "builds"


TAG = {"BRR_PROCESS": "web.1", "BRR_RELEASE": "v3"}


def test_the_stray_scan_tells_ours_from_bystanders(builds: Path, started: Started) -> None:
    app = builds / "b-000000000001" / "app"
    ours, ours_child = started.start(app, TAG)
    bystander, bystander_child = started.start(app, {})
    elsewhere, _ = started.start(builds.parent / "elsewhere", TAG)
    found = strays(builds)
    assert {ours, ours_child} <= found
    assert not {bystander, bystander_child, elsewhere} & found


def test_a_stray_whose_build_was_removed_is_still_found(builds: Path, started: Started) -> None:
    app = builds / "b-000000000001" / "app"
    ours, ours_child = started.start(app, TAG)
    shutil.rmtree(builds / "b-000000000001")  # its cwd reads `... (deleted)` now
    assert os.readlink(f"/proc/{ours}/cwd").endswith(" (deleted)")
    assert {ours, ours_child} <= strays(builds)


def test_kill_previous_kills_strays_and_nothing_else(builds: Path, started: Started) -> None:
    app = builds / "b-000000000001" / "app"
    ours, ours_child = started.start(app, TAG)
    bystander, _ = started.start(app, {})
    record = builds.parent / "children.json"
    record.write_text("[]")
    assert kill_previous(record, builds) >= 2
    wait_until(lambda: not pid_alive(ours) and not pid_alive(ours_child), what="strays killed")
    assert pid_alive(bystander)
    assert not record.exists()


def test_a_record_entry_counts_only_with_its_start_time_and_tag(
    builds: Path, started: Started
) -> None:
    ours, _ = started.start(builds.parent / "elsewhere", TAG)
    untagged, _ = started.start(builds.parent / "elsewhere", {})
    ticks = start_ticks(ours)
    assert ticks is not None
    assert recorded_child({"pid": ours, "pgid": ours, "start_ticks": ticks}) == ours
    assert recorded_child({"pid": ours, "pgid": ours, "start_ticks": ticks + 1}) is None
    untagged_ticks = start_ticks(untagged)
    entry = {"pid": untagged, "pgid": untagged, "start_ticks": untagged_ticks}
    assert recorded_child(entry) is None


def test_the_environment_is_read_as_the_process_was_started(builds: Path, started: Started) -> None:
    ours, _ = started.start(builds.parent / "elsewhere", {**TAG, "ODD": "a=b\tc"})
    env = environ(ours)
    assert env is not None and env[b"ODD"] == b"a=b\tc"
    assert tag_of(ours) == ("web.1", "v3") and tagged_any(ours)
    untagged, _ = started.start(builds.parent / "elsewhere", {})
    assert tag_of(untagged) is None and not tagged_any(untagged)
    assert environ(2**22 + 1) is None  # above pid_max: no such process

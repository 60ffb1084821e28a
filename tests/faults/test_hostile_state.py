"""Forged and damaged state under ROOT: the ledger, run/children.json, current, release.yaml,
and hostile YAML in brr.yaml. What the user sees is one line and an exit code; nothing
recorded is lost, nothing unproven is killed, nothing forged runs or verifies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from supervisord_lite import ledger
from supervisord_lite.daemon.leftovers import kill_previous, recorded_child
from supervisord_lite.daemon.proctree import killpg, start_ticks
from supervisord_lite.layout import DeployRoot
from supervisord_lite.manifest import compute_digest
from tests.faults.test_security import Daemon, start
from tests.helpers import DAEMON, pid_alive, run_brr, wait_until, write_app

APP = """\
processes:
  web:
    cmd: "sleep 1000"
    ready: {after: 0}
    stop_timeout: 2
"""


@pytest.fixture
def deployed(tmp_path: Path) -> Path:
    """v1 and v2, v2 current: five ledger lines (build, release, activate, release, activate)."""
    root = tmp_path / "root"
    run_brr(root, "init")
    run_brr(root, "deploy", str(write_app(tmp_path / "src", APP)))
    run_brr(root, "config", "set", "A=1")
    run_brr(root, "activate", "v2")
    return root


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# --- the ledger ----------------------------------------------------------------------------


def test_a_garbage_line_in_the_middle_is_not_cut_and_fails_verify(deployed: Path) -> None:
    path = DeployRoot(deployed).ledger
    lines = lines_of(path)
    assert len(lines) == 5
    lines[1] = b"this is not json\n"
    path.write_bytes(b"".join(lines))
    before = path.read_bytes()
    verify = run_brr(deployed, "verify", check=False)
    assert verify.returncode == 1 and "line 2" in verify.stdout and "torn" not in verify.stdout
    proc = run_brr(deployed, "config", "set", "B=2", check=False)
    assert proc.returncode == 1 and "line 2" in one_line(proc) and "damaged" in proc.stderr
    proc = run_brr(deployed, "rollback", check=False)
    assert proc.returncode == 1 and "line 2" in one_line(proc)
    assert path.read_bytes() == before, "a writer changed a damaged ledger"
    assert DeployRoot(deployed).release_ids() == ["v1", "v2"]
    assert DeployRoot(deployed).current_release_id() == "v2"


def test_only_a_torn_last_line_is_cut(deployed: Path) -> None:
    path = DeployRoot(deployed).ledger
    with path.open("ab") as f:
        f.write(b'{"seq": 6, "event": "rel')
    verify = run_brr(deployed, "verify", check=False)
    assert verify.returncode == 0 and "torn last line" in verify.stdout
    run_brr(deployed, "config", "set", "B=2")
    seqs = [json.loads(line)["seq"] for line in lines_of(path)]
    assert seqs == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("field", "value"),
    [("seq", "x"), ("seq", 1), ("id", "v99999999999"), ("id", "../../etc"), ("previous", 7)],
)
def test_forged_fields_give_one_line_and_no_unrecorded_activation(
    deployed: Path, field: str, value: object
) -> None:
    path = DeployRoot(deployed).ledger
    lines = lines_of(path)
    entry = json.loads(lines[3])  # the release of v2
    entry[field] = value
    lines[3] = json.dumps(entry).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    before = path.read_bytes()
    proc = run_brr(deployed, "activate", "v1", check=False)
    assert proc.returncode == 1 and "line 4" in one_line(proc), proc.stderr
    assert DeployRoot(deployed).current_release_id() == "v2", "current moved, unrecorded"
    proc = run_brr(deployed, "config", "set", "B=2", check=False)
    assert proc.returncode == 1 and "line 4" in one_line(proc)
    assert path.read_bytes() == before
    verify = run_brr(deployed, "verify", check=False)
    assert verify.returncode == 1 and "line 4" in verify.stdout


def test_release_ids_past_the_bound_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger.append(path, "release", "v999999999")
    assert ledger.highest_release_number(ledger.read_ledger(path).entries) == 999999999
    root = tmp_path / "root"
    run_brr(root, "init")
    (root / "ledger.jsonl").write_bytes(path.read_bytes())
    run_brr(root, "build", str(write_app(tmp_path / "src", APP)))
    build_id = DeployRoot(root).build_ids()[0]
    proc = run_brr(root, "release", "--build", build_id, check=False)
    assert proc.returncode == 2 and "past the last one allowed" in one_line(proc)


# --- run/children.json ---------------------------------------------------------------------


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process of ours, not of the daemon's: a session leader, as a daemon's child is."""
    proc = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    wait_until(lambda: start_ticks(proc.pid) is not None, what="bystander started")
    yield proc
    proc.kill()
    proc.wait()


def test_a_forged_children_json_does_not_get_a_bystander_killed(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    record = tmp_path / "children.json"
    ticks = start_ticks(bystander.pid)
    forged = [{"pid": bystander.pid, "pgid": bystander.pid, "name": "web.1", "start_ticks": ticks}]
    record.write_text(json.dumps(forged))
    assert kill_previous(record, tmp_path / "builds") == 0
    assert pid_alive(bystander.pid)


def test_a_recorded_group_of_1_or_a_foreign_group_is_never_signalled(
    bystander: subprocess.Popen[bytes],
) -> None:
    ticks = start_ticks(bystander.pid)
    for pgid in (1, 0, -1, os.getpgid(0)):
        entry = {"pid": bystander.pid, "pgid": pgid, "start_ticks": ticks}
        assert recorded_child(entry) is None, pgid
    for bad in ("x", None, [1], {"pid": 1, "pgid": 1, "start_ticks": start_ticks(1)}):
        assert recorded_child(bad) is None
    with pytest.raises(ValueError, match="refusing"):
        killpg(1, signal.SIGKILL)
    with pytest.raises(ValueError, match="refusing"):
        killpg(0, signal.SIGKILL)


def test_the_daemon_starting_on_a_forged_record_kills_only_its_own(
    daemons: list[Daemon], deployed: Path, bystander: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    record = DeployRoot(deployed).run_dir / "children.json"
    ticks = start_ticks(bystander.pid)
    # no `pgid: 1` here: a daemon that regressed would kill process group 1 of the host
    # (recorded_child's own test covers it without signalling anything)
    forged = [
        {"pid": bystander.pid, "pgid": bystander.pid, "name": "web.1", "start_ticks": ticks},
        {"pid": "1", "pgid": "x", "start_ticks": None},
        "garbage",
    ]
    record.write_text(json.dumps(forged))
    d = start(daemons, deployed, tmp_path / "d.out")
    assert d.status()["state"] == "running"
    assert pid_alive(bystander.pid)


# --- forgeries of current and release.yaml -------------------------------------------------


def forged_copy(root: Path, dest: Path, change: dict[str, object]) -> Path:
    """releases/v2 copied to dest with change applied and its digest recomputed."""
    layout = DeployRoot(root)
    data = yaml.safe_load(layout.release_manifest("v2").read_bytes())
    data.update(change)
    data.pop("digest")
    data["digest"] = compute_digest(data)
    dest.mkdir(parents=True)
    (dest / "release.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def test_current_outside_releases_does_not_run_and_fails_verify(
    deployed: Path, tmp_path: Path
) -> None:
    evil = forged_copy(deployed, tmp_path / "evil" / "v2", {"config": {"EVIL": "1"}})
    current = DeployRoot(deployed).current
    current.unlink()
    current.symlink_to(evil)
    verify = run_brr(deployed, "verify", check=False)
    assert verify.returncode == 1 and "current" in verify.stdout
    proc = subprocess.run(
        [DAEMON, "run", "--root", str(deployed)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 78, proc.stderr[-2000:]
    assert "not into" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


def test_a_re_digested_release_yaml_fails_verify(deployed: Path, tmp_path: Path) -> None:
    path = DeployRoot(deployed).release_manifest("v1")
    data = yaml.safe_load(path.read_bytes())
    data["config"] = {"INJECTED": "1"}
    data.pop("digest")
    data["digest"] = compute_digest(data)
    path.chmod(0o644)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    verify = run_brr(deployed, "verify", check=False)
    assert verify.returncode == 1
    assert "release v1" in verify.stdout and "ledger recorded" in verify.stdout, verify.stdout


# --- hostile YAML --------------------------------------------------------------------------

BOMB = "".join(
    f"{a}: &{a} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
    for p, a in zip(["", "a", "b", "c", "d", "e", "f", "g"], "abcdefgh", strict=True)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (APP + "  worker: {cmd: 'sleep 1'}\n  web: {cmd: 'evil'}\n", "web: given twice"),
        (BOMB + APP, "alias bomb"),
    ],
)
def test_brr_yaml_with_a_duplicate_key_or_an_alias_bomb_is_refused(
    tmp_path: Path, text: str, expected: str
) -> None:
    root = tmp_path / "root"
    run_brr(root, "init")
    src = write_app(tmp_path / "src", text)
    proc = run_brr(root, "build", str(src), check=False, timeout=60)
    assert proc.returncode == 2 and expected in one_line(proc), proc.stderr
    assert "brr.yaml" in proc.stderr


def test_aliases_and_merge_keys_that_stay_small_still_load(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run_brr(root, "init")
    text = (
        "processes:\n"
        "  web: &web {cmd: 'sleep 1000', stop_timeout: 2}\n"
        "  worker:\n"
        "    <<: *web\n"
        "    stop_timeout: 3\n"  # a merged key overridden: not a duplicate
    )
    run_brr(root, "deploy", str(write_app(tmp_path / "src", text)))
    shown = run_brr(root, "show", "v1").stdout
    assert "web x1: sleep 1000" in shown and "worker x1: sleep 1000" in shown, shown

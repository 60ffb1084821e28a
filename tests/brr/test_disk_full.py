"""A full disk or a file size limit: exit 1, one line that names the file and says what
the failure left, nothing half-written, and work resumes once the limit is gone.

RLIMIT_FSIZE is a full disk's twin that needs no privilege: Python ignores SIGXFSZ, so a
write past the limit fails with EFBIG (a short write first when part of it fits).
"""

from __future__ import annotations

import errno
import json
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisord_lite.brr import build as bld
from supervisord_lite.brr import cli
from supervisord_lite.brr.digest import FORK_FROM
from tests.conftest import SIMPLE_APP
from tests.helpers import BRR, brr_json, run_brr, write_app


def fsize_limit(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def brr_limited(root: Path, limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    # stderr is a pipe, which the limit does not cover: the error line gets out
    return subprocess.run(
        [BRR, "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=fsize_limit(limit),
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("brr-release: error: "), lines
    return lines[0]


def listing(root: Path) -> dict[str, list[str]]:
    """Every entry of the root's directories, temps included."""
    return {d: sorted(p.name for p in (root / d).iterdir()) for d in ("builds", "releases")}


def test_build_over_the_size_limit_says_which_file_and_stores_nothing(
    root: Path, tmp_path: Path
) -> None:
    app = write_app(tmp_path / "big", SIMPLE_APP, {"blob.txt": "x" * 100_000})
    line = one_error_line(brr_limited(root, 4096, "build", str(app)))
    assert "cannot write " in line and "/app/blob.txt: File too large" in line, line
    assert "no build was stored; free space and run it again" in line, line
    assert listing(root) == {"builds": [], "releases": []}  # no temp left either
    assert brr_json(root, "build", str(app))["reused"] is False  # the limit gone, it works


def test_a_copy_workers_write_error_is_the_same_one_line(root: Path, tmp_path: Path) -> None:
    """The copy runs in forked workers (brr/forked.py) from FORK_FROM files up: the
    directory of the big file is dealt to the second share, a child's, on a machine of
    two cores or more."""
    files = {f"many/m{i}.py": "V = 1\n" for i in range(FORK_FROM)}
    files.update({"Procfile": "web: sleep 1000\n", "big/blob.txt": "x" * 100_000})
    app = write_app(tmp_path / "big", SIMPLE_APP, files)
    line = one_error_line(brr_limited(root, 4096, "build", str(app)))
    assert "cannot write " in line and "/app/big/blob.txt: File too large" in line, line
    assert "no build was stored; free space and run it again" in line, line
    assert listing(root) == {"builds": [], "releases": []}


def test_config_set_over_the_size_limit_makes_no_release(root: Path, app: Path) -> None:
    bid = brr_json(root, "build", str(app))["id"]
    run_brr(root, "release", "--build", bid, "--activate", "--no-signal")
    before = listing(root)
    line = one_error_line(brr_limited(root, 1, "config", "set", "A=1", "--activate"))
    assert "release.yaml: File too large (no release was made;" in line, line
    assert listing(root) == before
    assert (root / "current").readlink() == Path("releases/v1")
    assert run_brr(root, "verify").returncode == 0


def test_a_ledger_line_that_does_not_fit_leaves_no_part_of_it(root: Path, app: Path) -> None:
    bid = brr_json(root, "build", str(app))["id"]
    run_brr(root, "release", "--build", bid, "--no-signal")
    run_brr(root, "release", "--build", bid, "--activate", "--no-signal")
    ledger = (root / "ledger.jsonl").read_bytes()
    # room for 10 more bytes: the write of the line is short, the next one fails
    line = one_error_line(brr_limited(root, len(ledger) + 10, "activate", "v1", "--no-signal"))
    assert f"cannot append `activate v1` to the ledger {root / 'ledger.jsonl'}" in line, line
    # an activation the ledger does not record is undone: the failure changed nothing
    assert "(current is back at v2: nothing was changed; free space and run it again)" in line
    assert (root / "current").readlink() == Path("releases/v2")
    assert (root / "ledger.jsonl").read_bytes() == ledger
    run_brr(root, "activate", "v1", "--no-signal")  # what the line says to do
    after = (root / "ledger.jsonl").read_bytes()
    assert after.startswith(ledger)
    assert json.loads(after[len(ledger) :])["event"] == "activate"


def test_an_os_error_anywhere_is_one_line_but_any_other_exception_shows(
    root: Path, app: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def eio(*_args: object) -> None:
        raise OSError(errno.EIO, "Input/output error", "/dev/disk")

    monkeypatch.setattr(bld, "build", eio)
    assert cli.main(["--root", str(root), "build", str(app)]) == 1
    assert capsys.readouterr().err == "brr-release: error: /dev/disk: Input/output error\n"

    def bug(*_args: object) -> None:
        raise KeyError("a bug must be seen")

    monkeypatch.setattr(bld, "build", bug)
    with pytest.raises(KeyError):
        cli.main(["--root", str(root), "build", str(app)])

"""`brr-release run`: a one-off command in a release's app dir, config and clean env."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import BRR, brr_json, run_brr

# what a one-off sees: where it runs, a config value, the operator's shell, BRR_*
PROBE = (
    'echo "cwd=$(pwd)"; echo "greeting=$GREETING"; echo "leak=${OPERATOR_ONLY-unset}"; '
    'echo "release=$BRR_RELEASE"; echo "shared=$BRR_SHARED"; exit 7'
)


def brr_run(root: Path, *args: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BRR, "--root", str(root), "run", *args],
        capture_output=stdin is None,
        stdout=subprocess.PIPE if stdin is not None else None,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        text=True,
        env={**os.environ, "OPERATOR_ONLY": "from my shell"},
        timeout=60,
    )


def test_run_in_release_env_with_exit_code(root: Path, app: Path) -> None:
    deployed = brr_json(root, "deploy", str(app), "--set", "GREETING=first", "--no-signal")
    run_brr(root, "config", "set", "GREETING=second", "--activate", "--no-signal")
    proc = brr_run(root, "--", "sh", "-c", PROBE)
    assert proc.returncode == 7, proc.stderr
    app_dir = root / "builds" / deployed["build"] / "app"
    assert proc.stdout.splitlines() == [
        f"cwd={app_dir}",
        "greeting=second",
        "leak=unset",
        "release=v2",
        f"shared={root / 'shared'}",
    ]
    assert (root / "shared").is_dir()
    older = brr_run(root, "--release", "v1", "--", "sh", "-c", PROBE)
    assert (older.returncode, older.stdout.splitlines()[1]) == (7, "greeting=first")
    # one argument is a shell command line, leading assignments and all
    line = brr_run(root, "--", "A=1 B='x y' printenv A B")
    assert (line.returncode, line.stdout) == (0, "1\nx y\n")


def test_run_is_interactive_on_a_tty(root: Path, app: Path) -> None:
    brr_json(root, "deploy", str(app), "--no-signal")
    leader, follower = os.openpty()
    try:
        proc = brr_run(
            root, "--", "sh -c 'test -t 0 && echo tty || echo not a tty'", stdin=follower
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert (proc.returncode, proc.stdout) == (0, "tty\n")
    piped = brr_run(root, "--", "sh -c 'test -t 0 && echo tty || echo not a tty'")
    assert piped.stdout == "not a tty\n"


def test_run_failures_are_one_line(root: Path, app: Path) -> None:
    nothing = brr_run(root, "--", "true")
    assert nothing.returncode == 2
    assert nothing.stderr == "brr-release: error: run: no release is current (pass --release ID)\n"
    brr_json(root, "deploy", str(app), "--no-signal")
    missing = brr_run(root, "--", "no-such-program-here", "x")
    assert missing.returncode == 127
    assert missing.stderr == ("brr-release: error: run: no-such-program-here: command not found\n")
    no_release = brr_run(root, "--release", "v9", "--", "true")
    assert (no_release.returncode, no_release.stderr.count("\n")) == (2, 1)
    assert "no such release: v9" in no_release.stderr
    empty = brr_run(root)
    assert empty.returncode == 2 and "name a command after --" in empty.stderr

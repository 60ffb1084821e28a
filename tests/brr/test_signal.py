"""Activation signals the daemon found through the pidfile, and only the daemon."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import brr_json, run_brr, wait_until

# A stand-in whose command line is the daemon's: it records each SIGHUP it gets.
FAKE_DAEMON = (
    "import signal, sys, time\n"
    "out = sys.argv[1]\n"
    "signal.signal(signal.SIGHUP, lambda *_: open(out, 'a').write('HUP\\n'))\n"
    "open(out, 'a').write('up\\n')\n"
    "time.sleep(600)\n"
)


def start(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL)


def test_activate_signals_the_daemon_in_the_pidfile(root: Path, app: Path, tmp_path: Path) -> None:
    bid = brr_json(root, "build", str(app))["id"]
    run_brr(root, "release", "--build", bid)
    log = tmp_path / "hups"
    fake = start([sys.executable, "-c", FAKE_DAEMON, str(log), "supervisord-lite", "run"])
    try:
        wait_until(lambda: log.exists() and "up" in log.read_text(), what="fake daemon up")
        (root / "run" / "supervisord-lite.pid").write_text(f"{fake.pid}\n")
        out = brr_json(root, "activate", "v1")
        assert out["signalled"] == fake.pid
        wait_until(lambda: log.read_text().count("HUP") == 1, what="one SIGHUP")
        out = brr_json(root, "activate", "v1", "--no-signal")
        assert out["signalled"] is None
    finally:
        fake.kill()
        fake.wait()
    assert log.read_text().count("HUP") == 1


def test_a_reused_pid_is_never_signalled(root: Path, app: Path) -> None:
    bid = brr_json(root, "build", str(app))["id"]
    run_brr(root, "release", "--build", bid)
    bystander = start(["sleep", "600"])  # SIGHUP would kill it
    try:
        (root / "run" / "supervisord-lite.pid").write_text(f"{bystander.pid}\n")
        out = brr_json(root, "activate", "v1")
        assert out["signalled"] is None
        assert bystander.poll() is None, "a process that is not the daemon got SIGHUP"
    finally:
        bystander.kill()
        bystander.wait()


def test_wait_without_a_daemon_says_so(root: Path, app: Path) -> None:
    bid = brr_json(root, "build", str(app))["id"]
    run_brr(root, "release", "--build", bid)
    proc = run_brr(root, "activate", "v1", "--wait", check=False)
    assert proc.returncode == 1
    assert "daemon not running: v1 is current and will run when it starts" in proc.stderr
    assert (root / "current").resolve().name == "v1"

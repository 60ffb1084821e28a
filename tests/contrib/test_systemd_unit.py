"""The systemd unit: systemd's own checker accepts it, and it says what the daemon needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import DAEMON

UNIT = Path(__file__).parents[2] / "systemd" / "supervisord-lite@.service"


def test_unit_declares_notify_reload_and_hardening() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "ExecReload=/usr/local/bin/supervisord-lite reload --root ${BRR_ROOT} --wait --timeout 140",
        "Restart=on-failure",
        "KillMode=mixed",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/srv/%i",
        "ReadOnlyPaths=/srv/%i/builds /srv/%i/releases",
        "PrivateTmp=yes",
        "ProtectHome=yes",
    ):
        assert line in text.splitlines(), line
    assert any(line.startswith("WatchdogSec=") for line in text.splitlines())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify insists the ExecStart binary exists: point it at the one under test
    unit = tmp_path / "supervisord-lite@demo.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/supervisord-lite", DAEMON))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line for line in (proc.stdout + proc.stderr).splitlines() if "supervisord-lite" in line
    ]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr

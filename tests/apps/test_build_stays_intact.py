"""Running a Python app leaves its build as built: nothing writes __pycache__ into it.

A build is read-only, but not to root: Python run as root (a container, a quick test)
would write __pycache__ next to every imported module, and `verify` would then report
the build as changed. Processes, the release phase and `run` get PYTHONDONTWRITEBYTECODE.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from tests.helpers import PY, brr_json, run_brr, wait_until, write_app

IMPORT_HELPER = f"{shlex.quote(PY)} -c 'import helper; helper.main()'"


def test_processes_release_phase_and_run_leave_the_build_intact(
    root: Path, tmp_path: Path, live_daemon: Any
) -> None:
    src = write_app(
        tmp_path / "src",
        f"release_command: {IMPORT_HELPER!r}\n"
        f"processes:\n  web:\n    cmd: {IMPORT_HELPER!r}\n    ready: {{after: 0.5}}\n",
        {
            "helper.py": "import time\n\ndef main():\n    print('imported', flush=True)\n"
            "    time.sleep(3600 if __import__('os').environ.get('BRR_PROCESS') == 'web.1'"
            " else 0)\n"
        },
    )
    deployed = brr_json(root, "deploy", str(src), "--no-signal")
    d = live_daemon(root)
    wait_until(lambda: "web.1 | imported" in d.output(), what="web.1 imported its module")
    assert run_brr(root, "run", "--", IMPORT_HELPER).stdout == "imported\n"
    app_dir = root / "builds" / deployed["build"] / "app"
    assert not (app_dir / "__pycache__").exists()
    verify = run_brr(root, "verify", check=False)
    assert verify.returncode == 0, verify.stdout

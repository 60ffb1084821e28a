"""The client package runs in the operator's shell: it must start without the daemon's
libraries (anyio, psutil) or any module of supervisord_lite.daemon."""

from __future__ import annotations

import subprocess

from tests.helpers import PY

CHECK = """
import sys
import supervisord_lite.client.ctl, supervisord_lite.client.settle
import supervisord_lite.brr.activate
heavy = sorted(
    name for name in sys.modules
    if name.split(".")[0] in ("anyio", "psutil") or name.startswith("supervisord_lite.daemon")
)
print(" ".join(heavy))
"""


def test_the_client_and_activate_wait_import_nothing_of_the_daemon() -> None:
    out = subprocess.run([PY, "-c", CHECK], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == []

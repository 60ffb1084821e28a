"""One booted systemd for the whole module, set up by the operator's commands of
docs/operations.md; a test that needs a second boot takes the host over."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.systemd.boot import BootError, Box, cannot_boot_reason

REPO = Path(__file__).parents[2]
OPERATIONS = REPO / "docs" / "operations.md"
EXAMPLE_APP = REPO / "contrib" / "example-app"
WHEELHOUSE = "/opt/wheelhouse"

# Word for word from docs/operations.md (a test checks that each line is there), run in the
# box as root from the source checkout; only the wheelhouse stands in for "a wheel".
INSTALL = (
    "/usr/bin/python3.11 -m venv /opt/supervisord-lite",
    f"/opt/supervisord-lite/bin/pip install --no-index --find-links {WHEELHOUSE} supervisord-lite",
    "ln -s /opt/supervisord-lite/bin/brr-release /opt/supervisord-lite/bin/supervisord-lite "
    "/usr/local/bin/",
    "install -m 0644 systemd/supervisord-lite@.service /etc/systemd/system/",
    "useradd --system --home /srv/myapp --shell /usr/sbin/nologin app",
    "groupadd deploy && usermod -aG deploy app",
    "brr-release --root /srv/myapp init --group deploy",
    "brr-release --root /srv/myapp deploy /srv/checkout",
    "systemctl daemon-reload",
    "systemctl enable --now supervisord-lite@myapp",
)

# A process type the test adds to the example app: it tries to write where the unit's
# hardening should stop it, says what happened, and stays up.
PROBE = """\
import errno, time
for path in ["/srv/myapp/builds/probe", "/srv/myapp/releases/probe", "/etc/probe",
             "/opt/probe", "/usr/local/probe", "/root/probe",
             "/srv/myapp/run/probe", "/srv/myapp/logs/probe", "/tmp/probe"]:
    try:
        with open(path, "w") as f:
            f.write("x")
    except OSError as exc:
        print(f"probe: {path} denied {errno.errorcode[exc.errno]}", flush=True)
    else:
        print(f"probe: {path} written", flush=True)
time.sleep(1e6)
"""
PROBE_TYPE = """\
  probe:
    cmd: "python3 probe.py"
    ready: {after: 0.5}
"""
# the same app whose web processes die at start: a deploy the daemon must refuse
BROKEN_APP = 'raise SystemExit("web: cannot start: DATABASE_URL is not set")\n'


class Host:
    """The box the tests drive; the second-boot test replaces it with a new boot."""

    def __init__(self, box: Box) -> None:
        self.box = box


def missing_tools() -> str | None:
    """What the operator's commands need in the box, from the host's (read-only) /usr."""
    for tool in ("curl", "useradd", "ps"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not Path("/usr/bin/python3.11").exists():
        return "/usr/bin/python3.11 not installed"
    venv = subprocess.run(
        ["/usr/bin/python3.11", "-c", "import ensurepip"], capture_output=True, timeout=60
    )
    if venv.returncode != 0:
        return "/usr/bin/python3.11 with its venv module (python3.11-venv) not installed"
    return None


def build_wheelhouse(dest: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-build-isolation",
         "-w", str(dest), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot build the wheels to install in the box: {proc.stderr.strip()}")


def write_checkouts(box: Box) -> None:
    good = box.path("/srv/checkout")
    shutil.copytree(EXAMPLE_APP, good)
    (good / "probe.py").write_text(PROBE)
    with (good / "brr.yaml").open("a") as f:
        f.write(PROBE_TYPE)
    broken = box.path("/srv/broken")
    shutil.copytree(good, broken)
    (broken / "app.py").write_text(BROKEN_APP)


def boot(layers: Path) -> Box:
    box = Box(layers, layers.parent / f"{layers.name}-console.log")
    try:
        box.boot()
    except BootError as exc:
        pytest.fail(str(exc))
    return box


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    reason = cannot_boot_reason() or missing_tools()
    if reason:
        pytest.skip(f"cannot boot systemd here: {reason}")
    scratch = tmp_path_factory.mktemp("sd")
    build_wheelhouse(scratch / "wheels")
    # the layers live in a scratch directory, not on a tmpfs, so that a second boot can
    # come up on the same root
    h = Host(boot(scratch / "layers"))
    try:
        shutil.copytree(scratch / "wheels", h.box.path(WHEELHOUSE))
        write_checkouts(h.box)
        for command in INSTALL:
            h.box.sh(f"cd {REPO} && {command}", timeout=300)
        yield h
    finally:
        h.box.kill()

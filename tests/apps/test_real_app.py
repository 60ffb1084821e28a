"""A real app: Flask vendored by pip in a build step, served by gunicorn on the held
socket, deployed, switched under load with 0 failed requests, rolled back, verified.

Skipped unless Flask is installed in this venv: its build step runs pip, which needs a
package index at test time (Flask is no test dependency of this project).
"""

from __future__ import annotations

import importlib.util
import shlex

import pytest

from tests.helpers import PY, run_brr, wait_until, write_app
from tests.zero_downtime.conftest import GUNICORN, Deploy, deploy  # noqa: F401 (fixture)
from tests.zero_downtime.loadgen import LoadGen, failures, summary

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("flask") is None,
    reason="Flask is not installed in this venv (the build step vendors it with pip)",
)

FLASK_APP = """\
import os

from flask import Flask

app = Flask(__name__)
RELEASE = os.environ["BRR_RELEASE"]


@app.get("/")
def index():
    return f"{RELEASE} {os.environ.get('GREETING', 'hello')} from flask\\n"
"""


def flask_app(d: Deploy) -> str:
    src = write_app(
        d.tmp / "src",
        "build:\n"
        f"  - {shlex.quote(PY)} -m pip install --quiet --no-compile --target vendor"
        " -r requirements.txt\n"
        'release_command: "echo migrated $BRR_RELEASE >> $BRR_SHARED/migrations.log"\n'
        f'sockets:\n  http: {{bind: "127.0.0.1:{d.port}", backlog: 1024}}\n'
        "processes:\n"
        "  web:\n"
        f"    cmd: PYTHONPATH=vendor {shlex.quote(GUNICORN)} app:app --preload --workers 2"
        " --graceful-timeout 5\n"
        "    sockets: [http]\n"
        "    ready: {notify: true}\n"
        "    ready_timeout: 60\n"
        "    stop_timeout: 10\n",
        {"app.py": FLASK_APP, "requirements.txt": "flask\n"},
    )
    return d.build(src)


@pytest.mark.timeout(600)
def test_flask_app_deployed_switched_rolled_back(deploy: Deploy) -> None:  # noqa: F811
    build = flask_app(deploy)
    vendored = deploy.root / "builds" / build / "app" / "vendor" / "flask"
    assert vendored.is_dir(), "pip vendored Flask into the build"
    v1 = deploy.release(build, "GREETING=hello")
    deploy.start(v1)
    with LoadGen(deploy.port, threads=4, pace=0.01, max_duration=300) as load:
        deploy.wait_serving(v1)
        v2 = deploy.config_set("GREETING=hola")
        deploy.switch(v2)
        v3 = deploy.config_set("GREETING=salut")
        deploy.switch(v3)
        back = run_brr(deploy.root, "rollback", "--wait", "--timeout", "90", timeout=120)
        assert back.stdout.startswith(f"{v2} is current (was {v3})"), back.stdout
        deploy.running = v2
        deploy.wait_serving(v2)
        served = load.count()  # then some more load on the rolled-back release
        wait_until(lambda: load.count() >= served + 20, what="20 more requests after rollback")
    samples = load.snapshot()
    print(f"\nflask + gunicorn, 3 switches: {summary(samples)}")
    assert failures(samples) == {}, summary(samples)
    assert {s.release for s in samples} <= {v1, v2, v3}
    assert deploy.status()["release"] == v2
    log = (deploy.root / "shared" / "migrations.log").read_text().split("\n")
    assert log[:4] == [f"migrated {v}" for v in (v1, v2, v3, v2)]
    one_off = run_brr(
        deploy.root,
        "run",
        "--",
        "PYTHONPATH=vendor python3 -c 'import flask, os; "
        'print(os.environ["GREETING"], flask.Flask.__name__)\'',
    )
    assert one_off.stdout == "hola Flask\n"
    verify = run_brr(deploy.root, "verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr

"""Procfiles as honcho and foreman read them: assignments, `release:`, PORT, .env."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml

from supervisord_lite.execline import exec_line
from tests.helpers import PY, brr_json, run_brr, wait_until

# writes its environment (the keys the test looks at) to $OUT/<BRR_PROCESS>.json
DUMP_ENV_PY = """\
import json, os, time
keys = ('PORT', 'GREETING', 'TWO', 'BRR_SHARED')
env = {k: os.environ.get(k) for k in keys}
path = os.path.join(os.environ['OUT'], os.environ['BRR_PROCESS'] + '.json')
open(path + '.tmp', 'w').write(json.dumps(env)); os.rename(path + '.tmp', path)
time.sleep(3600)
"""
DUMP_ENV = f"{shlex.quote(PY)} dump_env.py"


def procfile_app(src: Path, text: str) -> Path:
    src.mkdir(parents=True)
    (src / "Procfile").write_text(text)
    (src / "dump_env.py").write_text(DUMP_ENV_PY)
    return src


def env_of(out: Path, name: str) -> dict[str, Any]:
    path = out / f"{name}.json"
    data: dict[str, Any] = json.loads(wait_until(lambda: path.exists() and path.read_text()))
    return data


def test_procfile_runs_as_foreman_runs_it(root: Path, tmp_path: Path, live_daemon: Any) -> None:
    out = tmp_path / "out"
    out.mkdir()
    src = procfile_app(
        tmp_path / "src",
        "release: echo release phase ran for $BRR_RELEASE | tee -a $BRR_SHARED/phases\n"
        f"web: GREETING=hello {DUMP_ENV}\n"
        f"worker: GREETING='two words' TWO=\"a b\" {DUMP_ENV}\n",
    )
    deploy = run_brr(root, "deploy", str(src), "--set", f"OUT={out}", "--no-signal")
    assert "release phase ran for v1" in deploy.stderr
    shown = brr_json(root, "show", "v1")
    assert shown["release_command"].startswith("echo release phase ran for $BRR_RELEASE")
    assert (root / "shared" / "phases").read_text() == "release phase ran for v1\n"
    assert sorted(shown["processes"]) == ["web", "worker"], "release: is not a process"
    live_daemon(root)
    web = env_of(out, "web.1")
    assert (web["PORT"], web["GREETING"]) == ("5000", "hello")
    assert web["BRR_SHARED"] == str(root / "shared")
    worker = env_of(out, "worker.1")
    assert (worker["GREETING"], worker["TWO"], worker["PORT"]) == ("two words", "a b", None)


def test_port_named_without_port_or_socket_warns_at_build(root: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "brr.yaml").write_text(
        "processes:\n"
        "  web: {cmd: 'gunicorn -b 0.0.0.0:$PORT app:app'}\n"
        "  api: {cmd: 'serve --port ${PORT}', port: 8000}\n"
        "  clock: {cmd: 'python clock.py'}\n"
    )
    proc = run_brr(root, "build", str(src))
    warnings = [line for line in proc.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 1, proc.stderr
    assert "process 'web' names $PORT but declares neither `port:` nor `sockets:`" in warnings[0]


def test_import_procfile_release_port_and_env_beside(tmp_path: Path) -> None:
    procfile = (
        procfile_app(
            tmp_path / "app",
            "release: python manage.py migrate\nweb: gunicorn -b 0.0.0.0:$PORT app:app\n",
        )
        / "Procfile"
    )
    (procfile.parent / ".env").write_text("SECRET=x\n")
    proc = run_brr(None, "import", "procfile", str(procfile))
    decl = yaml.safe_load(proc.stdout)
    assert decl == {
        "release_command": "python manage.py migrate",
        "processes": {"web": {"cmd": "gunicorn -b 0.0.0.0:$PORT app:app", "port": 5000}},
    }
    env = procfile.parent / ".env"
    assert f"{env} is not imported" in proc.stderr
    assert f"--env-file {env}" in proc.stderr
    assert "SECRET" not in proc.stdout


def test_env_file_is_literal_and_bare_keys_set_nothing(root: Path, app: Path) -> None:
    env = app.parent / "prod.env"
    env.write_text("HOME_DIR=/srv\nURL=${HOME_DIR}/x\nPASSWORD=pa$$word\nBARE\n")
    bid = brr_json(root, "build", str(app))["id"]
    proc = run_brr(root, "release", "--build", bid, "--env-file", str(env))
    assert f"--env-file {env}: BARE has no '=': not set" in proc.stderr
    config = brr_json(root, "show", "v1", "--show-values")["config"]
    assert config == {"HOME_DIR": "/srv", "URL": "${HOME_DIR}/x", "PASSWORD": "pa$$word"}
    help_text = run_brr(root, "release", "--help").stdout
    assert "stay literal" in " ".join(help_text.split())


def test_leading_assignments_reach_the_program_as_sh_reads_them() -> None:
    cmd = "A=\"x y\" B='z' C=a\\ b D=${UNSET_HERE:-d e} E= printenv A B C D E"
    line = exec_line(cmd)
    assert line.startswith("A=") and " exec printenv" in line
    out = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout) == (0, "x y\nz\na b\nd e\n\n")
    # no program after the assignments, or a form beyond the reader: left to the shell
    assert exec_line("A=1") == "A=1"
    assert exec_line("A=$(date) run") == "exec A=$(date) run"

"""`import supervisord` on configs as public projects write them (tests/apps/configs)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import brr_json, run_brr

CONFIGS = Path(__file__).parent / "configs"


def imported(conf: Path, env: dict[str, str] | None = None) -> tuple[Any, list[str]]:
    proc = run_brr(None, "import", "supervisord", str(conf), env=env)
    warnings = [line for line in proc.stderr.splitlines() if "warning:" in line]
    return yaml.safe_load(proc.stdout), warnings


def test_celery_include_continuation_lines_and_directory(root: Path, tmp_path: Path) -> None:
    conf_dir = shutil.copytree(CONFIGS / "celery", tmp_path / "celery")
    (conf_dir / "conf.d").mkdir()
    os.symlink("gone.conf", conf_dir / "conf.d" / "broken.conf")  # matched, unreadable
    decl, warnings = imported(conf_dir / "supervisord.conf")
    procs = decl["processes"]
    assert sorted(procs) == ["celery", "celerybeat"], "[include] followed"
    beat = procs["celerybeat"]["cmd"]
    assert "celery beat --app=proj.celery:app --schedule /var/lib/celery/beat.db" in beat
    assert beat.endswith("--loglevel=INFO'"), beat
    assert procs["celery"]["stop_timeout"] == 600.0
    text = "\n".join(warnings)
    assert text.count("directory=/path/to/project is OUTSIDE the build") == 2
    assert f"{conf_dir / 'conf.d' / 'broken.conf'}: cannot read" in text
    assert "[unix_http_server]: supervisorctl's socket is not imported" in text
    assert "killasgroup" not in text, "the daemon always kills the group: nothing to warn"
    assert "priority=998 cannot be carried over" in text
    src = tmp_path / "src"
    src.mkdir()
    (src / "brr.yaml").write_text(yaml.safe_dump(decl))
    assert brr_json(root, "build", str(src))["id"].startswith("b-")


def test_docker_env_expansion_escapes_duplicates_and_collisions() -> None:
    conf = CONFIGS / "docker" / "supervisord.conf"
    decl, warnings = imported(conf, env={"PORT": "8000", "WORKER_ENABLED": "false"})
    procs = decl["processes"]
    web = procs["web"]["cmd"]
    assert 'gunicorn -b 0.0.0.0:8000 --access-logformat "%(h)s %(r)s %(s)s" app:app' in web
    assert f"cd {conf.parent}" in web
    worker = procs["worker"]
    assert (worker["scale"], worker["stop_timeout"]) == (0, 30.0), "duplicate merged"
    assert procs["worker-q"]["cmd"] == "python worker.py --queue q"
    assert procs["worker-q-2"]["cmd"] == "python worker.py --queue q2", "none lost"
    text = "\n".join(warnings)
    assert "[program:worker] appears twice (lines 19 and 25)" in text
    assert "program:worker-q: its type name 'worker-q' is taken" in text
    assert f"directory={conf.parent} is OUTSIDE the build" in text
    assert "[inet_http_server]: supervisorctl's HTTP server is not imported" in text
    assert "redirect_stderr=false: stdout and stderr always share one stream here" in text
    assert "stopasgroup" not in text and "redirect_stderr=true" not in text


def test_unset_env_expansion_is_named() -> None:
    conf = CONFIGS / "docker" / "supervisord.conf"
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "WORKER_ENABLED")}
    proc = run_brr(None, "import", "supervisord", str(conf), env=env, check=False)
    # autostart=%(ENV_WORKER_ENABLED)s must not count as true
    assert proc.returncode == 2
    assert proc.stderr.endswith("autostart=%(ENV_WORKER_ENABLED)s: expected true or false\n"), (
        proc.stderr
    )
    assert proc.stderr.count("\n") == 1
    env["WORKER_ENABLED"] = "true"
    proc = run_brr(None, "import", "supervisord", str(conf), env=env)
    assert "%(ENV_PORT)s: PORT is not set in this environment: kept as is" in proc.stderr

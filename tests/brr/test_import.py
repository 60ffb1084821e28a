"""`brr-release import`: Procfile and supervisord.conf to a brr.yaml that builds."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.helpers import brr_json, run_brr

SUPERVISORD_CONF = """\
[supervisord]
nodaemon=true

[program:web]
command=python3 -m http.server 8000
numprocs=2
process_name=%(program_name)s_%(process_num)02d
directory=/srv/app
environment=A="1",B="two words, with a comma",C=x
autorestart=true
stopsignal=QUIT
stopwaitsecs=20
user=www-data

[program:worker.q]
command=python3 worker.py
autostart=false
startsecs=3
autorestart=unexpected

[eventlistener:mem]
command=memmon
"""


def test_import_supervisord_conf_builds(root: Path, tmp_path: Path) -> None:
    conf = tmp_path / "supervisord.conf"
    conf.write_text(SUPERVISORD_CONF)
    src = tmp_path / "src"
    src.mkdir()
    proc = run_brr(None, "import", "supervisord", str(conf), "-o", str(src / "brr.yaml"))
    warnings = [line for line in proc.stderr.splitlines() if "warning:" in line]
    assert any("user=www-data cannot be carried over" in w for w in warnings)
    assert any("directory=/srv/app" in w for w in warnings)
    assert any("renamed to process type 'worker-q'" in w for w in warnings)
    assert any("[eventlistener:mem]: not a program" in w for w in warnings)
    decl = yaml.safe_load((src / "brr.yaml").read_text())
    web = decl["processes"]["web"]
    assert web["cmd"] == "sh -c 'cd /srv/app && exec python3 -m http.server 8000'"
    assert (web["scale"], web["restart"], web["stop_signal"], web["stop_timeout"]) == (
        2,
        "always",
        "QUIT",
        20.0,
    )
    assert web["env"] == {"A": "1", "B": "two words, with a comma", "C": "x"}
    worker = decl["processes"]["worker-q"]
    assert (worker["scale"], worker["restart"], worker["ready"]) == (
        0,
        "on-failure",
        {"after": 3.0},
    )
    bid = brr_json(root, "build", str(src))["id"]
    assert bid.startswith("b-")
    again = run_brr(
        None, "import", "supervisord", str(conf), "-o", str(src / "brr.yaml"), check=False
    )
    assert again.returncode == 2 and "exists (pass --force" in again.stderr


def test_import_procfile_with_env(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text(
        "web: gunicorn app:app\n# a comment\nclock: python clock.py\n"
    )
    (tmp_path / ".env").write_text("SECRET=x\n")
    proc = run_brr(
        None, "import", "procfile", str(tmp_path / "Procfile"), "--env", str(tmp_path / ".env")
    )
    decl = yaml.safe_load(proc.stdout)
    assert decl == {
        "processes": {
            "web": {"cmd": "gunicorn app:app", "port": 5000},
            "clock": {"cmd": "python clock.py"},
        }
    }
    assert f"--env-file {tmp_path / '.env'}" in proc.stderr
    assert "SECRET" not in proc.stdout, "config never goes into the build"


def test_import_bad_inputs(tmp_path: Path) -> None:
    missing = run_brr(None, "import", "supervisord", str(tmp_path / "nope.conf"), check=False)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    empty = tmp_path / "empty.conf"
    empty.write_text("[supervisord]\nnodaemon=true\n")
    proc = run_brr(None, "import", "supervisord", str(empty), check=False)
    assert proc.returncode == 2 and "no [program:...] section" in proc.stderr
    garbage = tmp_path / "garbage.conf"
    garbage.write_text("this is not ini\n")
    proc = run_brr(None, "import", "supervisord", str(garbage), check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1

"""Bad input: exit 2, one line `brr-release: error: ...`, and nothing on disk changes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.conftest import SIMPLE_APP
from tests.helpers import brr_json, run_brr, write_app


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with a hash of its content or link target."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "->" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    out.pop("run/lock", None)
    return out


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One root for the module: every test here proves it leaves the root unchanged."""
    base = tmp_path_factory.mktemp("bad-input")
    root = base / "root"
    run_brr(root, "init")
    app = write_app(base / "src", SIMPLE_APP, {"main.py": "print('hi')\n"})
    bid = brr_json(root, "build", str(app))["id"]
    run_brr(root, "release", "--build", bid, "--activate")
    return root


def bad_sources(tmp: Path) -> dict[str, Path]:
    return {
        "malformed": write_app(tmp / "m", "processes: [unclosed\n"),
        "unknown key": write_app(tmp / "u", "processes:\n  web: {cmd: x, colour: red}\n"),
        "wrong type": write_app(tmp / "w", "processes:\n  web: {cmd: x, scale: many}\n"),
        "no declaration": (tmp / "empty").resolve(),
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "../../etc"], "not a release ID: '../../etc'"),
        (["activate", "v0x"], "not a release ID: 'v0x'"),
        (["activate", "v99"], "no such release: v99"),
        (["release", "--build", "b-000000000000"], "no such build: b-000000000000"),
        (["release", "--build", "../../etc"], "not a build ID"),
        (["release", "--build", "BUILD", "--env-file", "/nonexistent/.env"], "no such file"),
        (["config", "set", "NOEQUALS"], "expected KEY=VALUE"),
        (["config", "set", "1BAD=x"], "not a valid config variable name"),
        (["scale", "nosuch=2"], "has no process type 'nosuch'"),
        (["scale", "web=-1"], "expected TYPE=N"),
        (["prune", "--keep", "0"], "at least 1"),
        (["frobnicate"], "invalid choice"),
        (["diff", "v1"], "the following arguments are required"),
    ],
)
def test_bad_arguments(populated: Path, args: list[str], message: str) -> None:
    bid = next(p.name for p in (populated / "builds").iterdir() if p.name.startswith("b-"))
    args = [bid if a == "BUILD" else a for a in args]
    before = snapshot(populated)
    proc = run_brr(populated, *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("brr-release: error: ")
    assert message in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert snapshot(populated) == before


@pytest.mark.parametrize("kind", ["malformed", "unknown key", "wrong type", "no declaration"])
def test_bad_sources(populated: Path, tmp_path: Path, kind: str) -> None:
    (tmp_path / "empty").mkdir()
    src = bad_sources(tmp_path)[kind]
    before = snapshot(populated)
    for cmd in (["build", str(src)], ["deploy", str(src)]):
        proc = run_brr(populated, *cmd, check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("brr-release: error: ") and proc.stderr.count("\n") == 1
        assert str(src) in proc.stderr
    assert snapshot(populated) == before


def test_non_string_config_value_in_env_style_yaml_is_refused(populated: Path) -> None:
    # config values arrive as strings from the CLI; a manifest with a boolean is refused
    manifest = populated / "releases" / "v1" / "release.yaml"
    text = manifest.read_text()
    assert "config: {}" in text
    manifest.write_text(text.replace("config: {}", "config: {DEBUG: true}"))
    try:
        proc = run_brr(populated, "show", "v1", check=False)
        assert proc.returncode == 2
        assert "config.DEBUG: must be a string, not a boolean" in proc.stderr
    finally:
        manifest.write_text(text)


def test_missing_root(tmp_path: Path) -> None:
    proc = run_brr(tmp_path / "nope", "releases", check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert not (tmp_path / "nope").exists()
    env = {k: v for k, v in os.environ.items() if k != "BRR_ROOT"}
    import subprocess

    from tests.helpers import BRR

    proc2 = subprocess.run([BRR, "releases"], capture_output=True, text=True, env=env)
    assert proc2.returncode == 2 and "pass --root DIR or set BRR_ROOT" in proc2.stderr


def test_root_from_environment(populated: Path) -> None:
    proc = run_brr(None, "--json", "releases", env={"BRR_ROOT": str(populated)})
    assert '"current": "v1"' in proc.stdout

"""Reproducible builds, the build steps' environment, the build cache, the git record
(issue 13), and an unchanged tree rebuilt without a copy (issue 16)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import marshal
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import PY, brr_json, run_brr, write_app


def build_meta(root: Path, bid: str) -> dict[str, object]:
    meta = yaml.safe_load((root / "builds" / bid / "build.yaml").read_text())
    assert isinstance(meta, dict)
    return meta


def test_compileall_step_gives_the_same_id_in_any_root(tmp_path: Path) -> None:
    src = write_app(
        tmp_path / "src",
        f"build:\n  - {PY} -m compileall -q .\nprocesses:\n  web: sleep 1000\n",
        {"app/__init__.py": "", "app/main.py": "def f():\n    return 1\n"},
    )
    ids = []
    for name in ("r1", "r2"):
        root = tmp_path / name
        run_brr(root, "init")
        ids.append(brr_json(root, "build", str(src))["id"])
        (src / "app" / "main.py").touch()  # a new mtime, the same content
    again = brr_json(tmp_path / "r1", "build", str(src))
    assert ids[0] == ids[1] == again["id"]
    assert again["reused"] is True
    pycs = list((tmp_path / "r1" / "builds" / ids[0] / "app").rglob("*.pyc"))
    assert len(pycs) == 2, pycs


def wheel(name: str, version: str, files: dict[str, str]) -> bytes:
    """A pure-Python wheel, made by hand so that the test needs no network."""
    dist = f"{name}-{version}.dist-info"
    contents = {
        **files,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    contents[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, text in contents.items():
            z.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), text)
    return buf.getvalue()


def test_pip_install_target_step_gives_the_same_id(tmp_path: Path) -> None:
    whl = "demo_pkg-1.0-py3-none-any.whl"
    step = (
        f"{PY} -m pip install -q --disable-pip-version-check --no-index --no-deps "
        f"--target vendor wheels/{whl}"
    )
    src = write_app(tmp_path / "src", f"build:\n  - {step}\nprocesses:\n  web: sleep 1000\n")
    (src / "wheels").mkdir()
    (src / "wheels" / whl).write_bytes(
        wheel("demo_pkg", "1.0", {"demo_pkg/__init__.py": "X = 1\n", "demo_pkg/m.py": "Y = 2\n"})
    )
    root = tmp_path / "root"
    run_brr(root, "init")
    first = brr_json(root, "build", str(src))
    for p in src.rglob("*"):
        p.touch()  # new mtimes, the same content
    again = brr_json(root, "build", str(src))
    assert again == {**first, "reused": True}
    # pip writes the wheel's URL, the staging path, into direct_url.json: the same path
    # every time, in the same root
    vendor = root / "builds" / first["id"] / "app" / "vendor"
    assert (
        "/builds/.stage-0/app/wheels/"
        in (vendor / "demo_pkg-1.0.dist-info" / "direct_url.json").read_text()
    )
    assert (vendor / "demo_pkg" / "m.py").read_text() == "Y = 2\n"
    assert list((vendor / "demo_pkg" / "__pycache__").glob("m.*.pyc")), "pip compiled nothing"
    # the vendored package imports from the build (the .pyc is valid)
    done = subprocess.run(
        [PY, "-v", "-c", "import demo_pkg.m as m; print(m.Y, m.__file__)"],
        cwd=vendor,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["2", str(vendor / "demo_pkg" / "m.py")]
    [pyc] = (vendor / "demo_pkg" / "__pycache__").glob("m.*.pyc")
    assert f"code object from '{pyc}'" in done.stderr, "the rewritten .pyc was not used"
    code = marshal.loads(pyc.read_bytes()[16:])
    assert code.co_filename == "vendor/demo_pkg/m.py"


ENV_APP = "build:\n  - env > env.txt\nprocesses:\n  web: sleep 1000\n"


def step_env(root: Path, bid: str) -> dict[str, str]:
    text = (root / "builds" / bid / "app" / "env.txt").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_build_steps_get_a_clean_environment(root: Path, tmp_path: Path) -> None:
    src = write_app(tmp_path / "src", ENV_APP)
    proc = run_brr(
        root,
        "--json",
        "build",
        str(src),
        "--build-env",
        "FOO",
        "--build-env",
        "BAZ=qux",
        env={"OPERATOR_SECRET": "s3cret", "FOO": "bar", "SOURCE_DATE_EPOCH": ""},
    )
    bid = yaml.safe_load(proc.stdout)["id"]
    env = step_env(root, bid)
    assert "OPERATOR_SECRET" not in env
    assert env["FOO"] == "bar" and env["BAZ"] == "qux"
    assert env["SOURCE_DATE_EPOCH"] == "315532800"  # not a git tree: a fixed time
    assert env["BRR_BUILD_CACHE"] == str(root / "build-cache")
    assert env["PIP_CACHE_DIR"] == str(root / "build-cache" / "pip")
    bad = run_brr(root, "build", str(src), "--build-env", "1=x", check=False)
    assert bad.returncode == 2
    assert "--build-env '1=x': not NAME or NAME=VALUE" in bad.stderr


def test_build_cache_is_kept_between_builds(root: Path, tmp_path: Path) -> None:
    src = write_app(
        tmp_path / "src",
        "build:\n"
        '  - echo run >> "$BRR_BUILD_CACHE/runs"\n'
        '  - wc -l < "$BRR_BUILD_CACHE/runs" > runs.txt\n'
        "processes:\n  web: sleep 1000\n",
    )
    first = brr_json(root, "build", str(src))["id"]
    second = brr_json(root, "build", str(src))["id"]
    app = root / "builds"
    assert (app / first / "app" / "runs.txt").read_text().strip() == "1"
    assert (app / second / "app" / "runs.txt").read_text().strip() == "2"
    assert (root / "build-cache" / "runs").read_text() == "run\nrun\n"
    assert (root / "build-cache" / "stage-0.lock").exists()
    assert sorted(p.name for p in app.iterdir()) == sorted([first, second])


def git(src: Path, *args: str) -> str:
    cmd = ["git", "-C", str(src), "-c", "user.email=t@t", "-c", "user.name=t", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def test_git_commit_is_recorded_and_shown(root: Path, tmp_path: Path) -> None:
    src = write_app(tmp_path / "src", ENV_APP, {"main.py": "1\n"})
    git(src, "init", "-q")
    git(src, "add", "-A")
    git(src, "commit", "-qm", "first")
    head = git(src, "rev-parse", "HEAD")
    when = git(src, "log", "-1", "--format=%ct")
    proc = run_brr(root, "--json", "build", str(src), env={"SOURCE_DATE_EPOCH": ""})
    assert "warning" not in proc.stderr
    bid = yaml.safe_load(proc.stdout)["id"]
    assert build_meta(root, bid)["git"] == {"commit": head, "dirty": False}
    assert step_env(root, bid)["SOURCE_DATE_EPOCH"] == when
    rel = brr_json(root, "release", "--build", bid)["id"]
    assert f"commit {head[:12]}" in run_brr(root, "releases").stdout
    assert f"commit:     {head[:12]}" in run_brr(root, "show", rel).stdout
    assert brr_json(root, "show", rel)["commit"] == head[:12]

    (src / "main.py").write_text("2\n")
    proc = run_brr(root, "--json", "build", str(src))
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "uncommitted changes (1: main.py)" in warning[0], proc.stderr
    bid2 = yaml.safe_load(proc.stdout)["id"]
    assert build_meta(root, bid2)["git"] == {"commit": head, "dirty": True}
    rel2 = brr_json(root, "release", "--build", bid2)["id"]
    assert f"commit:     {head[:12]} (dirty)" in run_brr(root, "show", rel2).stdout


def test_untracked_declaration_makes_the_tree_dirty(root: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_text("1\n")
    git(src, "init", "-q")
    git(src, "add", "-A")
    git(src, "commit", "-qm", "first")
    (src / "brr.yaml").write_text("processes:\n  web: sleep 1000\n")
    proc = run_brr(root, "--json", "build", str(src))
    assert "uncommitted changes (1: brr.yaml)" in proc.stderr
    assert build_meta(root, yaml.safe_load(proc.stdout)["id"])["git"]["dirty"] is True  # type: ignore[index]


@pytest.fixture
def immutable_builds(root: Path) -> Iterator[Path]:
    """builds/ with the immutable attribute: not even root can add an entry to it."""
    if shutil.which("chattr") is None:
        pytest.skip("no chattr")
    builds = root / "builds"
    yield builds
    subprocess.run(["chattr", "-i", str(builds)], check=False)


def test_unchanged_tree_is_reused_without_a_copy(
    root: Path, app: Path, tmp_path: Path, immutable_builds: Path
) -> None:
    src = write_app(tmp_path / "plain", "processes:\n  web: sleep 1000\n", {"a.py": "1\n"})
    first = brr_json(root, "build", str(src))
    ledger = (root / "ledger.jsonl").read_text()
    if subprocess.run(["chattr", "+i", str(immutable_builds)], check=False).returncode != 0:
        pytest.skip("this filesystem has no immutable attribute")
    again = brr_json(root, "build", str(src))  # a copy would need a staging directory
    assert again == {**first, "reused": True}
    assert (root / "ledger.jsonl").read_text() == ledger
    (src / "a.py").write_text("2\n")  # the premise: a changed tree needs one
    proc = run_brr(root, "build", str(src), check=False)
    assert proc.returncode == 1 and "Operation not permitted" in proc.stderr, proc.stderr


def test_source_index_notices_a_change_that_keeps_size_and_mtime(
    root: Path, tmp_path: Path
) -> None:
    src = write_app(tmp_path / "plain", "processes:\n  web: sleep 1000\n", {"a.py": "1\n"})
    first = brr_json(root, "build", str(src))["id"]
    [index] = (root / "build-cache" / "source-index").iterdir()
    data = json.loads(index.read_text())
    data["written_ns"] += 60 * 10**9  # no entry counts as racily clean any more
    index.write_text(json.dumps(data))
    st = (src / "a.py").stat()
    (src / "a.py").write_text("2\n")  # same size
    os.utime(src / "a.py", ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    changed = brr_json(root, "build", str(src))
    assert changed["id"] != first and changed["reused"] is False


def test_deploy_passes_build_env_too(root: Path, tmp_path: Path) -> None:
    src = write_app(tmp_path / "src", ENV_APP)
    out = brr_json(root, "deploy", str(src), "--build-env", "BAZ=from-deploy", "--no-signal")
    assert step_env(root, out["build"])["BAZ"] == "from-deploy"

"""Push-to-deploy: a real bare repository, a real push, the hook runs brr-release deploy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.helpers import BIN, run_brr

HOOK = Path(__file__).parents[2] / "contrib" / "git" / "post-receive"


def git(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_push_deploys_and_a_broken_push_keeps_current(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run_brr(root, "init")
    bare = tmp_path / "app.git"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    shutil.copy(HOOK, bare / "hooks" / "post-receive")
    git("config", "brr.root", str(root), cwd=bare)
    git("config", "brr.wait", "false", cwd=bare)
    work = tmp_path / "work"
    git("clone", "-q", str(bare), str(work), cwd=tmp_path)
    git("checkout", "-q", "-b", "main", cwd=work)
    (work / "brr.yaml").write_text("processes:\n  web: sleep 1000\n")
    (work / "untracked.txt").write_text("not pushed")
    git("add", "brr.yaml", cwd=work)
    git("commit", "-qm", "first", cwd=work)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    push = git("push", "-q", "origin", "main", cwd=work, env=env)
    assert push.returncode == 0, push.stderr
    assert "v1 (build b-" in push.stderr and "deployed" in push.stderr
    assert os.readlink(root / "current") == "releases/v1"
    build = next((root / "builds").glob("b-*"))
    assert sorted(p.name for p in (build / "app").iterdir()) == ["brr.yaml"]

    (work / "brr.yaml").write_text("processes:\n  web: {cmd: sleep 1, colour: red}\n")
    git("commit", "-qam", "broken", cwd=work)
    push = git("push", "-q", "origin", "main", cwd=work, env=env)
    assert "colour: unknown key" in push.stderr and "FAILED" in push.stderr
    assert os.readlink(root / "current") == "releases/v1"

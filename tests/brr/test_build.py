"""`brr-release build`: content addressing, file selection, freezing, failure hygiene."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import yaml

from tests.conftest import SIMPLE_APP
from tests.helpers import brr_json, run_brr, write_app


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_build_is_content_addressed_and_reused(root: Path, app: Path) -> None:
    first = brr_json(root, "build", str(app))
    assert first["id"].startswith("b-") and len(first["id"]) == 14
    assert first["digest"].removeprefix("sha256:")[:12] == first["id"][2:]
    assert first["reused"] is False
    again = brr_json(root, "build", str(app))
    assert again == {**first, "reused": True}
    assert entries(root / "builds") == [first["id"]]
    (app / "main.py").write_text("print('changed')\n")
    changed = brr_json(root, "build", str(app))
    assert changed["id"] != first["id"]


def test_build_runs_steps_in_staging_and_freezes(root: Path, app: Path) -> None:
    bid = brr_json(root, "build", str(app))["id"]
    bundle = root / "builds" / bid / "app"
    assert (bundle / "built.txt").read_text() == "built\n"
    assert not (app / "built.txt").exists(), "build steps must not touch the source"
    for p in (bundle / "main.py", bundle):
        assert not stat.S_IMODE(p.stat().st_mode) & 0o222, f"{p} is writable"
    meta = yaml.safe_load((root / "builds" / bid / "build.yaml").read_text())
    assert meta["id"] == bid and meta["source"] == str(app)
    assert meta["declaration"]["processes"]["web"]["scale"] == 2


def test_exclude_globs_and_default_git_selection(root: Path, tmp_path: Path) -> None:
    src = write_app(
        tmp_path / "g",
        SIMPLE_APP + 'exclude: ["*.log", "secret"]\n',
        {"a.py": "1", "app.log": "x", "secret/key": "k", "untracked.txt": "u", "sub/b.py": "2"},
    )
    git = ["git", "-C", str(src), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run(
        [*git, "add", "brr.yaml", "a.py", "app.log", "secret/key", "sub/b.py"], check=True
    )
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    bid = brr_json(root, "build", str(src))["id"]
    bundle = root / "builds" / bid / "app"
    found = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    assert found == ["a.py", "brr.yaml", "built.txt", "sub/b.py"]


def test_plain_tree_takes_all_but_dot_git(root: Path, app: Path) -> None:
    (app / ".git").mkdir()
    (app / ".git" / "HEAD").write_text("junk")
    bid = brr_json(root, "build", str(app))["id"]
    assert not (root / "builds" / bid / "app" / ".git").exists()


def test_symlink_inside_is_kept_outside_is_refused(root: Path, app: Path) -> None:
    os.symlink("main.py", app / "link.py")
    bid = brr_json(root, "build", str(app))["id"]
    assert os.readlink(root / "builds" / bid / "app" / "link.py") == "main.py"
    os.symlink("../../etc/passwd", app / "escape")
    proc = run_brr(root, "build", str(app), check=False)
    assert proc.returncode == 2
    assert "symlink points outside the source tree" in proc.stderr
    assert entries(root / "builds") == [bid]


def test_failing_build_step_leaves_nothing(root: Path, tmp_path: Path) -> None:
    src = write_app(
        tmp_path / "bad",
        "build:\n  - echo step-output-here\n  - exit 3\nprocesses:\n  web: sleep 1\n",
    )
    proc = run_brr(root, "build", str(src), check=False)
    assert proc.returncode == 1
    assert "step-output-here" in proc.stderr
    assert "build step 2 `exit 3` exited 3" in proc.stderr
    assert entries(root / "builds") == []
    assert (root / "ledger.jsonl").read_text() == ""


def test_procfile_fallback(root: Path, tmp_path: Path) -> None:
    src = tmp_path / "pf"
    src.mkdir()
    (src / "Procfile").write_text("web: python -m http.server\nworker: sleep 10\n")
    bid = brr_json(root, "build", str(src))["id"]
    rel = brr_json(root, "release", "--build", bid)
    show = brr_json(root, "show", rel["id"])
    assert {n: p["scale"] for n, p in show["processes"].items()} == {"web": 1, "worker": 1}


def test_every_file_is_copied_exactly_across_tasks_and_read_sizes(
    root: Path, tmp_path: Path
) -> None:
    """A build without steps: a directory of more files than one copy task takes, and
    sizes at the edges of the read size (0, 1 MiB - 1, 1 MiB, 1 MiB + 1, over 2 MiB)."""
    src = write_app(tmp_path / "src", 'processes: {web: "sleep 1000"}\n')
    mib = 1 << 20
    contents = {f"flat/f{i:03d}.py": f"V = {i}\n".encode() for i in range(600)}
    for size in (0, 1, mib - 1, mib, mib + 1, 2 * mib + 3):
        contents[f"edge/s{size}"] = os.urandom(size)
    for n, (rel, data) in enumerate(sorted(contents.items())):
        (src / rel).parent.mkdir(exist_ok=True)
        (src / rel).write_bytes(data)
        os.utime(src / rel, ns=(1_600_000_000_000_000_000 + n, 1_500_000_000_000_000_000 + n))
    bid = brr_json(root, "build", str(src))["id"]
    bundle = root / "builds" / bid / "app"
    for rel, data in contents.items():
        copied = bundle / rel
        assert copied.read_bytes() == data, rel
        assert copied.stat().st_mtime_ns == (src / rel).stat().st_mtime_ns, rel
        assert stat.S_IMODE(copied.stat().st_mode) == 0o444, rel
    assert run_brr(root, "verify").returncode == 0  # the digest of what was written

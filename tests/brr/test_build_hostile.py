"""`brr-release build` against hostile and careless source trees (issue 12).

Names that forge digest records, a symlink that climbs out through another symlink,
unreadable parts of the source, private files, a sparse file of 256 MiB.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from supervisord_lite.brr.digest import tree_digest
from tests.helpers import BRR, brr_json, run_brr, write_app

PLAIN = "processes:\n  web: sleep 1000\n"


def builds(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "builds").iterdir())


def test_names_with_newlines_cannot_forge_a_digest(tmp_path: Path) -> None:
    # format 1 wrote `D 555 <name>\n` per directory: one directory named "x\nD 555 y"
    # gave the same stream as two directories x and y
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "x\nD 555 y").mkdir(parents=True)
    (b / "x").mkdir(parents=True)
    (b / "y").mkdir()
    for d in (a / "x\nD 555 y", b / "x", b / "y"):
        d.chmod(0o555)
    try:
        assert tree_digest(a, 1) == tree_digest(b, 1), "the test's premise: format 1 collides"
        assert tree_digest(a) != tree_digest(b)
    finally:
        for d in (a / "x\nD 555 y", b / "x", b / "y"):
            d.chmod(0o755)


def test_a_build_records_its_digest_format_and_verifies(root: Path, app: Path) -> None:
    (app / "odd\nname.txt").write_text("x")
    bid = brr_json(root, "build", str(app))["id"]
    meta = yaml.safe_load((root / "builds" / bid / "build.yaml").read_text())
    assert meta["digest_format"] == 2
    assert run_brr(root, "verify").returncode == 0


def test_symlink_escaping_through_a_symlinked_directory_is_refused(
    root: Path, tmp_path: Path
) -> None:
    src = write_app(tmp_path / "src", PLAIN, {"main.py": "x\n"})
    depth = 30  # deeper than any tmp path, so the climb reaches /
    deep = src.joinpath(*[f"d{i}" for i in range(depth)])
    deep.mkdir(parents=True)
    # up: a link to the top of the tree, legitimate by itself
    os.symlink("/".join([".."] * depth), deep / "up")
    # lexically deep/up/../../etc stays inside; the kernel goes from the top up and out
    os.symlink("up/" + "/".join([".."] * depth) + "/etc", deep / "escape")
    assert os.path.realpath(deep / "escape") == "/etc", "the test's premise"
    proc = run_brr(root, "build", str(src), check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"{deep / 'escape'}: symlink points outside the source tree" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert builds(root) == []
    os.unlink(deep / "escape")
    bid = brr_json(root, "build", str(src))["id"]  # the link to the top alone is fine
    rel = deep.relative_to(src) / "up"
    assert os.readlink(root / "builds" / bid / "app" / rel) == "/".join([".."] * depth)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory user nobody can reach (pytest's tmp_path is root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="brr-nobody-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", BRR, *args]
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
@pytest.mark.parametrize("what", ["directory", "file"])
def test_unreadable_source_fails_the_build_as_non_root(shared_tmp: Path, what: str) -> None:
    root = shared_tmp / "root"
    os.chown(shared_tmp, 65534, 65534)
    assert as_nobody("--root", str(root), "init").returncode == 0
    src = write_app(shared_tmp / "src", PLAIN, {"main.py": "x\n", "secret/key.pem": "k\n"})
    for p in (src, src / "secret"):
        p.chmod(0o755)
    for p in (src / "brr.yaml", src / "main.py", src / "secret" / "key.pem"):
        p.chmod(0o644)
    assert as_nobody("--root", str(root), "build", str(src)).returncode == 0  # all readable
    hidden = src / "secret" if what == "directory" else src / "secret" / "key.pem"
    hidden.chmod(0o700 if what == "directory" else 0o600)
    (src / "main.py").write_text("y\n")  # a new build, not the stored one
    before = builds(root)
    proc = as_nobody("--root", str(root), "build", str(src))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"brr-release: error: cannot read {hidden}: Permission denied; no build was stored"
    ]
    assert builds(root) == before


LONE_UID = 64_321  # a uid no user has: no other process of it counts against its limit


def limited(path: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """argv as LONE_UID under RLIMIT_NPROC 1: its own process is all it may have, so
    every fork fails (EAGAIN). path: the PATH it gets."""
    tools = [shutil.which("prlimit") or "prlimit", shutil.which("setpriv") or "setpriv"]
    wrap = [tools[0], "--nproc=1:1", "--", tools[1], f"--reuid={LONE_UID}"]
    wrap += [f"--regid={LONE_UID}", "--clear-groups"]
    env = {"PATH": path, "LANG": "C.UTF-8"}
    return subprocess.run([*wrap, *argv], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_a_build_that_cannot_fork_copies_and_hashes_in_its_own_process(
    shared_tmp: Path,
) -> None:
    """The copy's and the digest's workers are forked (brr/forked.py); under a process
    limit they are not to be had, and the build does the work itself."""
    os.chown(shared_tmp, LONE_UID, LONE_UID)
    root = shared_tmp / "root"
    files = {f"pkg/d{i // 100}/m{i}.py": f"V = {i}\n" for i in range(1200)}
    src = write_app(shared_tmp / "src", PLAIN, files)
    no_git = str(shared_tmp / "bin")  # an empty PATH: the source is not probed with git
    os.mkdir(no_git)
    forks = limited(no_git, "/bin/sh", "-c", "/bin/true & wait")
    assert forks.returncode != 0 and "fork" in forks.stderr.lower(), forks  # the limit holds
    assert limited(no_git, BRR, "--root", str(root), "init").returncode == 0
    with_git = limited(os.environ["PATH"], BRR, "--root", str(root), "build", str(src))
    assert with_git.returncode == 1 and with_git.stderr.splitlines() == [
        f"brr-release: error: cannot run git in {src}: Resource temporarily unavailable; "
        "no build was stored"
    ], with_git.stderr
    proc = limited(no_git, BRR, "--root", str(root), "build", str(src))
    assert proc.returncode == 0, proc.stderr
    bid = builds(root)
    assert len(bid) == 1
    bundle = root / "builds" / bid[0] / "app"
    assert all((bundle / rel).read_text() == text for rel, text in files.items())
    verify = limited(no_git, BRR, "--root", str(root), "verify")  # 1,200 files: hashed in workers
    assert verify.returncode == 0, verify.stderr


def test_private_files_stay_private(root: Path, app: Path) -> None:
    (app / "private.key").write_text("k")
    (app / "private.key").chmod(0o600)
    (app / "group.cfg").write_text("g")
    (app / "group.cfg").chmod(0o640)
    (app / "tool").write_text("#!/bin/sh\n")
    (app / "tool").chmod(0o700)
    (app / "main.py").chmod(0o644)
    bundle = root / "builds" / brr_json(root, "build", str(app))["id"] / "app"

    def mode(name: str) -> int:
        return stat.S_IMODE((bundle / name).stat().st_mode)

    assert mode("private.key") == 0o400
    assert mode("group.cfg") == 0o440
    assert mode("tool") == 0o500
    assert mode("main.py") == 0o444


def test_sparse_file_stays_sparse(root: Path, app: Path) -> None:
    size = 256 << 20
    with open(app / "disk.img", "wb") as f:
        f.seek(size - 5)
        f.write(b"tail\n")
    st = os.stat(app / "disk.img")
    if st.st_blocks * 512 >= 1 << 20:
        pytest.skip("this filesystem does not keep holes")
    bid = brr_json(root, "build", str(app))["id"]
    copy = root / "builds" / bid / "app" / "disk.img"
    cst = copy.stat()
    assert cst.st_size == size
    assert cst.st_blocks * 512 < 1 << 20, f"{cst.st_blocks * 512} bytes of real disk"
    with open(copy, "rb") as f:
        f.seek(size - 5)
        assert f.read() == b"tail\n"
    assert run_brr(root, "verify").returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="edits a frozen build in place, as root can")
def test_verify_still_checks_a_build_of_digest_format_1(root: Path, app: Path) -> None:
    """A root made before format 2: its build.yaml has no digest_format (root writes it)."""
    from supervisord_lite.manifest import compute_digest

    new_id = brr_json(root, "build", str(app))["id"]
    new_dir = root / "builds" / new_id
    old_digest = tree_digest(new_dir / "app", 1)
    old_id = "b-" + old_digest.removeprefix("sha256:")[:12]
    meta = yaml.safe_load((new_dir / "build.yaml").read_text())
    del meta["digest_format"], meta["seal"]
    meta.update(id=old_id, digest=old_digest)
    meta["seal"] = compute_digest(meta)
    (new_dir / "build.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    new_dir.rename(root / "builds" / old_id)
    ok = run_brr(root, "verify", check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (root / "builds" / old_id / "app" / "main.py").write_text("tampered\n")
    bad = run_brr(root, "verify", check=False)
    assert bad.returncode == 1
    assert f"build {old_id}: app/ does not match its digest" in bad.stdout + bad.stderr


def test_a_killed_builds_staging_or_a_planted_link_there_is_cleared(
    root: Path, app: Path, tmp_path: Path
) -> None:
    left = root / "builds" / ".stage-0" / "app"
    left.mkdir(parents=True)
    (left / "half.py").write_text("x")
    (left / "half.py").chmod(0o444)
    left.chmod(0o555)  # as frozen as a killed build may have left it
    bid = brr_json(root, "build", str(app))["id"]
    assert builds(root) == [bid]
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("k")
    os.symlink(victim, root / "builds" / ".stage-0")
    (app / "main.py").write_text("changed\n")
    assert brr_json(root, "build", str(app))["id"] != bid
    assert (victim / "keep").read_text() == "k"
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]
    assert not (root / "builds" / ".stage-0").is_symlink()

"""What git knows about a source tree: the tracked files, the commit, whether it is dirty.

A build from a git work tree takes the tracked files only and records the commit it came
from (Heroku's "Deploy de63889"). A work tree with changes to tracked files, or whose
declaration (`brr.yaml`, `Procfile`) is not tracked, is built as it is on disk, but the
build records `dirty: true` and the operator is warned: the commit alone does not say
what was built. Untracked files other than the declaration do not make a tree dirty:
they do not go into the build.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from supervisord_lite.errors import OperationFailed

DECLARATION_FILES = ("brr.yaml", "Procfile")


@dataclass(frozen=True)
class GitInfo:
    commit: str
    dirty: bool
    commit_time: int  # seconds since the epoch: the build's SOURCE_DATE_EPOCH
    changed: tuple[str, ...]  # what makes it dirty, for the warning


def git(src: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """git's answer; OperationFailed when git cannot even be started (no process to
    spare under a limit, no memory): each caller is the build's look at its source."""
    try:
        return subprocess.run(["git", "-C", str(src), *args], capture_output=True)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise OperationFailed(f"cannot run git in {src}: {why}; no build was stored") from None


def is_work_tree(src: Path) -> bool:
    if shutil.which("git") is None:
        return False
    probe = git(src, "rev-parse", "--is-inside-work-tree")
    return probe.returncode == 0 and probe.stdout.strip() == b"true"


def tracked_files(src: Path) -> list[str]:
    """Files git tracks under src that exist on disk (a deleted one is not source).

    Raises OperationFailed for a tracked path that cannot be looked at (a directory the
    builder may not search): leaving it out would build something else than asked.
    """
    out = git(src, "ls-files", "-z", "--cached")
    if out.returncode != 0:
        raise OperationFailed(f"git ls-files in {src} failed: {first_line(out.stderr)}")
    names = [os.fsdecode(n) for n in out.stdout.split(b"\0") if n]
    return [n for n in names if exists(src, n)]


def exists(src: Path, rel: str) -> bool:
    try:
        os.lstat(src / rel)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise OperationFailed(
            f"cannot read {src / rel}: {exc.strerror}; no build was stored"
        ) from None
    return True


def describe(src: Path) -> GitInfo | None:
    """The commit and state of the work tree at src; None when it has no commit yet."""
    head = git(src, "log", "-1", "--format=%H %ct")
    if head.returncode != 0 or not head.stdout.strip():
        return None
    commit, when = head.stdout.decode().split()
    status = git(src, "status", "--porcelain", "-z", "--untracked-files=normal", "--", ".")
    changed: list[str] = []
    for line in status.stdout.split(b"\0"):
        if len(line) < 4:
            continue
        code, name = line[:2].decode(errors="replace"), os.fsdecode(line[3:])
        if code != "??" or os.path.basename(name) in DECLARATION_FILES:
            changed.append(name)
    return GitInfo(commit, bool(changed), int(when), tuple(changed))


def dirty_warning(info: GitInfo, src: Path) -> str:
    shown = ", ".join(info.changed[:3]) + (", ..." if len(info.changed) > 3 else "")
    return (
        f"warning: {src} has uncommitted changes ({len(info.changed)}: {shown}); "
        f"building it as it is on disk, recorded as commit {info.commit[:12]} dirty: true"
    )


def first_line(data: bytes) -> str:
    text = data.decode(errors="replace").strip()
    return text.splitlines()[0] if text else "no output"

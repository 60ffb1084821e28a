"""The files of a source tree that go into a build, and the checks they must pass.

Selection: git-tracked files in a git work tree, else everything but `.git`, less the
declared `exclude` globs. Nothing is left out silently: a directory or file the builder
cannot read fails the build with one line naming it (a build without it would run and
fail later, or worse, run without a file that mattered).

Symlinks must stay inside the tree. The check resolves each link the way the kernel
will in the bundle, through the other selected links (`d -> sub` then `e -> d/../..` leaves
the tree although no link target starts with `..`); a lexical check of each target alone
misses that. The resolution runs over the selected entries only, which are exactly what
the bundle holds, so it does not depend on untracked links in the source.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from pathlib import Path

from supervisord_lite.brr import gitinfo
from supervisord_lite.errors import BadInput, OperationFailed

MAX_LINK_DEPTH = 40  # the kernel's own limit of symlinks followed in one lookup


def select_files(src: Path, exclude: tuple[str, ...] | None, *, git: bool) -> list[str]:
    """Relative paths of the files (and symlinks) that go into the build, sorted."""
    chosen = gitinfo.tracked_files(src) if git else all_files(src)
    excluded = excluder((".git", *(exclude or ())))
    return sorted(p for p in chosen if not excluded(p))


def all_files(src: Path) -> list[str]:
    """Every file and symlink under src but `.git`; OperationFailed names what is unreadable.

    The kind of each entry comes from its directory entry (d_type), not from an lstat:
    the selection's own lstat (stagecopy.look) is the one that counts.
    """
    out: list[str] = []
    top = str(src)
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(top, rel_dir)) as it:
                found = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        except OSError as exc:
            raise unreadable(src / rel_dir, exc) from None
        for name, is_dir in found:
            rel = os.path.join(rel_dir, name) if rel_dir else name
            if not is_dir:
                out.append(rel)
            elif rel != ".git":
                stack.append(rel)
    return out


def unreadable(path: Path, exc: OSError) -> OperationFailed:
    return OperationFailed(f"cannot read {path}: {exc.strerror or exc}; no build was stored")


def excluder(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """A test of rel against the globs: the whole path, any component or any prefix.

    The globs are compiled into one regular expression once, and each directory is
    tested once, not once per file in it: fnmatch per pattern per path per component
    was most of the selection's time on a 20,000-file tree.
    """
    rx = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))
    dirs: dict[str, bool] = {"": False}

    def itself(rel: str) -> bool:
        return bool(rx.match(rel) or rx.match(rel.rpartition("/")[2]))

    def dir_excluded(rel_dir: str) -> bool:
        chain = []
        while rel_dir not in dirs:
            chain.append(rel_dir)
            rel_dir = rel_dir.rpartition("/")[0]
        verdict = dirs[rel_dir]
        for d in reversed(chain):  # from the known ancestor down
            verdict = dirs[d] = verdict or itself(d)
        return verdict

    def excluded(rel: str) -> bool:
        return itself(rel) or dir_excluded(rel.rpartition("/")[0])

    return excluded


def check_symlinks(src: Path, links: dict[str, str]) -> None:
    """Refuse a link (rel -> target) that is absolute or resolves outside the tree."""
    for rel, target in sorted(links.items()):
        if os.path.isabs(target):
            raise escape(src, rel, target)
        try:
            inside = resolve(links, rel.split("/")[:-1], target, 0) is not None
        except RecursionError:
            inside = False
        if not inside:
            raise escape(src, rel, target)


def escape(src: Path, rel: str, target: str) -> BadInput:
    return BadInput(f"{src / rel}: symlink points outside the source tree ({target})")


def resolve(links: dict[str, str], start: list[str], target: str, depth: int) -> list[str] | None:
    """The path components target reaches from directory start; None if it leaves the tree."""
    if depth > MAX_LINK_DEPTH:
        raise RecursionError("symlink loop")
    if os.path.isabs(target):
        return None
    where = list(start)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not where:
                return None
            where.pop()
            continue
        where.append(part)
        inner = links.get("/".join(where))
        if inner is not None:
            reached = resolve(links, where[:-1], inner, depth + 1)
            if reached is None:
                return None
            where = reached
    return where

"""The tree digest that names a build: SHA-256 over paths, modes, contents, link targets.

One record per entry, in sorted path order, so the digest does not depend on the order
the filesystem lists a directory in. Modes are taken after the tree is frozen (made
read-only), which normalises them: the same source always gives the same build ID.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

CHUNK = 1 << 20


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(top: Path) -> str:
    """`sha256:<hex>` of the tree under top (top itself excluded)."""
    h = hashlib.sha256()
    for rel in sorted(walk(top)):
        full = os.path.join(top, rel)
        st = os.lstat(full)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            record = f"L {rel}\0{os.readlink(full)}"
        elif stat.S_ISDIR(st.st_mode):
            record = f"D {mode:o} {rel}"
        else:
            record = f"F {mode:o} {rel}\0{file_sha256(full)}"
        h.update(record.encode("utf-8", "surrogateescape") + b"\n")
    return "sha256:" + h.hexdigest()


def walk(top: Path) -> list[str]:
    """Every path under top, relative, directories included; symlinks are not followed."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(top):
        rel_dir = os.path.relpath(dirpath, top)
        for name in dirnames + filenames:
            out.append(name if rel_dir == "." else os.path.join(rel_dir, name))
    return out


def build_id_for(digest: str) -> str:
    return "b-" + digest.removeprefix("sha256:")[:12]


def freeze(top: Path) -> None:
    """Make the tree read-only: files 0444 (0555 if executable), directories 0555."""
    for dirpath, _dirnames, filenames in os.walk(top, topdown=False):
        for name in filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                continue
            os.chmod(full, 0o555 if st.st_mode & stat.S_IXUSR else 0o444)
        os.chmod(dirpath, 0o555)

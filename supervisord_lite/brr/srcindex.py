"""What the last build of a source saw: each file's stat and content hash, like git's index.

A rebuild of a source tree without build steps needs its tree digest before anything is
copied (an unchanged tree is then found among the builds, and nothing is written). The
digest needs every file's hash; reading 20,000 files to find that none changed is most of
a build's time. So a build without steps records, in the build cache, each file's size,
mtime, ctime, inode and mode with the hash of the content it copied; the next build of the
same source path hashes only the files whose stat differs. A file changed in the same
instant the index was written cannot be told from an unchanged one by its stat (git's
"racily clean" case): entries whose mtime or ctime is not older than the index by a
margin are not trusted and are read again.

Without an index (the first build of a source path in this root), the build copies
first and hashes as it copies: a tree never built before is most likely new, and reading
it twice would make every first build slower.

The index is a cache: a missing, unreadable or malformed one is ignored, and the build
is correct without it. It lives in ROOT/build-cache/, which every deployer of the root
may write, as they may write builds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path

from supervisord_lite.brr.stagecopy import SourceTree

RACY_NS = 2_000_000_000  # coarser than any filesystem's timestamp granularity we meet


def index_path(cache: Path, src: Path) -> Path:
    key = hashlib.sha256(os.fsencode(src)).hexdigest()[:20]
    return cache / "source-index" / f"{key}.json"


def stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode]


def lookup(cache: Path, tree: SourceTree) -> dict[bytes, bytes] | None:
    """rel -> content hash of each file unchanged since the last build; None: no index."""
    try:
        data = json.loads(index_path(cache, tree.src).read_bytes())
        written = int(data["written_ns"])
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, dict):
        return None
    known: dict[bytes, bytes] = {}
    for rel, st in tree.files.items():
        entry = files.get(rel)
        key = stat_key(st)
        if not isinstance(entry, list) or len(entry) != 2 or entry[0] != key:
            continue
        if max(st.st_mtime_ns, st.st_ctime_ns) >= written - RACY_NS:
            continue
        with contextlib.suppress(ValueError, TypeError):
            known[os.fsencode(rel)] = bytes.fromhex(entry[1])
    return known


def save(cache: Path, tree: SourceTree, sums: dict[bytes, bytes]) -> None:
    """Record the stat and hash of each file copied; failures are ignored (a cache)."""
    files = {
        rel: [stat_key(st), sums[os.fsencode(rel)].hex()]
        for rel, st in tree.files.items()
        if os.fsencode(rel) in sums
    }
    path = index_path(cache, tree.src)
    data = json.dumps({"written_ns": time.time_ns(), "files": files}).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)

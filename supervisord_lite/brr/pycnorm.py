"""Byte-compiled Python written by build steps, made the same on every build of a source.

A .pyc holds the path its source had when it was compiled (`co_filename`): the staging
directory's random name for `python -m compileall .`, pip's own temporary directory for
`pip install --target`. Two builds of the same source therefore differ in every .pyc,
and never share a build ID. After the steps, each .pyc of this interpreter's version
whose source sits beside its `__pycache__` is compiled again from that source, with the
path relative to the app (`dfile`) and hash-based invalidation (what SOURCE_DATE_EPOCH
asks of py_compile anyway). Nothing else changes: Python replaces `co_filename` with the
real path when it imports the file, so tracebacks still name the file in the build.

A .pyc of another Python version (a step that ran `python3.12 -m compileall`) cannot be
compiled here and is left as it is: such a build is reproducible only if its steps
pass `-d` themselves, or run without writing .pyc files.
"""

from __future__ import annotations

import os
import py_compile
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from supervisord_lite.brr.digest import workers

PARALLEL_FROM = 200  # below this many files, a process pool costs more than it saves

Job = tuple[str, str, str, int]  # source, pyc, dfile, optimization level


def find_pycs(app: Path) -> list[Job]:
    tag = sys.implementation.cache_tag
    jobs: list[Job] = []
    for dirpath, _dirnames, filenames in os.walk(app):
        if os.path.basename(dirpath) != "__pycache__":
            continue
        for name in filenames:
            parsed = parse_pyc_name(name, tag)
            if parsed is None:
                continue
            module, level = parsed
            source = os.path.join(os.path.dirname(dirpath), module + ".py")
            if os.path.isfile(source) and not os.path.islink(source):
                dfile = os.path.relpath(source, app)
                jobs.append((source, os.path.join(dirpath, name), dfile, level))
    return sorted(jobs)


def parse_pyc_name(name: str, tag: str | None) -> tuple[str, int] | None:
    """`mod.cpython-311.opt-1.pyc` -> ("mod", 1) when the tag is this interpreter's."""
    if tag is None or not name.endswith(".pyc"):
        return None
    parts = name[: -len(".pyc")].split(".")
    level = 0
    if len(parts) >= 3 and parts[-1].startswith("opt-") and parts[-1][4:].isdigit():
        level = int(parts.pop()[4:])
    if len(parts) < 2 or parts[-1] != tag:
        return None
    return ".".join(parts[:-1]), level


def recompile(job: Job) -> bool:
    source, pyc, dfile, level = job
    try:
        py_compile.compile(
            source,
            cfile=pyc,
            dfile=dfile,
            doraise=True,
            optimize=level,
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
    except (py_compile.PyCompileError, OSError, ValueError):
        return False  # left as the step wrote it
    return True


def normalize_pycs(app: Path) -> int:
    """Recompile the .pyc files under app as described above; how many were."""
    jobs = find_pycs(app)
    if len(jobs) < PARALLEL_FROM:
        return sum(recompile(j) for j in jobs)
    with ProcessPoolExecutor(workers()) as pool:
        return sum(pool.map(recompile, jobs, chunksize=32))

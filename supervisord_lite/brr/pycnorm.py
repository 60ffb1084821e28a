"""Byte-compiled Python written by build steps, made the same on every build of a source.

A .pyc holds the path its source had when it was compiled (`co_filename`): the staging
directory for `python -m compileall .`, pip's own temporary directory for
`pip install --target`, the build cache for a tree vendored there and copied. Two builds
of the same source therefore differ in every .pyc and never share a build ID. After the
steps, each .pyc of this interpreter's version whose source sits beside its
`__pycache__` is rewritten: its code objects get the path relative to the app as
`co_filename`, and its header becomes hash-based (what SOURCE_DATE_EPOCH asks of
py_compile anyway: the source's hash, no timestamp). The code itself is not compiled
again (marshal in, marshal out: a tenth of the time of compiling, and the same bytes
whatever the order or the process). Python replaces `co_filename` with the real path
when it imports the file, so tracebacks still name the file in the build.

A .pyc of another Python version (a step that ran `python3.12 -m compileall`) cannot be
read here and is left as it is: such a build is reproducible only if its steps pass
`-d` themselves, or write no .pyc files.
"""

from __future__ import annotations

import importlib.util
import marshal
import os
import sys
import types
from pathlib import Path

CHECKED_HASH = (0b11).to_bytes(4, "little")  # PEP 552 flags: hash-based, checked

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


def normalize(job: Job) -> bool:
    """Rewrite one .pyc as described above; False if it was left as it is."""
    source, pyc, dfile, _level = job
    try:
        with open(pyc, "rb") as f:
            data = f.read()
        with open(source, "rb") as f:
            source_hash = importlib.util.source_hash(f.read())
        if data[:4] != importlib.util.MAGIC_NUMBER:
            return False
        code = marshal.loads(memoryview(data)[16:])
        if not isinstance(code, types.CodeType):
            return False
        header = data[:4] + CHECKED_HASH + source_hash
        if data[:16] == header and code.co_filename == dfile:
            return False  # already as it would be made
        body = marshal.dumps(relocated(code, dfile))
        tmp = f"{pyc}.brr-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(header + body)
        os.replace(tmp, pyc)
    except (OSError, ValueError, EOFError, TypeError):
        return False  # left as the step wrote it
    return True


def relocated(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(
        relocated(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)


def normalize_pycs(app: Path) -> int:
    """Rewrite the .pyc files under app as described above; how many were."""
    return sum(normalize(j) for j in find_pycs(app))

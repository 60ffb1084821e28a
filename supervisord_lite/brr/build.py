"""The build stage: a source tree becomes an immutable, content-addressed build.

Steps: read the declaration; select the files (brr/sourcetree.py) and check their
symlinks; when there are no build steps and this source was built here before, digest
the selection as it stands in the source, reading only the files whose stat changed
(brr/srcindex.py), and stop there if that build exists (an unchanged tree costs a stat
of each file, not a copy); else
copy the files into a staging directory under `builds/` (same filesystem, so publishing
is one rename; brr/stagecopy.py); run the build steps there in a clean environment
(brr/buildenv.py) and make their byte-compiled Python reproducible (brr/pycnorm.py);
freeze the tree read-only; digest it (brr/digest.py); if that build exists, drop the
copy before anything is written; else write `build.yaml` (with the git commit the source
came from, brr/gitinfo.py) and rename the staging directory to `builds/b-<digest>`.
Staging happens without the root's lock (a build may take minutes); only the publish
takes it. On any failure the staging directory is removed: nothing half-built is ever
visible as a build.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from supervisord_lite import fsatomic, ledger
from supervisord_lite.brr import (
    buildenv,
    gitinfo,
    pycnorm,
    sourcetree,
    srcindex,
    stagecopy,
    staging,
)
from supervisord_lite.brr.digest import FORMAT, build_id_for, digest_entries, freeze, tree_digest
from supervisord_lite.declaration import Declaration, declaration_from_data, load_declaration
from supervisord_lite.errors import BadInput, ValidationError, os_failure
from supervisord_lite.layout import DeployRoot
from supervisord_lite.manifest import compute_digest
from supervisord_lite.schema import Fields, load_yaml


@dataclass(frozen=True)
class BuildInfo:
    id: str
    digest: str
    source: str
    created_at: str
    declaration: Declaration
    digest_format: int = 1  # builds made before format 2 have no such field
    git: dict[str, Any] = field(default_factory=dict)  # {"commit": ..., "dirty": ...}


@dataclass(frozen=True)
class StagedBuild:
    staging: staging.Staging | None  # holds app/ and build.yaml; None: the build exists
    info: BuildInfo


@dataclass(frozen=True)
class Source:
    """A source tree as looked at once: its declaration, git state and selected entries."""

    path: Path
    declaration: Declaration
    git: gitinfo.GitInfo | None
    tree: stagecopy.SourceTree


def read_source(src: Path) -> Source:
    if not src.is_dir():
        raise BadInput(f"source {src} is not a directory")
    decl = load_declaration(src)
    in_git = gitinfo.is_work_tree(src)
    git = gitinfo.describe(src) if in_git else None
    if git is not None and git.dirty:
        print(gitinfo.dirty_warning(git, src), file=sys.stderr, flush=True)
    selected = sourcetree.select_files(src, decl.exclude, git=in_git)
    tree = stagecopy.look(src, selected)
    sourcetree.check_symlinks(src, tree.links)
    return Source(src, decl, git, tree)


def stage(root: DeployRoot, src: Path, build_env: Sequence[str] = ()) -> StagedBuild:
    """Everything but the publish: runs without the root's lock."""
    source = read_source(src)
    env = step_env(root, source, build_env) if source.declaration.build else {}
    cache = buildenv.cache_dir(root.path)
    if not source.declaration.build:
        existing = find_unchanged(root, source, cache)
        if existing is not None:
            return StagedBuild(None, existing)
    slot: staging.Staging | None = None
    try:
        slot = staging.claim(root.builds, cache)
        app = slot.path / "app"
        sums = stagecopy.copy_tree(source.tree, app, writable=bool(source.declaration.build))
        remember: Callable[[], None] = nothing
        if source.declaration.build:
            buildenv.run_steps(source.declaration.build, app, env)
            pycnorm.normalize_pycs(app)
            freeze(app)
            info = make_info(source, tree_digest(app))
        else:
            # the copy is the source's selection exactly, each file hashed as written
            freeze_dirs(app, source.tree.directories())
            info = make_info(source, digest_entries(source.tree.entries(), sums))
            remember = functools.partial(srcindex.save, cache, source.tree, sums)
        if root.build_dir(info.id).exists():
            remember()
            slot.release()
            return StagedBuild(None, info)
        fsatomic.write_file(slot.path / "build.yaml", dump_build_meta(info), mode=0o444)
        durable_while(slot.path, remember)
    except BaseException as exc:
        if slot is not None:
            slot.release()
        if isinstance(exc, OSError):
            raise os_failure(exc, "no build was stored") from None
        raise
    return StagedBuild(slot, info)


def durable_while(top: Path, work: Callable[[], None]) -> None:
    """fsync_tree(top) on a thread while work runs here: the sync waits on the disk
    without the GIL, so the source index (a cache, which need not be durable) is written
    in its shadow."""
    with ThreadPoolExecutor(1) as pool:
        try:
            synced = pool.submit(fsatomic.fsync_tree, top)
        except RuntimeError:  # no thread to be had (RLIMIT_NPROC): one after the other
            fsatomic.fsync_tree(top)
            work()
            return
        work()
        synced.result()


def nothing() -> None:
    pass


def find_unchanged(root: DeployRoot, source: Source, cache: Path) -> BuildInfo | None:
    """The build this source (without steps) already is, found before anything is copied.

    Only files whose stat changed since the last build of this source are read (the
    source index); without an index, None: a tree never built here is copied first.
    """
    known = srcindex.lookup(cache, source.tree)
    if known is None:
        return None
    try:
        digest = digest_entries(source.tree.entries(), known)
    except OSError as exc:
        raise sourcetree.unreadable(Path(os.fsdecode(exc.filename or source.path)), exc) from None
    info = make_info(source, digest)
    return info if root.build_dir(info.id).exists() else None


def freeze_dirs(app: Path, dirs: list[str]) -> None:
    """Files were copied with their frozen modes already; only directories remain."""
    for d in reversed(dirs):
        os.chmod(app / d, 0o555)
    os.chmod(app, 0o555)


def step_env(root: DeployRoot, source: Source, build_env: Sequence[str]) -> dict[str, str]:
    commit_time = source.git.commit_time if source.git else None
    return buildenv.step_env(
        os.environ,
        cache=buildenv.cache_dir(root.path),
        epoch=buildenv.source_date_epoch(os.environ, commit_time),
        passed=build_env,
    )


def make_info(source: Source, digest: str) -> BuildInfo:
    git = {"commit": source.git.commit, "dirty": source.git.dirty} if source.git else {}
    return BuildInfo(
        build_id_for(digest),
        digest,
        str(source.path),
        ledger.utc_now(),
        source.declaration,
        FORMAT,
        git,
    )


def publish(root: DeployRoot, staged: StagedBuild) -> tuple[BuildInfo, bool]:
    """Rename the staged build into place; the caller holds the lock. (info, reused)."""
    final = root.build_dir(staged.info.id)
    if staged.staging is None:
        return load_build_meta(root, staged.info.id), True
    try:
        published = not final.exists() and fsatomic.publish_dir(staged.staging.path, final)
    finally:
        staged.staging.release()  # after a publish, only the slot is left to free
    if not published:
        return load_build_meta(root, staged.info.id), True
    ledger.append(root.ledger, "build", staged.info.id, digest=staged.info.digest)
    return staged.info, False


def build(root: DeployRoot, src: Path, build_env: Sequence[str] = ()) -> tuple[BuildInfo, bool]:
    staged = stage(root, src, build_env)
    with root.locked():
        return publish(root, staged)


def build_commit(root: DeployRoot, build_id: str, memo: dict[str, str | None]) -> str | None:
    """`<commit>` or `<commit> (dirty)` a build came from; None if unknown or unreadable."""
    if build_id not in memo:
        try:
            git = load_build_meta(root, build_id).git
        except (BadInput, OSError):
            git = {}
        commit = git.get("commit")
        dirty = " (dirty)" if git.get("dirty") else ""
        memo[build_id] = commit[:12] + dirty if commit else None
    return memo[build_id]


# --- build.yaml ---------------------------------------------------------------------------


def meta_body(info: BuildInfo) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": info.id,
        "digest": info.digest,
        "digest_format": info.digest_format,
        "source": info.source,
        "created_at": info.created_at,
        "declaration": info.declaration.to_data(),
    }
    if info.git:
        body["git"] = dict(info.git)
    return body


def dump_build_meta(info: BuildInfo) -> bytes:
    data = meta_body(info)
    # the seal covers the metadata, so `verify` notices an edited declaration too
    data["seal"] = compute_digest(meta_body(info))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000).encode()


def load_build_meta(root: DeployRoot, build_id: str) -> BuildInfo:
    path = root.build_meta(build_id)
    if not path.is_file():
        raise BadInput(f"no such build: {build_id}")
    return read_build_meta(path, build_id)


def read_build_meta(path: Path, build_id: str) -> BuildInfo:
    """Parse and check a build.yaml that should describe build_id (also an imported one)."""
    source = str(path)
    f = Fields(load_yaml(path.read_bytes(), source), source)
    info = BuildInfo(
        id=f.string("id", required=True),
        digest=f.string("digest", required=True),
        source=f.string("source", required=True),
        created_at=f.string("created_at", required=True),
        declaration=declaration_from_data(f.required("declaration"), source + " declaration"),
        digest_format=f.integer("digest_format", 1, low=1, high=FORMAT),
        git=git_record(f),
    )
    seal = f.string("seal", required=True)
    f.done()
    if info.id != build_id:
        raise ValidationError(source, "id", f"is {info.id!r} but the directory is {build_id!r}")
    if compute_digest({k: v for k, v in f.data.items() if k != "seal"}) != seal:
        raise ValidationError(source, "seal", "does not match the metadata (the file was changed)")
    return info


def git_record(f: Fields) -> dict[str, Any]:
    data = f.mapping("git")
    g = Fields(data, f.source, f.at("git"))
    out = {"commit": g.string("commit", ""), "dirty": g.raw("dirty", False)}
    g.done()
    if not isinstance(out["dirty"], bool):
        g.fail("dirty", "must be true or false")
    return out if out["commit"] else {}

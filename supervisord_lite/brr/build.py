"""The build stage: a source tree becomes an immutable, content-addressed build.

Steps: read the declaration; select the files (git-tracked files in a git work tree,
else everything but `.git`, less the declared `exclude` globs); copy them into a staging
directory under `builds/` (same filesystem, so publishing is one rename); run the build
steps there; freeze the tree read-only; digest it; write `build.yaml`; rename the staging
directory to `builds/b-<digest>`. Staging happens without the root's lock (a build may
take minutes); only the publish takes it. If a build with the same digest already
exists, the staging copy is dropped and the existing one is reused. On any failure the
staging directory is removed: nothing half-built is ever visible as a build.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from supervisord_lite import fsatomic, ledger
from supervisord_lite.brr.digest import build_id_for, freeze, tree_digest
from supervisord_lite.declaration import Declaration, declaration_from_data, load_declaration
from supervisord_lite.errors import BadInput, OperationFailed, ValidationError, os_failure
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


@dataclass(frozen=True)
class StagedBuild:
    staging: Path  # builds/.tmp-<pid>-<rand>, holding app/ and build.yaml
    info: BuildInfo


def select_files(src: Path, exclude: tuple[str, ...] | None) -> list[str]:
    """Relative paths of the files (and symlinks) that go into the build."""
    tracked = git_tracked(src)
    if tracked is None:
        tracked = [p for p in all_files(src) if not is_excluded(p, (".git",))]
    patterns = (".git", *(exclude or ()))
    return sorted(p for p in tracked if not is_excluded(p, patterns))


def git_tracked(src: Path) -> list[str] | None:
    """Files git tracks under src when src is in a git work tree, else None."""
    if shutil.which("git") is None:
        return None
    probe = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "--is-inside-work-tree"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0 or probe.stdout.strip() != "true":
        return None
    out = subprocess.run(
        ["git", "-C", str(src), "ls-files", "-z", "--cached"],
        capture_output=True,
        check=True,
    ).stdout
    names = [os.fsdecode(n) for n in out.split(b"\0") if n]
    # a tracked file deleted from the work tree is not part of the source
    return [n for n in names if os.path.lexists(src / n)]


def all_files(src: Path) -> list[str]:
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            out.append(name if rel == "." else os.path.join(rel, name))
        # symlinks to directories are listed in dirnames; keep them as entries
        for name in list(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                dirnames.remove(name)
                out.append(name if rel == "." else os.path.join(rel, name))
    return out


def is_excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    parts = rel.split(os.sep)
    for pat in patterns:
        if fnmatch.fnmatchcase(rel, pat):
            return True
        prefixes = (os.sep.join(parts[: i + 1]) for i in range(len(parts)))
        if any(fnmatch.fnmatchcase(p, pat) for p in parts) or any(
            fnmatch.fnmatchcase(p, pat) for p in prefixes
        ):
            return True
    return False


def check_symlink(src: Path, rel: str) -> None:
    """Refuse a symlink that is absolute or climbs out of the source tree."""
    target = os.readlink(src / rel)
    resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if os.path.isabs(target) or resolved == ".." or resolved.startswith(".." + os.sep):
        raise BadInput(f"{src / rel}: symlink points outside the source tree ({target})")


def copy_tree(src: Path, files: list[str], dest: Path) -> None:
    """Copy files from src into dest; OSError names the file written when space runs out."""
    dest.mkdir(parents=True)
    for rel in files:
        s = src / rel
        d = dest / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        st = os.lstat(s)
        if stat.S_ISLNK(st.st_mode):
            check_symlink(src, rel)
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(st.st_mode):
            try:
                shutil.copyfile(s, d, follow_symlinks=False)
            except OSError as exc:
                if exc.filename is None:  # copyfileobj's write errors name nothing
                    fsatomic.name_file(exc, d)
                raise
            os.chmod(d, stat.S_IMODE(st.st_mode) | stat.S_IWUSR)
        else:
            raise BadInput(f"{s}: not a regular file or symlink; cannot go into a build")


def run_steps(steps: tuple[str, ...], cwd: Path) -> None:
    """Run each build step in cwd; output goes to stderr as it comes (it is progress)."""
    for n, step in enumerate(steps, 1):
        print(f"-----> build step {n}/{len(steps)}: {step}", file=sys.stderr, flush=True)
        proc = subprocess.run(
            ["/bin/sh", "-c", step], cwd=cwd, stdout=sys.stderr, stderr=subprocess.STDOUT
        )
        if proc.returncode != 0:
            raise OperationFailed(
                f"build step {n} `{step}` {exit_text(proc.returncode)} (its output is above); "
                "no build was stored"
            )


def exit_text(returncode: int) -> str:
    if returncode >= 0:
        return f"exited {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    # a step over the file size limit dies of SIGXFSZ: the limit is the news
    why = ", over the file size limit" if -returncode == signal.SIGXFSZ else ""
    return f"was killed by {name}{why}"


def stage(root: DeployRoot, src: Path) -> StagedBuild:
    """Everything but the publish: runs without the root's lock."""
    if not src.is_dir():
        raise BadInput(f"source {src} is not a directory")
    decl = load_declaration(src)
    files = select_files(src, decl.exclude)
    staging = fsatomic.temp_name(root.builds)
    try:
        app = staging / "app"
        copy_tree(src, files, app)
        run_steps(decl.build, app)
        freeze(app)
        digest = tree_digest(app)
        info = BuildInfo(build_id_for(digest), digest, str(src), ledger.utc_now(), decl)
        fsatomic.write_file(staging / "build.yaml", dump_build_meta(info), mode=0o444)
        fsatomic.fsync_tree(staging)
    except BaseException as exc:
        discard(staging)
        if isinstance(exc, OSError):
            raise os_failure(exc, "no build was stored") from None
        raise
    return StagedBuild(staging, info)


def publish(root: DeployRoot, staged: StagedBuild) -> tuple[BuildInfo, bool]:
    """Rename the staged build into place; the caller holds the lock. (info, reused)."""
    final = root.build_dir(staged.info.id)
    try:
        published = not final.exists() and fsatomic.publish_dir(staged.staging, final)
    except BaseException:
        discard(staged.staging)
        raise
    if not published:
        discard(staged.staging)
        return load_build_meta(root, staged.info.id), True
    ledger.append(root.ledger, "build", staged.info.id, digest=staged.info.digest)
    return staged.info, False


def discard(staging: Path) -> None:
    if staging.exists():
        fsatomic.make_writable(staging)
        shutil.rmtree(staging, ignore_errors=True)


def build(root: DeployRoot, src: Path) -> tuple[BuildInfo, bool]:
    staged = stage(root, src)
    with root.locked():
        return publish(root, staged)


# --- build.yaml ---------------------------------------------------------------------------


def meta_body(info: BuildInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "digest": info.digest,
        "source": info.source,
        "created_at": info.created_at,
        "declaration": info.declaration.to_data(),
    }


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
    )
    seal = f.string("seal", required=True)
    f.done()
    if info.id != build_id:
        raise ValidationError(source, "id", f"is {info.id!r} but the directory is {build_id!r}")
    if compute_digest({k: v for k, v in f.data.items() if k != "seal"}) != seal:
        raise ValidationError(source, "seal", "does not match the metadata (the file was changed)")
    return info

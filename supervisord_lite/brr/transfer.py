"""Moving builds and releases between roots: `build export/import`, `release export/import`.

What a fleet needs from one host is that a build and a release arrive as they left: the
same build ID and tree digest, the same release ID, config, formation and digest on
every host. Design choices:

- A build travels as a gzip'd tar with a small header (`brr-export.json`: kind, format,
  id, digest) first, then `build.yaml` and `app/`. Import extracts member by member into
  a staging directory under `builds/` (no `tarfile.extractall`: only regular files,
  directories and symlinks that stay inside `app/` are taken), freezes the tree,
  recomputes the tree digest with the same code a local build uses, and refuses a
  mismatch with the header or with `build.yaml` in one line. Publishing is the local
  build's publish (rename under `run/lock`), recorded as `build` with `imported: true`.
- A release travels as its manifest, byte for byte: `release.yaml` already names its ID
  and carries a digest over every other field. Import keeps the ID. Release IDs stay
  monotonic on every host: an ID the host issued to a different release (on disk or in
  its ledger) is refused; a higher one simply jumps the host's numbering forward. The
  fleet's IDs are thereby numbered by one root, the controller's.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from supervisord_lite import fsatomic, ledger
from supervisord_lite.brr import build as bld
from supervisord_lite.brr.digest import build_id_for, freeze, tree_digest
from supervisord_lite.brr.releases import publish_release
from supervisord_lite.brr.staging import remove_leftover
from supervisord_lite.errors import BadInput, OperationFailed, os_errors_leave
from supervisord_lite.layout import DeployRoot, check_build_id, check_release_id
from supervisord_lite.manifest import Release, load_release, release_from_data
from supervisord_lite.schema import load_yaml

HEADER = "brr-export.json"
BUILD_KIND = "brr-build"
FORMAT = 1
MAX_HEADER = 64 * 1024


# --- builds -------------------------------------------------------------------------------


def export_build(root: DeployRoot, build_id: str, out: IO[bytes]) -> dict[str, Any]:
    """Write build_id as an archive to out; the build is checked against its digest first."""
    info = bld.load_build_meta(root, check_build_id(build_id))
    top = root.build_dir(build_id)
    if tree_digest(top / "app", info.digest_format) != info.digest:
        raise OperationFailed(f"build {build_id} differs from its digest; run `brr-release verify`")
    header = {"kind": BUILD_KIND, "format": FORMAT, "id": info.id, "digest": info.digest}
    with tarfile.open(fileobj=out, mode="w|gz", format=tarfile.PAX_FORMAT) as tar:
        add_bytes(tar, HEADER, json.dumps(header).encode())
        tar.add(top / "build.yaml", arcname="build.yaml", recursive=False)
        tar.add(top / "app", arcname="app", recursive=True)
    return {"id": info.id, "digest": info.digest}


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    member.mode = 0o444
    tar.addfile(member, io.BytesIO(data))


@dataclass(frozen=True)
class Imported:
    id: str
    digest: str
    reused: bool

    def to_data(self) -> dict[str, Any]:
        return {"id": self.id, "digest": self.digest, "reused": self.reused, "imported": True}


def import_build(root: DeployRoot, source: IO[bytes], name: str) -> Imported:
    """Read an archive from source (named name in errors), verify it and publish it."""
    root.require_initialized()
    staging = fsatomic.temp_name(root.builds)
    try:
        with os_errors_leave("no build was stored"):
            staging.mkdir()
            header = extract(source, name, staging)
            info = check_staged(staging, header, name)
            fsatomic.fsync_tree(staging)
    except BaseException:
        remove_leftover(staging)
        raise
    with root.locked(), os_errors_leave(f"build {info.id} was not stored"):
        final = root.build_dir(info.id)
        if final.exists() or not fsatomic.publish_dir(staging, final):
            remove_leftover(staging)
            return Imported(info.id, info.digest, reused=True)
        ledger.append(root.ledger, "build", info.id, digest=info.digest, imported=True)
    return Imported(info.id, info.digest, reused=False)


def extract(source: IO[bytes], name: str, staging: Path) -> dict[str, Any]:
    """Unpack the archive into staging; return its header. BadInput on anything odd."""
    header: dict[str, Any] | None = None
    try:
        with tarfile.open(fileobj=source, mode="r|*") as tar:
            for member in tar:
                if member.name == HEADER and header is None:
                    header = read_header(tar, member, name)
                    continue
                extract_member(tar, member, staging, name)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise BadInput(f"{name}: not a build archive or truncated ({exc})") from None
    if header is None:
        raise BadInput(f"{name}: no {HEADER} header: not a build archive")
    return header


def read_header(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> dict[str, Any]:
    f = tar.extractfile(member) if member.size <= MAX_HEADER else None
    try:
        data = json.loads(f.read()) if f is not None else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("kind") != BUILD_KIND:
        raise BadInput(f"{name}: {HEADER} is not a brr build header")
    if data.get("format") != FORMAT:
        raise BadInput(f"{name}: archive format {data.get('format')!r}; this brr reads {FORMAT}")
    return data


def extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, staging: Path, name: str) -> None:
    rel = os.path.normpath(member.name)
    if os.path.isabs(member.name) or not (rel == "build.yaml" or in_app(rel)):
        raise BadInput(f"{name}: member {member.name!r} is outside app/ and build.yaml")
    dest = staging / rel
    if member.isdir():
        dest.mkdir(mode=0o755, exist_ok=True)
    elif member.isreg():
        f = tar.extractfile(member)
        assert f is not None  # a regular member always has data
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(dest):
            raise BadInput(f"{name}: member {member.name!r} appears twice")
        with open(dest, "xb") as out:
            shutil.copyfileobj(f, out)
        # the build's own (frozen) mode: freeze() keeps read bits, so they are digested
        os.chmod(dest, (member.mode & 0o777) | stat.S_IRUSR)
    elif member.issym() and rel != "build.yaml":
        target = os.path.normpath(os.path.join(os.path.dirname(rel), member.linkname))
        if os.path.isabs(member.linkname) or not in_app(target):
            raise BadInput(f"{name}: symlink {member.name!r} points outside the build")
        os.symlink(member.linkname, dest)
    else:
        raise BadInput(f"{name}: member {member.name!r} is not a file, directory or symlink")


def in_app(rel: str) -> bool:
    return rel == "app" or rel.startswith("app" + os.sep)


def check_staged(staging: Path, header: dict[str, Any], name: str) -> bld.BuildInfo:
    """The tree must have the digest its header and its build.yaml name."""
    claimed = str(header.get("id", ""))
    check_build_id(claimed)
    if not (staging / "app").is_dir() or not (staging / "build.yaml").is_file():
        raise BadInput(f"{name}: archive lacks app/ or build.yaml")
    # build.yaml is checked by the loader the root uses (its seal, its id); it names the
    # digest format the tree was digested with
    info = bld.read_build_meta(staging / "build.yaml", claimed)
    os.chmod(staging / "build.yaml", 0o444)
    freeze(staging / "app")
    digest = tree_digest(staging / "app", info.digest_format)
    if digest != header.get("digest") or build_id_for(digest) != claimed:
        raise BadInput(
            f"{name}: content digest {digest[:19]}... does not match {claimed} "
            "(corrupted or altered archive); no build was stored"
        )
    if info.digest != digest:
        raise BadInput(f"{name}: build.yaml names digest {info.digest[:19]}..., not the tree's")
    return info


# --- releases -----------------------------------------------------------------------------


def export_release(root: DeployRoot, release_id: str) -> tuple[Release, bytes]:
    """The release and its manifest's bytes, checked against its digest before they go."""
    path = root.release_manifest(check_release_id(release_id))
    if not path.is_file():
        raise BadInput(f"no such release: {release_id}")
    data = path.read_bytes()
    return release_from_data(load_yaml(data, str(path)), str(path)), data


@dataclass(frozen=True)
class ReleaseImport:
    release: Release
    unchanged: bool

    def to_data(self) -> dict[str, Any]:
        r = self.release
        return {"id": r.id, "build": r.build, "digest": r.digest, "unchanged": self.unchanged}


def import_release(root: DeployRoot, data: bytes, name: str) -> ReleaseImport:
    """Publish the manifest under its own ID; a no-op when this root has it already."""
    root.require_initialized()
    release = release_from_data(load_yaml(data, name), name)
    if not root.build_dir(release.build).is_dir():
        raise BadInput(
            f"{name}: release {release.id} needs build {release.build}, which this root "
            "lacks (run `brr-release build import` first); nothing was changed"
        )
    with root.locked(), os_errors_leave(f"release {release.id} was not stored"):
        existing = root.release_manifest(release.id)
        if existing.is_file():
            if load_release(existing).digest == release.digest:
                return ReleaseImport(release, unchanged=True)
            raise taken(release.id, "to a different release")
        if issued_before(root, release.id):
            raise taken(release.id, "already (its ledger records it)")
        publish_release(root, release, data, imported=True)
    return ReleaseImport(release, unchanged=False)


def taken(release_id: str, how: str) -> OperationFailed:
    return OperationFailed(
        f"this root issued {release_id} {how}: it cannot take the fleet's {release_id}; "
        "nothing was changed (give the fleet its own roots, numbered by the controller)"
    )


def issued_before(root: DeployRoot, release_id: str) -> bool:
    entries = ledger.read_ledger(root.ledger).entries
    return any(e.get("event") == "release" and e.get("id") == release_id for e in entries)


# --- streams ------------------------------------------------------------------------------


def open_input(arg: str) -> IO[bytes]:
    if arg == "-":
        return sys.stdin.buffer
    try:
        return open(arg, "rb")
    except FileNotFoundError:
        raise BadInput(f"{arg}: no such file") from None

"""`brr-release releases`: every release, newest first, read from the ledger.

Parsing every manifest cost more than all the rest of the command (200 releases: 0.8 ms
each with the YAML import, issue 16), and an operator types it all day. So each
`release` line of the ledger records what the list shows (created_at, build, commit,
config keys, formation) and the BLAKE2b hash of the exact bytes of the release.yaml it was
written with. A release is listed from its line only when its manifest, read now, still
hashes to that value: the line then describes that very file, and the list is what
parsing it would print. Every other release is read the old way, manifest and build.yaml
parsed (`inspect.summary`): a line from before these fields, a manifest changed or
unreadable (it shows `unreadable: <why>`), a field that fails the checks below.

The line is not trusted further than the manifest is: whoever can write the ledger can
write the manifest too (docs/security.md). The checks keep a forged line from putting
anything in the list a manifest could not (an escape sequence, a type name with a
newline). Manifests are read without following a symlink; a link goes down the old path.
"""

from __future__ import annotations

import os
import re
import stat
from typing import TYPE_CHECKING, Any

from supervisord_lite import ledger, nofollow, refusals
from supervisord_lite.errors import BrrError
from supervisord_lite.layout import BUILD_ID_RE, DeployRoot
from supervisord_lite.names import MAX_SCALE, TYPE_NAME_RE, is_env_name

if TYPE_CHECKING:
    from supervisord_lite.manifest import Release

CREATED_AT_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
COMMIT_RE = re.compile(r"[0-9a-f]{12}( \(dirty\))?")
HASH_RE = re.compile(r"[0-9a-f]{64}")
MAX_MANIFEST = 16 << 20  # larger than any manifest the loader takes; past it: the old path
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def manifest_hash(manifest: bytes) -> str:
    """BLAKE2b-256 of the bytes: hashlib's own blake2b, imported from where hashlib takes
    it, because `import hashlib` loads OpenSSL's libcrypto first (3 ms of every list)."""
    from _blake2 import blake2b

    return blake2b(manifest, digest_size=32).hexdigest()


def recorded_fields(release: Release, manifest: bytes, commit: str | None) -> dict[str, Any]:
    """The fields of a `release` ledger line (releases.publish_release writes them)."""
    return {
        "build": release.build,
        "digest": release.digest,  # what `verify` checks release.yaml against
        "config_keys": sorted(release.config),
        "formation": release.formation(),
        "created_at": release.created_at,
        "commit": commit,
        "manifest_blake2b": manifest_hash(manifest),
    }


def list_releases(root: DeployRoot) -> dict[str, Any]:
    """Every release newest first; one that does not load is listed with its error."""
    current = root.current_release_id()
    entries = ledger.read_ledger(root.ledger).entries
    refused = refusals.refused_releases(root, entries)
    lines = release_lines(entries)
    commits: dict[str, str | None] = {}
    out: list[dict[str, Any]] = []
    releases_fd = open_releases(root)
    try:
        for rid in reversed(root.release_ids()):
            line = lines.get(rid)
            row = None
            if line is not None and releases_fd is not None:
                row = from_line(rid, line, read_manifest(releases_fd, rid))
            if row is None:
                out.append(from_manifest(root, rid, current, refused, commits))
            else:
                out.append(row | {"current": rid == current, "refused": refused.get(rid)})
    finally:
        if releases_fd is not None:
            os.close(releases_fd)
    return {"releases": out, "current": current}


def release_lines(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Release ID -> its `release` line (the last, were a forged one to repeat it)."""
    return {str(e["id"]): e for e in entries if e.get("event") == "release"}


def from_line(rid: str, line: dict[str, Any], manifest: bytes | None) -> dict[str, Any] | None:
    """The row of rid from its ledger line; None unless the line fits the manifest."""
    recorded = line.get("manifest_blake2b")
    if manifest is None or not (isinstance(recorded, str) and HASH_RE.fullmatch(recorded)):
        return None
    build, created, commit = line.get("build"), line.get("created_at"), line.get("commit")
    keys, formation = line.get("config_keys"), line.get("formation")
    if not (
        isinstance(build, str)
        and BUILD_ID_RE.fullmatch(build)
        and isinstance(created, str)
        and CREATED_AT_RE.fullmatch(created)
        and (commit is None or (isinstance(commit, str) and COMMIT_RE.fullmatch(commit)))
        and good_keys(keys)
        and good_formation(formation)
        and manifest_hash(manifest) == recorded
    ):
        return None
    return {
        "id": rid,
        "created_at": created,
        "build": build,
        "commit": commit,
        "config_keys": keys,
        "formation": formation,
    }


def good_keys(keys: object) -> bool:
    return (
        isinstance(keys, list)
        and all(isinstance(k, str) and is_env_name(k) for k in keys)
        and keys == sorted(keys)
    )


def good_formation(formation: object) -> bool:
    return isinstance(formation, dict) and all(
        isinstance(name, str)
        and TYPE_NAME_RE.fullmatch(name)
        and type(scale) is int
        and 0 <= scale <= MAX_SCALE
        for name, scale in formation.items()
    )


def open_releases(root: DeployRoot) -> int | None:
    try:
        return nofollow.open_dir(root.path, "releases")
    except (OSError, nofollow.PlantedLink):
        return None


def read_manifest(releases_fd: int, rid: str) -> bytes | None:
    """releases/<rid>/release.yaml, never through a symlink; None if it cannot be read so."""
    try:
        dir_fd = os.open(rid, nofollow.DIR_FLAGS, dir_fd=releases_fd)
        try:
            fd = os.open("release.yaml", FILE_FLAGS, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST:
            return None
        chunks = []
        while chunk := os.read(fd, st.st_size + 1):
            chunks.append(chunk)
            if len(chunk) <= st.st_size:  # short: its end (else it grew; a wrong guess
                break  # only fails the hash, and the manifest is parsed instead)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def from_manifest(
    root: DeployRoot,
    rid: str,
    current: str | None,
    refused: dict[str, str],
    commits: dict[str, str | None],
) -> dict[str, Any]:
    """The row of rid from its manifest and its build's build.yaml, both parsed."""
    from supervisord_lite.brr.build import build_commit
    from supervisord_lite.brr.inspect import summary
    from supervisord_lite.manifest import load_release

    try:
        release = load_release(root.release_manifest(rid))
        return summary(release, current, refused, build_commit(root, release.build, commits))
    except BrrError as exc:
        return {"id": rid, "error": str(exc), "current": rid == current}


def format_releases(data: dict[str, Any]) -> str:
    lines = [f"{'':2}{'ID':<6} {'CREATED':<27} {'BUILD':<15} FORMATION / CONFIG KEYS"]
    for r in data["releases"]:
        mark = "* " if r.get("current") else "  "
        if "error" in r:
            lines.append(f"{mark}{r['id']:<6} unreadable: {r['error']}")
            continue
        form = " ".join(f"{k}={v}" for k, v in r["formation"].items())
        keys = ",".join(r["config_keys"]) or "-"
        line = f"{mark}{r['id']:<6} {r['created_at']:<27} {r['build']:<15} {form}  [{keys}]"
        if r.get("commit"):
            line += f"  commit {r['commit']}"
        if r.get("refused"):
            line += f"  refused: {r['refused']}"
        lines.append(line)
    return "\n".join(lines)

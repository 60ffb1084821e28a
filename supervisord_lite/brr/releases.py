"""The release stage: a build plus config plus formation becomes an immutable `v<N>`.

Every change is a new release: new code (`release --build`), config (`config set`), or
formation (`scale`). The next number is one more than the highest ever issued, taken
from the ledger and the directory together, so a pruned ID is never reused and a
release whose ledger line was lost to a crash still counts. The manifest is written
under a temp directory and renamed into place with the root's lock held, then the
ledger records it; a crash between the two leaves a complete release without its ledger
line, which `verify` accepts and the next number skips.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from dotenv import dotenv_values

from supervisord_lite import fsatomic, ledger, twin
from supervisord_lite.brr import listing
from supervisord_lite.brr.build import build_commit, load_build_meta
from supervisord_lite.errors import BadInput
from supervisord_lite.layout import DeployRoot, check_release_id, release_number
from supervisord_lite.manifest import Release, dump_release, load_release
from supervisord_lite.names import is_env_name
from supervisord_lite.schema import load_yaml

MANIFEST_MODE = 0o640


@dataclass(frozen=True)
class ConfigChange:
    """What the command line asks of the config, applied in order: files, sets, unsets."""

    env_files: tuple[Path, ...] = ()
    sets: tuple[str, ...] = ()  # "K=V"
    unsets: tuple[str, ...] = ()

    def apply(self, config: Mapping[str, str]) -> dict[str, str]:
        out = dict(config)
        for path in self.env_files:
            out.update(read_env_file(path))
        for item in self.sets:
            key, sep, value = item.partition("=")
            if not sep:
                raise BadInput(f"--set {item!r}: expected KEY=VALUE")
            out[check_key(key)] = value
        for key in self.unsets:
            out.pop(check_key(key), None)
        return out


def check_key(key: str) -> str:
    if not is_env_name(key):
        raise BadInput(f"{key!r} is not a valid config variable name")
    return key


def read_env_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise BadInput(f"--env-file {path}: no such file")
    try:
        # literal, not expanded: a secret with a `$` in it arrives as written (Heroku
        # config vars are not expanded either); docs/apps.md says so
        values = dotenv_values(path, interpolate=False)
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"--env-file {path}: cannot read ({exc})") from None
    out: dict[str, str] = {}
    for key, value in values.items():
        check_key(key)
        if value is None:
            # python-dotenv's load_dotenv sets nothing for a bare `KEY` line: neither do we
            print(
                f"brr-release: warning: --env-file {path}: {key} has no '=': not set",
                file=sys.stderr,
            )
            continue
        if "\x00" in value:
            raise BadInput(f"--env-file {path}: {key}: NUL character in value")
        out[key] = value
    return out


def newest_release(root: DeployRoot) -> Release | None:
    ids = root.release_ids()
    if not ids:
        return None
    return load_release(root.release_manifest(ids[-1]))


def next_release_id(root: DeployRoot) -> str:
    """Caller holds the lock."""
    entries = ledger.read_ledger(root.ledger).entries
    on_disk = max((release_number(i) for i in root.release_ids()), default=0)
    return f"v{max(on_disk, ledger.highest_release_number(entries)) + 1}"


def write_release(root: DeployRoot, draft: Release) -> Release:
    """Give draft the next ID, seal, publish, record. Caller holds the lock."""
    fsatomic.remove_stale_temps(root.releases)
    release = replace(draft, id=next_release_id(root), created_at=ledger.utc_now()).sealed()
    publish_release(root, release, dump_release(release))
    return release


def publish_release(
    root: DeployRoot, release: Release, manifest: bytes, *, imported: bool = False
) -> None:
    """Publish manifest as releases/<id>/release.yaml, then record it. Caller holds the lock.

    imported: the manifest came from another root (`release import`), byte for byte.
    """
    fsatomic.remove_stale_temps(root.releases)
    staging = fsatomic.temp_name(root.releases)
    staging.mkdir(mode=0o750)
    try:
        fsatomic.write_file(staging / "release.yaml", manifest, mode=MANIFEST_MODE)
        write_twin(staging, manifest)
        fsatomic.fsync_dir(staging)
        if not fsatomic.publish_dir(staging, root.release_dir(release.id)):
            raise BadInput(f"release {release.id} appeared while writing it")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    extra = {"imported": True} if imported else {}
    commit = build_commit(root, release.build, {})
    fields = listing.recorded_fields(release, manifest, commit)
    ledger.append(root.ledger, "release", release.id, **fields, **extra)


def write_twin(staging: Path, manifest: bytes) -> None:
    """release.json beside release.yaml (twin.py): the daemon then reads this release
    without a YAML parser. None is written when JSON cannot carry the manifest exactly."""
    data = twin.make(manifest, load_yaml(manifest, "release.yaml"))
    if data is not None:
        fsatomic.write_file(staging / twin.NAME, data, mode=MANIFEST_MODE)


def release_from_build(root: DeployRoot, build_id: str, change: ConfigChange) -> Release:
    """A new release of build_id with the newest release's config, changed. Lock held."""
    info = load_build_meta(root, build_id)
    base = newest_release(root)
    decl = info.declaration
    draft = Release(
        id="v1",
        created_at="",
        build=info.id,
        config=change.apply(base.config if base else {}),
        sockets=dict(decl.sockets or {}),
        switch=decl.switch,
        processes=dict(decl.processes),
        release_command=decl.release_command,
    )
    return write_release(root, draft)


def base_release(root: DeployRoot, from_id: str | None) -> Release | None:
    """What a config change or a scale starts from: from_id, else current, else the newest.

    Not the newest by default: with v5 current and a staged v6 of new code, `config set`
    must not ship v6's code under cover of a config change.
    """
    rid = check_release_id(from_id) if from_id else root.current_release_id()
    if rid is None:
        return newest_release(root)
    if not root.release_dir(rid).is_dir():
        raise BadInput(f"--from {rid}: no such release")
    return load_release(root.release_manifest(rid))


def require_base(root: DeployRoot, what: str, from_id: str | None = None) -> Release:
    base = base_release(root, from_id)
    if base is None:
        raise BadInput(f"no release yet to {what}: release a build first")
    if not root.build_dir(base.build).is_dir():
        raise BadInput(f"release {base.id}'s build {base.build} is missing")
    return base


def release_with_config(
    root: DeployRoot, change: ConfigChange, from_id: str | None = None
) -> Release:
    base = require_base(root, "change the config of", from_id)
    return write_release(root, replace(base, config=change.apply(base.config)))


def parse_formation(items: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        name, sep, count = item.partition("=")
        if not sep or not count.isdigit() or int(count) > 1000:
            raise BadInput(f"scale {item!r}: expected TYPE=N with N from 0 to 1000")
        out[name] = int(count)
    if not out:
        raise BadInput("scale: name at least one TYPE=N")
    return out


def release_with_scale(
    root: DeployRoot, formation: dict[str, int], from_id: str | None = None
) -> Release:
    base = require_base(root, "scale", from_id)
    processes = dict(base.processes)
    for name, count in formation.items():
        if name not in processes:
            known = ", ".join(processes)
            raise BadInput(f"scale: release {base.id} has no process type {name!r} ({known})")
        processes[name] = replace(processes[name], scale=count)
    return write_release(root, replace(base, processes=processes))

"""DeployRoot: every path under ROOT, how ROOT is found, and the writers' lock.

The layout is the contract between brr-release and the daemon (SPEC "Deploy root"); no
other module builds a path under ROOT by hand. IDs that come from the command line or a
manifest are checked here before they become paths, so nothing can name a file outside
the root (`../../etc`).

Everything below ROOT may be planted by a member of the deploy group (docs/security.md):
the writers' lock and `initialize` work on fds opened without following (nofollow.py),
`current` counts only when it resolves to releases/<ID> of this very root, and release
numbers stop at MAX_RELEASE_NUMBER so a forged ledger line cannot end every release.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from supervisord_lite import nofollow
from supervisord_lite.errors import BadInput, ValidationError

RELEASE_ID_RE = re.compile(r"v[1-9][0-9]{0,9}")
# a ledger line naming v99999999999 must not make every later release fail: IDs past
# this are refused where they are read, and no release is ever numbered past it
MAX_RELEASE_NUMBER = 999_999_999
BUILD_ID_RE = re.compile(r"b-[0-9a-f]{12}")
TEMP_PREFIX = ".tmp-"


def check_release_id(value: str) -> str:
    """Return value if it is a release ID `v<N>`; raise BadInput otherwise."""
    if not RELEASE_ID_RE.fullmatch(value):
        raise BadInput(f"not a release ID: {value!r} (expected v1, v2, ...)")
    if int(value[1:]) > MAX_RELEASE_NUMBER:
        raise BadInput(f"release ID {value} is past the last one allowed, v{MAX_RELEASE_NUMBER}")
    return value


def check_build_id(value: str) -> str:
    """Return value if it is a build ID `b-` + 12 hex digits; raise BadInput otherwise."""
    if not BUILD_ID_RE.fullmatch(value):
        raise BadInput(f"not a build ID: {value!r} (expected b- and 12 hex digits)")
    return value


def is_release_id(name: str) -> bool:
    return bool(RELEASE_ID_RE.fullmatch(name)) and int(name[1:]) <= MAX_RELEASE_NUMBER


def release_number(release_id: str) -> int:
    return int(check_release_id(release_id)[1:])


class DeployRoot(NamedTuple):  # not a dataclass: importing dataclasses costs every
    # command ~8 ms of start-up (issue 16)
    path: Path

    @property
    def builds(self) -> Path:
        return self.path / "builds"

    @property
    def releases(self) -> Path:
        return self.path / "releases"

    @property
    def ledger(self) -> Path:
        return self.path / "ledger.jsonl"

    @property
    def current(self) -> Path:
        return self.path / "current"

    @property
    def run_dir(self) -> Path:
        return self.path / "run"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def shared(self) -> Path:
        """Data that outlives releases (Capistrano's shared/): offered as BRR_SHARED."""
        return self.path / "shared"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "supervisord-lite.pid"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "supervisord-lite.sock"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "lock"

    @property
    def last_good(self) -> Path:
        return self.run_dir / "last-good"

    @property
    def refused_file(self) -> Path:
        return self.run_dir / "refused.json"

    def build_dir(self, build_id: str) -> Path:
        return self.builds / check_build_id(build_id)

    def build_app(self, build_id: str) -> Path:
        return self.build_dir(build_id) / "app"

    def build_meta(self, build_id: str) -> Path:
        return self.build_dir(build_id) / "build.yaml"

    def release_dir(self, release_id: str) -> Path:
        return self.releases / check_release_id(release_id)

    def release_manifest(self, release_id: str) -> Path:
        return self.release_dir(release_id) / "release.yaml"

    def is_initialized(self) -> bool:
        return self.builds.is_dir() and self.releases.is_dir() and self.run_dir.is_dir()

    def require_initialized(self) -> DeployRoot:
        if not self.path.is_dir():
            raise BadInput(f"deploy root {self.path} does not exist (run `brr-release init`)")
        if not self.is_initialized():
            raise BadInput(f"deploy root {self.path} is not initialized (run `brr-release init`)")
        for directory in (self.builds, self.releases, self.run_dir):
            if directory.is_symlink():  # every writer would create and rename through it
                raise nofollow.refusal(directory, "directory")
        return self

    def release_ids(self) -> list[str]:
        """Release IDs present on disk, oldest first; temp names are never listed."""
        if not self.releases.is_dir():
            return []
        ids = [p.name for p in self.releases.iterdir() if is_release_id(p.name)]
        return sorted(ids, key=release_number)

    def build_ids(self) -> list[str]:
        if not self.builds.is_dir():
            return []
        return sorted(p.name for p in self.builds.iterdir() if BUILD_ID_RE.fullmatch(p.name))

    def current_release_id(self) -> str | None:
        """The release `current` points at, or None when it is missing, dangling, or
        resolves anywhere but a release directory of this root (a forged `current`)."""
        if not self.current.is_symlink():
            return None
        return release_dir_id(self, self.current)

    def initialize(self, gid: int | None) -> None:
        """Make the layout; with gid, share it with that group (setgid dirs, 0660 files).

        Re-run on an existing root, where any member of the group may have planted a
        symlink or hard link: every change is made on an fd opened without following.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        root_fd = nofollow.open_dir(self.path)
        try:
            share(root_fd, gid, 0o2775)
            for name in ("builds", "releases", "run", "logs", "shared"):
                fd = nofollow.open_dir(self.path, name, create=True)
                try:
                    share(fd, gid, 0o2775)
                finally:
                    os.close(fd)
        finally:
            os.close(root_fd)
        for rel in ("ledger.jsonl", "run/lock"):
            fd = nofollow.open_file(self.path, rel, os.O_RDONLY | os.O_CREAT, 0o640)
            try:
                if gid is not None:
                    nofollow.require_single_link(fd, self.path / rel)
                share(fd, gid, 0o660)
            finally:
                os.close(fd)

    @contextmanager
    def locked(self, *, wait: bool = True) -> Iterator[None]:
        """Hold run/lock exclusively: every writer of ROOT goes through here.

        flock is released by the kernel when the holder dies, so a writer killed with
        SIGKILL never leaves the root locked. wait=False raises BlockingIOError when
        another writer holds it.
        """
        os.close(nofollow.open_dir(self.path, "run", create=True))
        # read-only is enough for flock, and works for every user of a shared root; never
        # through a symlink (root would create its target: an empty /etc/nologin)
        fd = nofollow.open_file(self.path, "run/lock", os.O_RDONLY | os.O_CREAT, 0o660)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield
        finally:
            os.close(fd)


def share(fd: int, gid: int | None, mode: int) -> None:
    if gid is not None:
        os.fchown(fd, -1, gid)
        os.fchmod(fd, mode)


def release_dir_id(root: DeployRoot, link: Path) -> str | None:
    """The release ID a link (current, last-good) resolves to, if it resolves to
    releases/<ID> of this root itself; None for anything else."""
    try:
        resolved = Path(os.path.realpath(link, strict=True))
        releases = Path(os.path.realpath(root.releases, strict=True))
    except OSError:
        return None
    name = resolved.name
    if resolved.parent != releases or not is_release_id(name) or not resolved.is_dir():
        return None
    return name


def require_inside_releases(manifest: Path, builds_dir: Path) -> None:
    """Refuse a manifest that does not live in releases/<ID>/ of the root of builds_dir.

    `current` pointing at a directory outside releases/ with a self-consistent manifest
    must not run: the digest is a checksum, not a signature.
    """
    root = DeployRoot(builds_dir.parent)
    directory = manifest.parent
    if release_dir_id(root, directory) is None:
        where = os.path.realpath(directory)
        raise ValidationError(str(manifest), "", f"resolves to {where}, not into {root.releases}")


def resolve_root(arg: str | None) -> DeployRoot:
    """--root, else $BRR_ROOT, else BadInput (exit 2)."""
    value = arg or os.environ.get("BRR_ROOT")
    if not value:
        raise BadInput("no deploy root: pass --root DIR or set BRR_ROOT")
    return DeployRoot(Path(value).absolute())

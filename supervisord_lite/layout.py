"""DeployRoot: every path under ROOT, how ROOT is found, and the writers' lock.

The layout is the contract between brr-release and the daemon (SPEC "Deploy root"); no
other module builds a path under ROOT by hand. IDs that come from the command line or a
manifest are checked here before they become paths, so nothing can name a file outside
the root (`../../etc`).
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from supervisord_lite.errors import BadInput

RELEASE_ID_RE = re.compile(r"v[1-9][0-9]{0,9}")
BUILD_ID_RE = re.compile(r"b-[0-9a-f]{12}")
TEMP_PREFIX = ".tmp-"


def check_release_id(value: str) -> str:
    """Return value if it is a release ID `v<N>`; raise BadInput otherwise."""
    if not RELEASE_ID_RE.fullmatch(value):
        raise BadInput(f"not a release ID: {value!r} (expected v1, v2, ...)")
    return value


def check_build_id(value: str) -> str:
    """Return value if it is a build ID `b-` + 12 hex digits; raise BadInput otherwise."""
    if not BUILD_ID_RE.fullmatch(value):
        raise BadInput(f"not a build ID: {value!r} (expected b- and 12 hex digits)")
    return value


def release_number(release_id: str) -> int:
    return int(check_release_id(release_id)[1:])


@dataclass(frozen=True)
class DeployRoot:
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
        return self

    def release_ids(self) -> list[str]:
        """Release IDs present on disk, oldest first; temp names are never listed."""
        if not self.releases.is_dir():
            return []
        ids = [p.name for p in self.releases.iterdir() if RELEASE_ID_RE.fullmatch(p.name)]
        return sorted(ids, key=release_number)

    def build_ids(self) -> list[str]:
        if not self.builds.is_dir():
            return []
        return sorted(p.name for p in self.builds.iterdir() if BUILD_ID_RE.fullmatch(p.name))

    def current_release_id(self) -> str | None:
        """The release `current` points at, or None when it is missing or dangling."""
        try:
            target = os.readlink(self.current)
        except (FileNotFoundError, OSError):
            return None
        name = Path(target).name
        if not RELEASE_ID_RE.fullmatch(name) or not (self.releases / name).is_dir():
            return None
        return name

    @contextmanager
    def locked(self, *, wait: bool = True) -> Iterator[None]:
        """Hold run/lock exclusively: every writer of ROOT goes through here.

        flock is released by the kernel when the holder dies, so a writer killed with
        SIGKILL never leaves the root locked. wait=False raises BlockingIOError when
        another writer holds it.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # read-only is enough for flock, and works for every user of a shared root
        fd = os.open(self.lock_file, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o660)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield
        finally:
            os.close(fd)


def resolve_root(arg: str | None) -> DeployRoot:
    """--root, else $BRR_ROOT, else BadInput (exit 2)."""
    value = arg or os.environ.get("BRR_ROOT")
    if not value:
        raise BadInput("no deploy root: pass --root DIR or set BRR_ROOT")
    return DeployRoot(Path(value).absolute())

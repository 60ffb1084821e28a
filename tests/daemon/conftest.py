"""Deploy roots with hand-made releases, and a real daemon per test, always cleaned up.

Releases are made from manifest.Release(...).sealed() + dump_release, not by brr-release,
so these tests depend only on the contract modules. Every daemon runs in its own session
with its output in a file; teardown stops it with SIGTERM, then SIGKILLs it and whatever
its children.json and the root's builds/ still show alive.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from supervisord_lite.daemon.reaper import kill_previous
from supervisord_lite.daemon_client import request
from supervisord_lite.fsatomic import replace_symlink, write_file
from supervisord_lite.layout import DeployRoot
from supervisord_lite.manifest import ProcessSpec, ReadyCheck, Release, SocketSpec, dump_release
from tests.helpers import DAEMON, pid_alive, python, wait_until

FAST_READY = ReadyCheck("after", seconds=0.2)

# serves on the socket the daemon passed as fd 3, answering each connection with its release
SERVE_FD3 = python(
    "import os, socket\n"
    "assert os.environ['LISTEN_PID'] == str(os.getpid())\n"
    "assert os.environ['LISTEN_FDS'] == '1' and os.environ['LISTEN_FDNAMES'] == 'http'\n"
    "s = socket.socket(fileno=3)\n"
    "print('serving', flush=True)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(os.environ['BRR_RELEASE'].encode()); c.close()"
)


def proc(type_: str, cmd: str, **kw: Any) -> ProcessSpec:
    """A ProcessSpec with test-friendly defaults: quick ready, quick stop."""
    kw.setdefault("ready", FAST_READY)
    kw.setdefault("stop_timeout", 5.0)
    kw.setdefault("ready_timeout", 10.0)
    return ProcessSpec(type=type_, cmd=cmd, **kw)


@dataclass
class Root:
    path: Path
    next_id: int = 1

    @property
    def layout(self) -> DeployRoot:
        return DeployRoot(self.path)

    def build(self, tag: str = "app") -> str:
        build_id = "b-" + hashlib.sha256(tag.encode()).hexdigest()[:12]
        (self.path / "builds" / build_id / "app").mkdir(parents=True, exist_ok=True)
        return build_id

    def release(
        self,
        *procs: ProcessSpec,
        config: dict[str, str] | None = None,
        switch: str = "start-first",
        activate: bool = True,
        sockets: dict[str, SocketSpec] | None = None,
    ) -> str:
        release_id = f"v{self.next_id}"
        self.next_id += 1
        rel = Release(
            id=release_id,
            created_at="2026-11-22T00:00:00Z",
            build=self.build(),
            config=config or {},
            sockets=sockets or {},
            switch=switch,
            processes={p.type: p for p in procs},
        ).sealed()
        rdir = self.path / "releases" / release_id
        rdir.mkdir(parents=True)
        write_file(rdir / "release.yaml", dump_release(rel), mode=0o640)
        if activate:
            self.activate(release_id)
        return release_id

    def activate(self, release_id: str) -> None:
        replace_symlink(self.path / "current", f"releases/{release_id}")


@pytest.fixture
def droot(tmp_path: Path) -> Root:
    path = tmp_path / "root"
    for sub in ("builds", "releases", "run", "logs"):
        (path / sub).mkdir(parents=True)
    return Root(path)


@dataclass
class Daemon:
    root: Root
    proc: subprocess.Popen[bytes]
    out: Path
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        reply = request(self.root.layout.control_socket, {"cmd": "status"})
        return reply.get("status", reply)

    def procs(self) -> list[dict[str, Any]]:
        return list(self.status()["processes"])

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)


def start_daemon(
    root: Root, out: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with out.open("ab") as f:
        return subprocess.Popen(
            [DAEMON, "run", "--root", str(root.path), *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )


def stop_daemon(proc: subprocess.Popen[bytes], root: Root) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    layout = root.layout
    kill_previous(layout.run_dir / "children.json", layout.builds)


@pytest.fixture
def daemon(droot: Root, tmp_path: Path) -> Iterator[Any]:
    """daemon(*args, env=...) starts one and waits for its control socket."""
    started: list[Daemon] = []

    def start(*args: str, env: dict[str, str] | None = None, wait: bool = True) -> Daemon:
        out = tmp_path / f"daemon-{len(started)}.out"
        d = Daemon(droot, start_daemon(droot, out, *args, env=env), out)
        started.append(d)
        if wait:
            wait_until(
                lambda: d.proc.poll() is not None or d.status()["state"] == "running",
                timeout=30,
                what="daemon running",
            )
            assert d.proc.poll() is None, d.output()
        return d

    yield start
    for d in started:
        for p in [d.proc, *d.extra]:
            stop_daemon(p, droot)


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def alive(pids: list[int]) -> list[int]:
    return [p for p in pids if pid_alive(p)]


def running(d: Daemon, release: str | None = None) -> list[dict[str, Any]]:
    return [
        p
        for p in d.procs()
        if p["state"] == "RUNNING" and (release is None or p["release"] == release)
    ]


def read_pid(path: Path) -> int:
    return int(wait_until(lambda: path.exists() and path.read_text().strip(), what=str(path)))


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1)


def now() -> float:
    return time.monotonic()

"""The release manifest and the specs it is made of: frozen values, load, dump, digest.

`release.yaml` is self-contained: the daemon reads this one file and nothing else of the
release. Every process is written out with every default filled in, so what runs does not
depend on the defaults of the version of the code that reads it. The digest is SHA-256
over the canonical JSON (sorted keys, no spaces) of every other field, computed on the
parsed YAML, so the same manifest always has the same digest whatever the YAML layout.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from supervisord_lite import twin
from supervisord_lite.errors import ValidationError
from supervisord_lite.layout import BUILD_ID_RE, RELEASE_ID_RE, require_inside_releases
from supervisord_lite.names import MAX_SCALE, TYPE_NAME_RE
from supervisord_lite.schema import Fields, load_yaml, require_mapping
from supervisord_lite.twin import sha256

SCHEMA = 1
SOCKET_NAME_RE = TYPE_NAME_RE
RESTART_POLICIES = ("always", "on-failure", "never")
SWITCH_MODES = ("start-first", "stop-first")
READY_KINDS = ("after", "tcp", "http", "cmd", "notify")

# Every default of the declaration in one table (SPEC "The app's declaration").
DEFAULTS: dict[str, Any] = {
    "scale": 1,
    "restart": "always",
    "stop_signal": "TERM",
    "stop_timeout": 10.0,
    "ready": {"after": 1.0},
    "ready_timeout": 60.0,
    "fatal_cooloff": 60.0,
    "switch": "start-first",
    "backlog": 1024,
}
MAX_SECONDS = 86400.0


@dataclass(frozen=True)
class ReadyCheck:
    """When a started process counts as ready: one of READY_KINDS and its argument."""

    kind: str
    target: str = ""  # tcp host:port, http URL, cmd command line
    seconds: float = 0.0  # for `after`

    def to_data(self) -> dict[str, Any]:
        match self.kind:
            case "after":
                return {"after": self.seconds}
            case "notify":
                return {"notify": True}
        return {self.kind: self.target}


@dataclass(frozen=True)
class SocketSpec:
    name: str
    bind: str  # "HOST:PORT", "[v6]:PORT" or "unix:/path"
    backlog: int = DEFAULTS["backlog"]

    def to_data(self) -> dict[str, Any]:
        return {"bind": self.bind, "backlog": self.backlog}


@dataclass(frozen=True)
class ProcessSpec:
    type: str
    cmd: str
    scale: int = DEFAULTS["scale"]
    sockets: tuple[str, ...] = ()
    port: int | None = None
    ready: ReadyCheck = ReadyCheck("after", seconds=DEFAULTS["ready"]["after"])
    ready_timeout: float = DEFAULTS["ready_timeout"]
    restart: str = DEFAULTS["restart"]
    stop_signal: str = DEFAULTS["stop_signal"]
    stop_timeout: float = DEFAULTS["stop_timeout"]
    fatal_cooloff: float = DEFAULTS["fatal_cooloff"]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def signal_number(self) -> signal.Signals:
        return signal.Signals["SIG" + self.stop_signal]

    def instance_names(self) -> list[str]:
        return [f"{self.type}.{n}" for n in range(1, self.scale + 1)]

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"cmd": self.cmd, "scale": self.scale}
        if self.sockets:
            data["sockets"] = list(self.sockets)
        if self.port is not None:
            data["port"] = self.port
        data.update(
            ready=self.ready.to_data(),
            ready_timeout=self.ready_timeout,
            restart=self.restart,
            stop_signal=self.stop_signal,
            stop_timeout=self.stop_timeout,
            fatal_cooloff=self.fatal_cooloff,
            env=dict(self.env),
        )
        return data


@dataclass(frozen=True)
class Release:
    id: str
    created_at: str
    build: str
    config: dict[str, str]
    sockets: dict[str, SocketSpec]
    switch: str
    processes: dict[str, ProcessSpec]
    release_command: str | None = None
    digest: str = ""

    def body(self) -> dict[str, Any]:
        """Every field but the digest, as plain data in manifest order."""
        data: dict[str, Any] = {
            "schema": SCHEMA,
            "id": self.id,
            "created_at": self.created_at,
            "build": self.build,
            "config": dict(self.config),
            "sockets": {n: s.to_data() for n, s in self.sockets.items()},
            "switch": self.switch,
        }
        if self.release_command is not None:
            data["release_command"] = self.release_command
        data["processes"] = {n: p.to_data() for n, p in self.processes.items()}
        return data

    def sealed(self) -> Release:
        return replace(self, digest=compute_digest(self.body()))

    def formation(self) -> dict[str, int]:
        return {name: spec.scale for name, spec in self.processes.items()}


def compute_digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    hexdigest: str = sha256(canonical.encode("utf-8")).hexdigest()
    return "sha256:" + hexdigest


# --- parsing ----------------------------------------------------------------------------


def parse_ready(value: object, source: str, path: str) -> ReadyCheck:
    f = Fields(value, source, path)
    if len(f.data) != 1:
        f.fail("", f"must have exactly one of {', '.join(READY_KINDS)}")
    kind = next(iter(f.data))
    if kind not in READY_KINDS:
        f.fail(kind, f"unknown readiness check (expected one of {', '.join(READY_KINDS)})")
    match kind:
        case "after":
            return ReadyCheck("after", seconds=f.number("after", 0, low=0, high=MAX_SECONDS))
        case "notify":
            if f.raw("notify") is not True:
                f.fail("notify", "must be true")
            return ReadyCheck("notify")
        case "http":
            url = f.string("http", required=True)
            if not url.startswith("http://"):
                f.fail("http", f"must be an http:// URL, not {url!r}")
            return ReadyCheck("http", target=url)
        case "tcp":
            addr = f.string("tcp", required=True)
            parse_host_port(addr, f, "tcp")
            return ReadyCheck("tcp", target=addr)
    cmd = f.string("cmd", required=True)
    if not cmd.strip():
        f.fail("cmd", "must not be empty")
    return ReadyCheck("cmd", target=cmd)


def parse_host_port(addr: str, f: Fields, key: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        f.fail(key, f"must be HOST:PORT, not {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def parse_sockets(value: object, source: str) -> dict[str, SocketSpec]:
    sockets: dict[str, SocketSpec] = {}
    top = Fields(value if value is not None else {}, source, "sockets")
    for name in list(top.data):
        if not SOCKET_NAME_RE.fullmatch(name):
            top.fail(name, "socket names are letters, digits, _ and -")
        f = Fields(top.raw(name), source, top.at(name))
        bind = f.string("bind", required=True)
        if bind.startswith("unix:"):
            if not bind[5:].startswith("/"):
                f.fail("bind", f"a unix socket needs an absolute path, not {bind!r}")
        else:
            parse_host_port(bind, f, "bind")
        backlog = f.integer("backlog", DEFAULTS["backlog"], low=1, high=65535)
        f.done()
        sockets[name] = SocketSpec(name, bind, backlog)
    return sockets


def parse_process(
    name: str, value: object, source: str, sockets: dict[str, SocketSpec]
) -> ProcessSpec:
    path = f"processes.{name}"
    if isinstance(value, str):
        value = {"cmd": value}
    f = Fields(value, source, path)
    cmd = f.string("cmd", required=True)
    if not cmd.strip():
        f.fail("cmd", "must not be empty")
    scale = f.integer("scale", DEFAULTS["scale"], low=0, high=MAX_SCALE)
    wanted = f.string_list("sockets")
    for i, sock in enumerate(wanted):
        if sock not in sockets:
            f.fail(f"sockets[{i}]", f"names no declared socket: {sock!r}")
    port = f.raw("port")
    if port is not None:
        port = f.integer("port", 0, low=1, high=65535)
        if port + max(scale, 1) - 1 > 65535:
            f.fail("port", "port + scale runs past 65535")
    ready = parse_ready(f.raw("ready", DEFAULTS["ready"]), source, f.at("ready"))
    restart = f.string("restart", DEFAULTS["restart"])
    if restart not in RESTART_POLICIES:
        f.fail("restart", f"must be one of {', '.join(RESTART_POLICIES)}, not {restart!r}")
    stop_signal = parse_signal(f.raw("stop_signal", DEFAULTS["stop_signal"]), f)
    spec = ProcessSpec(
        type=name,
        cmd=cmd,
        scale=scale,
        sockets=wanted,
        port=port,
        ready=ready,
        ready_timeout=f.number(
            "ready_timeout", DEFAULTS["ready_timeout"], low=0.1, high=MAX_SECONDS
        ),
        restart=restart,
        stop_signal=stop_signal,
        stop_timeout=f.number("stop_timeout", DEFAULTS["stop_timeout"], low=0, high=MAX_SECONDS),
        fatal_cooloff=f.number("fatal_cooloff", DEFAULTS["fatal_cooloff"], low=0, high=MAX_SECONDS),
        env=f.string_map("env"),
    )
    f.done()
    return spec


def parse_signal(value: object, f: Fields) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return signal.Signals(value).name[3:]
        except ValueError:
            f.fail("stop_signal", f"no such signal: {value}")
    if not isinstance(value, str):
        f.fail("stop_signal", "must be a signal name such as TERM")
    name = value.upper().removeprefix("SIG")
    if "SIG" + name not in signal.Signals.__members__:
        f.fail("stop_signal", f"no such signal: {value!r}")
    return name


def parse_processes(
    value: object, source: str, sockets: dict[str, SocketSpec]
) -> dict[str, ProcessSpec]:
    top = Fields(value, source, "processes")
    if not top.data:
        top.fail("", "must declare at least one process type")
    procs: dict[str, ProcessSpec] = {}
    for name in list(top.data):
        if not TYPE_NAME_RE.fullmatch(name):
            top.fail(name, "process type names are a letter, then letters, digits, _ and -")
        procs[name] = parse_process(name, top.raw(name), source, sockets)
    return procs


def parse_switch(f: Fields) -> str:
    switch: str = f.string("switch", DEFAULTS["switch"])
    if switch not in SWITCH_MODES:
        f.fail("switch", f"must be one of {', '.join(SWITCH_MODES)}, not {switch!r}")
    return switch


def release_from_data(data: object, source: str) -> Release:
    f = Fields(require_mapping(data, source), source)
    schema = f.raw("schema")
    if schema != SCHEMA or isinstance(schema, bool):
        f.fail("schema", f"must be {SCHEMA}, not {schema!r}")
    release_id = f.string("id", required=True)
    if not RELEASE_ID_RE.fullmatch(release_id):
        f.fail("id", f"not a release ID: {release_id!r}")
    build = f.string("build", required=True)
    if not BUILD_ID_RE.fullmatch(build):
        f.fail("build", f"not a build ID: {build!r}")
    sockets = parse_sockets(f.raw("sockets"), source)
    release_command = f.string("release_command", None)
    release = Release(
        id=release_id,
        created_at=f.string("created_at", required=True),
        build=build,
        config=f.string_map("config"),
        sockets=sockets,
        switch=parse_switch(f),
        processes=parse_processes(f.raw("processes"), source, sockets),
        release_command=release_command,
        digest=f.string("digest", required=True),
    )
    f.done()
    body = {k: v for k, v in f.data.items() if k != "digest"}
    if compute_digest(body) != release.digest:
        f.fail("digest", "does not match the manifest's content (the file was changed)")
    return release


def load_release(
    path: Path, *, builds_dir: Path | None = None, use_twin: bool = True
) -> Release:
    """Read and verify a release manifest, from its JSON twin when that was made of
    these very bytes (twin.py), else by parsing the YAML; use_twin=False: always parse.

    Raises ValidationError naming the file, the field and the problem; with builds_dir,
    also when the release's build is missing there, or when path is not (once resolved)
    in releases/ of the root that holds builds_dir.
    """
    source = str(path)
    try:
        text = read_regular_file(path)
    except FileNotFoundError:
        raise ValidationError(source, "", "no such file") from None
    except OSError as exc:
        raise ValidationError(source, "", f"cannot read: {exc.strerror}") from None
    if text is None:
        raise ValidationError(source, "", "not a regular file")
    data = twin.read(read_twin(path), text) if use_twin else None
    release = release_from_data(load_yaml(text, source) if data is None else data, source)
    expected = path.parent.name
    if RELEASE_ID_RE.fullmatch(expected) and expected != release.id:
        raise ValidationError(source, "id", f"is {release.id!r} but the directory is {expected!r}")
    if builds_dir is not None and not (builds_dir / release.build / "app").is_dir():
        raise ValidationError(source, "build", f"build {release.build} is missing")
    if builds_dir is not None:  # a release of a root: it must be in that root's releases/
        require_inside_releases(path, builds_dir)
    return release


def read_regular_file(path: Path) -> bytes | None:
    """path's bytes; None for a FIFO or a device planted there, which would otherwise
    block the reader (`releases`, the daemon) for good."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        return f.read() if stat.S_ISREG(os.fstat(fd).st_mode) else None


def read_twin(manifest: Path) -> bytes | None:
    """The bytes of the twin beside manifest; None when there is none to read."""
    try:
        return read_regular_file(manifest.with_name(twin.NAME))
    except OSError:
        return None


def dump_release(release: Release) -> bytes:
    import yaml  # here: the daemon reads manifests (from their twins), never writes one

    data = release.body()
    data["digest"] = release.digest or compute_digest(release.body())
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000).encode("utf-8")


__all__ = [
    "DEFAULTS",
    "ProcessSpec",
    "ReadyCheck",
    "Release",
    "SocketSpec",
    "compute_digest",
    "dump_release",
    "load_release",
    "parse_processes",
    "parse_sockets",
    "parse_switch",
    "release_from_data",
]

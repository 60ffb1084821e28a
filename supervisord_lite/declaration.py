"""The app's declaration: `brr.yaml`, or a `Procfile` as the fallback.

Read once from the source tree at build time and frozen into the build's `build.yaml`;
releases take their sockets, switch mode, release command and processes from it. The
process and socket parsers are the manifest's own, so a declaration that builds is one
the daemon can run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisord_lite.errors import ValidationError
from supervisord_lite.manifest import (
    DEFAULTS,
    ProcessSpec,
    SocketSpec,
    parse_processes,
    parse_sockets,
    parse_switch,
)
from supervisord_lite.names import TYPE_NAME_RE
from supervisord_lite.schema import Fields, load_yaml, require_mapping

PROCFILE_LINE_RE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$")
PORT_RE = re.compile(r"\$(PORT\b|\{PORT[}:-])")
# foreman's and honcho's PORT for `web` when the Procfile gives none
FOREMAN_PORT = 5000
RELEASE_TYPE = "release"  # a Procfile's release phase, as Heroku has it
DEFAULT_RELEASE_TIMEOUT = 600.0


@dataclass(frozen=True)
class Declaration:
    processes: dict[str, ProcessSpec]
    build: tuple[str, ...] = ()
    release_command: str | None = None
    exclude: tuple[str, ...] | None = None  # None: the default file selection
    sockets: dict[str, SocketSpec] | None = None
    switch: str = DEFAULTS["switch"]
    release_timeout: float | None = None  # None: DEFAULT_RELEASE_TIMEOUT

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"build": list(self.build)}
        if self.release_command is not None:
            data["release_command"] = self.release_command
        if self.release_timeout is not None:
            data["release_timeout"] = self.release_timeout
        if self.exclude is not None:
            data["exclude"] = list(self.exclude)
        data["sockets"] = {n: s.to_data() for n, s in (self.sockets or {}).items()}
        data["switch"] = self.switch
        data["processes"] = {n: p.to_data() for n, p in self.processes.items()}
        return data


def declaration_from_data(data: object, source: str) -> Declaration:
    f = Fields(require_mapping(data, source), source)
    steps = f.string_list("build")
    release_command = f.string("release_command", None)
    if release_command is not None and not release_command.strip():
        f.fail("release_command", "must not be empty")
    exclude = f.string_list("exclude") if f.has("exclude") else None
    timeout = None
    if f.has("release_timeout"):
        timeout = f.number("release_timeout", DEFAULT_RELEASE_TIMEOUT, low=1, high=86400)
    sockets = parse_sockets(f.raw("sockets"), source)
    decl = Declaration(
        build=steps,
        release_command=release_command,
        release_timeout=timeout,
        exclude=exclude,
        sockets=sockets,
        switch=parse_switch(f),
        processes=parse_processes(f.required("processes"), source, sockets),
    )
    f.done()
    return decl


def declaration_warnings(decl: Declaration) -> list[str]:
    """What builds but will likely not run as meant: one line each, shown at build time."""
    out: list[str] = []
    for name, spec in decl.processes.items():
        if PORT_RE.search(spec.cmd) and spec.port is None and not spec.sockets:
            out.append(
                f"process {name!r} names $PORT but declares neither `port:` nor `sockets:`: "
                "PORT will be empty (declare `port: 5000`, or a socket)"
            )
    return out


def procfile_entries(text: str, source: str) -> dict[str, str]:
    """`type: command` lines in order; ValidationError names the line."""
    entries: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = PROCFILE_LINE_RE.match(stripped)
        if not m or not TYPE_NAME_RE.fullmatch(m.group(1)):
            raise ValidationError(source, f"line {lineno}", "expected `type: command`")
        if m.group(1) in entries:
            raise ValidationError(source, f"line {lineno}", f"type {m.group(1)!r} appears twice")
        entries[m.group(1)] = m.group(2).strip()
    return entries


def procfile_data(text: str, source: str) -> dict[str, Any]:
    """A Procfile as declaration data, as foreman and Heroku read it.

    `release:` is the release phase, not a process; `web` gets foreman's PORT 5000
    (5001, ... for more instances), whatever its command.
    """
    entries = procfile_entries(text, source)
    data: dict[str, Any] = {}
    if RELEASE_TYPE in entries:
        data["release_command"] = entries.pop(RELEASE_TYPE)
    processes: dict[str, Any] = {}
    for name, cmd in entries.items():
        processes[name] = {"cmd": cmd}
        if name == "web":
            processes[name]["port"] = FOREMAN_PORT
    if not processes:
        raise ValidationError(source, "", "declares no process type (only `release:`)")
    data["processes"] = processes
    return data


def parse_procfile(text: str, source: str) -> Declaration:
    return declaration_from_data(procfile_data(text, source), source)


def load_declaration(src: Path) -> Declaration:
    """The declaration of a source tree: brr.yaml, else Procfile; ValidationError if neither."""
    yml = src / "brr.yaml"
    if yml.is_file():
        return declaration_from_data(load_yaml(yml.read_bytes(), str(yml)), str(yml))
    procfile = src / "Procfile"
    if procfile.is_file():
        try:
            text = procfile.read_text("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(str(procfile), "", "not UTF-8 text") from None
        return parse_procfile(text, str(procfile))
    raise ValidationError(str(src), "", "has neither brr.yaml nor Procfile")

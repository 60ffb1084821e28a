"""`brr-release import`: a brr.yaml from a honcho/foreman Procfile or a supervisord.conf.

The output is always parsed back through the declaration parser before it is shown, so
an import either yields a declaration that builds or fails with the parser's one line.
Every supervisord option that cannot be carried over gets its own warning line: a
migration that silently drops `user=` or `exitcodes=` is how outages start.
"""

from __future__ import annotations

import configparser
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from supervisord_lite.declaration import FOREMAN_PORT, declaration_from_data, procfile_data
from supervisord_lite.errors import BadInput
from supervisord_lite.manifest import TYPE_NAME_RE

AUTORESTART = {"true": "always", "false": "never", "unexpected": "on-failure"}
IGNORED_QUIETLY = {"process_name"}
SUPPORTED = {
    "command",
    "numprocs",
    "directory",
    "environment",
    "autorestart",
    "stopsignal",
    "stopwaitsecs",
    "startsecs",
    "autostart",
}


@dataclass
class Imported:
    declaration: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    def to_yaml(self, source: str) -> str:
        header = f"# imported from {source} by brr-release import\n"
        return header + yaml.safe_dump(self.declaration, sort_keys=False, width=1000)


def import_procfile(procfile: Path, env_file: Path | None) -> Imported:
    if not procfile.is_file():
        raise BadInput(f"{procfile}: no such file")
    data = procfile_data(procfile.read_text("utf-8", "replace"), str(procfile))
    out = Imported(data)
    if "release_command" in data:
        out.hints.append("release: is the release phase (release_command), not a process")
    if "web" in data["processes"]:
        out.hints.append(f"web gets PORT={FOREMAN_PORT} as with foreman (port: {FOREMAN_PORT})")
    if env_file is None:
        beside = procfile.parent / ".env"
        if beside.is_file():
            out.hints.append(
                f"{beside} is not imported (config stays out of the build): pass it to the "
                f"release: brr-release release --build ID --env-file {beside}"
            )
        return out
    if not env_file.is_file():
        raise BadInput(f"{env_file}: no such file")
    # config is not part of a build: it goes into the release
    out.hints.append(
        f"config stays out of the build: brr-release release --build ID --env-file {env_file}"
    )
    return out


def parse_environment(value: str, where: str, out: Imported) -> dict[str, str]:
    """supervisord's `KEY="val",KEY2=val2`."""
    env: dict[str, str] = {}
    lexer = shlex.shlex(value, posix=True)
    lexer.whitespace = ","
    lexer.whitespace_split = True
    try:
        items = list(lexer)
    except ValueError as exc:
        raise BadInput(f"{where}: environment: cannot parse ({exc})") from None
    for item in items:
        key, sep, val = item.strip().partition("=")
        if not sep:
            out.warnings.append(f"{where}: environment item {item!r} has no '=': skipped")
            continue
        if "%(" in val:
            out.warnings.append(f"{where}: environment {key} uses a %(...)s expansion: kept as is")
        env[key.strip()] = val
    return env


def program_entry(name: str, opts: dict[str, str], where: str, out: Imported) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    cmd = opts.get("command", "").strip()
    if not cmd:
        raise BadInput(f"{where}: has no command")
    if "directory" in opts:
        # the daemon runs every process in the build's app directory
        inner = f"cd {shlex.quote(opts['directory'])} && exec {cmd}"
        cmd = f"sh -c {shlex.quote(inner)}"
        out.warnings.append(
            f"{where}: directory={opts['directory']}: processes run in the build's app "
            "directory; the command now changes to it first"
        )
    entry["cmd"] = cmd
    if "%(" in cmd:
        out.warnings.append(f"{where}: command uses a %(...)s expansion: kept as is")
    scale = int_option(opts, "numprocs", 1, where)
    if opts.get("autostart", "true").lower() == "false":
        scale = 0
        out.warnings.append(f"{where}: autostart=false: imported with scale 0")
    entry["scale"] = scale
    if "startsecs" in opts:
        entry["ready"] = {"after": float(int_option(opts, "startsecs", 1, where))}
    policy = opts.get("autorestart", "unexpected").lower()
    if policy not in AUTORESTART:
        raise BadInput(f"{where}: autorestart={policy}: expected true, false or unexpected")
    entry["restart"] = AUTORESTART[policy]
    if "stopsignal" in opts:
        entry["stop_signal"] = opts["stopsignal"].upper()
    if "stopwaitsecs" in opts:
        entry["stop_timeout"] = float(int_option(opts, "stopwaitsecs", 10, where))
    if "environment" in opts:
        entry["env"] = parse_environment(opts["environment"], where, out)
    for key in sorted(set(opts) - SUPPORTED - IGNORED_QUIETLY):
        out.warnings.append(f"{where}: {key}={opts[key]} cannot be carried over: dropped")
    return entry


def int_option(opts: dict[str, str], key: str, default: int, where: str) -> int:
    value = opts.get(key, str(default)).strip()
    if not value.isdigit():
        raise BadInput(f"{where}: {key}={value}: expected a whole number")
    return int(value)


def type_name_for(program: str, out: Imported) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "-", program)
    if not name[:1].isalpha():
        name = "p" + name
    name = name[:63]
    if name != program:
        out.warnings.append(f"program:{program}: renamed to process type {name!r}")
    if not TYPE_NAME_RE.fullmatch(name):
        raise BadInput(f"program:{program}: cannot be turned into a process type name")
    return name


def import_supervisord(conf: Path) -> Imported:
    if not conf.is_file():
        raise BadInput(f"{conf}: no such file")
    parser = configparser.RawConfigParser(strict=False, inline_comment_prefixes=(";",))
    try:
        parser.read(conf, encoding="utf-8")
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None)
        where = f" at line {line}" if line else ""
        raise BadInput(
            f"{conf}: not a valid supervisord config ({type(exc).__name__}{where})"
        ) from None
    out = Imported({"processes": {}})
    for section in parser.sections():
        kind, _, program = section.partition(":")
        if kind != "program":
            if kind not in (
                "supervisord",
                "supervisorctl",
                "unix_http_server",
                "inet_http_server",
                "rpcinterface",
                "include",
            ):
                out.warnings.append(f"[{section}]: not a program: not imported")
            continue
        name = type_name_for(program, out)
        where = f"{conf}: [program:{program}]"
        out.declaration["processes"][name] = program_entry(name, dict(parser[section]), where, out)
    if not out.declaration["processes"]:
        raise BadInput(f"{conf}: no [program:...] section to import")
    return out


def checked(imported: Imported, source: str) -> Imported:
    """Parse the result back: what import prints is a declaration that builds."""
    declaration_from_data(imported.declaration, f"{source} (imported)")
    return imported

"""`brr-release import`: a brr.yaml from a honcho/foreman Procfile or a supervisord.conf.

The output is always parsed back through the declaration parser before it is shown, so
an import either yields a declaration that builds or fails with the parser's one line.
Every supervisord option that cannot be carried over gets its own warning line: a
migration that silently drops `user=` or `exitcodes=` is how outages start.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from supervisord_lite.brr.supervisord_conf import expand, read_config
from supervisord_lite.declaration import FOREMAN_PORT, declaration_from_data, procfile_data
from supervisord_lite.errors import BadInput
from supervisord_lite.names import TYPE_NAME_RE

AUTORESTART = {"true": "always", "false": "never", "unexpected": "on-failure"}
BOOLEANS = {
    **dict.fromkeys(("true", "yes", "on", "1"), True),
    **dict.fromkeys(("false", "no", "off", "0"), False),
}
# what the daemon always does: `true` needs no word, `false` is not available
ALWAYS_SO = {
    "redirect_stderr": "stdout and stderr always share one stream here",
    "stopasgroup": "the daemon always signals the whole process group",
    "killasgroup": "the daemon always kills the whole process group",
}
# sections that are not programs: a note, or "" for nothing to say
OTHER_SECTIONS = {
    "supervisord": "",
    "supervisorctl": "",
    "rpcinterface": "",
    "include": "",
    "inet_http_server": "supervisorctl's HTTP server is not imported: supervisord-lite's "
    "control socket is ROOT/run/supervisord-lite.sock (supervisord-lite status)",
    "unix_http_server": "supervisorctl's socket is not imported: supervisord-lite's "
    "control socket is ROOT/run/supervisord-lite.sock (supervisord-lite status)",
    "fcgi-program": "not imported: declare its socket under sockets: and give a process "
    "sockets: [name] (it gets it as LISTEN_FDS)",
}
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
    """supervisord's `KEY="val",KEY2=val2` (expansions already done)."""
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
        env[key.strip()] = val
    return env


def boolean(opts: dict[str, str], key: str, default: str, where: str) -> bool:
    value = opts.get(key, default).strip().lower()
    if value not in BOOLEANS:
        raise BadInput(f"{where}: {key}={opts[key]}: expected true or false")
    return BOOLEANS[value]


def program_cmd(opts: dict[str, str], where: str, out: Imported) -> str:
    cmd = opts.get("command", "").strip()
    if not cmd:
        raise BadInput(f"{where}: has no command")
    directory = opts.get("directory")
    if directory is None:
        return cmd
    # the daemon runs every process in the build's app directory
    inner = f"cd {shlex.quote(directory)} && exec {cmd}"
    parts = Path(directory).parts
    if Path(directory).is_absolute() or ".." in parts:
        out.warnings.append(
            f"{where}: directory={directory} is OUTSIDE the build: the command changes to it "
            "and runs code that no build, release or rollback controls; if the code is in "
            "the build, remove directory= (processes start in the build's app directory)"
        )
    else:
        out.warnings.append(
            f"{where}: directory={directory}: the command changes to it first "
            "(relative to the build's app directory)"
        )
    return f"sh -c {shlex.quote(inner)}"


def program_entry(opts: dict[str, str], where: str, out: Imported) -> dict[str, Any]:
    entry: dict[str, Any] = {"cmd": program_cmd(opts, where, out)}
    scale = int_option(opts, "numprocs", 1, where)
    if not boolean(opts, "autostart", "true", where):
        scale = 0
        out.warnings.append(f"{where}: autostart={opts['autostart']}: imported with scale 0")
    entry["scale"] = scale
    if "startsecs" in opts:
        entry["ready"] = {"after": float(int_option(opts, "startsecs", 1, where))}
    policy = opts.get("autorestart", "unexpected").strip().lower()
    if policy in BOOLEANS:
        policy = "true" if BOOLEANS[policy] else "false"
    if policy not in AUTORESTART:
        raise BadInput(f"{where}: autorestart={policy}: expected true, false or unexpected")
    entry["restart"] = AUTORESTART[policy]
    if "stopsignal" in opts:
        entry["stop_signal"] = opts["stopsignal"].upper()
    if "stopwaitsecs" in opts:
        entry["stop_timeout"] = float(int_option(opts, "stopwaitsecs", 10, where))
    if "environment" in opts:
        entry["env"] = parse_environment(opts["environment"], where, out)
    for key, always in ALWAYS_SO.items():
        if key in opts and not boolean(opts, key, "true", where):
            out.warnings.append(f"{where}: {key}={opts[key]}: {always}")
    for key in sorted(set(opts) - SUPPORTED - IGNORED_QUIETLY - ALWAYS_SO.keys()):
        out.warnings.append(f"{where}: {key}={opts[key]} cannot be carried over: dropped")
    return entry


def int_option(opts: dict[str, str], key: str, default: int, where: str) -> int:
    value = opts.get(key, str(default)).strip()
    if not value.isdigit():
        raise BadInput(f"{where}: {key}={value}: expected a whole number")
    return int(value)


def type_name_for(program: str, taken: dict[str, Any], out: Imported) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "-", program)
    if not name[:1].isalpha():
        name = "p" + name
    name = name[:60]
    if name in taken:
        n = 2
        while f"{name}-{n}" in taken:
            n += 1
        out.warnings.append(
            f"program:{program}: its type name {name!r} is taken by another program: "
            f"imported as {name}-{n}"
        )
        return f"{name}-{n}"
    if name != program:
        out.warnings.append(f"program:{program}: renamed to process type {name!r}")
    if not TYPE_NAME_RE.fullmatch(name):
        raise BadInput(f"program:{program}: cannot be turned into a process type name")
    return name


def import_supervisord(conf: Path) -> Imported:
    if not conf.is_file():
        raise BadInput(f"{conf}: no such file")
    out = Imported({"processes": {}})
    for section in read_config(conf, out.warnings):
        kind, _, program = section.name.partition(":")
        if kind != "program":
            note = OTHER_SECTIONS.get(kind, "not a program: not imported")
            if note:
                out.warnings.append(f"[{section.name}]: {note}")
            continue
        where = f"{section.source}: [program:{program}]"
        opts = {
            k: expand(v, program, section.source, f"{where} {k}", out.warnings)
            for k, v in section.options.items()
        }
        processes = out.declaration["processes"]
        name = type_name_for(program, processes, out)
        processes[name] = program_entry(opts, where, out)
    if not out.declaration["processes"]:
        raise BadInput(f"{conf}: no [program:...] section to import")
    return out


def checked(imported: Imported, source: str) -> Imported:
    """Parse the result back: what import prints is a declaration that builds."""
    declaration_from_data(imported.declaration, f"{source} (imported)")
    return imported

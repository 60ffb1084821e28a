"""Reading a supervisord.conf as supervisord does: includes, expansions, duplicates.

The result is a list of sections with plain values: `[include] files=` followed
(relative to the including file, globs expanded, in sorted order, one level as
supervisord has it), continuation lines joined with one space, `%(ENV_X)s`,
`%(here)s`, `%(program_name)s` and `%(group_name)s` expanded, and `%%` unescaped.
Whatever cannot be read or expanded becomes a warning line that names the file, so an
import never quietly loses a program.
"""

from __future__ import annotations

import configparser
import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from supervisord_lite.errors import BadInput

HEADER_RE = re.compile(r"^[ \t]*\[([^\]]+)\]", re.M)
EXPANSION_RE = re.compile(r"%%|%\(([^)]*)\)[-#0 +]*[0-9]*[sd]")


@dataclass
class Section:
    name: str  # `program:web`
    options: dict[str, str]
    source: Path  # the file it came from


def read_config(conf: Path, warnings: list[str]) -> list[Section]:
    """The sections of conf and of the files its [include] names, in reading order."""
    sections = read_file(conf, warnings, main=True)
    for included in include_files(conf, sections, warnings):
        try:
            sections.extend(read_file(included, warnings, main=False))
        except BadInput as exc:
            warnings.append(f"{exc.message}: skipped")
    return merge_duplicates(sections, warnings)


def read_file(path: Path, warnings: list[str], *, main: bool) -> list[Section]:
    try:
        text = path.read_text("utf-8", "replace")
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror or exc})") from None
    warn_duplicate_headers(path, text, warnings)
    parser = configparser.RawConfigParser(
        strict=False, inline_comment_prefixes=(";",), interpolation=None
    )
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None)
        where = f" at line {line}" if line else ""
        raise BadInput(
            f"{path}: not a valid supervisord config ({type(exc).__name__}{where})"
        ) from None
    out = []
    for name in parser.sections():
        if name == "include" and not main:
            warnings.append(f"{path}: [include] in an included file: not followed (supervisord)")
            continue
        options = {k: joined(v) for k, v in parser[name].items()}
        out.append(Section(name, options, path))
    return out


def joined(value: str) -> str:
    """Continuation lines, as one line: `--app=x` on the next line is an argument too."""
    return " ".join(line.strip() for line in value.splitlines() if line.strip())


def warn_duplicate_headers(path: Path, text: str, warnings: list[str]) -> None:
    seen: dict[str, int] = {}
    for m in HEADER_RE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        name = m.group(1).strip()
        if name in seen:
            warnings.append(
                f"{path}: [{name}] appears twice (lines {seen[name]} and {line}): "
                "its options are merged, the later line wins"
            )
        else:
            seen[name] = line


def include_files(conf: Path, sections: list[Section], warnings: list[str]) -> list[Path]:
    files: list[Path] = []
    for section in sections:
        if section.name != "include":
            continue
        patterns = section.options.get("files", "").split()
        if not patterns:
            warnings.append(f"{conf}: [include] has no files=: nothing included")
        for pattern in patterns:
            full = os.path.join(conf.parent, expand_here(pattern, conf))
            matched = sorted(glob.glob(full))
            if not matched:
                warnings.append(f"{conf}: [include] files={pattern} matches no file")
            files.extend(Path(m) for m in matched if Path(m).resolve() != conf.resolve())
    return files


def expand_here(value: str, source: Path) -> str:
    return value.replace("%(here)s", str(source.parent.absolute()))


def merge_duplicates(sections: list[Section], warnings: list[str]) -> list[Section]:
    """One section per name, as configparser merges them; a name in two files warned."""
    merged: dict[str, Section] = {}
    for section in sections:
        first = merged.get(section.name)
        if first is None:
            merged[section.name] = section
            continue
        if first.source != section.source:
            warnings.append(
                f"[{section.name}] is in both {first.source} and {section.source}: "
                "its options are merged, the later file wins"
            )
        first.options.update(section.options)
    return list(merged.values())


def expand(value: str, program: str, source: Path, where: str, warnings: list[str]) -> str:
    """supervisord's expansions in one value; what has no equivalent is kept and warned."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%"
        key = m.group(1)
        if key.startswith("ENV_"):
            var = key[4:]
            if var in os.environ:
                return os.environ[var]
            warnings.append(
                f"{where}: {m.group(0)}: {var} is not set in this environment: kept as is "
                f"(set {var} and import again)"
            )
            return m.group(0)
        if key == "here":
            return str(source.parent.absolute())
        if key in ("program_name", "group_name"):
            return program
        warnings.append(f"{where}: {m.group(0)} has no equivalent here: kept as is")
        return m.group(0)

    return EXPANSION_RE.sub(one, value)

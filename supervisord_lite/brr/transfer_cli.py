"""The commands of transfer.py, status.py and unchanged.py; their options are in cli.py.

`build export|import` and `release export|import` share their first word with `build SRC`
and `release --build ID`: argparse cannot have a positional and subcommands on one
parser, so cli.py joins the two words (`build-export`) before parsing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from supervisord_lite.errors import BadInput
from supervisord_lite.layout import DeployRoot

# the modules behind each command are imported in its body (cli.py's rule): `--help` and
# `releases` do not load tarfile, the builder or the daemon client

Result = tuple[dict[str, Any], str, int]
Command = Callable[[DeployRoot, argparse.Namespace], Result]


@contextlib.contextmanager
def output(arg: str) -> Iterator[IO[bytes]]:
    """stdout for `-`, else a temp file renamed to arg once complete."""
    if arg == "-":
        if sys.stdout.isatty():
            raise BadInput("refusing to write an archive to a terminal (pass -o FILE)")
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    from supervisord_lite import fsatomic

    path = Path(arg).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = fsatomic.temp_name(path.parent)
    try:
        # 0600: a release manifest holds the config
        with open(tmp, "xb", opener=lambda p, flags: os.open(p, flags, 0o600)) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cmd_build_export(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import transfer

    with output(args.output) as out:
        data = transfer.export_build(root.require_initialized(), args.build_id, out)
    return finish_export(data, args.output, f"exported {data['id']}")


def finish_export(data: dict[str, Any], dest: str, text: str) -> Result:
    if dest == "-":
        print(f"{text} to stdout", file=sys.stderr)
        return {**data, "wrote_stdout": True}, "", 0
    return {**data, "output": dest}, f"{text} to {dest}", 0


def cmd_build_import(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import transfer

    name = "stdin" if args.file == "-" else args.file
    source = transfer.open_input(args.file)
    try:
        done = transfer.import_build(root, source, name)
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    return done.to_data(), done.id + (" (already present)" if done.reused else " (imported)"), 0


def cmd_release_export(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import transfer

    release, data = transfer.export_release(root.require_initialized(), args.release_id)
    with output(args.output) as out:
        out.write(data)
    summary = {"id": release.id, "build": release.build, "digest": release.digest}
    return finish_export(summary, args.output, f"exported {args.release_id}")


def cmd_release_import(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import transfer

    name = "stdin" if args.file == "-" else args.file
    with contextlib.closing(transfer.open_input(args.file)) as source:
        data = source.read()
    done = transfer.import_release(root, data, name)
    note = " (already present)" if done.unchanged else " (imported)"
    return done.to_data(), done.release.id + note, 0


def cmd_status(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import status as st

    data = st.status(root)
    return data, st.format_status(data), 0


def run_if_changed(command: Command, root: DeployRoot, args: argparse.Namespace) -> Result:
    """command, but with --if-changed a no-op when it would repeat the current release."""
    from supervisord_lite.brr import unchanged

    root.require_initialized()
    with root.locked():
        same = unchanged.current_if_equal(root, args)
    if same is None:
        data, text, code = command(root, args)
        return {**data, "unchanged": False}, text, code
    data = {"id": same.id, "build": same.build, "unchanged": True}
    return data, f"{same.id} (unchanged: current has this build, config and formation)", 0


COMMANDS: dict[str, Command] = {
    "build-export": cmd_build_export,
    "build-import": cmd_build_import,
    "release-export": cmd_release_export,
    "release-import": cmd_release_import,
    "status": cmd_status,
}

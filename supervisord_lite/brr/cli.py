"""`brr-release`: the command line of the build and release stages.

Parsing and printing only; every operation lives in its own module. `--root` and
`--json` are accepted before or after the subcommand. Exit codes: 0 done, 1 the
operation failed, 2 bad usage or bad input, always with one line on stderr
`brr-release: error: ...` (a failed release command adds its output below that line).
"""

from __future__ import annotations

import argparse
import grp
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from supervisord_lite.brr.parser import PROG, command_word, make_parser
from supervisord_lite.errors import (
    NO_SPACE,
    BadInput,
    BrrError,
    OperationFailed,
    describe_os_error,
    os_errors_leave,
)
from supervisord_lite.layout import DeployRoot, resolve_root

# Each command imports the modules it uses, in its own body: `releases` or `--help` do
# not pay for yaml, the builder or the daemon client they never touch.
if TYPE_CHECKING:
    from supervisord_lite.brr import activate as act
    from supervisord_lite.brr import releases as rel
    from supervisord_lite.declaration import Declaration


# --- commands: each returns (data for --json, human text, exit code) --------------------

Result = tuple[dict[str, Any], str, int]


def cmd_init(root: DeployRoot, args: argparse.Namespace) -> Result:
    gid = group_id(args.group) if args.group else None
    root.path.mkdir(parents=True, exist_ok=True)
    with root.locked():
        root.initialize(gid)  # never through a symlink or hard link planted in the root
    note = f" (shared with group {args.group})" if args.group else ""
    return {"root": str(root.path), "group": args.group}, f"initialized {root.path}{note}", 0


def group_id(group: str) -> int:
    """The group that may write releases: setgid directories, group-writable files.

    New entries inherit the group through the setgid bit; the daemon's user, also a
    member, reads manifests (0640) through it.
    """
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise BadInput(f"no such group: {group}") from None


def warn_declaration(decl: Declaration) -> None:
    from supervisord_lite.declaration import declaration_warnings

    for line in declaration_warnings(decl):
        print(f"{PROG}: warning: {line}", file=sys.stderr)


def cmd_build(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import build as bld

    info, reused = bld.build(root.require_initialized(), args.src.absolute(), args.build_env)
    warn_declaration(info.declaration)
    data = {"id": info.id, "digest": info.digest, "reused": reused}
    return data, info.id + (" (reused)" if reused else ""), 0


def config_change(args: argparse.Namespace) -> rel.ConfigChange:
    from supervisord_lite.brr import releases as rel

    return rel.ConfigChange(tuple(args.env_file), tuple(args.sets), tuple(args.unsets))


def new_release_then(root: DeployRoot, args: argparse.Namespace, make: Callable[[], Any]) -> Result:
    """Create a release with make() and, with --activate, activate it in the same lock."""
    root.require_initialized()
    since = time.time()
    with root.locked():
        with os_errors_leave("no release was made"):
            release = make()
        activation = activate(root, release.id) if args.activate else None
    data: dict[str, Any] = {"id": release.id, "build": release.build}
    text = release.id
    if activation:
        data.update(finish_activation(root, args, activation, since))
        text += f" (activated{signal_note(data)})"
    return data, text, 0


def activate(root: DeployRoot, release_id: str, *, event: str = "activate") -> act.Activation:
    """act.activate, saying what an OSError left: `current` moves last, by one rename."""
    from supervisord_lite.brr import activate as act

    with os_errors_leave(f"current was not moved to {release_id}"):
        return act.activate(root, release_id, event=event)


def finish_activation(
    root: DeployRoot, args: argparse.Namespace, activation: act.Activation, since: float
) -> dict[str, Any]:
    from supervisord_lite.brr import activate as act

    pid = act.signal_and_wait(
        root,
        activation.release.id,
        send_signal=not args.no_signal,
        wait=args.wait,
        timeout=args.timeout,
        since=since,
    )
    return {
        "previous": activation.previous,
        "signalled": pid,
        "waited": bool(args.wait),
        "no_signal": bool(args.no_signal),
    }


def signal_note(data: dict[str, Any]) -> str:
    if data.get("signalled"):
        return f"; daemon pid {data['signalled']} signalled"
    if data.get("no_signal"):
        return "; the daemon was not signalled (--no-signal)"
    return "; no daemon running" if not data.get("waited") else ""


def cmd_release(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import releases as rel

    change = config_change(args)
    return new_release_then(root, args, lambda: rel.release_from_build(root, args.build_id, change))


def cmd_config(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import releases as rel

    if args.config_command == "set":
        change = rel.ConfigChange(sets=tuple(args.items))
    else:
        change = rel.ConfigChange(unsets=tuple(args.items))
    change.apply({})  # refuse bad names and missing '=' before taking the lock
    return new_release_then(root, args, lambda: rel.release_with_config(root, change, args.from_id))


def cmd_scale(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import releases as rel

    formation = rel.parse_formation(tuple(args.items))
    return new_release_then(
        root, args, lambda: rel.release_with_scale(root, formation, args.from_id)
    )


def activate_and_report(
    root: DeployRoot, args: argparse.Namespace, release_id: str, event: str
) -> Result:
    from supervisord_lite.brr import activate as act

    root.require_initialized()
    since = time.time()
    with root.locked():
        if event == "rollback":
            release_id = act.rollback_target(root, release_id)
        activation = activate(root, release_id, event=event)
    data = {"id": activation.release.id, **finish_activation(root, args, activation, since)}
    previous = activation.previous
    was = f" (was {previous})" if previous and previous != activation.release.id else ""
    return data, f"{activation.release.id} is current{was}{signal_note(data)}", 0


def cmd_activate(root: DeployRoot, args: argparse.Namespace) -> Result:
    return activate_and_report(root, args, args.release_id, "activate")


def cmd_rollback(root: DeployRoot, args: argparse.Namespace) -> Result:
    return activate_and_report(root, args, args.release_id, "rollback")


def cmd_deploy(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import build as bld
    from supervisord_lite.brr import releases as rel

    root.require_initialized()
    change = config_change(args)
    change.apply({})
    staged = bld.stage(root, args.src.absolute(), args.build_env)
    warn_declaration(staged.info.declaration)
    since = time.time()
    # publish, release and activate under one lock: a concurrent prune cannot remove
    # the build between its publish and its release
    with root.locked():
        with os_errors_leave("no build was stored"):
            info, reused = bld.publish(root, staged)
        with os_errors_leave(f"build {info.id} is stored; no release was made"):
            release = rel.release_from_build(root, info.id, change)
        activation = activate(root, release.id)
    data = {"id": release.id, "build": info.id, "reused": reused}
    data.update(finish_activation(root, args, activation, since))
    return data, f"{release.id} (build {info.id}) is current{signal_note(data)}", 0


def cmd_releases(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import listing

    data = listing.list_releases(root.require_initialized())
    return data, listing.format_releases(data), 0


def cmd_show(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import inspect

    data = inspect.show(root.require_initialized(), args.release_id, show_values=args.show_values)
    return data, inspect.format_show(data), 0


def cmd_diff(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import inspect

    data = inspect.diff(root.require_initialized(), args.a, args.b, show_values=args.show_values)
    return data, inspect.format_diff(data), 0


def cmd_prune(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import maintenance

    root.require_initialized()
    with root.locked(), os_errors_leave("the prune stopped part way; what is left is whole"):
        data = maintenance.prune(root, args.keep)
    text = f"removed releases: {', '.join(data['releases']) or 'none'}; "
    text += f"builds: {', '.join(data['builds']) or 'none'}"
    return data, text, 0


def cmd_verify(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import maintenance

    report = maintenance.verify(root.require_initialized())
    lines = [*report.problems, *(f"note: {n}" for n in report.notes)]
    verdict = "ok" if not report.problems else f"{len(report.problems)} problem(s)"
    lines.append(f"{verdict}: {report.builds} builds, {report.releases} releases checked")
    return report.to_data(), "\n".join(lines), 0 if not report.problems else 1


def cmd_run(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import oneoff

    command = list(args.oneoff)
    if command[:1] == ["--"]:
        command = command[1:]
    oneoff.exec_oneoff(oneoff.plan(root.require_initialized(), args.release_id, command))


def cmd_import(args: argparse.Namespace) -> Result:
    from supervisord_lite import fsatomic
    from supervisord_lite.brr import importers

    if args.import_command == "procfile":
        imported = importers.import_procfile(args.file, args.env_file)
    else:
        imported = importers.import_supervisord(args.file)
    importers.checked(imported, str(args.file))
    for line in imported.warnings:
        print(f"{PROG}: warning: {line}", file=sys.stderr)
    for line in imported.hints:
        print(f"{PROG}: hint: {line}", file=sys.stderr)
    text = imported.to_yaml(str(args.file))
    data = {"declaration": imported.declaration, "warnings": imported.warnings}
    if args.output is not None:
        if args.output.exists() and not args.force:
            raise BadInput(f"{args.output} exists (pass --force to overwrite)")
        fsatomic.write_file(args.output.absolute(), text.encode())
        data["output"] = str(args.output)
        return data, f"wrote {args.output}", 0
    return data, text.rstrip("\n"), 0


ROOTLESS: dict[str, Callable[[argparse.Namespace], Result]] = {"import": cmd_import}


# `build export|import`, `release export|import`: one word for argparse (see join_words)
JOINED = {("build", "export"), ("build", "import"), ("release", "export"), ("release", "import")}


def join_words(argv: Sequence[str]) -> list[str]:
    """`build export ...` -> `build-export ...` (options before the command are kept)."""
    out = list(argv)
    i = 0
    while i < len(out) and out[i].startswith("-"):
        i += 1 if "=" in out[i] or out[i] == "--json" else 2
    if i + 1 < len(out) and (out[i], out[i + 1]) in JOINED:
        out[i : i + 2] = [f"{out[i]}-{out[i + 1]}"]
    return out


def cmd_transfer(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import transfer_cli

    return transfer_cli.COMMANDS[args.command](root, args)


def cmd_fleet(root: DeployRoot, args: argparse.Namespace) -> Result:
    from supervisord_lite.brr import fleet_commands

    return fleet_commands.cmd_fleet(root, args)


def if_changed(
    command: Callable[[DeployRoot, argparse.Namespace], Result],
) -> Callable[[DeployRoot, argparse.Namespace], Result]:
    def run(root: DeployRoot, args: argparse.Namespace) -> Result:
        if not getattr(args, "if_changed", False):
            return command(root, args)
        from supervisord_lite.brr import transfer_cli

        return transfer_cli.run_if_changed(command, root, args)

    return run


COMMANDS: dict[str, Callable[[DeployRoot, argparse.Namespace], Result]] = {
    "init": cmd_init,
    "build": cmd_build,
    "release": if_changed(cmd_release),
    "config": if_changed(cmd_config),
    "scale": if_changed(cmd_scale),
    "activate": cmd_activate,
    "deploy": cmd_deploy,
    "rollback": cmd_rollback,
    "releases": cmd_releases,
    "show": cmd_show,
    "diff": cmd_diff,
    "prune": cmd_prune,
    "verify": cmd_verify,
    "run": cmd_run,
    **dict.fromkeys(("build-export", "build-import", "release-export"), cmd_transfer),
    "release-import": cmd_transfer,
    "status": cmd_transfer,
    "fleet": cmd_fleet,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        argv = join_words(sys.argv[1:] if argv is None else argv)
        args = make_parser(command_word(argv)).parse_args(argv)
        if args.command in ROOTLESS:
            data, text, code = ROOTLESS[args.command](args)
        else:
            root = resolve_root(getattr(args, "root", None))
            data, text, code = COMMANDS[args.command](root, args)
    except BrrError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # the last line of defence: the sites name what the failure leaves behind, this
        # names at least the file and the reason (any other exception is a bug: it shows)
        print(f"{PROG}: error: {os_failure_text(exc)}", file=sys.stderr)
        return OperationFailed.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    if data.pop("wrote_stdout", False):  # the command's product went to stdout
        return code
    if getattr(args, "json", False):
        print(json.dumps(data, indent=None, sort_keys=False))
    else:
        print(text)
    return code


def os_failure_text(exc: OSError) -> str:
    hint = " (free space and run it again)" if exc.errno in NO_SPACE else ""
    return describe_os_error(exc) + hint


if __name__ == "__main__":
    sys.exit(main())

"""`supervisord-lite`: the command line; `run` is parsed here and run by runner.py (in an
image of its own), the control-client subcommands are in ctl.py.

`run` stays in the foreground (systemd's way). Its order at start matters: hold the
daemon lock first (so a second daemon is refused before it touches anything), then kill
what a SIGKILLed predecessor left (reaper.kill_previous), then read the release (so exit
78 leaves nothing running), then become a subreaper and enter the event loop.
Plugins are loaded before the lock, so a typo in --plugin is exit 2 and nothing else.
Exit codes: 0 after a clean shutdown, 1 when another daemon holds the root, 2 for bad
usage (no root, an unknown plugin), 78 when there is no release to run.

Usage errors are BadInput like any other (argparse's own usage-plus-error, two lines
under a sub-prog name, was rejected): one line `supervisord-lite: error: ...`, exit 2.
`--root` is accepted before and after the subcommand, as brr-release accepts it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from supervisord_lite.client.ctl import add_client_commands, count_arg, run_client_command
from supervisord_lite.errors import BadInput, BrrError
from supervisord_lite.helpwidth import Formatter

# The daemon's modules (and anyio with them) are imported by runner.py, in the image it
# execs: the client subcommands and --help answer without loading any of them, and the
# daemon carries neither argparse nor the client.

PROG = "supervisord-lite"
JSON_COMMANDS = ("status",)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)  # subcommands' parsers too
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip()
        raise BadInput(f"{command}: {message}" if command else message)


SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
DEFAULT_LOG_MAX_BYTES = 10 * 1024**2
DEFAULT_LOG_KEEP = 5


def byte_size(text: str) -> int:
    """`1048576`, `512K`, `1M`, `2G` (powers of 1024); 0 is a valid size."""
    match = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"not a size: {text!r} (a number of bytes, or with K, M or G: 512K, 1M)"
        )
    return int(match[1]) * SIZE_UNITS[match[2]]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="the run stage: supervise a release")
    parser.add_argument("--root", help="deploy root (default: $BRR_ROOT)")
    # `--json status` as brr-release takes it; SUPPRESS so that status's own --json is one
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="status: JSON output"
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )
    run = sub.add_parser("run", help="run the daemon in the foreground")
    # SUPPRESS: absent after the subcommand must not erase a --root given before it
    run.add_argument("--root", default=argparse.SUPPRESS, help="deploy root (default: $BRR_ROOT)")
    run.add_argument(
        "--pass-env",
        action="append",
        default=[],
        metavar="NAME",
        help="also give children this variable of the daemon's environment",
    )
    run.add_argument(
        "--max-backoff",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="cap of the restart backoff (default 30)",
    )
    run.add_argument("--watch", action="store_true", help="also reload when current changes")
    run.add_argument(
        "--no-drain",
        action="store_true",
        help="start-first switches: old and new share one listener, the old one is not "
        "drained before it is stopped (docs/zero-downtime.md)",
    )
    run.add_argument(
        "--plugin", action="append", default=[], metavar="NAME", help="enable a plugin"
    )
    run.add_argument(
        "--plugin-opt",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="an option for an enabled plugin",
    )
    run.add_argument(
        "--log-files", action="store_true", help="also write each process's lines to ROOT/logs"
    )
    run.add_argument("--log-dir", metavar="DIR", help="like --log-files, into DIR")
    run.add_argument(
        "--log-max-bytes",
        type=byte_size,
        metavar="SIZE",
        help="rotate a log file before it passes SIZE (512K, 1M; default 10M; 0: never)",
    )
    run.add_argument(
        "--log-keep",
        type=count_arg,
        metavar="N",
        help=f"rotated files kept per process (default {DEFAULT_LOG_KEEP})",
    )
    add_client_commands(sub)
    return parser


def start_daemon(args: argparse.Namespace, words: Sequence[str]) -> int:
    """`run`: exec the daemon's own image (runner.py), or run here when that cannot be."""
    from supervisord_lite.daemon import runner

    options = runner.RunOptions(**{name: getattr(args, name) for name in runner.RunOptions._fields})
    runner.exec_runner(options, list(words))
    return runner.run_daemon(options)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, extra = build_parser().parse_known_args(argv)
        if extra:  # argparse would name no command: only the subparser knew it
            raise BadInput(f"{args.command}: unrecognized arguments: {' '.join(extra)}")
        if getattr(args, "json", False) and args.command not in JSON_COMMANDS:
            raise BadInput(f"--json: only {', '.join(JSON_COMMANDS)} prints JSON")
        if args.command == "run":
            return start_daemon(args, sys.argv[1:] if argv is None else argv)
        return run_client_command(args)
    except BrrError as exc:
        print(f"{PROG}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130

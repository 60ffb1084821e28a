"""`supervisord-lite`: the `run` subcommand here, the control-client subcommands in ctl.py.

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
import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from supervisord_lite.client.ctl import add_client_commands, count_arg, run_client_command
from supervisord_lite.errors import BadInput, BrrError, ConfigMissing
from supervisord_lite.helpwidth import Formatter
from supervisord_lite.layout import resolve_root

# The daemon's modules (and anyio, psutil, yaml with them) are imported in run_daemon,
# not here: the client subcommands and --help answer without loading any of them.
if TYPE_CHECKING:
    from supervisord_lite.daemon.bus import EventBus
    from supervisord_lite.daemon.logfiles import LogFiles
    from supervisord_lite.daemon.plugins import Plugin, PluginRunner
    from supervisord_lite.daemon.ready import ReadyRegistry

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


EARLY_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def hold_early_signals() -> list[int]:
    """Until the daemon's signal task runs, signals are only noted, in arrival order.

    The pidfile appears before the event loop does, and `brr-release activate` may SIGHUP
    it at once: SIGHUP's default action would kill the daemon. The handler only notes
    the signal; the signal task replays the list once it owns the signals.
    """
    pending: list[int] = []
    for signum in EARLY_SIGNALS:
        signal.signal(signum, lambda n, _frame: pending.append(n))
    return pending


def run_daemon(args: argparse.Namespace) -> int:
    import logging  # the client commands never log: their import stays light

    from supervisord_lite.daemon import deferssl

    deferssl.install()  # before asyncio and anyio import ssl: OpenSSL only if used
    import anyio

    from supervisord_lite.daemon.limits import raise_nofile
    from supervisord_lite.daemon.main import Daemon
    from supervisord_lite.daemon.output import Output, OutputHandler
    from supervisord_lite.daemon.pidfile import hold_daemon_lock
    from supervisord_lite.daemon.reaper import Reaper, become_subreaper, kill_previous
    from supervisord_lite.daemon.services import Services
    from supervisord_lite.daemon.sockets import SocketPool
    from supervisord_lite.daemon.spawn import base_env
    from supervisord_lite.daemon.startup import load_first
    from supervisord_lite.declaration import RUNTIME_ENV

    pending = hold_early_signals()
    raise_nofile()  # scale 600 must not run the daemon out of descriptors (limits.py)
    root = resolve_root(args.root)
    if not root.path.is_dir():
        raise ConfigMissing(f"deploy root {root.path} does not exist")
    plugins = enabled_plugins(args)
    output = Output(files=log_files(args, root.logs))
    handler = OutputHandler(output, PROG)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    # the lines are the message alone: no caller, thread or process to look up for each
    # (the logging HOWTO's "Optimization"; a tenth of the time of a start of 1,000)
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    with hold_daemon_lock(root):
        record = root.run_dir / "children.json"
        killed = kill_previous(record, root.builds)
        if killed:
            logging.getLogger(PROG).warning("killed %d process(es) a previous daemon left", killed)
        start = load_first(root)
        become_subreaper()
        services = Services(
            root=root,
            output=output,
            reaper=Reaper(record),
            ready=ready_registry(plugins),
            base_env=base_env(os.environ, args.pass_env)
            | RUNTIME_ENV
            | {"BRR_SHARED": str(root.shared)},
            max_backoff=args.max_backoff,
            sockets=SocketPool(drain=not args.no_drain),
        )
        runners = plugin_runners(services.bus, plugins)
        daemon = Daemon(root, services, runners=runners, watch=args.watch, early=pending)
        anyio.run(daemon.run, start)
    return daemon.exit_code


def log_files(args: argparse.Namespace, default_dir: Path) -> LogFiles | None:
    """The LogFiles the options ask for; BadInput for rotation options without files."""
    log_dir = Path(args.log_dir) if args.log_dir else default_dir if args.log_files else None
    if log_dir is None:
        if args.log_max_bytes is not None or args.log_keep is not None:
            raise BadInput("--log-max-bytes and --log-keep need --log-files or --log-dir")
        return None
    log_dir.mkdir(parents=True, exist_ok=True)
    from supervisord_lite.daemon.logfiles import LogFiles

    return LogFiles(
        log_dir,
        max_bytes=DEFAULT_LOG_MAX_BYTES if args.log_max_bytes is None else args.log_max_bytes,
        keep=DEFAULT_LOG_KEEP if args.log_keep is None else args.log_keep,
    )


# plugins.py (and importlib.metadata) cost 6 MB of RSS: imported only with --plugin


def enabled_plugins(args: argparse.Namespace) -> dict[str, Plugin]:
    if not args.plugin and not args.plugin_opt:
        return {}
    from supervisord_lite.daemon.plugins import load_plugins, parse_plugin_opts

    return load_plugins(parse_plugin_opts(args.plugin_opt, args.plugin))


def plugin_runners(bus: EventBus, plugins: Mapping[str, Plugin]) -> list[PluginRunner]:
    if not plugins:
        return []
    from supervisord_lite.daemon.plugins import make_runners

    return make_runners(bus, plugins)


def ready_registry(plugins: Mapping[str, Plugin]) -> ReadyRegistry:
    from supervisord_lite.daemon.ready import ReadyRegistry

    registry = ReadyRegistry()
    if not plugins:
        return registry
    from supervisord_lite.daemon.plugins import ready_checks_of

    for name, plugin in plugins.items():
        for kind, fn in ready_checks_of(plugin).items():
            try:
                registry.register(kind, fn)
            except ValueError as exc:
                raise BadInput(f"plugin {name}: {exc}") from None
    return registry


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, extra = build_parser().parse_known_args(argv)
        if extra:  # argparse would name no command: only the subparser knew it
            raise BadInput(f"{args.command}: unrecognized arguments: {' '.join(extra)}")
        if getattr(args, "json", False) and args.command not in JSON_COMMANDS:
            raise BadInput(f"--json: only {', '.join(JSON_COMMANDS)} prints JSON")
        if args.command == "run":
            return run_daemon(args)
        return run_client_command(args)
    except BrrError as exc:
        print(f"{PROG}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130

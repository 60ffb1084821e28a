"""`supervisord-lite`: the `run` subcommand here, the control-client subcommands in ctl.py.

`run` stays in the foreground (systemd's way). Its order at start matters: hold the
daemon lock first (so a second daemon is refused before it touches anything), then kill
what a SIGKILLed predecessor left (reaper.kill_previous), then read the release (so exit
78 leaves nothing running), then become a subreaper and enter the event loop.
Plugins are loaded before the lock, so a typo in --plugin is exit 2 and nothing else.
Exit codes: 0 after a clean shutdown, 1 when another daemon holds the root, 2 for bad
usage (no root, an unknown plugin), 78 when there is no release to run.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from supervisord_lite.daemon.ctl import add_client_commands, run_client_command
from supervisord_lite.daemon.logfiles import LogFiles
from supervisord_lite.daemon.main import Daemon, load_first
from supervisord_lite.daemon.output import Output
from supervisord_lite.daemon.pidfile import hold_daemon_lock
from supervisord_lite.daemon.process import Services
from supervisord_lite.daemon.ready import ReadyRegistry
from supervisord_lite.daemon.reaper import Reaper, become_subreaper, kill_previous
from supervisord_lite.daemon.spawn import base_env
from supervisord_lite.errors import BadInput, BrrError, ConfigMissing
from supervisord_lite.layout import resolve_root

if TYPE_CHECKING:
    from supervisord_lite.daemon.bus import EventBus
    from supervisord_lite.daemon.plugins import Plugin, PluginRunner

PROG = "supervisord-lite"


class OutputHandler(logging.Handler):
    """The daemon's own log lines go to the same ordered stream as its children's."""

    def __init__(self, output: Output) -> None:
        super().__init__()
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.output.emit(PROG, self.format(record), keep=True)
        except Exception:
            self.handleError(record)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="the run stage: supervise a release")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--root", help="deploy root (default: $BRR_ROOT)")
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
    pending = hold_early_signals()
    root = resolve_root(args.root)
    if not root.path.is_dir():
        raise ConfigMissing(f"deploy root {root.path} does not exist")
    plugins = enabled_plugins(args)
    log_dir = Path(args.log_dir) if args.log_dir else root.logs if args.log_files else None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    output = Output(files=LogFiles(log_dir) if log_dir is not None else None)
    handler = OutputHandler(output)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    with hold_daemon_lock(root):
        record = root.run_dir / "children.json"
        killed = kill_previous(record, root.builds)
        if killed:
            logging.getLogger(PROG).warning("killed %d process(es) a previous daemon left", killed)
        release = load_first(root)
        become_subreaper()
        services = Services(
            root=root,
            output=output,
            reaper=Reaper(record),
            ready=ready_registry(plugins),
            base_env=base_env(os.environ, args.pass_env),
            max_backoff=args.max_backoff,
        )
        runners = plugin_runners(services.bus, plugins)
        daemon = Daemon(root, services, runners=runners, watch=args.watch, early=pending)
        anyio.run(daemon.run, release)
    return daemon.exit_code


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
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return run_daemon(args)
        return run_client_command(args)
    except BrrError as exc:
        print(f"{PROG}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130

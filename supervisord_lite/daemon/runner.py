"""The daemon's own process image: `supervisord-lite run` (cli.py) parses its options, then
execs `python -P .../supervisord_lite/daemon/__main__.py` with them, which lands in
main() here.

Why: the process that runs for months should carry what the daemon uses, not argparse
(with gettext), the control client's modules nor ctypes: about 1 MB of the idle daemon's
21 MB of RSS (issue 16). The pid stays the same across the exec, so systemd's main pid,
the pidfile to come and a shell's `$!` all stay right.
How: the options travel as JSON in OPTIONS_ENV, removed from os.environ at once (children
never see it; the daemon's /proc/PID/environ still shows what it was exec'd with, which
says nothing its command line does not). The command line keeps the operator's words
after the script, so `ps` shows `.../supervisord_lite/daemon/__main__.py run --root ...`
(and the clients, which check a pidfile's process by its command line, still recognise
it). The interpreter's own flags carry over (`-X importtime` too); -P keeps the script's
directory out of sys.path, so the package is imported from where it is installed.
The first image also makes the process its children's subreaper (subreaper.py), which
survives the exec, so the daemon's image loads no ctypes either.
Signals: handlers do not survive an exec, but the signal mask and what is pending do;
EARLY_SIGNALS are blocked across it, and unblocked once hold_early_signals has handlers
for them, so a SIGHUP sent in between (activate right after a start) is noted, not
fatal. When the exec cannot happen (no sys.executable, -I, -S or -E in effect, so the
package might not be found the same way, or execve failing) the daemon runs in the first
image as before: only the memory differs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from supervisord_lite.errors import BadInput, BrrError, ConfigMissing
from supervisord_lite.layout import resolve_root

if TYPE_CHECKING:
    from supervisord_lite.daemon.bus import EventBus
    from supervisord_lite.daemon.logfiles import LogFiles
    from supervisord_lite.daemon.plugins import Plugin, PluginRunner
    from supervisord_lite.daemon.ready import ReadyRegistry

PROG = "supervisord-lite"
OPTIONS_ENV = "SUPERVISORD_LITE_RUN_OPTIONS"
SUBREAPER = "subreaper"  # in OPTIONS_ENV: the first image made the process the subreaper
DEFAULT_LOG_MAX_BYTES = 10 * 1024**2
DEFAULT_LOG_KEEP = 5


class RunOptions(NamedTuple):
    """What `run` was asked, as parsed by cli.py."""

    root: str | None
    pass_env: list[str]
    max_backoff: float
    watch: bool
    no_drain: bool
    plugin: list[str]
    plugin_opt: list[str]
    log_files: bool
    log_dir: str | None
    log_max_bytes: int | None
    log_keep: int | None


def exec_runner(options: RunOptions, words: list[str]) -> None:
    """Replace this process by the daemon's image; returns only when that cannot be done.

    words: the operator's arguments, kept on the command line for `ps` (and unread).
    """
    flags = sys.flags
    if not sys.executable or flags.isolated or flags.no_site or flags.ignore_environment:
        return
    import subprocess  # its flag list: -X importtime, -W... carry over to the new image

    argv = [sys.executable, *subprocess._args_from_interpreter_flags(), "-P"]  # type: ignore[attr-defined]
    # the package's __main__.py as a script, not `-m`: runpy would cost 0.25 MB for good
    argv += [os.path.join(os.path.dirname(__file__), "__main__.py"), *words]
    from supervisord_lite.daemon.subreaper import become_subreaper

    env = dict(os.environ)
    env[OPTIONS_ENV] = json.dumps({**options._asdict(), SUBREAPER: become_subreaper()})
    signal.pthread_sigmask(signal.SIG_BLOCK, EARLY_SIGNALS)
    try:
        os.execve(sys.executable, argv, env)
    except OSError:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, EARLY_SIGNALS)


def main() -> int:
    """The new image: run with the options the first one parsed."""
    name_process()
    raw = os.environ.pop(OPTIONS_ENV, None)
    try:
        if raw is None:
            raise BadInput(f"no options in ${OPTIONS_ENV}: start the daemon with `{PROG} run`")
        given = json.loads(raw)
        subreaper = bool(given.pop(SUBREAPER, False))
        return run_daemon(RunOptions(**given), subreaper=subreaper)
    except BrrError as exc:
        print(f"{PROG}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def name_process() -> None:
    """The name `pgrep` and `systemctl status` show: the exec made it the interpreter's
    (`python3.11`), where the console script's start made it `supervisord-lit` (the
    kernel keeps 15 bytes). /proc/self/comm is prctl(PR_SET_NAME) without ctypes."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(PROG)
    except OSError:  # no /proc: only the name differs
        pass


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
    signal.pthread_sigmask(signal.SIG_UNBLOCK, EARLY_SIGNALS)  # blocked across the exec
    return pending


def run_daemon(args: RunOptions, *, subreaper: bool = False) -> int:
    """Run the daemon until it is stopped; its exit code. subreaper: this process is
    already its children's subreaper (the image before the exec made it so)."""
    import logging  # the client commands never log: their import stays light

    from supervisord_lite.daemon import deferssl

    deferssl.install()  # before asyncio and anyio import ssl: OpenSSL only if used
    import anyio

    from supervisord_lite.daemon.limits import raise_nofile
    from supervisord_lite.daemon.main import Daemon
    from supervisord_lite.daemon.output import Output, OutputHandler
    from supervisord_lite.daemon.pidfile import hold_daemon_lock
    from supervisord_lite.daemon.reaper import Reaper, kill_previous
    from supervisord_lite.daemon.services import Services
    from supervisord_lite.daemon.sockets import SocketPool
    from supervisord_lite.daemon.spawn import base_env
    from supervisord_lite.daemon.startup import load_first
    from supervisord_lite.execline import RUNTIME_ENV

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
        if not subreaper:
            from supervisord_lite.daemon.subreaper import become_subreaper

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


def log_files(args: RunOptions, default_dir: Path) -> LogFiles | None:
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


def enabled_plugins(args: RunOptions) -> dict[str, Plugin]:
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

"""The control-client subcommands of `supervisord-lite`: status, reload, restart, stop,
start, logs, shutdown. cli.py owns main() and `run`; this module adds the rest.

Each subcommand is one request over the control socket through connection.py, the
client shared with brr-release, so the protocol has one implementation on each side.
The client is blocking and synchronous on purpose: it is a short-lived command, and an
event loop would buy nothing.

Choices:
- Errors are one line, `supervisord-lite: error: ...`: exit 1 when the operation failed
  (daemon not running, unknown process, a reload that did not take), 2 for bad usage.
- `restart` and `stop` wait for the daemon to stop the processes, which may take their
  whole stop_timeout: they get a long client deadline, the others a short one.
- `reload --wait` polls `status` (settle.wait_settled, shared with `activate --wait`). It
  settles when the daemon is running and either finished a switch, rejected a release
  after the reload was sent, or already runs what `current` names; it succeeds only if
  the daemon then runs the release `current` names. The start time is taken before the
  request is sent, so a switch that finishes at once is not missed.
- `logs -f` ends quietly when the daemon closes the stream, and when stdout is a pipe
  whose reader left (`| head`).
- `logs NAME` with no daemon running reads ROOT/logs/NAME.log instead (and `-f` follows
  it across rotations, like `tail -F`), printing lines as the daemon would, `NAME | ...`,
  with a note on stderr saying where they come from. Only that file: a daemon run with
  `--log-dir` elsewhere is not found, and a type (`web`) or no NAME still needs the
  daemon. A running daemon is always asked, since its ring also holds lines of
  processes whose files are off.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisord_lite.client.connection import (
    SHORT_TIMEOUT,
    call,
    daemon_pid,
    fetch_status,
    request_stream,
)
from supervisord_lite.client.logread import follow_lines, tail_lines
from supervisord_lite.client.settle import NotSettled, wait_settled
from supervisord_lite.client.status_view import cell, format_status
from supervisord_lite.errors import BadInput, BrrError, OperationFailed
from supervisord_lite.helpwidth import Formatter
from supervisord_lite.layout import DeployRoot, resolve_root

PROG = "supervisord-lite"
LONG_TIMEOUT = 900.0  # restart/stop wait for stop_timeout escalations
DEFAULT_WAIT = 300.0


def count_arg(text: str) -> int:
    """A whole number, 0 or more: `logs -n`, `run --log-keep`."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return n


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def add_client_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add status, reload, restart, stop, start, logs and shutdown to subparsers."""
    common = argparse.ArgumentParser(add_help=False, formatter_class=Formatter)
    # SUPPRESS: absent after the subcommand must not erase a --root given before it
    common.add_argument(
        "--root", default=argparse.SUPPRESS, help="deploy root (default: $BRR_ROOT)"
    )
    c = [common]
    p = subparsers.add_parser("status", parents=c, help="the processes and the release")
    p.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the status object"
    )
    p = subparsers.add_parser("reload", parents=c, help="reread current and switch to it")
    p.add_argument("--wait", action="store_true", help="wait until the reload settled")
    p.add_argument("--timeout", type=positive_seconds, default=DEFAULT_WAIT, metavar="S")
    for verb in ("restart", "stop", "start"):
        p = subparsers.add_parser(verb, parents=c, help=f"{verb} processes (default: all)")
        p.add_argument("target", nargs="?", metavar="NAME|TYPE")
    p = subparsers.add_parser("logs", parents=c, help="recent output, and -f to follow")
    p.add_argument("-f", "--follow", action="store_true", help="stream new lines")
    p.add_argument("-n", "--lines", type=count_arg, default=100, metavar="N", dest="n")
    p.add_argument("name", nargs="?", metavar="NAME", help="one process (default: all)")
    subparsers.add_parser("shutdown", parents=c, help="stop every process and exit")


def run_client_command(args: argparse.Namespace) -> int:
    """Run the subcommand args.command; prints its output, returns the exit code."""
    try:
        root = resolve_root(getattr(args, "root", None))
        return COMMANDS[args.command](root, args)
    except BrrError as exc:
        print(f"{PROG}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


# --- status ------------------------------------------------------------------------------


def cmd_status(root: DeployRoot, args: argparse.Namespace) -> int:
    status = fetch_status(root)
    as_json = getattr(args, "json", False)  # before or after `status`
    print(json.dumps(status) if as_json else format_status(status))
    return 0


# --- reload ------------------------------------------------------------------------------


def reload_outcome(status: dict[str, Any], current: str | None, since: float) -> str | None:
    """None while the reload has not settled; "" once it succeeded; else why it failed."""
    if status.get("state") != "running":
        return None
    running = status.get("release")
    last = status.get("last_switch")
    rejected = status.get("rejected")
    switched = isinstance(last, dict) and number(last.get("finished_at")) >= since
    refused = isinstance(rejected, dict) and number(rejected.get("at")) >= since
    # failures first: the daemon moves current back to what runs after a refusal, and
    # then running == current would read as a success
    if refused:
        assert isinstance(rejected, dict)
        return f"the daemon rejected {rejected.get('id') or 'current'}: {rejected.get('error')}"
    if switched and isinstance(last, dict) and not last.get("ok"):
        return f"the switch to {last.get('to')} failed: {last.get('error')}"
    if running == current and current is not None:
        return ""
    if not switched:
        return None
    return f"the daemon runs {cell(running)}, but current is {cell(current)}"


def number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else float("-inf")


def cmd_reload(root: DeployRoot, args: argparse.Namespace) -> int:
    since = time.time()
    call(root, {"cmd": "reload"})
    if not args.wait:
        print("reload requested")
        return 0
    try:
        settled = wait_settled(
            root,
            lambda status: reload_outcome(status, root.current_release_id(), since),
            timeout=args.timeout,
        )
    except NotSettled as exc:
        raise OperationFailed(
            f"reload did not settle within {args.timeout:g} s "
            f"(state {cell(exc.last.get('state'))}, running {cell(exc.last.get('release'))})"
        ) from None
    running = cell(settled.status.get("release"))
    if settled.error:
        raise OperationFailed(f"{settled.error}; still running {running}")
    print(f"running {running}")
    return 0


# --- processes, logs, shutdown -----------------------------------------------------------

PAST = {"restart": "restarted", "stop": "stopped", "start": "started"}


def cmd_process(root: DeployRoot, args: argparse.Namespace) -> int:
    if args.target is not None and not args.target.strip():  # an empty $VAR in a script
        raise BadInput(f"{args.command}: empty process name (give NAME or TYPE, or none for all)")
    timeout = SHORT_TIMEOUT if args.command == "start" else LONG_TIMEOUT
    reply = call(root, {"cmd": args.command, "target": args.target}, timeout=timeout)
    names = reply.get("affected") or []
    print(f"{PAST[args.command]}: {', '.join(map(str, names)) or 'nothing'}")
    return 0


def cmd_logs(root: DeployRoot, args: argparse.Namespace) -> int:
    payload = {"cmd": "logs", "name": args.name, "n": args.n, "follow": args.follow}
    try:
        path = log_file_without_daemon(root, args.name)
        if path is not None:
            logs_from_file(path, args)
        elif args.follow:
            follow_logs(root, payload)
        else:
            for line in call(root, payload).get("lines") or []:
                print(line)
    except BrokenPipeError:
        # the reader of our stdout left (`| head`): that ends us, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def log_file_without_daemon(root: DeployRoot, name: str | None) -> Path | None:
    """ROOT/logs/NAME.log when that file is there and no daemon runs to be asked."""
    if name is None or "/" in name or name.startswith("."):
        return None
    path = root.logs / f"{name}.log"
    if not path.is_file() or daemon_pid(root) is not None:
        return None
    return path


def logs_from_file(path: Path, args: argparse.Namespace) -> None:
    print(f"{PROG}: daemon not running; lines from {path}", file=sys.stderr)
    try:
        lines = follow_lines(path, args.n) if args.follow else tail_lines(path, args.n)
        for line in lines:
            print(f"{args.name} | {line.decode('utf-8', 'replace')}", flush=args.follow)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        raise OperationFailed(f"cannot read {path}: {exc.strerror}") from None


def follow_logs(root: DeployRoot, payload: dict[str, Any]) -> None:
    replies = request_stream(root.control_socket, payload, timeout=SHORT_TIMEOUT)
    first = next(replies, None)
    if first is None:
        raise OperationFailed("the daemon closed the connection without a reply")
    if first.get("ok") is not True:
        raise OperationFailed(str(first.get("error") or "the daemon refused the request"))
    for line in first.get("lines") or []:
        print(line)
    sys.stdout.flush()
    for reply in replies:
        if "line" in reply:
            print(reply["line"], flush=True)


def cmd_shutdown(root: DeployRoot, args: argparse.Namespace) -> int:
    call(root, {"cmd": "shutdown"})
    print("the daemon is shutting down")
    return 0


COMMANDS: dict[str, Callable[[DeployRoot, argparse.Namespace], int]] = {
    "status": cmd_status,
    "reload": cmd_reload,
    "restart": cmd_process,
    "stop": cmd_process,
    "start": cmd_process,
    "logs": cmd_logs,
    "shutdown": cmd_shutdown,
}

__all__ = ["add_client_commands", "run_client_command"]

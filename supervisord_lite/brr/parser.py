"""`brr-release`'s command line: every subcommand's options, built only when needed.

Building argparse's parsers for all twenty-one subcommands cost about 5 ms of every run,
more than some commands spend on their work (issue 16: an operator types `releases` and
`status` all day). So `make_parser(command)` builds the top level and that one
subcommand; without a command (`--help`, a misspelt one, completion) it builds them all,
so that argparse's help and its "invalid choice" error are what they always were. The
width of help text is found without shutil, which argparse would import for it (shutil
pulls in bz2 and lzma).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from supervisord_lite.errors import BadInput
from supervisord_lite.helpwidth import Formatter

PROG = "brr-release"
DEFAULT_WAIT = 300.0

Sub = Any  # argparse's _SubParsersAction, private in typeshed


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise BadInput(message)


def common() -> Parser:
    p = Parser(add_help=False)
    p.add_argument("--root", default=argparse.SUPPRESS, help="deploy root (else $BRR_ROOT)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")
    return p


def release_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--env-file",
        action="append",
        default=[],
        type=Path,
        metavar="F",
        help="a .env file of KEY=VALUE lines; ${VAR} and $VAR stay literal (no expansion); "
        "a bare KEY line sets nothing",
    )
    p.add_argument("--set", action="append", default=[], metavar="K=V", dest="sets")
    p.add_argument("--unset", action="append", default=[], metavar="K", dest="unsets")


def activation_options(p: argparse.ArgumentParser, *, with_flag: bool) -> None:
    if with_flag:
        p.add_argument("--activate", action="store_true", help="activate the new release")
    p.add_argument("--no-signal", action="store_true", help="do not SIGHUP the daemon")
    p.add_argument("--wait", action="store_true", help="wait until the daemon runs it")
    p.add_argument("--timeout", type=float, default=DEFAULT_WAIT, metavar="S")


def from_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from",
        dest="from_id",
        metavar="ID",
        help="start from this release (default: the current one, else the newest)",
    )


def if_changed_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--if-changed",
        action="store_true",
        help="no release when build, config and formation equal the current release",
    )


def build_env_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--build-env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="pass NAME (from this shell, or =VALUE) to the build steps' clean environment",
    )


def add_init(sub: Sub, c: list[Parser]) -> None:
    p = sub.add_parser("init", parents=c, help="create the deploy root layout")
    p.add_argument("--group", help="share the root with this group (a deploy user's)")


def add_build(sub: Sub, c: list[Parser]) -> None:
    p = sub.add_parser("build", parents=c, help="build a source tree")
    p.add_argument("src", type=Path)
    build_env_option(p)


def add_release(sub: Sub, c: list[Parser]) -> None:
    p = sub.add_parser("release", parents=c, help="a new release of a build")
    p.add_argument("--build", required=True, dest="build_id")
    release_options(p)
    activation_options(p, with_flag=True)
    if_changed_option(p)


def add_config(sub: Sub, c: list[Parser]) -> None:
    p = sub.add_parser("config", parents=c, help="a new release with changed config")
    csub = p.add_subparsers(dest="config_command", required=True, parser_class=Parser)
    for name, meta in (("set", "K=V"), ("unset", "K")):
        q = csub.add_parser(name, parents=c)
        q.add_argument("items", nargs="+", metavar=meta)
        from_option(q)
        activation_options(q, with_flag=True)
        if_changed_option(q)


def add_scale(sub: Sub, c: list[Parser]) -> None:
    p = sub.add_parser("scale", parents=c, help="a new release with a changed formation")
    p.add_argument("items", nargs="+", metavar="TYPE=N")
    from_option(p)
    activation_options(p, with_flag=True)
    if_changed_option(p)


def add_activate(sub: Sub, c: list[Parser]) -> None:
    p = sub.add_parser("activate", parents=c, help="make a release current")
    p.add_argument("release_id", metavar="ID")
    activation_options(p, with_flag=False)


def add_deploy(sub: Sub, c: list[Parser]) -> None:
    p = sub.add_parser("deploy", parents=c, help="build + release + activate")
    p.add_argument("src", type=Path)
    build_env_option(p)
    release_options(p)
    activation_options(p, with_flag=False)


def add_rollback(sub: Sub, c: list[Parser]) -> None:
    p = sub.add_parser("rollback", parents=c, help="re-activate an earlier release")
    p.add_argument("release_id", nargs="?", metavar="ID")
    activation_options(p, with_flag=False)


def add_releases(sub: Sub, c: list[Parser]) -> None:
    sub.add_parser("releases", parents=c, help="list releases, newest first")


def add_show(sub: Sub, c: list[Parser]) -> None:
    p = sub.add_parser("show", parents=c, help="one release")
    p.add_argument("release_id", metavar="ID")
    p.add_argument("--show-values", action="store_true")


def add_diff(sub: Sub, c: list[Parser]) -> None:
    p = sub.add_parser("diff", parents=c, help="what changed between two releases")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--show-values", action="store_true")


def add_prune(sub: Sub, c: list[Parser]) -> None:
    p = sub.add_parser("prune", parents=c, help="remove old releases and unused builds")
    p.add_argument("--keep", type=int, required=True, metavar="N")


def add_verify(sub: Sub, c: list[Parser]) -> None:
    sub.add_parser("verify", parents=c, help="recompute every digest")


def add_run(sub: Sub, c: list[Parser]) -> None:
    p = sub.add_parser(
        "run",
        parents=c,
        help="a one-off command in a release's app dir and environment",
        description="Run CMD in the release's app directory with its config and a clean "
        "environment (as the release phase has it); its exit code is run's. One argument "
        "is a shell command line, several are run as they are.",
    )
    p.add_argument("--release", dest="release_id", metavar="ID", help="default: current")
    p.add_argument("oneoff", nargs=argparse.REMAINDER, metavar="-- CMD ...")


def add_import(sub: Sub, c: list[Parser]) -> None:
    p = sub.add_parser("import", parents=c, help="a brr.yaml from a Procfile or supervisord.conf")
    isub = p.add_subparsers(dest="import_command", required=True, parser_class=Parser)
    q = isub.add_parser("procfile", parents=c, help="honcho/foreman Procfile (+ .env)")
    q.add_argument("file", nargs="?", type=Path, default=Path("Procfile"))
    q.add_argument("--env", type=Path, dest="env_file", metavar="FILE")
    r = isub.add_parser("supervisord", parents=c, help="supervisord.conf [program:x] sections")
    r.add_argument("file", type=Path)
    for q in isub.choices.values():
        q.add_argument("-o", "--output", type=Path, help="write brr.yaml here, not stdout")
        q.add_argument("--force", action="store_true", help="overwrite --output")


def add_transfer(sub: Sub, c: list[Parser], name: str) -> None:
    """`build export|import`, `release export|import` (one word: cli.join_words)."""
    what, way = name.split("-")
    p = sub.add_parser(name, parents=c, help=f"`{what} {way} {TRANSFER_META[name]}`")
    if way == "export":
        p.add_argument(f"{what}_id", metavar="ID")
        p.add_argument("-o", "--output", default="-", metavar="FILE|-")
    else:
        p.add_argument("file", metavar="FILE|-")


TRANSFER_META = {
    "build-export": "ID",
    "build-import": "FILE|-",
    "release-export": "ID",
    "release-import": "FILE|-",
}


def add_status(sub: Sub, c: list[Parser]) -> None:
    sub.add_parser("status", parents=c, help="current, running, last switch, refused")


def add_fleet(sub: Sub, c: list[Parser]) -> None:
    p = sub.add_parser("fleet", parents=list(c), help="many hosts, through Ansible")
    fsub = p.add_subparsers(dest="fleet_command", required=True, parser_class=type(p))
    d = fsub.add_parser("deploy", parents=list(c), help="roll a source tree out")
    d.add_argument("src", type=Path)
    d.add_argument("--env-file", action="append", default=[], metavar="F")
    d.add_argument("--set", action="append", default=[], metavar="K=V", dest="sets")
    d.add_argument("--unset", action="append", default=[], metavar="K", dest="unsets")
    d.add_argument(
        "--revert-on-failure",
        action="store_true",
        help="put hosts upgraded in this run back on what they ran",
    )
    r = fsub.add_parser("rollback", parents=list(c), help="every host to release ID")
    r.add_argument("release_id", nargs="?", metavar="ID")
    s = fsub.add_parser("status", parents=list(c), help="what every host runs")
    for q in (d, r, s):
        q.add_argument("--inventory", "-i", required=True, type=Path, metavar="INV")
        q.add_argument("--limit", help="only these hosts (Ansible's pattern)")
    for q in (d, r):
        fleet_rollout_options(q)
    k = fsub.add_parser("lock", parents=list(c), help="take the fleet lock (playbooks)")
    k.add_argument("--what", required=True)
    k.add_argument("--lock-wait", type=float, default=0.0, metavar="S")
    fsub.add_parser("unlock", parents=list(c), help="release the fleet lock")


def fleet_rollout_options(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--serial",
        default="1,25%,100%",
        metavar="N[,N%...]",
        help="batch sizes (default: one canary, 25%%, the rest)",
    )
    q.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="per host, for the daemon to run the release",
    )
    q.add_argument("--lock-wait", type=float, default=0.0, metavar="S")
    q.add_argument("--check", action="store_true", help="Ansible's check mode: no host changes")


def transfer(name: str) -> Callable[[Sub, list[Parser]], None]:
    return lambda sub, c: add_transfer(sub, c, name)


# in the order `--help` lists them
SUBCOMMANDS: dict[str, Callable[[Sub, list[Parser]], None]] = {
    "init": add_init,
    "build": add_build,
    "release": add_release,
    "config": add_config,
    "scale": add_scale,
    "activate": add_activate,
    "deploy": add_deploy,
    "rollback": add_rollback,
    "releases": add_releases,
    "show": add_show,
    "diff": add_diff,
    "prune": add_prune,
    "verify": add_verify,
    "run": add_run,
    "import": add_import,
    **{name: transfer(name) for name in TRANSFER_META},
    "status": add_status,
    "fleet": add_fleet,
}


def make_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with a command of SUBCOMMANDS, only that subcommand in it."""
    parser = Parser(prog=PROG, parents=[common()], description="Build and release stages.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    c = [common()]
    for name, add in SUBCOMMANDS.items():
        if command in (None, name):
            add(sub, c)
    return parser


def command_word(argv: Sequence[str]) -> str | None:
    """The subcommand argv names, if it is one; None when argv asks for the top level's
    help or names none (the whole parser then answers)."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] in ("-h", "--help"):
            return None
        i += 1 if "=" in argv[i] or argv[i] == "--json" else 2
    if i < len(argv) and argv[i] in SUBCOMMANDS:
        return argv[i]
    return None

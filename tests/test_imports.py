"""Each command imports only what it uses (issue 16): an operator's `status`, `releases`
or `--help` must not pay for the daemon's event loop, psutil, or a YAML parser it never
calls. Every command runs as the real console script in its own interpreter under
`python -X importtime`, whose stderr names every module imported; no timing is asserted.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisord_lite.daemon_client import request
from tests.helpers import BRR, DAEMON, PY, run_brr, wait_until

# never in a client command: the daemon's event loop and process table
NOT_IN_CLIENTS = ("anyio", "psutil", "watchfiles", "prometheus_client")
# what `supervisord-lite`'s client commands may load of the daemon package: the CLI
# itself (the console script's module); the control client and the log-file reader are
# supervisord_lite.client
CONTROL_CLIENT = frozenset({"supervisord_lite.daemon", "supervisord_lite.daemon.cli"})


def imported(argv: list[str], env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """The modules one run of argv (a console script and its arguments) imported."""
    proc = subprocess.run(
        [PY, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    modules = set()
    other = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                modules.add(name)
        else:
            other.append(line)
    return modules, f"exit {proc.returncode}: {' / '.join(other)[-300:]}"


def top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def daemon_modules(modules: set[str]) -> set[str]:
    return {
        m
        for m in modules
        if m == "supervisord_lite.daemon" or m.startswith("supervisord_lite.daemon.")
    }


def offences(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(top_level(modules) & set(forbidden))


@pytest.fixture
def deployed(root: Path, app: Path) -> Path:
    """A root with two releases of the app, the second current."""
    build = run_brr(root, "--json", "build", str(app)).stdout
    build_id = build.split('"id": "')[1].split('"')[0]
    run_brr(root, "release", "--build", build_id)
    run_brr(root, "release", "--build", build_id, "--activate", "--no-signal")
    return root


# all that `brr-release --help` may load of the brr package: the command line itself
HELP_MODULES = frozenset({"supervisord_lite.brr.cli", "supervisord_lite.brr.parser"})
BRR_COMMANDS: list[tuple[list[str], bool]] = [
    # (arguments after --root ROOT, whether the command reads YAML)
    (["--help"], False),
    (["releases", "--help"], False),
    (["init"], False),
    (["releases"], False),  # from the ledger's lines (brr/listing.py)
    (["status"], False),
    (["show", "v1"], True),
    (["diff", "v1", "v2"], True),
    (["verify"], True),
    (["activate", "v1"], True),
    (["rollback"], True),
    (["prune", "--keep", "5"], True),
]


# what the commands typed all day leave alone (issue 16): `releases` reads the ledger's
# lines, not the manifests; `activate` of a release without a release command runs nothing
NOT_LOADED_BY = {
    "releases": (
        *("supervisord_lite.manifest", "supervisord_lite.brr.build", "supervisord_lite.fsatomic"),
        *("dataclasses", "_hashlib", "datetime", "shutil"),  # OpenSSL; shutil: bz2, lzma
    ),
    "status": ("supervisord_lite.manifest", "supervisord_lite.fsatomic", "dataclasses"),
    "activate": ("supervisord_lite.brr.build", "supervisord_lite.brr.release_phase", "subprocess"),
}


def test_brr_release_commands_import_neither_daemon_nor_anyio_nor_psutil(
    deployed: Path,
) -> None:
    problems = []
    for args, reads_yaml in BRR_COMMANDS:
        modules, how = imported([BRR, "--root", str(deployed), *args])
        assert "supervisord_lite.brr.cli" in modules, f"{args}: did not run ({how})"
        assert how.startswith("exit 0"), f"brr-release {' '.join(args)} failed: {how}"
        bad = offences(modules, NOT_IN_CLIENTS) + sorted(daemon_modules(modules))
        if not reads_yaml:
            bad += offences(modules, ("yaml", "dotenv"))
        bad += sorted(set(NOT_LOADED_BY.get(args[0], ())) & modules)
        if "--help" in args:
            bad += sorted(
                m
                for m in modules
                if m.startswith("supervisord_lite.brr.") and m not in HELP_MODULES
            )
        if bad:
            problems.append(f"brr-release {' '.join(args)} imported {', '.join(bad)}")
    assert not problems, "\n".join(problems)


@pytest.fixture
def running_daemon(deployed: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """The daemon on the deployed root, started under -X importtime; (root, its output)."""
    out = tmp_path / "daemon.out"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [PY, "-X", "importtime", DAEMON, "run", "--root", str(deployed)],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    sock = deployed / "run" / "supervisord-lite.sock"

    def running() -> bool:
        assert proc.poll() is None, out.read_text(errors="replace")[-2000:]
        try:
            reply = request(sock, {"cmd": "status"}, timeout=5)
        except Exception:
            return False
        status = reply.get("status", reply)
        return status.get("state") == "running"

    try:
        wait_until(running, timeout=60, what="daemon running")
        yield deployed, out
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


DAEMON_CLIENT_COMMANDS = [
    ["--help"],
    ["status"],
    ["status", "--json"],
    ["logs", "-n", "5"],
    ["restart", "worker"],
    ["reload"],
]


def test_supervisord_lite_client_commands_load_only_the_control_client(
    running_daemon: tuple[Path, Path],
) -> None:
    root, _out = running_daemon
    problems = []
    for args in DAEMON_CLIENT_COMMANDS:
        modules, how = imported(
            [DAEMON, *args, "--root", str(root)] if args != ["--help"] else [DAEMON, "--help"]
        )
        assert "supervisord_lite.daemon.cli" in modules, f"{args}: did not run ({how})"
        assert how.startswith("exit 0"), f"supervisord-lite {' '.join(args)} failed: {how}"
        # logging and dataclasses (inspect, ast): about 10 ms of every command, for nothing
        bad = offences(modules, (*NOT_IN_CLIENTS, "yaml", "dotenv", "logging", "dataclasses"))
        bad += sorted(daemon_modules(modules) - CONTROL_CLIENT)
        if bad:
            problems.append(f"supervisord-lite {' '.join(args)} imported {', '.join(bad)}")
    assert not problems, "\n".join(problems)


def test_daemon_without_watch_or_plugins_loads_neither(running_daemon: tuple[Path, Path]) -> None:
    """What only some releases use stays out of the daemon's memory until asked for."""
    _root, out = running_daemon
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in out.read_text(errors="replace").splitlines()
        if line.startswith("import time:")
    }
    assert "supervisord_lite.daemon.main" in modules  # the output really is the daemon's
    loaded = offences(modules, ("watchfiles", "prometheus_client", "dotenv"))
    loaded += sorted(m for m in modules if m.startswith("supervisord_lite.plugins"))
    loaded += sorted(m for m in modules if m == "supervisord_lite.daemon.plugins")
    assert not loaded, f"the daemon, run without --watch or --plugin, imported {loaded}"


# what the daemon must not carry after a start (issue 16, its memory): OpenSSL's digests
# (the manifest digest is CPython's own SHA-256), `secrets` (temp names and addresses are
# os.urandom), psutil (the stray scan and the environments are read from /proc), the real
# ssl (deferssl.py: loaded on first use; asyncio and anyio import it, use it never here)
# shutil (argparse's help formatter, fsatomic) brings zlib, bz2 and lzma: 0.6 MB; PyYAML
# (1.3 MB: a release is read from its JSON twin), datetime (0.5 MB: status_view's clock),
# random (0.15 MB with its SHA-512: the backoff's jitter is os.urandom); the readiness
# checks other than `after` (0.15 MB: loaded when a process declares one, ready.loaded)
NOT_IN_DAEMON = (
    *("hashlib", "_hashlib", "secrets", "psutil", "_ssl", "shutil", "bz2", "lzma"),
    *("yaml", "datetime", "random"),
    *("supervisord_lite.daemon.readychecks", "supervisord_lite.daemon.ready_notify"),
    "anyio.streams.buffered",
)


def test_daemon_start_loads_neither_openssl_nor_secrets_nor_psutil(
    running_daemon: tuple[Path, Path],
) -> None:
    _root, out = running_daemon
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in out.read_text(errors="replace").splitlines()
        if line.startswith("import time:")
    }
    assert "supervisord_lite.daemon.leftovers" in modules  # the stray scan ran its imports
    loaded = offences(modules, NOT_IN_DAEMON)
    assert not loaded, f"the daemon imported {loaded} at start"

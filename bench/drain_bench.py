#!/usr/bin/env python3
"""Failed requests per start-first switch: drained, against one shared listener (issue 13).

    .venv/bin/python bench/drain_bench.py                # about 8 minutes
    .venv/bin/python bench/drain_bench.py --switches 4 --no-save
    .venv/bin/python bench/drain_bench.py --servers uvicorn --switches 100   # its own section

For contrib/example-app's app.py, gunicorn (--preload --workers 2, notify) and uvicorn
(--fd 3, unchanged), the same --switches start-first switches under load, twice: with
the daemon's default (each generation its own listener, new connections steered to the
new one, the old listener drained before the old generation is stopped) and with
`supervisord-lite run --no-drain` (one listener both generations accept from, the old
one stopped while it still accepts). The client is tests/zero_downtime/loadgen.py:
4 threads, a new connection per request, at most 100 requests/s each, a 5 s timeout.
Switches start 1.5 s apart. A failed request is a reset, a refused or a timed-out one.

Writes the `drain` section of docs/benchmarks.md (unless --no-save) and the raw figures
in bench/out/drain_bench.json. Every daemon is stopped at the end, its children with it
(tests/zero_downtime/conftest.py's Deploy.stop).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib as bl

sys.path.insert(0, str(bl.REPO))
from tests.helpers import run_brr
from tests.zero_downtime.conftest import UVICORN, Deploy, example_app, free_port, server_app
from tests.zero_downtime.loadgen import LoadGen, failures, summary
from tests.zero_downtime.test_app_servers import ASGI_APP, GUNICORN_CMD, WSGI_APP

UVICORN_CMD = f"{UVICORN} app:app --fd 3 --timeout-graceful-shutdown 5 --no-access-log"
SERVERS = ("example app", "gunicorn", "uvicorn")
MODES = (("drained (default)", ()), ("shared listener (--no-drain)", ("--no-drain",)))


def source(server: str, src: Path, port: int) -> Path:
    if server == "example app":
        return example_app(src, port)
    if server == "gunicorn":
        return server_app(
            src, port, cmd=GUNICORN_CMD, ready="{notify: true}", app=WSGI_APP, stop=10
        )
    return server_app(src, port, cmd=UVICORN_CMD, ready="{after: 1.5}", app=ASGI_APP, stop=10)


def one_run(base: Path, server: str, daemon_args: tuple[str, ...], switches: int) -> dict[str, Any]:
    d = Deploy(base, free_port(), base / "root", daemon_args=daemon_args)
    run_brr(d.root, "init")
    try:
        v1 = d.release(d.build(source(server, base / "src", d.port)), "GREETING=g1")
        v2 = d.config_set("GREETING=g2")
        d.start(v1)
        with LoadGen(d.port, threads=4, pace=0.01, max_duration=600) as load:
            d.wait_serving(v1)
            began = time.monotonic()
            for i in range(switches):
                d.switch(v2 if i % 2 == 0 else v1)
                time.sleep(max(0.0, began + (i + 1) * 1.5 - time.monotonic()))
            time.sleep(2.0)
        drained = d.drained()
    finally:
        d.stop()
    samples = load.snapshot()
    errors = failures(samples)
    failed = sum(errors.values())
    print(f"  {server}, {daemon_args or 'drained'}: {summary(samples)}", file=sys.stderr)
    return {
        "switches": switches,
        "requests": len(samples),
        "failed": failed,
        "errors": errors,
        "failed_per_switch": failed / switches,
        "drained_switches": drained,
    }


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    rows = []
    for server in args.servers:
        for mode, _ in MODES:
            r = result[server][mode]
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(r["errors"].items())) or "-"
            rows.append(
                [
                    server,
                    mode,
                    str(r["switches"]),
                    str(r["requests"]),
                    str(r["failed"]),
                    f"{r['failed_per_switch']:.2f}",
                    kinds,
                ]
            )
    header = ["server", "listener", "switches", "requests", "failed", "per switch", "kinds"]
    return "\n\n".join(
        [
            "## Start-first switches: failed requests per switch, drained or not",
            f"{bl.machine_line()}; `bench/drain_bench.py --servers {','.join(args.servers)} "
            f"--switches {args.switches}`.",
            bl.table(header, rows, right_from=2),
            "Drained: the new generation gets a listener of its own on the held address, "
            "new connections are steered to it (a reuseport BPF program), and the old "
            "generation is stopped once its listener's accept queue is empty. Shared: "
            "`--no-drain`, both generations accept from one listener and the old one is "
            "stopped while it accepts; uvicorn may then reset a connection it accepted but "
            "had not read (its issue 2757): rare, so count over many switches. See "
            "docs/zero-downtime.md.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--switches", type=int, default=20, help="switches per server and mode")
    ap.add_argument(
        "--servers",
        type=lambda v: [x.replace("-", " ") for x in v.split(",")],
        default=list(SERVERS),
        help="comma-separated, of example-app,gunicorn,uvicorn (default all)",
    )
    ap.add_argument("--no-save", action="store_true", help="only print")
    args = ap.parse_args(argv)
    if not set(args.servers) <= set(SERVERS):
        ap.error(f"--servers: choose from {', '.join(SERVERS)}")
    base = Path(tempfile.mkdtemp(prefix="drain-bench-"))
    result: dict[str, Any] = {}
    try:
        for server in args.servers:
            result[server] = {}
            for i, (mode, daemon_args) in enumerate(MODES):
                work = base / f"{SERVERS.index(server)}-{i}"
                work.mkdir()
                result[server][mode] = one_run(work, server, daemon_args, args.switches)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)  # builds are read-only
        shutil.rmtree(base, ignore_errors=True)
    text = render(result, args)
    print(text)
    bl.OUT.mkdir(parents=True, exist_ok=True)
    section = "drain" if args.servers == list(SERVERS) else "drain-" + "-".join(args.servers)
    section = section.replace(" ", "-")
    (bl.OUT / f"bench-{section}.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_save:
        print(f"saved to {bl.save_section(section, text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

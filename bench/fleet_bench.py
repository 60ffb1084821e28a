#!/usr/bin/env python3
"""What a fleet rollout moves and how long it takes, for 1, 3 (and 6) hosts (issue 14).

    BRR_FLEET_TESTS=1 .venv/bin/python bench/fleet_bench.py --hosts 1,3 --build-mb 1

Root only (the hosts are network namespaces with their own sshd, from tests/fleet).
For each fleet size: a first deploy of an app with an incompressible build of
--build-mb MB, the same deploy again, and a config change; the time of each
`brr-release fleet deploy` and the bytes on the wire to and from each host, counted by
the hosts' ProxyCommand relay (SSH framing included). Printed only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fleet.hosts import make_hosts, write_inventory
from tests.helpers import BRR, run_brr, write_app

APP = 'processes:\n  web:\n    cmd: "sleep 1000"\n'
RUNS = (("first deploy", []), ("same again", []), ("config change", ["--set", "COLOR=blue"]))


def moved(log: Path) -> tuple[int, int]:
    """Bytes sent and received per host, the mean over hosts; the log is emptied."""
    per_host: dict[str, list[int]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            host, sent, received = line.split()
            totals = per_host.setdefault(host, [0, 0])
            totals[0] += int(sent)
            totals[1] += int(received)
        log.unlink()
    if not per_host:
        return 0, 0
    n = len(per_host)
    return sum(t[0] for t in per_host.values()) // n, sum(t[1] for t in per_host.values()) // n


def bench(count: int, build_mb: float, base: Path) -> list[tuple[str, float, int, int]]:
    hosts = make_hosts(base / "fleet", count)
    rows = []
    try:
        # no multiplexing: each connection ends (and is counted) within its run
        keys = base / "fleet" / "keys"
        inventory = write_inventory(base / "hosts.ini", hosts, keys, multiplex=False)
        controller = base / "controller"
        run_brr(controller, "init")
        src = write_app(base / "app", APP, {"app.py": "print('hi')\n"})
        (src / "data.bin").write_bytes(os.urandom(int(build_mb * 1_000_000)))
        log = base / "relay.log"
        env = {**os.environ, "FLEET_RELAY_LOG": str(log)}
        for label, extra in RUNS:
            started = time.monotonic()
            argv = [BRR, "--root", str(controller), "fleet", "deploy", str(src)]
            proc = subprocess.run(
                [*argv, "-i", str(inventory), *extra], env=env, capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise SystemExit(f"{label}: {proc.stderr.strip()}")
            rows.append((label, time.monotonic() - started, *moved(log)))
    finally:
        for h in hosts:
            h.cleanup()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1,3", help="fleet sizes, comma-separated")
    parser.add_argument("--build-mb", type=float, default=1.0)
    args = parser.parse_args()
    print(f"{'hosts':>5}  {'run':<14} {'seconds':>8} {'sent/host':>12} {'received/host':>14}")
    for count in (int(n) for n in args.hosts.split(",")):
        base = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
        try:
            for label, seconds, sent, received in bench(count, args.build_mb, base):
                print(f"{count:>5}  {label:<14} {seconds:>8.1f} {sent:>12,} {received:>14,}")
        finally:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

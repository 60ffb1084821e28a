#!/usr/bin/env python3
"""Zero-downtime switches, measured (issue 4): the inherited socket's cost, and a switch
under load with start-first, stop-first and supervisord's restart, in one run.

    .venv/bin/python bench/switch_bench.py               # about 3 minutes
    .venv/bin/python bench/switch_bench.py --switches 2 --seconds 3 --no-save

The app is contrib/example-app's app.py (stdlib HTTP, a thread per connection, its
release ID in every body), two processes of it, on loopback. The client is
tests/zero_downtime/loadgen.py: threads, a new connection per request, 5 s timeout.

1. Throughput: the app accepting from the daemon-held socket it inherits (fd 3) against
   the same app binding its own port (SO_REUSEPORT, one socket per process), both under
   supervisord-lite; 2 client processes x 4 unpaced threads for --seconds, with 1 and
   with 2 processes of the app, the modes alternated --rounds times, the median kept.
   The client shares the 2 cores with the app, so the figure is the pair's, not the
   app's alone; the comparison holds because both modes are measured alike.
2. A switch under load: a paced client (4 threads x 100 requests/s at most) runs through
   --switches switches per mode, 3 s apart:
   - start-first, held socket: `brr-release activate vN --wait`, `switch: start-first`
   - stop-first, held socket: the same with `switch: stop-first`
   - stop-first, own port: `switch: stop-first`, the app binds its port itself
   - supervisord: `supervisorctl restart web:*` of the same app binding its own port
     (supervisor from bench/.venv-peers, installed there on first use)
   Failed requests count over the whole run; the latency figures are over the requests
   started while the switch command ran (the switch window).

Writes the `switch` section of docs/benchmarks.md (unless --no-save), the plot
docs/switch-latency.png (latency of every request around the first switch of each
mode), the raw figures in bench/out/switch_bench.json, and what our daemon said in
each switch mode in bench/out/switch-N-daemon.out (how long each drain took). Every
process it starts is stopped at the end, even on error: each supervisor gets SIGTERM,
then SIGKILL to its process group, then every descendant it was seen with gets SIGKILL
(checked against its start time, so a reused pid is never hit).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import multiprocessing
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib as bl
import psutil

sys.path.insert(0, str(bl.REPO))
from tests.zero_downtime.loadgen import LoadGen, Sample, fetch, summary

BRR = bl.VENV_BIN / "brr-release"
LITE = bl.VENV_BIN / "supervisord-lite"
PY = sys.executable
EXAMPLE_APP = bl.REPO / "contrib" / "example-app" / "app.py"
PEER_VENV = bl.REPO / "bench" / ".venv-peers"
PEER_BIN = PEER_VENV / "bin"
SUPERVISOR_PIN = "supervisor==4.3.0"
PLOT = bl.REPO / "docs" / "switch-latency.png"
CLIENT_TIMEOUT = 5.0


class BenchFailure(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(argv: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        err = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise BenchFailure(f"`{' '.join(argv[:4])} ...` failed: {err[:200]}")
    return done


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchFailure(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def serves(port: int, release: str | None = None) -> bool:
    s = fetch("127.0.0.1", port, "/", 2.0)
    return s.ok and (release is None or s.release == release)


# --- the supervisors ---------------------------------------------------------------------


@dataclass
class Supervisor:
    """One supervisor process this bench started, and every descendant it was seen with."""

    proc: subprocess.Popen[bytes]
    seen: dict[int, float] = field(default_factory=dict)  # pid -> create_time

    def note_tree(self) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.seen[child.pid] = child.create_time()

    def stop(self) -> None:
        self.note_tree()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        for pid, created in self.seen.items():
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if abs(p.create_time() - created) < 0.05:
                    p.kill()


def start_supervisor(argv: list[str], out: Path, live: list[Supervisor]) -> Supervisor:
    with out.open("ab") as f:
        proc = subprocess.Popen(
            argv,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    sup = Supervisor(proc)
    live.append(sup)
    return sup


def app_source(src: Path, port: int, *, switch: str, held: bool, scale: int = 2) -> Path:
    src.mkdir(parents=True)
    shutil.copy(EXAMPLE_APP, src / "app.py")
    sockets = f'sockets:\n  http: {{bind: "127.0.0.1:{port}", backlog: 1024}}\n' if held else ""
    binding = "    sockets: [http]\n" if held else f'    env: {{BIND_PORT: "{port}"}}\n'
    # a held socket is answered by the old generation during a switch: a check on its
    # address proves nothing about the new one (docs/zero-downtime.md); app.py's own
    # READY=1 does, as in contrib/example-app/brr.yaml
    ready = "{notify: true}" if held else f'{{tcp: "127.0.0.1:{port}"}}'
    (src / "brr.yaml").write_text(
        f"{sockets}switch: {switch}\nprocesses:\n  web:\n"
        f"    cmd: {shlex.quote(PY)} app.py\n    scale: {scale}\n{binding}"
        f"    ready: {ready}\n    ready_timeout: 30\n    stop_timeout: 5\n"
    )
    return src


@dataclass
class LiteDeploy:
    root: Path
    port: int
    sup: Supervisor
    releases: tuple[str, str]

    def switch(self, n: int) -> None:
        target = self.releases[(n + 1) % 2]
        run([str(BRR), "--root", str(self.root), "activate", target, "--wait", "--timeout", "90"])


def lite_deploy(
    work: Path, live: list[Supervisor], *, switch: str, held: bool, scale: int = 2
) -> LiteDeploy:
    port = free_port()
    root = work / "root"
    src = app_source(work / "src", port, switch=switch, held=held, scale=scale)
    brr = [str(BRR), "--root", str(root)]
    run([*brr, "init"])
    build = run([*brr, "build", str(src)]).stdout.strip()
    v1 = run([*brr, "release", "--build", build, "--set", "GREETING=g1"]).stdout.strip()
    v2 = run([*brr, "config", "set", "GREETING=g2"]).stdout.strip()
    run([*brr, "activate", v1, "--no-signal"])
    sup = start_supervisor([str(LITE), "run", "--root", str(root)], work / "daemon.out", live)
    wait_for(lambda: serves(port, v1), 60, f"{v1} serving")
    sup.note_tree()
    return LiteDeploy(root, port, sup, (v1, v2))


def ensure_supervisor() -> str:
    """bench/.venv-peers with supervisor in it (made on first use); its version."""
    if not (PEER_BIN / "supervisord").exists():
        print(f"installing {SUPERVISOR_PIN} into {PEER_VENV} ...", file=sys.stderr)
        base = shutil.which("python3") or PY
        if not (PEER_BIN / "python").exists():
            subprocess.run([base, "-m", "venv", str(PEER_VENV)], check=True, timeout=300)
        subprocess.run(
            [
                str(PEER_BIN / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                SUPERVISOR_PIN,
            ],
            check=True,
            timeout=900,
        )
    code = "import importlib.metadata as m; print(m.version('supervisor'))"
    return run([str(PEER_BIN / "python"), "-c", code]).stdout.strip()


@dataclass
class SupervisordDeploy:
    conf: Path
    port: int
    sup: Supervisor

    def switch(self, n: int) -> None:
        ctl = [str(PEER_BIN / "supervisorctl"), "-c", str(self.conf)]
        run([*ctl, "restart", "web:*"])
        self.sup.note_tree()


def supervisord_deploy(work: Path, live: list[Supervisor]) -> SupervisordDeploy:
    port = free_port()
    app = work / "app"
    app.mkdir(parents=True)
    shutil.copy(EXAMPLE_APP, app / "app.py")
    conf = work / "supervisord.conf"
    conf.write_text(
        f"[unix_http_server]\nfile={work}/supervisor.sock\n\n"
        f"[supervisord]\nnodaemon=true\nlogfile={work}/supervisord.log\n"
        f"pidfile={work}/supervisord.pid\nchildlogdir={work}\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        f"[supervisorctl]\nserverurl=unix://{work}/supervisor.sock\n\n"
        f"[program:web]\ncommand={PY} app.py\ndirectory={app}\nnumprocs=2\n"
        "process_name=%(program_name)s_%(process_num)s\n"
        f'environment=BIND_PORT="{port}",BRR_RELEASE="v1"\n'
        "autorestart=true\nstartsecs=1\nstopsignal=TERM\nstopwaitsecs=5\n"
    )
    argv = [str(PEER_BIN / "supervisord"), "-n", "-c", str(conf)]
    sup = start_supervisor(argv, work / "supervisord.out", live)
    wait_for(lambda: serves(port), 60, "the app under supervisord serving")
    sup.note_tree()
    return SupervisordDeploy(conf, port, sup)


# --- measurements ------------------------------------------------------------------------


def client_process(port: int, seconds: float, threads: int) -> list[tuple[str, float]]:
    """One client process's (kind, latency) over seconds of unpaced load."""
    load = LoadGen(port, threads=threads, timeout=CLIENT_TIMEOUT, max_duration=seconds)
    load.start()
    time.sleep(seconds)
    return [(s.kind, s.latency) for s in load.stop()]


def throughput(port: int, seconds: float, procs: int = 2, threads: int = 4) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs) as pool:
        parts = pool.starmap(client_process, [(port, seconds, threads)] * procs)
    samples = [s for part in parts for s in part]
    ok = [lat for kind, lat in samples if kind == "ok"]
    return {
        "rps": len(ok) / seconds,
        "failed": len(samples) - len(ok),
        "p50_ms": bl.percentile(ok, 50) * 1000,
        "p99_ms": bl.percentile(ok, 99) * 1000,
    }


# (name, numerator, denominator) of the throughput ratios, each taken round by round
RATIOS = [
    ("ratio-1", "held-1", "own-1"),
    ("ratio-aa", "own-1-copy", "own-1"),
    ("ratio-2", "held-2", "own-2"),
]


@dataclass
class SwitchRun:
    mode: str
    samples: list[Sample]
    windows: list[tuple[float, float]]  # (start, end) of each switch command


def switch_under_load(
    mode: str, port: int, do_switch: Callable[[int], None], switches: int, gap: float
) -> SwitchRun:
    windows: list[tuple[float, float]] = []
    with LoadGen(port, threads=4, pace=0.01, timeout=CLIENT_TIMEOUT, max_duration=600) as load:
        time.sleep(gap)  # steady state before the first switch
        for n in range(switches):
            t0 = time.monotonic()
            do_switch(n)
            windows.append((t0, time.monotonic()))
            time.sleep(gap)
    print(f"  {mode}: {summary(load.snapshot())}", file=sys.stderr)
    return SwitchRun(mode, load.snapshot(), windows)


def in_windows(samples: list[Sample], windows: list[tuple[float, float]]) -> list[Sample]:
    return [s for s in samples if any(a <= s.start <= b for a, b in windows)]


# --- the run -----------------------------------------------------------------------------


@contextlib.contextmanager
def supervisors() -> Iterator[list[Supervisor]]:
    live: list[Supervisor] = []
    try:
        yield live
    finally:
        for sup in live:
            sup.stop()


def run_bench(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"throughput": {}, "switch": {}}
    with supervisors() as live:
        # (key, held, scale); "own-1-copy" is a second, identical own-port deploy: the
        # A/A control whose ratio to "own-1" shows how far apart two equal setups measure
        modes = [("held-1", True, 1), ("own-1", False, 1), ("own-1-copy", False, 1)]
        modes += [("held-2", True, 2), ("own-2", False, 2)]
        ports = {
            key: lite_deploy(
                base / f"tp-{key}", live, switch="start-first", held=held, scale=scale
            ).port
            for key, held, scale in modes
        }
        rounds: dict[str, list[dict[str, float]]] = {key: [] for key in ports}
        order = list(ports.items())
        for n in range(args.rounds):
            # ABBA: each mode goes first as often as last, so a drift of the machine's
            # load during a round hits both modes alike
            for key, port in order if n % 2 == 0 else order[::-1]:
                rounds[key].append(throughput(port, args.seconds))
        for name, a, b in RATIOS:
            pairs = zip(rounds[a], rounds[b], strict=True)
            ratios = [x["rps"] / y["rps"] for x, y in pairs if y["rps"]]
            result["throughput"][name] = {
                "median": bl.median(ratios),
                "all": [round(r, 2) for r in ratios],
            }
        result["loadavg_during_throughput"] = round(os.getloadavg()[0], 1)
        for name, rs in rounds.items():
            result["throughput"][name] = {
                "rps": bl.median([r["rps"] for r in rs]),
                "rps_all": [round(r["rps"]) for r in rs],
                "p50_ms": bl.median([r["p50_ms"] for r in rs]),
                "p99_ms": bl.median([r["p99_ms"] for r in rs]),
                "failed": sum(r["failed"] for r in rs),
            }
        for sup in list(live):
            sup.stop()
            live.remove(sup)
    print("throughput:", json.dumps(result["throughput"]), file=sys.stderr)
    runs: list[SwitchRun] = []
    lite_modes = [
        ("start-first, held socket", "start-first", True),
        ("stop-first, held socket", "stop-first", True),
        ("stop-first, own port", "stop-first", False),
    ]
    for i, (mode, switch, is_held) in enumerate(lite_modes):
        with supervisors() as live:
            d = lite_deploy(base / f"sw-{i}", live, switch=switch, held=is_held)
            runs.append(switch_under_load(mode, d.port, d.switch, args.switches, args.gap))
        # kept: what the daemon said of each switch (how long the drain took, or that it
        # gave up) explains the switch command's time
        bl.OUT.mkdir(parents=True, exist_ok=True)
        shutil.copy(base / f"sw-{i}" / "daemon.out", bl.OUT / f"switch-{i}-daemon.out")
    try:
        result["supervisor_version"] = ensure_supervisor()
    except (OSError, subprocess.SubprocessError, BenchFailure) as exc:
        result["supervisor_version"] = None
        result["supervisor_error"] = str(exc)[:200]
    if result["supervisor_version"]:
        with supervisors() as live:
            s = supervisord_deploy(base / "sw-supervisord", live)
            mode = "supervisord, `supervisorctl restart`"
            runs.append(switch_under_load(mode, s.port, s.switch, args.switches, args.gap))
    for r in runs:
        window = in_windows(r.samples, r.windows)
        whole = summary(r.samples)
        lat = [s.latency for s in window if s.ok]
        result["switch"][r.mode] = {
            "switches": len(r.windows),
            "requests": whole["requests"],
            "failed": whole["failed"],
            "errors": whole["errors"],
            "window_requests": len(window),
            "window_p99_ms": bl.percentile(lat, 99) * 1000 if lat else math.nan,
            "window_max_ms": max(lat) * 1000 if lat else math.nan,
            "switch_seconds": bl.median([b - a for a, b in r.windows]),
        }
    plot(runs, bl.OUT / "switch-latency.png" if args.no_save else PLOT)
    return result


def plot(runs: list[SwitchRun], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(runs), 1, figsize=(9, 2.2 * len(runs)), sharex=True, sharey=True, squeeze=False
    )
    axes = axes[:, 0]
    for ax, r in zip(axes, runs, strict=True):
        t0, t1 = r.windows[0]
        near = [s for s in r.samples if t0 - 1.5 <= s.start <= t1 + 2.5]
        ok = [s for s in near if s.ok]
        bad = [s for s in near if not s.ok]
        ax.axvspan(0, t1 - t0, color="0.9", label="switch command")
        ax.scatter([s.start - t0 for s in ok], [s.latency * 1000 for s in ok], s=3, label="ok")
        if bad:
            ax.scatter(
                [s.start - t0 for s in bad],
                [max(s.latency * 1000, 0.1) for s in bad],
                s=18,
                marker="x",
                color="red",
                label=f"failed ({len(bad)}; y: time to fail)",
            )
        ax.set_yscale("log")
        ax.set_ylabel("latency, ms")
        ax.set_title(r.mode, fontsize=10, loc="left")
        ax.legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("seconds from the start of the switch command")
    fig.suptitle("Every request around one switch under load (example app, 2 processes)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    tp = result["throughput"]
    aa = tp["ratio-aa"]["all"]
    noise = max((abs(r - 1) for r in aa), default=math.nan)
    labels = {
        "held-1": "1 x app, inherited socket (fd 3)",
        "own-1": "1 x app, app binds its own port",
        "own-1-copy": "1 x app, own port, a second copy (A/A control)",
        "held-2": "2 x app, inherited socket (fd 3)",
        "own-2": "2 x app, app binds its own port",
    }
    tp_rows = [
        [
            label,
            f"{tp[key]['rps']:,.0f}",
            ", ".join(f"{x:,}" for x in tp[key]["rps_all"]),
            bl.fmt_ms(tp[key]["p50_ms"]),
            bl.fmt_ms(tp[key]["p99_ms"]),
            str(tp[key]["failed"]),
        ]
        for key, label in labels.items()
    ]
    verdicts = []
    for name, what in (("ratio-1", "1 process"), ("ratio-2", "2 processes")):
        ratio, each = tp[name]["median"], tp[name]["all"]
        same = abs(ratio - 1) <= noise
        verdicts.append(
            f"{what}: {ratio:.2f}x (rounds {', '.join(f'{r:.2f}' for r in each)}), "
            + ("the same within noise" if same else "MORE than the noise")
        )
    sw_rows = []
    for mode, m in result["switch"].items():
        errors = ", ".join(f"{n} {k}" for k, n in sorted(m["errors"].items())) or "-"
        sw_rows.append(
            [
                mode,
                str(m["switches"]),
                f"{m['requests']:,}",
                str(m["failed"]),
                errors,
                bl.fmt_ms(m["window_p99_ms"]),
                bl.fmt_ms(m["window_max_ms"]),
                bl.fmt_seconds(m["switch_seconds"]),
            ]
        )
    peer = (
        f"supervisor {result['supervisor_version']}"
        if result.get("supervisor_version")
        else f"supervisord not measured: {result.get('supervisor_error')}"
    )
    held_stop = result["switch"].get("stop-first, held socket", {})
    if held_stop.get("failed"):
        stop_note = (
            "stop-first with a held socket should only queue requests in the backlog; the "
            "failures it shows come from the daemon closing and re-binding the socket between "
            "the two generations (a known bug, `tests/zero_downtime/test_example_app.py::"
            "test_stop_first_keeps_the_held_socket`)."
        )
    else:
        stop_note = (
            "stop-first with a held socket queues requests in the backlog while nothing "
            "accepts: no failures, a latency spike as long as the gap."
        )
    return "\n".join(
        [
            "## Zero-downtime switches: the inherited socket's cost, and a switch under load",
            "",
            f"`bench/switch_bench.py` on {bl.machine_line()}; {peer}. The app is "
            "contrib/example-app (stdlib HTTP server, 2 processes), the client "
            "tests/zero_downtime/loadgen.py (a new loopback connection per request, "
            f"{CLIENT_TIMEOUT:g} s timeout), on the same 2 cores.",
            "",
            f"Throughput, {args.rounds} rounds of {args.seconds:g} s per mode in ABBA order "
            "(2 client processes x 4 unpaced threads; the median round). The host is shared: "
            f"its 1-minute load average was {result.get('loadavg_during_throughput')} on "
            f"{os.cpu_count()} cores after these rounds.",
            "",
            bl.table(
                ["app takes its socket", "requests/s", "each round", "p50", "p99", "failed"],
                tp_rows,
            ),
            "",
            "Inherited / own port, the median of the rounds' ratios: "
            + "; ".join(verdicts)
            + f". The noise is what the A/A control shows: two identical own-port deploys "
            f"measured {tp['ratio-aa']['median']:.2f}x apart (rounds "
            f"{', '.join(f'{r:.2f}' for r in aa)}), up to {noise:.0%} in a round. "
            "With one process the kernel "
            "path is the same (one listening socket, whoever bound it); with two, the inherited "
            "socket is one accept queue both processes take from, where SO_REUSEPORT gives "
            "each process a queue of its own.",
            "",
            f"A switch under load: 4 client threads at up to 100 requests/s each, {args.gap:g} s "
            "between switches. Failed requests over the whole run; p99 and max latency over "
            "the requests started while the switch command ran.",
            "",
            bl.table(
                [
                    "mode",
                    "switches",
                    "requests",
                    "failed",
                    "how they failed",
                    "p99 in switch",
                    "max in switch",
                    "switch command",
                ],
                sw_rows,
            ),
            "",
            "![latency of every request around one switch](switch-latency.png)",
            "",
            "Reading it: in a start-first switch the new processes get a listener of their own "
            "on the held address, new connections are steered to it, and the old processes are "
            "stopped once their accept queue is empty (draining, docs/zero-downtime.md), so "
            "nothing is refused and the latency barely moves. stop-first "
            "with the app binding its own port refuses connections while nothing listens; "
            "supervisord's `restart` is the same stop-then-start, and waits `startsecs` (1 s) "
            "before it returns. " + stop_note,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--switches", type=int, default=5, help="switches per mode")
    ap.add_argument("--gap", type=float, default=3.0, help="seconds of load between switches")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of a throughput round")
    ap.add_argument("--rounds", type=int, default=6, help="throughput rounds per mode")
    ap.add_argument("--no-save", action="store_true", help="only print")
    args = ap.parse_args(argv)
    for tool in (BRR, LITE):
        if not tool.exists():
            print(f"switch_bench: {tool} is not installed (make venv)", file=sys.stderr)
            return 1
    if importlib.util.find_spec("matplotlib") is None:  # found now, not after 4 minutes
        print("switch_bench: matplotlib is missing (`make bench` installs it)", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="switch-bench-"))
    t_start = time.monotonic()
    try:
        result = run_bench(base, args)
    except BenchFailure as exc:
        print(f"switch_bench: {exc}", file=sys.stderr)
        return 1
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)
    text = render(result, args)
    print(text)
    print(f"(bench took {time.monotonic() - t_start:.0f} s)", file=sys.stderr)
    bl.OUT.mkdir(parents=True, exist_ok=True)
    (bl.OUT / "switch_bench.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    if not args.no_save:
        print(f"saved to {bl.save_section('switch', text)} and {PLOT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Cost against size: `brr-release releases`, `verify`, `activate` and `prune` on a root
holding 10 to 5,000 releases (issue 16). The aim: flat or linear in the number of
releases, never worse.

    .venv/bin/python bench/ledger_bench.py              # 10, 100, 1000, 5000 releases
    .venv/bin/python bench/ledger_bench.py --quick      # 10, 100, 1000; fewer runs; prints only

Each root is made once per size: `brr-release init` and one real `build` and `release`
(v1) through the CLI, then releases v2..vS written as the CLI writes them (the manifest
module's dump of v1 with a new ID, sealed again) with a `release` and an `activate`
line each in the ledger, so the ledger holds 2S + 1 events and `current` is vS. Then the
real console script runs, each command timed from fork to exit (interpreter start-up
included, as an operator waits for it), median of --runs:

- releases: lists every release (each from its ledger line, its manifest hashed);
- verify: every release manifest and the one build's digest;
- activate: alternately vS-1 and vS (reads the ledger, appends one line, moves current);
- prune --keep S-10: removes the 10 oldest releases, on a fresh copy of the root each run
  (the copy is not timed).

The table gives the median, and the marginal cost per release, (t(S) - t(10)) / (S - 10):
constant down a column means linear, growing means worse than linear. A full run saves
the `ledger` section of docs/benchmarks.md; --quick only prints unless --save.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import benchlib as bl

BRR = bl.VENV_BIN / "brr-release"
APP_YAML = """\
processes:
  web:
    cmd: "sleep 1000"
    scale: 2
  worker: "sleep 1000"
"""
COMMANDS = ("releases", "verify", "activate", "prune")


def brr(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(BRR), "--root", str(root), *args], capture_output=True, text=True, timeout=600
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"brr-release {' '.join(args)}: {done.stderr.strip()[-300:]}")
    return done


def make_root(root: Path, releases: int) -> None:
    """A root with `releases` releases of one build, vS current (see the header)."""
    from supervisord_lite import fsatomic, ledger
    from supervisord_lite.brr.build import build_commit
    from supervisord_lite.brr.listing import recorded_fields
    from supervisord_lite.layout import DeployRoot
    from supervisord_lite.manifest import dump_release, load_release

    src = root.parent / f"{root.name}-src"
    src.mkdir(parents=True)
    (src / "brr.yaml").write_text(APP_YAML)
    (src / "app.py").write_text("print('hi')\n")
    brr(root, "init")
    build_id = json.loads(brr(root, "--json", "build", str(src)).stdout)["id"]
    brr(root, "release", "--build", build_id, "--activate", "--no-signal")
    v1 = load_release(root / "releases" / "v1" / "release.yaml")
    lines = []
    seq = len(ledger.read_ledger(root / "ledger.jsonl").entries)
    commit = build_commit(DeployRoot(root), build_id, {})
    for n in range(2, releases + 1):
        rel = replace(v1, id=f"v{n}", created_at=ledger.utc_now()).sealed()
        rdir = root / "releases" / rel.id
        rdir.mkdir()
        manifest = dump_release(rel)
        (rdir / "release.yaml").write_bytes(manifest)
        os.chmod(rdir / "release.yaml", 0o640)
        for event, extra in (
            ("release", recorded_fields(rel, manifest, commit)),
            ("activate", {"previous": f"v{n - 1}"}),
        ):
            seq += 1
            entry = {"seq": seq, "at": ledger.utc_now(), "event": event, "id": rel.id, **extra}
            lines.append(json.dumps(entry, separators=(",", ":")) + "\n")
    with open(root / "ledger.jsonl", "a") as f:
        f.writelines(lines)
    fsatomic.replace_symlink(root / "current", f"releases/v{releases}")


def timed(root: Path, *args: str) -> float:
    t0 = time.perf_counter()
    done = brr(root, *args, check=False)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"brr-release {' '.join(args)}: {done.stderr.strip()[-300:]}")
    return elapsed


def measure(root: Path, size: int, runs: int, base: Path) -> dict[str, float]:
    out: dict[str, list[float]] = {c: [] for c in COMMANDS}
    for i in range(runs):
        out["releases"].append(timed(root, "releases"))
        out["verify"].append(timed(root, "verify"))
        target = f"v{size - 1}" if i % 2 == 0 and size > 1 else f"v{size}"
        out["activate"].append(timed(root, "activate", target, "--no-signal"))
    timed(root, "activate", f"v{size}", "--no-signal")  # vS current again, for prune
    keep = max(1, size - 10)
    for i in range(runs):
        copy = base / f"prune-{size}-{i}"
        shutil.copytree(root, copy, symlinks=True)
        out["prune"].append(timed(copy, "prune", "--keep", str(keep)))
        shutil.rmtree(copy)
    return {c: bl.median(v) for c, v in out.items()}


def render(
    results: dict[int, dict[str, float]], sizes: list[int], runs: int, note: str = ""
) -> str:
    smallest = min(sizes)
    rows = []
    for size in sizes:
        row = [f"{size:,}"]
        for c in COMMANDS:
            t = results[size][c]
            cell = bl.fmt_seconds(t)
            if size != smallest:
                per = (t - results[smallest][c]) / (size - smallest) * 1e6
                cell += f" ({per:,.0f} us/release)"
            row.append(cell)
        rows.append(row)
    verdicts = []
    big = sorted(sizes)[-2:]
    if len(big) == 2 and big[0] != smallest:
        for c in COMMANDS:
            a, b = (results[s][c] - results[smallest][c] for s in big)
            per_a, per_b = a / (big[0] - smallest), b / (big[1] - smallest)
            if per_a > 0:
                verdicts.append(f"{c} {per_b / per_a:.2f}x")
            else:  # no measurable cost per release at the middle size: flat up to there
                at_b = f"{per_b * 1e6:,.0f} us/release at {big[1]:,}"
                verdicts.append(f"{c} flat to {big[0]:,} ({at_b})")
    text = [
        "## Cost against size: releases, verify, activate, prune",
        "",
        f"`{bl.command_line('bench/ledger_bench.py', sys.argv[1:])}` on {bl.machine_line()}, "
        f"median of {runs} runs of the real `brr-release` (interpreter start-up included). "
        "In parentheses: the marginal cost per release over the smallest root, "
        "(t(S) - t(10)) / (S - 10); constant down a column is linear. "
        f"Load average (1 min) at the end: {os.getloadavg()[0]:.2f}."
        + (f" {note}" if note else ""),
        "",
        bl.table(["releases in the root", *COMMANDS], rows),
    ]
    if verdicts:
        text += [
            "",
            f"Marginal cost per release at {big[1]:,} over that at {big[0]:,} "
            f"(1.00x is linear, above about 1.5x would be worse): {', '.join(verdicts)}.",
        ]
    return "\n".join(text) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10, 100, 1000 releases, 3 runs")
    ap.add_argument("--sizes", help="comma-separated release counts")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--save", action="store_true", help="save even with --quick")
    ap.add_argument("--no-save", action="store_true", help="only print")
    ap.add_argument("--note", default="", help="a sentence added to the section's header")
    args = ap.parse_args(argv)
    sizes = [10, 100, 1000] if args.quick else [10, 100, 1000, 5000]
    if args.sizes:
        sizes = sorted(int(s) for s in args.sizes.split(","))
    runs = args.runs or (3 if args.quick else 5)
    save = not args.no_save and (args.save or not args.quick)
    if not BRR.exists():
        print(f"{BRR} is not installed (make venv)", file=sys.stderr)
        return 1
    # byte-compiled first, as an install from a wheel is: with PYTHONDONTWRITEBYTECODE
    # set, an editable install would otherwise compile its source at every command
    package = bl.REPO / "supervisord_lite"
    subprocess.run(
        [str(bl.VENV_BIN / "python"), "-m", "compileall", "-q", str(package)], timeout=120
    )
    results: dict[int, dict[str, Any]] = {}
    base = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    try:
        for size in sizes:
            root = base / f"root-{size}"
            t0 = time.perf_counter()
            make_root(root, size)
            print(f"{size} releases made in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            results[size] = measure(root, size, runs, base)
            print(f"  {size}: {results[size]}", file=sys.stderr, flush=True)
            shutil.rmtree(root)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    text = render(results, sizes, runs, args.note)
    print(text)
    bl.OUT.mkdir(parents=True, exist_ok=True)
    (bl.OUT / "ledger_bench.json").write_text(json.dumps(results, indent=2) + "\n")
    if save:
        print(f"saved to {bl.save_section('ledger', text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

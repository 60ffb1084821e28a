#!/usr/bin/env python3
"""`brr-release release` and `activate` do not depend on the size of the build (issue 2).

    .venv/bin/python bench/brr_bench.py              # 10 rounds, about a minute
    .venv/bin/python bench/brr_bench.py --runs 3 --no-save

A release only names its build, and activating it moves one symlink, so neither may copy
or walk the build's files: a 20,000-file build must release and activate as fast as a
10-file one. Both builds are made once (their build time is shown, and is expected to
grow with the size); then each round makes one release of each build and activates it,
with the real CLI as a subprocess, the two sizes interleaved so that any drift of the
machine hits both alike. The times include the CLI's start-up, shown apart (`--help`).

Saves its table in the `brr` section of docs/benchmarks.md (unless --no-save) and the
raw times in bench/out/brr_bench.json.
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
import brr_build

BRR = bl.VENV_BIN / "brr-release"
DECLARATION = 'processes: {web: {cmd: "sleep 1000"}}\n'
TIMEOUT = 300.0  # seconds for any one CLI call; a 20,000-file build is the slowest


class CliError(Exception):
    pass


def brr(root: Path, *args: str, json_out: bool = False) -> tuple[float, Any]:
    """Run brr-release; (seconds it took, its parsed JSON or stdout)."""
    argv = [str(BRR), "--root", str(root), *(["--json"] if json_out else []), *args]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CliError(f"`brr-release {' '.join(args)}` took more than {TIMEOUT:g} s") from None
    took = time.perf_counter() - t0
    if done.returncode != 0:
        err = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise CliError(f"`brr-release {' '.join(args)}` failed: {err[:200]}")
    if json_out:
        try:
            return took, json.loads(done.stdout)
        except ValueError:
            raise CliError(
                f"`brr-release {' '.join(args)}`: not JSON: {done.stdout[:80]!r}"
            ) from None
    return took, done.stdout


def make_source(path: Path, files: int) -> None:
    """A source tree of `files` files in all, brr.yaml included, 100 to a directory."""
    path.mkdir(parents=True)
    (path / "brr.yaml").write_text(DECLARATION)
    for i in range(files - 1):
        sub = path / "pkg" / f"d{i // 100:03d}"
        if i % 100 == 0:
            sub.mkdir(parents=True)
        (sub / f"m{i:05d}.py").write_text(f"VALUE = {i}\n")


def run_bench(base: Path, sizes: list[int], runs: int) -> dict[str, Any]:
    root = base / "root"
    brr(root, "init")
    startup = [brr(root, "--help")[0] for _ in range(5)]
    builds: dict[int, dict[str, Any]] = {}
    for files in sizes:
        src = base / f"src-{files}"
        make_source(src, files)
        took, out = brr(root, "build", str(src), json_out=True)
        builds[files] = {"id": out["id"], "build_s": took, "release_s": [], "activate_s": []}
        print(f"  build of {files} files: {took:.2f} s ({out['id']})", file=sys.stderr)
    for i in range(runs):
        for files in sizes if i % 2 == 0 else reversed(sizes):
            b = builds[files]
            took, out = brr(root, "release", "--build", b["id"], json_out=True)
            b["release_s"].append(took)
            if out.get("build") != b["id"]:
                raise CliError(f"release {out.get('id')} names build {out.get('build')}")
            took, _ = brr(root, "activate", out["id"], "--no-signal")
            b["activate_s"].append(took)
            if (root / "current").resolve().name != out["id"]:
                raise CliError(f"activate {out['id']} did not move `current`")
    return {"startup_s": startup, "builds": builds}


def render(result: dict[str, Any], sizes: list[int], runs: int) -> str:
    builds = result["builds"]
    ms = lambda v: bl.fmt_ms(v * 1000)  # noqa: E731
    rows = []
    for files in sizes:
        b = builds[files]
        both = [r + a for r, a in zip(b["release_s"], b["activate_s"], strict=True)]
        rows.append(
            [
                f"{files:,} files",
                bl.fmt_seconds(b["build_s"]),
                ms(bl.median(b["release_s"])),
                ms(bl.percentile(b["release_s"], 90)),
                ms(bl.median(b["activate_s"])),
                ms(bl.percentile(b["activate_s"], 90)),
                ms(bl.median(both)),
            ]
        )
    small, large = builds[sizes[0]], builds[sizes[-1]]
    ratios = []
    for key in ("release_s", "activate_s"):
        ratios += [
            bl.fmt_ratio(bl.median(large[key]), bl.median(small[key])),
            bl.fmt_ratio(bl.percentile(large[key], 90), bl.percentile(small[key], 90)),
        ]
    both_s = [r + a for r, a in zip(small["release_s"], small["activate_s"], strict=True)]
    both_l = [r + a for r, a in zip(large["release_s"], large["activate_s"], strict=True)]
    total_ratio = bl.median(both_l) / bl.median(both_s)
    rows.append(
        [
            f"ratio {sizes[-1]:,} / {sizes[0]:,}",
            bl.fmt_ratio(large["build_s"], small["build_s"]),
            *ratios,
            bl.fmt_ratio(bl.median(both_l), bl.median(both_s)),
        ]
    )
    verdict = "holds" if total_ratio <= 1.5 else "DOES NOT hold"
    header = [
        "build",
        "build (once)",
        "release median",
        "p90",
        "activate --no-signal median",
        "p90",
        "release + activate median",
    ]
    return (
        "\n".join(
            [
                "## brr-release: release and activate whatever the size of the build",
                "",
                f"`{' '.join(['bench/brr_bench.py', *sys.argv[1:]])}` on {bl.machine_line()}; "
                f"{runs} releases + activations of each build through the real CLI, the sizes "
                "interleaved. Times include the CLI's start-up: `brr-release --help` takes "
                f"{bl.fmt_ms(bl.median(result['startup_s']) * 1000)} (median of 5).",
                "",
                bl.table(header, rows),
                "",
                f"The claim (release and activation take the same time for a {sizes[0]:,}-file "
                f"and a {sizes[-1]:,}-file build) {verdict}: the medians differ by "
                f"{(total_ratio - 1) * 100:+.0f}%.",
            ]
        )
        + "\n"
    )


def run_build_section(which: str, files: int, rounds: int, *, save: bool) -> int:
    """The build section (brr_build.py): build against git's floor, or the build cache."""
    base = Path(tempfile.mkdtemp(prefix="brr-bench-build-"))
    try:
        if which == "build":
            src = base / "src"
            make_source(src, files)
            text = brr_build.render_build(brr_build.run_build(base, src, max(1, rounds)), files)
        else:
            text = brr_build.render_cache(brr_build.run_cache(base))
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"brr_bench: {which}: {exc}", file=sys.stderr)
        return 1
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)
    print(text)
    if save:
        print(f"saved to {bl.save_section('brr-' + which, text)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="releases + activations of each build")
    ap.add_argument("--files", default="10,20000", help="build sizes, comma-separated")
    ap.add_argument("--no-save", action="store_true", help="only print")
    ap.add_argument("--only", choices=["release", "build", "cache"], help="run one section")
    ap.add_argument("--build-rounds", type=int, default=5, help="rounds of the build section")
    args = ap.parse_args(argv)
    sizes = sorted(int(x) for x in args.files.split(","))
    runs = max(1, min(args.runs, 1000))
    if not BRR.exists():
        print(f"brr_bench: {BRR} is not installed (make venv)", file=sys.stderr)
        return 1
    if args.only in ("build", "cache"):
        return run_build_section(args.only, sizes[-1], args.build_rounds, save=not args.no_save)
    base = Path(tempfile.mkdtemp(prefix="brr-bench-"))
    t_start = time.monotonic()
    try:
        result = run_bench(base, sizes, runs)
        if args.only is None:
            # before this section's trees are removed: on ext4 without a journal, files
            # created within a minute of a removal are slower (the allocator skips the
            # inodes just freed), and removing 20,000 files right before the build
            # section made every build of it, ours, the old one and git's, pay for that
            run_build_section("build", sizes[-1], args.build_rounds, save=not args.no_save)
    except CliError as exc:
        print(f"brr_bench: {exc}", file=sys.stderr)
        return 1
    finally:
        # builds are frozen read-only: give write access back before removing
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)
    text = render(result, sizes, runs)
    print(text)
    print(f"(bench took {time.monotonic() - t_start:.0f} s)", file=sys.stderr)
    bl.OUT.mkdir(parents=True, exist_ok=True)
    (bl.OUT / "brr_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_save:
        print(f"saved to {bl.save_section('brr', text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

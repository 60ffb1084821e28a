"""The build section of bench/brr_bench.py (issues 13 and 16).

    .venv/bin/python bench/brr_bench.py --only build            # 20,000 files, 5 rounds
    .venv/bin/python bench/brr_bench.py --only cache            # pip with and without the cache

Build: the same 20,000-file tree built by today's `brr-release build`, by the one before
the rework (its code taken from git at BASELINE and run from a temp directory), and
hashed by `git add -A && git write-tree` in a fresh repository (the floor: git reads and
hashes every file and writes an object of each). Each round runs the three in turn (the
two builds in alternating order), each into a fresh root, and nothing is removed until
the last round is done, so any drift of the machine hits all alike; then an unchanged
tree is rebuilt (found by its digest, nothing copied). The machine is shared: the load average
is printed beside the figures.

Cache: a Django + Flask app vendored by `pip install --target` in a build step, built
with an empty BRR_BUILD_CACHE and then again after a change to the app's own code (the
requirements unchanged); and the same with a step that keeps the vendored tree in the
cache keyed by the requirements' hash (docs/builds.md). pip needs its package index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import benchlib as bl

BASELINE = "d3d058d"  # the last commit before the build rework
TIMEOUT = 900.0
REQUIREMENTS = "django==5.1.4\nflask==3.1.0\nrequests==2.32.3\n"
PIP = "{py} -m pip install -q --target vendor -r requirements.txt"
KEYED = (
    'key=$(sha256sum requirements.txt | cut -c1-16); d="$BRR_BUILD_CACHE/vendor-$key"; '
    'test -d "$d" || {py} -m pip install -q --target "$d" -r requirements.txt; cp -a "$d" vendor'
)


def timed(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    # every build ends in syncfs, which writes back whatever is dirty on the filesystem:
    # without this, a build would pay for the tree the one before it left in memory
    os.sync()
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        err = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise RuntimeError(f"`{' '.join(argv[-3:])}` failed: {err[:200]}")
    return took


def baseline_cli(base: Path) -> list[str]:
    """A command that runs brr-release as of BASELINE (its package, our interpreter)."""
    tree = base / "baseline"
    tree.mkdir()
    data = subprocess.run(
        ["git", "-C", str(bl.REPO), "archive", BASELINE, "supervisord_lite"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(tree, filter="data")
    code = (
        f"import sys; sys.path.insert(0, {str(tree)!r}); "
        "from supervisord_lite.brr.cli import main; sys.exit(main())"
    )
    return [sys.executable, "-c", code]


def git_floor(src: Path, work: Path) -> float:
    shutil.copytree(src, work, symlinks=True)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    return timed(["sh", "-c", "git add -A && git write-tree >/dev/null"], cwd=work)


def remove(path: Path) -> None:
    subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
    shutil.rmtree(path, ignore_errors=True)


def run_build(base: Path, src: Path, rounds: int) -> dict[str, Any]:
    ours = [str(bl.VENV_BIN / "brr-release")]
    before = baseline_cli(base)
    out: dict[str, Any] = {"ours": [], "baseline": [], "git": [], "rebuild": [], "load": []}
    made: list[Path] = []
    for i in range(rounds):
        out["load"].append(os.getloadavg()[0])
        # the first build of a round creates its files where the disk is as the previous
        # round left it: who goes first alternates, so neither always pays for that
        pair = (("baseline", before), ("ours", ours))
        for name, cli in pair if i % 2 == 0 else pair[::-1]:
            root = base / f"root-{name}-{i}"
            subprocess.run([*cli, "--root", str(root), "init"], check=True, capture_output=True)
            out[name].append(timed([*cli, "--root", str(root), "build", str(src)]))
            if name == "ours":
                out["rebuild"].append(timed([*cli, "--root", str(root), "build", str(src)]))
        out["git"].append(git_floor(src, base / f"git-{i}"))
        made += [base / f"root-baseline-{i}", base / f"root-ours-{i}", base / f"git-{i}"]
        print(
            f"  round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in out.items()),
            file=sys.stderr,
        )
    # removed only now: on ext4 without a journal, a file created within minutes of a
    # removal is slower (the allocator skips the inodes just freed, scanning past them),
    # and removing a round's 60,000 files before the next round made the builds of the
    # next round, the first one most, pay for it
    for done in made:
        remove(done)
    return out


def render_build(result: dict[str, Any], files: int) -> str:
    med = {k: bl.median(v) for k, v in result.items()}
    rows = [
        ["`git add -A && git write-tree` (the floor)", bl.fmt_seconds(med["git"]), "1.00x", ""],
        [
            "brr-release build, before the rework",
            bl.fmt_seconds(med["baseline"]),
            bl.fmt_ratio(med["baseline"], med["git"]),
            "1.00x",
        ],
        [
            "brr-release build, now",
            bl.fmt_seconds(med["ours"]),
            bl.fmt_ratio(med["ours"], med["git"]),
            bl.fmt_ratio(med["ours"], med["baseline"]),
        ],
        [
            "unchanged tree rebuilt, now (no copy)",
            bl.fmt_seconds(med["rebuild"]),
            bl.fmt_ratio(med["rebuild"], med["git"]),
            bl.fmt_ratio(med["rebuild"], med["baseline"]),
        ],
    ]
    verdict = "met" if med["ours"] <= 0.4 * med["baseline"] else "NOT met"
    loads = ", ".join(f"{x:.1f}" for x in result["load"])
    return (
        "\n".join(
            [
                f"## brr-release build: {files:,} files against git's floor",
                "",
                f"`bench/brr_bench.py --only build` on {bl.machine_line()}; median of "
                f"{len(result['ours'])} rounds, each a fresh root; load average at each "
                f"round's start: {loads} (the machine may be shared: compare figures of the "
                "same run only).",
                "",
                bl.table(["what", "median", "vs git", "vs before"], rows),
                "",
                f"The aim (a build at most 0.40x of the time before the rework) is {verdict} "
                "in this run.",
            ]
        )
        + "\n"
    )


def run_cache(base: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, step in (("pip", PIP), ("keyed", KEYED)):
        src = base / f"app-{name}"
        src.mkdir()
        (src / "requirements.txt").write_text(REQUIREMENTS)
        (src / "app.py").write_text("VERSION = 1\n")
        (src / "brr.yaml").write_text(
            f"build:\n  - '{step.format(py=sys.executable)}'\nprocesses:\n  web: sleep 1000\n"
        )
        root = base / f"root-{name}"
        brr = str(bl.VENV_BIN / "brr-release")
        subprocess.run([brr, "--root", str(root), "init"], check=True, capture_output=True)
        out[f"{name}_cold"] = timed([brr, "--root", str(root), "build", str(src)])
        (src / "app.py").write_text("VERSION = 2\n")
        out[f"{name}_warm"] = timed([brr, "--root", str(root), "build", str(src)])
        print(
            f"  {name}: cold {out[f'{name}_cold']:.2f} s, warm {out[f'{name}_warm']:.2f} s",
            file=sys.stderr,
        )
    return out


def render_cache(r: dict[str, float]) -> str:
    rows = [
        [
            "`pip install --target vendor -r requirements.txt`",
            bl.fmt_seconds(r["pip_cold"]),
            bl.fmt_seconds(r["pip_warm"]),
            bl.fmt_ratio(r["pip_warm"], r["pip_cold"]),
        ],
        [
            "the same, vendored tree kept in the cache by the requirements' hash",
            bl.fmt_seconds(r["keyed_cold"]),
            bl.fmt_seconds(r["keyed_warm"]),
            bl.fmt_ratio(r["keyed_warm"], r["keyed_cold"]),
        ],
    ]
    return (
        "\n".join(
            [
                "## brr-release build: a rebuild with the build cache",
                "",
                f"`bench/brr_bench.py --only cache` on {bl.machine_line()}, load average "
                f"{os.getloadavg()[0]:.1f}. An app whose build step vendors "
                f"{REQUIREMENTS.strip().replace(chr(10), ', ')}; built once with an empty "
                "BRR_BUILD_CACHE "
                "(cold), then again after a change to the app's code (warm: same requirements).",
                "",
                bl.table(["build step", "cold", "warm", "warm / cold"], rows),
            ]
        )
        + "\n"
    )

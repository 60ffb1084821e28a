"""brr-release under concurrency and SIGKILL: nothing lost, nothing half-done."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

from supervisord_lite.brr.maintenance import verify
from supervisord_lite.layout import DeployRoot
from supervisord_lite.manifest import load_release
from tests.helpers import BRR, brr_json, run_brr


def spawn(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [BRR, "--root", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_twenty_concurrent_releases_get_twenty_ids(root: Path, app: Path) -> None:
    bid = brr_json(root, "build", str(app))["id"]
    procs = [spawn(root, "--json", "release", "--build", bid, "--set", f"N={i}") for i in range(20)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, [o[1] for o in outs]
    ids = sorted(json.loads(o[0])["id"] for o in outs)
    assert ids == sorted(f"v{n}" for n in range(1, 21))
    lines = (root / "ledger.jsonl").read_text().splitlines()
    releases = [json.loads(line) for line in lines if '"release"' in line]
    assert sorted(e["id"] for e in releases) == ids
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, len(lines) + 1))
    seen_n = set()
    d = DeployRoot(root)
    for rid in ids:
        seen_n.add(load_release(d.release_manifest(rid), builds_dir=d.builds).config["N"])
    assert seen_n == {str(i) for i in range(20)}, "every writer's config landed in its own release"


def check_invariants(root: Path) -> None:
    d = DeployRoot(root)
    report = verify(d)
    assert not report.problems, report.problems
    current = d.current_release_id()
    assert current is not None, f"current -> {os.readlink(d.current)!r}"
    load_release(d.release_manifest(current), builds_dir=d.builds)
    for entry in d.releases.iterdir():
        assert entry.name in d.release_ids() or entry.name.startswith(".tmp-"), entry.name
    # every ledger line but a torn tail parses
    raw = (root / "ledger.jsonl").read_bytes()
    for line in raw.split(b"\n")[:-1]:
        json.loads(line)


def test_sigkill_at_random_moments_leaves_a_consistent_root(root: Path, app: Path) -> None:
    seed = int(os.environ.get("FAULT_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    bid = brr_json(root, "build", str(app))["id"]
    run_brr(root, "release", "--build", bid, "--activate")
    t0 = time.monotonic()
    run_brr(root, "release", "--build", bid, "--set", "WARM=1")
    typical = max(time.monotonic() - t0, 0.2)
    killed = 0
    for i in range(50):
        ids = DeployRoot(root).release_ids()
        if i % 2 == 0:
            proc = spawn(root, "release", "--build", bid, "--set", f"RUN={i}", "--activate")
        else:
            proc = spawn(root, "activate", rng.choice(ids))
        try:
            proc.wait(timeout=rng.uniform(0.0, typical * 1.2))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.communicate(timeout=60)
        check_invariants(root)
    assert killed >= 10, f"seed {seed}: only {killed} of 50 runs were killed mid-way"
    # the next commands work and take a fresh, never-used ID
    before = max(int(r[1:]) for r in DeployRoot(root).release_ids())
    out = brr_json(root, "release", "--build", bid, "--activate")
    assert int(out["id"][1:]) > before
    assert os.readlink(root / "current") == f"releases/{out['id']}"
    assert brr_json(root, "verify")["ok"] is True
    leftovers = [p.name for p in (root / "releases").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == [], f"seed {seed}: stale temps survived the next writer: {leftovers}"

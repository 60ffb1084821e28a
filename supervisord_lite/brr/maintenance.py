"""Keeping a root healthy: `prune` what is no longer needed, `verify` what is kept.

Prune never removes `current`, nor the release that was active before it (the one a
plain `rollback` goes to), and removes a build only when no remaining release uses it.
Each directory is first renamed to a temp name and then deleted, so a crash mid-prune
leaves a temp directory (removed by the next writer), never half a release.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from supervisord_lite import fsatomic, ledger, twin
from supervisord_lite.brr.activate import previous_active
from supervisord_lite.brr.build import load_build_meta
from supervisord_lite.brr.digest import build_id_for, tree_digest
from supervisord_lite.errors import BadInput, BrrError
from supervisord_lite.layout import DeployRoot
from supervisord_lite.manifest import load_release
from supervisord_lite.nofollow import PlantedLink


def prune(root: DeployRoot, keep: int) -> dict[str, Any]:
    """Caller holds the lock."""
    if keep < 1:
        raise BadInput("prune --keep must be at least 1")
    ids = root.release_ids()
    protected = set(ids[-keep:])
    for rid in (root.current_release_id(), previous_active(root)):
        if rid:
            protected.add(rid)
    removed = [rid for rid in ids if rid not in protected]
    for rid in removed:
        fsatomic.remove_tree(root.release_dir(rid))
    used: set[str] = set()
    for rid in root.release_ids():
        try:
            used.add(load_release(root.release_manifest(rid)).build)
        except BrrError:
            # an unreadable release may still name a build: keep every build then
            used.update(root.build_ids())
    builds = [b for b in root.build_ids() if b not in used]
    for bid in builds:
        fsatomic.remove_tree(root.build_dir(bid))
    fsatomic.remove_stale_temps(root.builds)
    fsatomic.remove_stale_temps(root.releases)
    ledger.append(
        root.ledger, "prune", root.current_release_id() or "", releases=removed, builds=builds
    )
    return {"releases": removed, "builds": builds, "kept": sorted(protected)}


@dataclass
class VerifyReport:
    builds: int = 0
    releases: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_data(self) -> dict[str, Any]:
        return {
            "ok": not self.problems,
            "builds": self.builds,
            "releases": self.releases,
            "problems": self.problems,
            "notes": self.notes,
        }


def verify(root: DeployRoot) -> VerifyReport:
    report = VerifyReport()
    verify_builds(root, report)
    report.problems.extend(planted_links(root))
    try:
        state = ledger.read_ledger(root.ledger, strict=False)
    except PlantedLink:
        return report  # named by planted_links; nothing in it can be read safely
    if state.damage:
        report.problems.append(f"ledger: {state.damage} (writers refuse until it is repaired)")
    if state.torn:
        # only a power loss tears a line; the next writer cuts it off, nothing is lost
        report.notes.append("ledger.jsonl: torn last line (repaired by the next write)")
    recorded = ledger.release_digests(state.entries)
    unrecorded: list[str] = []
    for rid in root.release_ids():
        report.releases += 1
        try:
            path = root.release_manifest(rid)
            release = load_release(path, builds_dir=root.builds, use_twin=False)
            if load_release(path) != release:  # the twin the daemon would take says otherwise
                report.problems.append(
                    f"release {rid}: {twin.NAME} names release.yaml's bytes but holds other "
                    "data (forged; the daemon would run it): delete it"
                )
        except BrrError as exc:
            report.problems.append(f"release {rid}: {exc}")
            continue
        if rid not in recorded:
            unrecorded.append(rid)
        elif recorded[rid] != release.digest:
            report.problems.append(
                f"release {rid}: release.yaml has digest {release.digest[:19]}..., the ledger "
                f"recorded {recorded[rid][:19]}... (changed after release)"
            )
    if unrecorded:
        report.notes.append(f"no digest in the ledger for {', '.join(unrecorded)} (older releases)")
    if os.path.lexists(root.current) and root.current_release_id() is None:
        report.problems.append(
            "current: does not resolve to a complete release in releases/ of this root"
        )
    return report


def planted_links(root: DeployRoot) -> list[str]:
    """Symlinks where the root has a file or directory of its own: each one a problem,
    since every writer refuses it (nofollow.py). `current` and `run/last-good` are
    symlinks by design and are checked as releases instead."""
    names = [root.ledger, root.logs, root.lock_file, root.run_dir / "daemon.lock"]
    if root.logs.is_dir() and not root.logs.is_symlink():
        names += sorted(p for p in root.logs.iterdir() if p.name.endswith(".log"))
    return [f"{p}: a symlink where a file or directory belongs" for p in names if p.is_symlink()]


def verify_builds(root: DeployRoot, report: VerifyReport) -> None:
    for bid in root.build_ids():
        report.builds += 1
        try:
            info = load_build_meta(root, bid)
            actual = tree_digest(root.build_app(bid), info.digest_format)
        except (BrrError, OSError) as exc:
            report.problems.append(f"build {bid}: {exc}")
            continue
        if actual != info.digest or build_id_for(actual) != bid:
            report.problems.append(
                f"build {bid}: app/ does not match its digest (changed after build)"
            )

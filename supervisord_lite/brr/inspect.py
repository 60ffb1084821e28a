"""Read-only views of releases: one release, the difference between two (the list of
them all is listing.py).

Config values are secrets until shown on purpose: every view masks them unless the
operator passes `--show-values`; the ledger never holds them at all.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from supervisord_lite import ledger, refusals
from supervisord_lite.errors import BadInput
from supervisord_lite.layout import DeployRoot, check_release_id
from supervisord_lite.manifest import Release, load_release

MASK = "*****"


def load(root: DeployRoot, release_id: str) -> Release:
    check_release_id(release_id)
    if not root.release_dir(release_id).is_dir():
        raise BadInput(f"no such release: {release_id}")
    return load_release(root.release_manifest(release_id))


def summary(
    release: Release,
    current: str | None,
    refused: dict[str, str],
    commit: str | None = None,
) -> dict[str, Any]:
    return {
        "id": release.id,
        "created_at": release.created_at,
        "build": release.build,
        "commit": commit,
        "config_keys": sorted(release.config),
        "formation": release.formation(),
        "current": release.id == current,
        "refused": refused.get(release.id),
    }


def refused_releases(root: DeployRoot) -> dict[str, str]:
    """Release ID -> why the daemon refused it (refusals.py)."""
    return refusals.refused_releases(root, ledger.read_ledger(root.ledger).entries)


def show(root: DeployRoot, release_id: str, *, show_values: bool) -> dict[str, Any]:
    release = load(root, release_id)
    data = release.body()
    data["digest"] = release.digest
    from supervisord_lite.brr.build import build_commit

    data["commit"] = build_commit(root, release.build, {})
    data["config"] = masked(release.config, show_values)
    data["current"] = release.id == root.current_release_id()
    data["refused"] = refused_releases(root).get(release.id)
    return data


def masked(config: dict[str, str], show_values: bool) -> dict[str, str]:
    return dict(config) if show_values else dict.fromkeys(config, MASK)


def diff(root: DeployRoot, a: str, b: str, *, show_values: bool) -> dict[str, Any]:
    ra, rb = load(root, a), load(root, b)
    config: dict[str, Any] = {}
    for key in sorted(set(ra.config) | set(rb.config)):
        old, new = ra.config.get(key), rb.config.get(key)
        if old == new:
            continue
        if not show_values:
            old = None if old is None else MASK
            new = None if new is None else MASK
        config[key] = {"from": old, "to": new}
    formation: dict[str, Any] = {}
    for name in sorted(set(ra.processes) | set(rb.processes)):
        fa, fb = ra.processes.get(name), rb.processes.get(name)
        if fa != fb:
            formation[name] = {
                "from": fa.scale if fa else None,
                "to": fb.scale if fb else None,
                "spec_changed": bool(fa and fb and replace(fa, scale=0) != replace(fb, scale=0)),
            }
    return {
        "from": a,
        "to": b,
        "build": None if ra.build == rb.build else {"from": ra.build, "to": rb.build},
        "config": config,
        "formation": formation,
    }


def format_show(data: dict[str, Any]) -> str:
    lines = [
        f"release {data['id']}{' (current)' if data['current'] else ''}",
        f"  created_at: {data['created_at']}",
        f"  build:      {data['build']}",
        f"  commit:     {data.get('commit') or 'unknown (not built from a git work tree)'}",
        f"  switch:     {data['switch']}",
        f"  digest:     {data['digest']}",
    ]
    if data.get("refused"):
        lines.append(f"  refused:    {data['refused']}")
    if data.get("release_command"):
        lines.append(f"  release_command: {data['release_command']}")
    lines.append("  config:" + ("" if data["config"] else " (none)"))
    lines += [f"    {k}={v}" for k, v in data["config"].items()]
    lines.append("  processes:")
    for name, p in data["processes"].items():
        lines.append(f"    {name} x{p['scale']}: {p['cmd']}")
    return "\n".join(lines)


def format_diff(data: dict[str, Any]) -> str:
    lines = [f"{data['from']} -> {data['to']}"]
    b = data["build"]
    lines.append(f"  build: {b['from']} -> {b['to']}" if b else "  build: unchanged")
    if not data["config"]:
        lines.append("  config: unchanged")
    for key, ch in data["config"].items():
        if ch["from"] is None:
            lines.append(f"  config + {key}={ch['to']}")
        elif ch["to"] is None:
            lines.append(f"  config - {key}")
        else:
            lines.append(f"  config ~ {key}: {ch['from']} -> {ch['to']}")
    if not data["formation"]:
        lines.append("  formation: unchanged")
    for name, ch in data["formation"].items():
        note = " (spec changed)" if ch["spec_changed"] else ""
        lines.append(f"  formation {name}: {ch['from']} -> {ch['to']}{note}")
    return "\n".join(lines)

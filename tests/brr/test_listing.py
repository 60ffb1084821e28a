"""`brr-release releases` from the ledger's `release` lines (brr/listing.py): the same list
as parsing every manifest, and the manifest's word wherever the line does not fit it."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from supervisord_lite.brr import listing
from supervisord_lite.layout import DeployRoot
from supervisord_lite.manifest import dump_release, load_release
from tests.helpers import brr_json, run_brr

NEW_FIELDS = ("created_at", "commit", "manifest_blake2b")


def git(src: Path, *args: str) -> None:
    cmd = ["git", "-C", str(src), "-c", "user.email=t@t", "-c", "user.name=t", *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def ledger_lines(root: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (root / "ledger.jsonl").read_text().splitlines()]


def write_ledger(root: Path, entries: list[dict[str, object]]) -> None:
    text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries)
    (root / "ledger.jsonl").write_text(text)


def listed(root: Path) -> tuple[dict[str, object], str]:
    return brr_json(root, "releases"), run_brr(root, "releases").stdout


def several_releases(root: Path, app: Path) -> None:
    """v1..v4 of a build made from a git commit: config, scale, v2 current, v3 refused."""
    git(app, "init", "-q")
    git(app, "add", "-A")
    git(app, "commit", "-qm", "first")
    bid = brr_json(root, "build", str(app))["id"]
    run_brr(root, "release", "--build", bid, "--set", "A=1")
    run_brr(root, "config", "set", "B=2")
    run_brr(root, "scale", "web=3", "worker=0")
    run_brr(root, "config", "unset", "A")
    run_brr(root, "activate", "v3", "--no-signal")
    run_brr(root, "activate", "v2", "--no-signal")
    entries = ledger_lines(root)
    seq = int(str(entries[-1]["seq"]))
    refusal = {"seq": seq + 1, "at": "2030-01-01T00:00:00.000000Z", "event": "activate_failed"}
    write_ledger(root, [*entries, {**refusal, "id": "v3", "reason": "web.1 exited 1"}])


def test_the_list_from_the_ledger_is_the_list_from_the_manifests(root: Path, app: Path) -> None:
    several_releases(root, app)
    entries = ledger_lines(root)
    made = [e for e in entries if e["event"] == "release"]
    assert len(made) == 4 and all(set(NEW_FIELDS) <= set(e) for e in made)
    from_ledger, text = listed(root)
    rows = {r["id"]: r for r in from_ledger["releases"]}  # type: ignore[attr-defined]
    assert rows["v4"]["formation"] == {"web": 3, "worker": 0} and rows["v4"]["config_keys"] == ["B"]
    assert rows["v2"]["current"] and rows["v3"]["refused"] == "web.1 exited 1"
    assert all(len(str(r["commit"])) == 12 for r in rows.values())
    assert "refused: web.1 exited 1" in text and "* v2" in text
    # the same root as a version before these fields wrote it: every manifest is parsed
    write_ledger(root, [old_style(e) for e in entries])
    assert listed(root) == (from_ledger, text)


def old_style(entry: dict[str, object]) -> dict[str, object]:
    if entry["event"] != "release":
        return entry
    return {k: v for k, v in entry.items() if k not in NEW_FIELDS}


def reseal(root: Path, rid: str, **changes: object) -> None:
    """Rewrite releases/<rid>/release.yaml, valid and sealed again, with changes."""
    path = root / "releases" / rid / "release.yaml"
    path.write_bytes(dump_release(replace(load_release(path), **changes).sealed()))  # type: ignore[arg-type]


def test_a_manifest_changed_after_its_line_is_listed_as_the_manifest_says(
    root: Path, app: Path
) -> None:
    several_releases(root, app)
    reseal(root, "v4", created_at="2001-01-01T00:00:00.000000Z")
    (root / "releases" / "v1" / "release.yaml").write_text("schema: 1\nid: [\n")
    data, text = listed(root)
    rows = {r["id"]: r for r in data["releases"]}  # type: ignore[attr-defined]
    assert rows["v4"]["created_at"] == "2001-01-01T00:00:00.000000Z"
    assert rows["v1"]["error"].startswith(str(root / "releases" / "v1" / "release.yaml"))
    assert "not valid YAML" in rows["v1"]["error"]
    assert "  v1     unreadable: " in text
    assert rows["v2"]["formation"] == {"web": 2, "worker": 1}  # the others as before


FORGED = {
    "formation": {"web\x1b[2J": 3},
    "created_at": "\x1b]0;owned\x07",
    "commit": "abc\nforged line",
    "config_keys": ["B", "A\x1b"],
    "build": "b-../../etc",
}


@pytest.mark.parametrize("field", sorted(FORGED))
def test_a_forged_line_shows_nothing_a_manifest_could_not(
    root: Path, app: Path, field: str
) -> None:
    several_releases(root, app)
    entries = ledger_lines(root)
    for e in entries:
        if e["event"] == "release" and e["id"] == "v4":
            e[field] = FORGED[field]  # the hash still fits the manifest: the checks must not
    write_ledger(root, entries)
    data, text = listed(root)
    assert "\x1b" not in text and "forged" not in text and "../" not in text
    v4 = data["releases"][0]  # type: ignore[index]
    assert v4["id"] == "v4" and v4["formation"] == {"web": 3, "worker": 0}
    assert v4["config_keys"] == ["B"] and len(v4["commit"]) == 12


def test_manifests_are_read_without_following_a_link_or_waiting_on_a_fifo(
    root: Path, app: Path, tmp_path: Path
) -> None:
    bid = brr_json(root, "build", str(app))["id"]
    for _ in range(3):
        run_brr(root, "release", "--build", bid)
    v1 = root / "releases" / "v1" / "release.yaml"
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_bytes(v1.read_bytes())
    v1.unlink()
    v1.symlink_to(elsewhere)
    v2 = root / "releases" / "v2" / "release.yaml"
    v2.unlink()
    os.mkfifo(v2)
    fd = listing.open_releases(DeployRoot(root))
    assert fd is not None
    try:
        assert listing.read_manifest(fd, "v1") is None
        assert listing.read_manifest(fd, "v2") is None
        assert listing.read_manifest(fd, "v3") == (root / "releases/v3/release.yaml").read_bytes()
    finally:
        os.close(fd)
    rows = {r["id"]: r for r in brr_json(root, "releases")["releases"]}
    assert "error" in rows["v2"] and "error" not in rows["v3"]

"""release.json, the JSON twin of release.yaml (twin.py): written by every release, read
only when made of release.yaml's very bytes, reported by `verify` when forged."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest

from supervisord_lite import twin
from supervisord_lite.manifest import compute_digest, load_release
from supervisord_lite.schema import load_yaml
from tests.helpers import run_brr


@pytest.fixture
def released(root: Path, app: Path) -> Path:
    """A root with release v1 of the app, made by the real CLI; its release.yaml."""
    build = json.loads(run_brr(root, "--json", "build", str(app)).stdout)["id"]
    run_brr(root, "release", "--build", build)
    return root / "releases" / "v1" / "release.yaml"


def with_scale(data: dict[str, object], scale: int) -> dict[str, object]:
    """data with every process at scale, resealed: a release nobody made."""
    changed = json.loads(json.dumps(data))
    for spec in changed["processes"].values():
        spec["scale"] = scale
    changed["digest"] = compute_digest({k: v for k, v in changed.items() if k != "digest"})
    return changed


def test_every_release_has_a_twin_holding_the_yaml_data(released: Path) -> None:
    found = json.loads(released.with_name(twin.NAME).read_bytes())
    assert found["release"] == load_yaml(released.read_bytes(), "release.yaml")
    assert oct(released.with_name(twin.NAME).stat().st_mode & 0o777) == oct(
        released.stat().st_mode & 0o777
    )
    assert load_release(released) == load_release(released, use_twin=False)


def test_a_hand_edit_of_release_yaml_is_read_not_the_stale_twin(released: Path) -> None:
    """A twin of other bytes is not used: what release.yaml says runs."""
    data = load_yaml(released.read_bytes(), "release.yaml")
    edited = with_scale(data, 3)
    released.write_text(json.dumps(edited))  # JSON is YAML: a hand edit, resealed
    assert {p.scale for p in load_release(released).processes.values()} == {3}


@pytest.mark.parametrize(
    "plant",
    [
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),  # torn
        lambda p: p.write_bytes(b"\xff\xfe not json"),
        lambda p: p.write_bytes(b"[" * 200_000),  # nested past the recursion limit
        lambda p: (p.unlink(), os.mkfifo(p)),  # would block a reader for good
        lambda p: (p.unlink(), p.mkdir()),
        lambda p: p.unlink(),
    ],
    ids=["torn", "not-utf8", "nested", "fifo", "directory", "absent"],
)
def test_a_broken_twin_falls_back_to_the_yaml(released: Path, plant: object) -> None:
    expected = load_release(released, use_twin=False)
    plant(released.with_name(twin.NAME))  # type: ignore[operator]
    assert load_release(released) == expected


def test_verify_names_a_forged_twin(root: Path, released: Path) -> None:
    """A twin with the hash of the real release.yaml but other data: the daemon would run
    it, so `verify` fails, naming the release and the file."""
    assert run_brr(root, "verify").returncode == 0
    path = released.with_name(twin.NAME)
    found = json.loads(path.read_bytes())
    found["release"] = with_scale(found["release"], 7)
    path.write_text(json.dumps(found))
    assert {p.scale for p in load_release(released).processes.values()} == {7}
    done = run_brr(root, "verify", check=False)
    assert done.returncode != 0
    assert "release v1: release.json names release.yaml's bytes but holds other data" in (
        done.stdout + done.stderr
    )


@pytest.mark.parametrize(
    "data", [{1: "a"}, {"when": date(2026, 12, 6)}, {"x": float("nan")}, {"t": (1, 2)}]
)
def test_no_twin_when_json_would_not_carry_the_data_exactly(data: object) -> None:
    assert twin.make(b"x: 1\n", data) is None


def test_a_twin_is_read_only_for_the_bytes_it_was_made_of() -> None:
    made = twin.make(b"a: 1\n", {"a": 1})
    assert made is not None
    assert twin.read(made, b"a: 1\n") == {"a": 1}
    assert twin.read(made, b"a: 1\n# a comment\n") is None

"""build/release export and import, --if-changed, and `brr-release status`, end to end."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path

from tests.helpers import BRR, brr_json, run_brr


def ledger(root: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (root / "ledger.jsonl").read_text().splitlines()]


def other_root(tmp_path: Path, name: str = "host") -> Path:
    r = tmp_path / name
    run_brr(r, "init")
    return r


def exported(root: Path, app: Path, tmp_path: Path) -> tuple[str, Path]:
    bid = str(brr_json(root, "build", str(app))["id"])
    archive = tmp_path / f"{bid}.tar.gz"
    run_brr(root, "build", "export", bid, "-o", str(archive))
    return bid, archive


def test_build_travels_with_its_id_digest_and_a_ledger_line(
    root: Path, app: Path, tmp_path: Path
) -> None:
    bid, archive = exported(root, app, tmp_path)
    host = other_root(tmp_path)
    done = brr_json(host, "build", "import", str(archive))
    assert done["id"] == bid and done["reused"] is False and done["imported"] is True
    assert (host / "builds" / bid / "app" / "built.txt").read_text() == "built\n"
    assert run_brr(host, "verify").returncode == 0
    (event,) = ledger(host)
    assert (event["event"], event["id"], event["imported"]) == ("build", bid, True)
    # the same build again: a no-op, no second ledger line
    again = brr_json(host, "build", "import", str(archive))
    assert again["reused"] is True
    assert len(ledger(host)) == 1


def test_build_import_from_stdin(root: Path, app: Path, tmp_path: Path) -> None:
    bid = str(brr_json(root, "build", str(app))["id"])
    host = other_root(tmp_path)
    blob = subprocess.run(
        [BRR, "--root", str(root), "build", "export", bid, "-o", "-"],
        capture_output=True,
        check=True,
    ).stdout
    proc = subprocess.run(
        [BRR, "--root", str(host), "--json", "build", "import", "-"],
        input=blob,
        capture_output=True,
        check=True,
    )
    assert json.loads(proc.stdout)["id"] == bid


def rewrite_archive(archive: Path, change: dict[str, bytes]) -> bytes:
    """The archive with some members' content replaced (a corruption that still untars)."""
    out = io.BytesIO()
    with tarfile.open(archive, "r:gz") as src, tarfile.open(fileobj=out, mode="w:gz") as dst:
        for member in src:
            f = src.extractfile(member) if member.isreg() else None
            data = f.read() if f else b""
            if member.name in change:
                data = change[member.name]
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return out.getvalue()


def test_corrupted_or_altered_archives_are_refused(root: Path, app: Path, tmp_path: Path) -> None:
    _bid, archive = exported(root, app, tmp_path)
    host = other_root(tmp_path)
    blob = archive.read_bytes()
    cases = {
        "truncated": blob[: len(blob) // 2],
        "flipped": blob[:200] + bytes([blob[200] ^ 0xFF]) + blob[201:],
        "altered": rewrite_archive(archive, {"app/main.py": b"print('evil')\n"}),
        "not gzip": b"hello",
        "inner tar truncated": gzip.compress(gzip.decompress(blob)[:3000]),
    }
    for name, data in cases.items():
        bad = tmp_path / f"{name}.tar.gz"
        bad.write_bytes(data)
        proc = run_brr(host, "build", "import", str(bad), check=False)
        assert proc.returncode in (1, 2), name
        assert len(proc.stderr.strip().splitlines()) == 1, (name, proc.stderr)
        assert proc.stderr.startswith("brr-release: error: "), name
    assert (
        "does not match"
        in run_brr(host, "build", "import", str(tmp_path / "altered.tar.gz"), check=False).stderr
    )
    assert list((host / "builds").iterdir()) == []
    assert not (host / "ledger.jsonl").read_text()


def test_an_escaping_member_is_refused(root: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        header = json.dumps({"kind": "brr-build", "format": 1, "id": "b-000000000000"}).encode()
        for name, data in (("brr-export.json", header), ("../../escape", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    proc = run_brr(root, "build", "import", str(evil), check=False)
    assert proc.returncode == 2 and "outside app/" in proc.stderr
    assert not (tmp_path / "escape").exists()
    assert list((root / "builds").iterdir()) == []


def test_release_keeps_its_id_everywhere(root: Path, app: Path, tmp_path: Path) -> None:
    bid, archive = exported(root, app, tmp_path)
    for _ in range(4):  # the controller is at v5; the host has never released
        brr_json(root, "release", "--build", bid, "--set", "X=1")
    v5 = brr_json(root, "release", "--build", bid, "--set", "X=2")["id"]
    assert v5 == "v5"
    manifest = tmp_path / "v5.yaml"
    run_brr(root, "release", "export", v5, "-o", str(manifest))
    host = other_root(tmp_path)
    refused = run_brr(host, "release", "import", str(manifest), check=False)
    assert refused.returncode == 2 and "build import" in refused.stderr
    brr_json(host, "build", "import", str(archive))
    done = brr_json(host, "release", "import", str(manifest))
    assert done["id"] == "v5" and done["unchanged"] is False
    src = (root / "releases/v5/release.yaml").read_bytes()
    assert (host / "releases/v5/release.yaml").read_bytes() == src
    assert brr_json(host, "release", "import", str(manifest))["unchanged"] is True
    # a local release after it takes the next number: IDs stay monotonic
    assert brr_json(host, "config", "set", "Y=1")["id"] == "v6"
    assert run_brr(host, "verify").returncode == 0


def test_an_id_issued_to_another_release_is_refused(root: Path, app: Path, tmp_path: Path) -> None:
    bid, archive = exported(root, app, tmp_path)
    brr_json(root, "release", "--build", bid, "--set", "WHO=controller")
    manifest = tmp_path / "v1.yaml"
    run_brr(root, "release", "export", "v1", "-o", str(manifest))
    host = other_root(tmp_path)
    brr_json(host, "build", "import", str(archive))
    brr_json(host, "release", "--build", bid, "--set", "WHO=host")  # the host's own v1
    before = (host / "ledger.jsonl").read_bytes()
    proc = run_brr(host, "release", "import", str(manifest), check=False)
    assert proc.returncode == 1
    assert "issued v1 to a different release" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (host / "ledger.jsonl").read_bytes() == before


def test_a_forged_manifest_is_refused(root: Path, app: Path, tmp_path: Path) -> None:
    bid = str(brr_json(root, "build", str(app))["id"])
    brr_json(root, "release", "--build", bid, "--set", "A=1")
    text = run_brr(root, "release", "export", "v1").stdout.replace("A: '1'", "A: '2'")
    forged = tmp_path / "forged.yaml"
    forged.write_text(text)
    host = other_root(tmp_path)
    proc = run_brr(host, "release", "import", str(forged), check=False)
    assert proc.returncode == 2 and "digest" in proc.stderr
    assert list((host / "releases").iterdir()) == []


def test_if_changed_makes_nothing_when_nothing_changed(root: Path, app: Path) -> None:
    bid = str(brr_json(root, "build", str(app))["id"])
    first = brr_json(root, "release", "--build", bid, "--set", "A=1", "--if-changed", "--activate")
    assert first["id"] == "v1" and first["unchanged"] is False
    again = brr_json(root, "release", "--build", bid, "--set", "A=1", "--if-changed")
    assert again == {"id": "v1", "build": bid, "unchanged": True}
    assert brr_json(root, "config", "set", "A=1", "--if-changed")["unchanged"] is True
    assert brr_json(root, "scale", "web=2", "--if-changed")["unchanged"] is True
    assert [e["id"] for e in ledger(root) if e["event"] == "release"] == ["v1"]
    changed = brr_json(root, "config", "set", "A=2", "--if-changed")
    assert changed["id"] == "v2" and changed["unchanged"] is False
    # without the flag a release is made as before
    assert brr_json(root, "release", "--build", bid)["id"] == "v3"


def test_status_without_a_daemon(root: Path, app: Path) -> None:
    assert brr_json(root, "status")["current"] is None
    bid = str(brr_json(root, "build", str(app))["id"])
    brr_json(root, "release", "--build", bid, "--activate")
    data = brr_json(root, "status")
    assert data["current"] == "v1"
    assert data["running"] is None and data["daemon_pid"] is None
    assert data["last_activation"]["id"] == "v1"
    assert data["refused"] == []
    assert data["builds"] == [bid]
    assert "current: v1" in run_brr(root, "status").stdout

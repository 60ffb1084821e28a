"""Releases, config, scale, activation, rollback, listing, prune and verify, end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from tests.helpers import brr_json, run_brr


def build(root: Path, app: Path) -> str:
    return str(brr_json(root, "build", str(app))["id"])


def ledger(root: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (root / "ledger.jsonl").read_text().splitlines()]


def test_release_config_and_scale_make_new_releases(root: Path, app: Path, tmp_path: Path) -> None:
    bid = build(root, app)
    env_file = tmp_path / "prod.env"
    env_file.write_text(
        "# comment\nexport DATABASE_URL=\"postgres://db/x\"\nQUOTED='a b # not a comment'\nEMPTY=\n"
    )
    v1 = brr_json(root, "release", "--build", bid, "--env-file", str(env_file), "--set", "A=1")
    assert v1 == {"id": "v1", "build": bid}
    manifest = root / "releases" / "v1" / "release.yaml"
    assert oct(manifest.stat().st_mode & 0o777) == "0o640"
    data = yaml.safe_load(manifest.read_text())
    assert data["config"] == {
        "DATABASE_URL": "postgres://db/x",
        "QUOTED": "a b # not a comment",
        "EMPTY": "",
        "A": "1",
    }
    assert data["digest"].startswith("sha256:")
    assert brr_json(root, "config", "set", "B=2")["id"] == "v2"
    assert brr_json(root, "config", "unset", "A")["id"] == "v3"
    assert brr_json(root, "scale", "web=5", "worker=0")["id"] == "v4"
    v4 = brr_json(root, "show", "v4", "--show-values")
    assert v4["config"] == {
        "DATABASE_URL": "postgres://db/x",
        "QUOTED": "a b # not a comment",
        "EMPTY": "",
        "B": "2",
    }
    assert {n: p["scale"] for n, p in v4["processes"].items()} == {"web": 5, "worker": 0}
    # a new release of a build takes the newest config and the build's formation
    v5 = brr_json(root, "release", "--build", bid, "--unset", "B")
    shown = brr_json(root, "show", v5["id"])
    assert sorted(shown["config"]) == ["DATABASE_URL", "EMPTY", "QUOTED"]
    assert set(shown["config"].values()) == {"*****"}
    assert shown["processes"]["web"]["scale"] == 2
    events = [(e["event"], e["id"]) for e in ledger(root)]
    assert events == [("build", bid)] + [("release", f"v{n}") for n in range(1, 6)]
    assert "postgres" not in (root / "ledger.jsonl").read_text()


def test_activate_rollback_and_listing(root: Path, app: Path) -> None:
    bid = build(root, app)
    for _ in range(3):
        run_brr(root, "release", "--build", bid)
    out = brr_json(root, "activate", "v1")
    assert out["id"] == "v1" and out["previous"] is None and out["signalled"] is None
    assert os.readlink(root / "current") == "releases/v1"
    brr_json(root, "activate", "v3")
    back = brr_json(root, "rollback")
    assert back["id"] == "v1" and back["previous"] == "v3"
    assert brr_json(root, "rollback")["id"] == "v3"
    assert brr_json(root, "rollback", "v2")["id"] == "v2"
    listing = brr_json(root, "releases")
    assert listing["current"] == "v2"
    assert [r["id"] for r in listing["releases"]] == ["v3", "v2", "v1"]
    assert [r["current"] for r in listing["releases"]] == [False, True, False]
    assert listing["releases"][0]["formation"] == {"web": 2, "worker": 1}
    events = [(e["event"], e["id"]) for e in ledger(root) if e["event"] != "release"][1:]
    assert events == [
        ("activate", "v1"),
        ("activate", "v3"),
        ("rollback", "v1"),
        ("rollback", "v3"),
        ("rollback", "v2"),
    ]
    human = run_brr(root, "releases").stdout
    assert "* v2" in human


def test_deploy_builds_releases_and_activates(root: Path, app: Path) -> None:
    out = brr_json(root, "deploy", str(app), "--set", "X=1")
    assert out["id"] == "v1" and out["reused"] is False
    assert os.readlink(root / "current") == "releases/v1"
    again = brr_json(root, "deploy", str(app))
    assert again["id"] == "v2" and again["reused"] is True and again["build"] == out["build"]


def test_diff_masks_values_unless_asked(root: Path, app: Path) -> None:
    bid = build(root, app)
    run_brr(root, "release", "--build", bid, "--set", "SECRET=hunter2", "--set", "KEEP=1")
    run_brr(root, "config", "set", "SECRET=swordfish", "NEW=x")
    run_brr(root, "scale", "web=4")
    diff = brr_json(root, "diff", "v1", "v3")
    assert diff["build"] is None
    assert diff["config"] == {
        "NEW": {"from": None, "to": "*****"},
        "SECRET": {"from": "*****", "to": "*****"},
    }
    assert diff["formation"] == {"web": {"from": 2, "to": 4, "spec_changed": False}}
    text = run_brr(root, "diff", "v1", "v3").stdout
    assert "hunter2" not in text and "swordfish" not in text
    shown = run_brr(root, "diff", "v1", "v3", "--show-values").stdout
    assert "hunter2 -> swordfish" in shown


def test_release_command_failure_keeps_current(root: Path, tmp_path: Path) -> None:
    from tests.helpers import write_app

    good = write_app(
        tmp_path / "good", "release_command: 'echo migrated $DB'\nprocesses:\n  web: sleep 1\n"
    )
    run_brr(root, "deploy", str(good), "--set", "DB=pg")
    bad = write_app(
        tmp_path / "bad",
        "release_command: 'echo migration-broke-here; exit 4'\nprocesses:\n  web: sleep 2\n",
    )
    proc = run_brr(root, "deploy", str(bad), check=False)
    assert proc.returncode == 1
    assert "release command of v2 exited 4; current stays at v1" in proc.stderr
    assert "migration-broke-here" in proc.stderr
    assert os.readlink(root / "current") == "releases/v1"
    assert [e["event"] for e in ledger(root)][-1] == "release_command_failed"
    ok = run_brr(root, "rollback", "v1")
    assert "migrated pg" in ok.stderr


def test_prune_keeps_current_and_previous_and_never_reuses_ids(root: Path, app: Path) -> None:
    b1 = build(root, app)
    (app / "main.py").write_text("print('v2')\n")
    b2 = build(root, app)
    run_brr(root, "release", "--build", b1)  # v1
    run_brr(root, "activate", "v1")
    for _ in range(4):
        run_brr(root, "release", "--build", b2)  # v2..v5
    run_brr(root, "activate", "v3")
    out = brr_json(root, "prune", "--keep", "1")
    assert out["releases"] == ["v2", "v4"]
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["v1", "v3", "v5"]
    assert out["builds"] == []
    run_brr(root, "activate", "v5")
    run_brr(root, "activate", "v3")  # previous now v5; v1 unprotected
    out = brr_json(root, "prune", "--keep", "1")
    assert out["releases"] == ["v1"] and out["builds"] == [b1]
    assert not (root / "builds" / b1).exists()
    assert brr_json(root, "release", "--build", b2)["id"] == "v6"
    assert brr_json(root, "verify")["ok"] is True


def test_verify_finds_tampering(root: Path, app: Path) -> None:
    bid = build(root, app)
    run_brr(root, "release", "--build", bid)
    run_brr(root, "release", "--build", bid)
    assert run_brr(root, "verify").returncode == 0
    target = root / "builds" / bid / "app" / "main.py"
    os.chmod(target.parent, 0o755)
    os.chmod(target, 0o644)
    target.write_text("print('evil')\n")
    os.chmod(target, 0o444)
    manifest = root / "releases" / "v2" / "release.yaml"
    manifest.write_text(manifest.read_text().replace("sleep 1000", "sleep 1001"))
    proc = run_brr(root, "verify", check=False)
    assert proc.returncode == 1
    assert f"build {bid}: app/ does not match its digest" in proc.stdout
    assert "release v2:" in proc.stdout and "digest" in proc.stdout
    assert "release v1" not in proc.stdout


def test_init_group_shares_the_root(tmp_path: Path) -> None:
    import grp
    import stat

    root = tmp_path / "shared"
    run_brr(root, "init", "--group", "daemon")
    gid = grp.getgrnam("daemon").gr_gid
    for d in ("", "builds", "releases", "run", "logs"):
        st = (root / d).stat()
        assert st.st_gid == gid and st.st_mode & stat.S_ISGID and st.st_mode & 0o070 == 0o070, d
    for f in ("ledger.jsonl", "run/lock"):
        st = (root / f).stat()
        assert st.st_gid == gid and stat.S_IMODE(st.st_mode) == 0o660, f
    proc = run_brr(tmp_path / "other", "init", "--group", "no-such-group-here", check=False)
    assert proc.returncode == 2 and "no such group" in proc.stderr


def test_activate_after_a_torn_last_line_cuts_it_and_appends_whole(root: Path, app: Path) -> None:
    bid = build(root, app)
    run_brr(root, "release", "--build", bid)
    with (root / "ledger.jsonl").open("ab") as f:
        f.write(b'{"seq": 99, "event": "activ')  # a power loss mid-write
    brr_json(root, "activate", "v1", "--no-signal")
    text = (root / "ledger.jsonl").read_text()
    assert text.endswith("\n") and "activ\"" not in text and '"seq": 99' not in text
    assert [(e["seq"], e["event"]) for e in ledger(root)] == [
        (1, "build"),
        (2, "release"),
        (3, "activate"),
    ]

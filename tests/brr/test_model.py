"""A rule-based state machine over brr-release operations against a model of the ledger.

Hypothesis drives random sequences of build, release, config, scale, activate, rollback
and prune through the real CLI (in-process, for speed) and checks after every step that
IDs, `current`, what `releases` lists and what `prune` removed agree with a plain model.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from supervisord_lite.brr.cli import main

APP = "processes:\n  web: {{cmd: 'sleep {n}', scale: 2}}\n  worker: 'sleep 1'\n"


def cli(root: Path, *args: str) -> tuple[int, Any]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--root", str(root), "--json", *args])
    return code, json.loads(out.getvalue()) if code == 0 else err.getvalue()


@dataclass
class ModelRelease:
    build: str
    config: dict[str, str]
    formation: dict[str, int]


@dataclass
class Model:
    releases: dict[str, ModelRelease] = field(default_factory=dict)
    issued: int = 0
    current: str | None = None
    history: list[str] = field(default_factory=list)

    def newest(self) -> ModelRelease | None:
        if not self.releases:
            return None
        return self.releases[max(self.releases, key=lambda r: int(r[1:]))]

    def base(self) -> ModelRelease | None:
        """What config and scale start from: the current release, else the newest."""
        if self.current is not None and self.current in self.releases:
            return self.releases[self.current]
        return self.newest()

    def add(self, release: ModelRelease) -> str:
        self.issued += 1
        rid = f"v{self.issued}"
        self.releases[rid] = release
        return rid

    def activate(self, rid: str) -> None:
        self.current = rid
        self.history.append(rid)

    def previous(self) -> str | None:
        for rid in reversed(self.history):
            if rid != self.current and rid in self.releases:
                return rid
        return None


class BrrMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="brr-model-"))
        self.root = self.tmp / "root"
        self.model = Model()
        self.builds: dict[int, str] = {}
        assert cli(self.root, "init")[0] == 0

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(n=st.integers(1, 3))
    def build(self, n: int) -> None:
        src = self.tmp / f"src{n}"
        if not src.exists():
            src.mkdir()
            (src / "brr.yaml").write_text(APP.format(n=n))
        code, out = cli(self.root, "build", str(src))
        assert code == 0, out
        assert out["reused"] == (n in self.builds)
        self.builds[n] = out["id"]

    @precondition(lambda self: self.builds)
    @rule(data=st.data(), value=st.text("abc", max_size=3))
    def release(self, data: st.DataObject, value: str) -> None:
        n = data.draw(st.sampled_from(sorted(self.builds)))
        code, out = cli(self.root, "release", "--build", self.builds[n], "--set", f"K={value}")
        assert code == 0, out
        base = self.model.newest()
        config = {**(base.config if base else {}), "K": value}
        assert out["id"] == self.model.add(
            ModelRelease(self.builds[n], config, {"web": 2, "worker": 1})
        )

    @precondition(lambda self: self.model.releases)
    @rule(
        key=st.sampled_from(["A", "B", "K"]), value=st.text("xyz", max_size=2), unset=st.booleans()
    )
    def config(self, key: str, value: str, unset: bool) -> None:
        args = ["config", "unset", key] if unset else ["config", "set", f"{key}={value}"]
        code, out = cli(self.root, *args)
        assert code == 0, out
        base = self.model.base()
        assert base is not None
        config = dict(base.config)
        if unset:
            config.pop(key, None)
        else:
            config[key] = value
        assert out["id"] == self.model.add(ModelRelease(base.build, config, dict(base.formation)))

    @precondition(lambda self: self.model.releases)
    @rule(web=st.integers(0, 4))
    def scale(self, web: int) -> None:
        code, out = cli(self.root, "scale", f"web={web}")
        assert code == 0, out
        base = self.model.base()
        assert base is not None
        formation = {**base.formation, "web": web}
        assert out["id"] == self.model.add(ModelRelease(base.build, dict(base.config), formation))

    @precondition(lambda self: self.model.releases)
    @rule(data=st.data())
    def activate(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.model.releases)))
        code, out = cli(self.root, "activate", rid, "--no-signal")
        assert code == 0, out
        self.model.activate(rid)

    @rule()
    def rollback(self) -> None:
        code, out = cli(self.root, "rollback", "--no-signal")
        target = self.model.previous()
        if target is None:
            assert code == 2 and "nothing to roll back to" in out
            return
        assert code == 0, out
        assert out["id"] == target
        self.model.activate(target)

    @precondition(lambda self: self.model.releases)
    @rule(keep=st.integers(1, 3))
    def prune(self, keep: int) -> None:
        code, out = cli(self.root, "prune", "--keep", str(keep))
        assert code == 0, out
        ids = sorted(self.model.releases, key=lambda r: int(r[1:]))
        protected = set(ids[-keep:]) | {r for r in (self.model.current, self.model.previous()) if r}
        expected = [r for r in ids if r not in protected]
        assert out["releases"] == expected
        for rid in expected:
            del self.model.releases[rid]
        used = {r.build for r in self.model.releases.values()}
        for n, bid in list(self.builds.items()):
            if bid not in used:
                assert bid in out["builds"]
                del self.builds[n]

    @invariant()
    def listing_agrees(self) -> None:
        code, out = cli(self.root, "releases")
        assert code == 0, out
        assert out["current"] == self.model.current
        listed = [r["id"] for r in out["releases"]]
        assert listed == sorted(self.model.releases, key=lambda r: -int(r[1:]))
        for r in out["releases"]:
            m = self.model.releases[r["id"]]
            assert (r["build"], r["config_keys"], r["formation"]) == (
                m.build,
                sorted(m.config),
                m.formation,
            )


TestBrrModel = BrrMachine.TestCase
TestBrrModel.settings = settings(max_examples=20, stateful_step_count=12, deadline=None)

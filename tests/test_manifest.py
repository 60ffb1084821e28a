"""The one parser: manifests and declarations, strict and one-line in failure."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisord_lite.declaration import declaration_from_data, parse_procfile
from supervisord_lite.errors import ValidationError
from supervisord_lite.manifest import (
    ProcessSpec,
    Release,
    dump_release,
    load_release,
    release_from_data,
)


def sample_release() -> Release:
    return Release(
        id="v3",
        created_at="2026-11-22T05:00:00Z",
        build="b-3f2a9c0d1e2b",
        config={"DATABASE_URL": "postgres://x", "LOG_LEVEL": "info"},
        sockets={},
        switch="start-first",
        processes={"web": ProcessSpec(type="web", cmd="gunicorn app:app", scale=2, port=5000)},
    ).sealed()


def write(tmp_path: Path, data: object, rid: str = "v3") -> Path:
    path = tmp_path / rid / "release.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_round_trip_keeps_every_field_and_digest(tmp_path: Path) -> None:
    release = sample_release()
    path = tmp_path / "v3" / "release.yaml"
    path.parent.mkdir()
    path.write_bytes(dump_release(release))
    loaded = load_release(path)
    assert loaded == release
    assert loaded.digest.startswith("sha256:")


@pytest.mark.parametrize(
    ("mutate", "field", "problem"),
    [
        (lambda d: d.update(extra=1), "extra", "unknown key"),
        (lambda d: d["config"].update(DEBUG=True), "config.DEBUG", "must be a string"),
        (lambda d: d.update(id="../../etc"), "id", "not a release ID"),
        (lambda d: d.update(id="v0x"), "id", "not a release ID"),
        (lambda d: d.update(build="b-nothex"), "build", "not a build ID"),
        (lambda d: d["processes"]["web"].update(scale="two"), "processes.web.scale", "integer"),
        (lambda d: d["processes"]["web"].update(restart="sometimes"), "processes.web.restart", ""),
        (
            lambda d: d["processes"]["web"].update(stop_signal="NOPE"),
            "processes.web.stop_signal",
            "",
        ),
        (
            lambda d: d["processes"]["web"].update(ready={"tcp": "nohost"}),
            "processes.web.ready.tcp",
            "",
        ),
        (lambda d: d["processes"]["web"].update(sockets=["http"]), "processes.web.sockets[0]", ""),
        (lambda d: d.update(switch="sideways"), "switch", "must be one of"),
        (lambda d: d.update(schema=2), "schema", "must be 1"),
        (lambda d: d["config"].update(LOG_LEVEL="debug"), "digest", "does not match"),
    ],
)
def test_bad_manifest_names_file_field_and_problem(
    tmp_path: Path, mutate: object, field: str, problem: str
) -> None:
    data = yaml.safe_load(dump_release(sample_release()))
    mutate(data)  # type: ignore[operator]
    path = write(tmp_path, data)
    with pytest.raises(ValidationError) as info:
        load_release(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: ")
    assert problem in message
    assert "\n" not in message


def test_garbage_files_are_one_line_errors(tmp_path: Path) -> None:
    for text in ["", "- a\n- b\n", "key: [unclosed", "\x00\x01", "!!python/object:os.system x"]:
        path = write(tmp_path, text)
        with pytest.raises(ValidationError) as info:
            load_release(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_build_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "v3" / "release.yaml"
    path.parent.mkdir()
    path.write_bytes(dump_release(sample_release()))
    (tmp_path / "builds").mkdir()
    with pytest.raises(ValidationError, match="build b-3f2a9c0d1e2b is missing"):
        load_release(path, builds_dir=tmp_path / "builds")


def test_declaration_defaults_and_strictness() -> None:
    decl = declaration_from_data(
        {
            "sockets": {"http": {"bind": "127.0.0.1:8000"}},
            "processes": {"web": {"cmd": "x", "sockets": ["http"], "ready": {"notify": True}}},
        },
        "brr.yaml",
    )
    web = decl.processes["web"]
    assert (web.scale, web.restart, web.stop_signal, web.stop_timeout) == (
        1,
        "always",
        "TERM",
        10.0,
    )
    assert decl.switch == "start-first" and decl.sockets["http"].backlog == 1024  # type: ignore[index]
    with pytest.raises(ValidationError, match="brr.yaml: processes.web.cmd: is required"):
        declaration_from_data({"processes": {"web": {"scale": 1}}}, "brr.yaml")
    with pytest.raises(ValidationError, match="brr.yaml: bulid: unknown key"):
        declaration_from_data({"bulid": [], "processes": {"web": "x"}}, "brr.yaml")


def test_procfile() -> None:
    decl = parse_procfile("# comment\n\nweb: gunicorn app:app\nworker:  python w.py\n", "Procfile")
    assert {n: p.cmd for n, p in decl.processes.items()} == {
        "web": "gunicorn app:app",
        "worker": "python w.py",
    }
    assert all(p.scale == 1 for p in decl.processes.values())
    with pytest.raises(ValidationError, match="Procfile: line 1: expected `type: command`"):
        parse_procfile("just words\n", "Procfile")


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(yaml_values)
def test_arbitrary_data_only_ever_raises_validation_error(data: object) -> None:
    for parse in (release_from_data, declaration_from_data):
        try:
            parse(data, "fuzz.yaml")
        except ValidationError as exc:
            assert "\n" not in str(exc)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_raise_validation_error(
    tmp_path_factory: pytest.TempPathFactory, blob: bytes
) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz-release.yaml"
    path.write_bytes(blob)
    try:
        load_release(path)
    except ValidationError as exc:
        assert "\n" not in str(exc)

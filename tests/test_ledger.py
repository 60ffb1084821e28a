from __future__ import annotations

import json
from pathlib import Path

from supervisord_lite import ledger


def test_torn_last_line_is_skipped_then_repaired(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger.append(path, "build", "b-000000000001")
    ledger.append(path, "release", "v1", build="b-000000000001")
    with path.open("ab") as f:
        f.write(b'{"seq": 3, "event": "rel')  # power lost mid-write
    state = ledger.read_ledger(path)
    assert [e["id"] for e in state.entries] == ["b-000000000001", "v1"] and state.torn
    entry = ledger.append(path, "activate", "v1")
    assert entry["seq"] == 3
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    assert not ledger.read_ledger(path).torn


def test_history_and_highest_release() -> None:
    entries = [
        {"event": "release", "id": "v1"},
        {"event": "release", "id": "v7"},
        {"event": "activate", "id": "v1"},
        {"event": "rollback", "id": "v7"},
        {"event": "prune", "id": "v7"},
    ]
    assert ledger.activation_history(entries) == ["v1", "v7"]
    assert ledger.highest_release_number(entries) == 7

"""The log ring by itself."""

from __future__ import annotations

from supervisord_lite.daemon.output import Ring


def test_the_log_ring_is_bounded_in_lines_and_in_size() -> None:
    ring = Ring(3, 100)
    for i in range(5):
        ring.append(f"line {i}")
    assert list(ring.lines) == ["line 2", "line 3", "line 4"]
    ring.append("x" * 80)
    assert list(ring.lines) == ["line 3", "line 4", "x" * 80]
    ring.append("z" * 20)  # 3 lines, but 112 characters: the oldest go
    assert list(ring.lines) == ["x" * 80, "z" * 20]
    ring.append("y" * 500)  # one line over the budget is still kept whole
    assert list(ring.lines) == ["y" * 500]

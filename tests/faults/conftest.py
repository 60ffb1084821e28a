from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.test_security import Daemon


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test started (test_security.start): each stopped at the end."""
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()

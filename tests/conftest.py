from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_brr, write_app

SIMPLE_APP = """\
build:
  - echo built > built.txt
processes:
  web:
    cmd: "sleep 1000"
    scale: 2
  worker: "sleep 1000"
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An initialized deploy root."""
    r = tmp_path / "root"
    run_brr(r, "init")
    return r


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A small source tree with a brr.yaml."""
    return write_app(tmp_path / "src", SIMPLE_APP, {"main.py": "print('hi')\n"})

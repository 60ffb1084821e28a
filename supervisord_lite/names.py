"""The names and bounds a release may hold, checkable without a YAML parser: the manifest
loader checks them, and `brr-release releases` (which reads the ledger, not YAML) too."""

from __future__ import annotations

import re

TYPE_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
MAX_SCALE = 1000


def is_env_name(name: str) -> bool:
    return (
        bool(name)
        and name.isascii()
        and (name[0].isalpha() or name[0] == "_")
        and all(c.isalnum() or c == "_" for c in name)
    )

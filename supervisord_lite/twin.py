"""`release.json`: release.yaml's data as JSON, so the daemon reads a release without a
YAML parser (issue 16: PyYAML is 1.3 MB of the idle daemon's RSS, for one file read at
start and at each switch).

release.yaml stays the manifest. brr writes the twin beside it from the very bytes it
publishes, with their SHA-256; a reader takes the twin only when that is the SHA-256 of
the release.yaml it has just read, and otherwise parses the YAML: a twin absent (a release
made before twins, a manifest written by hand), torn, planted as a FIFO, or made of other
bytes changes nothing. Twin data then goes through the same checks as parsed YAML,
digest included (manifest.release_from_data), and a twin is made only when JSON carries
the data exactly (it reads back equal), so both roads give the same Release. A twin that
names release.yaml's bytes but holds other data is forged: `brr-release verify` says so.
Rejected: the daemon parsing a JSON-shaped release.yaml (operators read that file), and
a twin without the hash (a hand edit of release.yaml would silently not take effect).
"""

from __future__ import annotations

import json
from typing import Any

try:  # CPython's own SHA-256, not OpenSSL's: the daemon checks the twin's hash and the
    # manifest's digest (manifest.py takes it from here) at every start, and hashlib would
    # bring libcrypto's digests into its memory for them (issue 16)
    from _sha256 import sha256  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # another interpreter, or CPython 3.12+ (_sha2)
    from hashlib import sha256

__all__ = ["MANIFEST_HASH", "NAME", "make", "read", "sha256"]

NAME = "release.json"
MANIFEST_HASH = "release_yaml_sha256"


def make(manifest: bytes, data: object) -> bytes | None:
    """The twin of manifest (its bytes) whose parsed YAML is data; None when JSON would
    not carry data exactly (a key that is not a string, a date...)."""
    try:
        text = json.dumps(
            {MANIFEST_HASH: sha256(manifest).hexdigest(), "release": data},
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )
    except (TypeError, ValueError):
        return None
    if json.loads(text)["release"] != data:
        return None
    return text.encode("utf-8")


def read(twin: bytes | None, manifest: bytes) -> Any | None:
    """The data twin holds if it was made of manifest's bytes, else None (parse the YAML)."""
    if twin is None:
        return None
    try:
        found = json.loads(twin)
    except (ValueError, RecursionError):  # torn, not JSON (UnicodeDecodeError too), nested
        return None
    if not isinstance(found, dict) or found.get(MANIFEST_HASH) != sha256(manifest).hexdigest():
        return None
    return found.get("release")

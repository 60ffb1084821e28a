"""Shell completion: bash completes commands and the release IDs of the root."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers import brr_json, run_brr

BASH = Path(__file__).parents[2] / "contrib" / "completion" / "brr-release.bash"


def complete(words: list[str], env_root: str = "") -> list[str]:
    script = (
        f"source {BASH}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        f"BRR_ROOT={env_root!r}\n"
        f"_{'brr_release' if words[0] == 'brr-release' else 'supervisord_lite'}\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return sorted(line for line in out.stdout.splitlines() if line)


def test_bash_completes_commands_and_release_ids(root: Path, app: Path) -> None:
    assert complete(["brr-release", "ro"]) == ["rollback"]
    assert complete(["brr-release", "re"]) == ["release", "releases"]
    assert complete(["supervisord-lite", "st"]) == ["start", "status", "stop"]
    bid = brr_json(root, "build", str(app))["id"]
    run_brr(root, "release", "--build", bid)
    run_brr(root, "release", "--build", bid)
    assert complete(["brr-release", "--root", str(root), "activate", ""]) == ["v1", "v2"]
    assert complete(["brr-release", "show", ""], env_root=str(root)) == ["v1", "v2"]

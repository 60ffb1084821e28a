"""Running the collection's playbooks through ansible-runner, and reading what happened.

The orchestration (batches, halting, SSH, file transfer) is Ansible's; this module only
starts a playbook and turns its per-host events into what an operator needs: a table of
hosts and one line saying where and why a rollout halted. Outcomes per host: `changed`
(something was done), `ok` (nothing to do), `failed` and `unreachable` (with the
reason), `not reached` (a later batch that never ran).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisord_lite.brr import fleet_state
from supervisord_lite.errors import BadInput
from supervisord_lite.layout import DeployRoot

COLLECTION_ENV = "BRR_FLEET_COLLECTION"
HOST_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped")


def collection_dir() -> Path:
    """contrib/ansible of this source tree, or $BRR_FLEET_COLLECTION."""
    env = os.environ.get(COLLECTION_ENV)
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "contrib" / "ansible"
    if not (path / "galaxy.yml").is_file():
        raise BadInput(f"no fleet collection at {path} (set {COLLECTION_ENV} to contrib/ansible)")
    return path


def collections_path(root: DeployRoot) -> Path:
    """A directory Ansible finds supervisord_lite.fleet in (a symlink to the collection)."""
    top = fleet_state.fleet_dir(root) / "collections"
    link = top / "ansible_collections" / "supervisord_lite" / "fleet"
    link.parent.mkdir(parents=True, exist_ok=True)
    target = str(collection_dir())
    if not link.is_symlink() or os.readlink(link) != target:
        tmp = link.with_name(".fleet-link")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)
    return top


@dataclass
class HostResult:
    outcome: str = "ok"
    reason: str = ""
    changed: int = 0
    status: dict[str, Any] | None = None
    printed: str = ""


@dataclass
class Outcome:
    rc: int
    hosts: dict[str, HostResult] = field(default_factory=dict)
    controller_error: str = ""
    check: bool = False

    def failed_host(self) -> tuple[str, HostResult] | None:
        for name, res in self.hosts.items():
            if res.outcome in ("failed", "unreachable"):
                return name, res
        return None


def reason_of(res: dict[str, Any]) -> str:
    """One line: a command's own last error line before Ansible's "non-zero return code"."""
    text = str(res.get("stderr") or res.get("msg") or "failed").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else text).removeprefix("brr-release: error: ")


def on_event(outcome: Outcome, event: dict[str, Any]) -> bool:
    kind = event.get("event")
    if kind not in HOST_EVENTS:
        return True
    data = event.get("event_data", {})
    host = str(data.get("host", "?"))
    res = data.get("res") or {}
    if host in ("localhost", "127.0.0.1") and data.get("play", "").startswith(("Build", "Done")):
        if kind == "runner_on_failed" and not data.get("ignore_errors"):
            outcome.controller_error = reason_of(res)
        return True
    entry = outcome.hosts.setdefault(host, HostResult())
    if kind == "runner_on_unreachable":
        entry.outcome, entry.reason = "unreachable", reason_of(res)
    elif kind == "runner_on_failed" and not data.get("ignore_errors"):
        # the playbook's last task on a failed host says why in one line
        entry.outcome, entry.reason = "failed", reason_of(res)
    elif kind == "runner_on_ok" and res.get("changed") and entry.outcome == "ok":
        entry.changed += 1
        entry.outcome = "changed"
    elif kind == "runner_on_ok" and res.get("changed"):
        entry.changed += 1
    if kind == "runner_on_ok" and data.get("task") == "Read the host's state":
        try:
            entry.status = json.loads(res.get("stdout") or "")
        except ValueError:
            entry.status = None
    failed = kind in ("runner_on_failed", "runner_on_unreachable")
    if failed and not data.get("ignore_errors") and entry.reason != entry.printed:
        print(f"fleet: {host}: {entry.reason}", file=sys.stderr)
        entry.printed = entry.reason
    return True


def load_runner() -> Any:
    """ansible_runner, with the ansible-* commands of this interpreter's venv on PATH."""
    try:
        import ansible_runner  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        raise BadInput("the fleet needs Ansible: pip install 'supervisord-lite[fleet]'") from None
    venv_bin = str(Path(sys.executable).parent)
    if shutil.which("ansible-playbook") is None and Path(venv_bin, "ansible-playbook").exists():
        # a CLI started by its full path from a venv that is not activated
        os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    if shutil.which("ansible-playbook") is None:
        raise BadInput("no ansible-playbook on PATH: pip install 'supervisord-lite[fleet]'")
    return ansible_runner


def run_playbook(
    root: DeployRoot,
    playbook: str,
    inventory: Path,
    extravars: dict[str, Any],
    *,
    check: bool = False,
) -> Outcome:
    try:
        import ansible_runner  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        raise BadInput("the fleet needs Ansible: pip install 'supervisord-lite[fleet]'") from None
    if not inventory.exists():
        raise BadInput(f"--inventory {inventory}: no such file")
    envvars = {
        "BRR_ROOT": str(root.path),
        "ANSIBLE_COLLECTIONS_PATH": str(collections_path(root)),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_PIPELINING": "1",
    }
    play = collection_dir() / "playbooks" / playbook
    outcome = Outcome(rc=0, check=check)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=fleet_state.fleet_dir(root)))
    try:
        runner = ansible_runner.run(
            private_data_dir=str(work),
            playbook=str(play),
            inventory=str(inventory.absolute()),
            extravars=extravars,
            envvars=envvars,
            quiet=True,
            cmdline="--check" if check else None,
            event_handler=lambda ev: on_event(outcome, ev),
        )
        outcome.rc = int(runner.rc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return outcome


def inventory_hosts(inventory: Path) -> list[str]:
    """Every host of the inventory, in its order (ansible-inventory's own parse)."""
    ansible_runner = load_runner()
    if not inventory.exists():
        raise BadInput(f"--inventory {inventory}: no such file")
    out, _err = ansible_runner.get_inventory(
        action="list", inventories=[str(inventory.absolute())], response_format="json", quiet=True
    )
    data = out if isinstance(out, dict) else json.loads(out)
    hosts: list[str] = []

    def walk(group: str) -> None:
        for h in data.get(group, {}).get("hosts", []):
            if h not in hosts:
                hosts.append(h)
        for child in data.get(group, {}).get("children", []):
            walk(child)

    walk("all")
    return hosts


def table(hosts: list[str], outcome: Outcome) -> list[dict[str, str]]:
    rows = []
    for h in hosts:
        res = outcome.hosts.get(h)
        rows.append(
            {
                "host": h,
                "outcome": res.outcome if res else "not reached",
                "reason": res.reason if res else "",
            }
        )
    return rows


def format_table(rows: list[dict[str, str]]) -> str:
    width = max([4, *(len(r["host"]) for r in rows)])
    lines = [f"{'HOST':<{width}}  {'OUTCOME':<12}  REASON"]
    lines += [f"{r['host']:<{width}}  {r['outcome']:<12}  {r['reason']}" for r in rows]
    return "\n".join(lines)

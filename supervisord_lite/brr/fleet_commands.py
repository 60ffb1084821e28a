"""`brr-release fleet deploy|rollback|status|lock|unlock`: the thin command over Ansible.

Its options are in cli.py (`fleet_options`), so that `--help` loads nothing of this.

Each rollout holds the fleet lock for its whole run (fleet_state.py), runs one playbook
of the collection (fleet_run.py), prints a table of hosts, appends the run to the fleet
ledger, and exits 0 when every host is done or 1 with one line naming the host where
the rollout halted and why, and which hosts it did not reach.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from supervisord_lite.brr import fleet_run, fleet_state
from supervisord_lite.errors import BadInput
from supervisord_lite.layout import DeployRoot

Result = tuple[dict[str, Any], str, int]


def parse_serial(text: str) -> list[int | str]:
    out: list[int | str] = []
    for part in text.split(","):
        part = part.strip()
        if part.isdigit() and int(part) > 0:
            out.append(int(part))
        elif part.endswith("%") and part[:-1].isdigit() and 0 < int(part[:-1]) <= 100:
            out.append(part)
        else:
            raise BadInput(f"--serial {text!r}: expected counts or percentages, like 1,25%,100%")
    return out


def common_vars(args: argparse.Namespace) -> dict[str, Any]:
    brr = shutil.which("brr-release") or str(Path(sys.argv[0]).absolute())
    data: dict[str, Any] = {"fleet_controller_brr": brr, "fleet_lock_held": True}
    if getattr(args, "limit", None):
        data["fleet_hosts"] = args.limit
    if hasattr(args, "serial"):
        data["fleet_serial"] = parse_serial(args.serial)
        data["brr_activate_timeout"] = args.timeout
    return data


def release_args(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for f in args.env_file:
        out += ["--env-file", str(Path(f).absolute())]
    for item in args.sets:
        out += ["--set", item]
    for key in args.unsets:
        out += ["--unset", key]
    return out


def finish(
    root: DeployRoot,
    command: str,
    release: str | None,
    outcome: fleet_run.Outcome,
    hosts: list[str],
) -> Result:
    rows = fleet_run.table(hosts, outcome)
    text = fleet_run.format_table(rows)
    exit_code = 0 if outcome.rc == 0 else 1
    fleet_state.record(
        root,
        command=command + (" --check" if outcome.check else ""),
        release=release,
        exit=exit_code,
        hosts={r["host"]: r["outcome"] for r in rows},
    )
    data: dict[str, Any] = {"release": release, "hosts": rows, "ok": exit_code == 0}
    if exit_code:
        data["error"] = halt_line(command, release, outcome, rows)
        print(f"brr-release: error: {data['error']}", file=sys.stderr)
    return data, text, exit_code


def halt_line(
    command: str, release: str | None, outcome: fleet_run.Outcome, rows: list[dict[str, str]]
) -> str:
    if outcome.controller_error:
        return (
            f"{command} halted on the controller: {outcome.controller_error}; no host was touched"
        )
    failed = outcome.failed_host()
    untouched = [r["host"] for r in rows if r["outcome"] == "not reached"]
    rest = f"; not reached: {', '.join(untouched)}" if untouched else ""
    if failed is None:
        return f"{command} of {release} failed (ansible exit {outcome.rc}){rest}"
    host, res = failed
    return f"{command} of {release} halted at {host} ({res.outcome}): {res.reason}{rest}"


def newest_release(root: DeployRoot) -> str | None:
    ids = root.release_ids()
    return ids[-1] if ids else None


def cmd_deploy(root: DeployRoot, args: argparse.Namespace) -> Result:
    root.require_initialized()
    src = args.src.absolute()
    if not src.is_dir():
        raise BadInput(f"source {src} is not a directory")
    extra = {
        **common_vars(args),
        "fleet_src": str(src),
        "fleet_release_args": release_args(args),
        "fleet_revert_on_failure": bool(args.revert_on_failure),
    }
    with fleet_state.held(root, f"deploy {src}", wait=args.lock_wait):
        hosts = fleet_run.inventory_hosts(args.inventory)
        outcome = fleet_run.run_playbook(
            root, "deploy.yml", args.inventory, extra, check=args.check
        )
        release = newest_release(root)
        return finish(root, "deploy", release, outcome, hosts)


def cmd_rollback(root: DeployRoot, args: argparse.Namespace) -> Result:
    root.require_initialized()
    target = args.release_id or fleet_state.bare_rollback_target(root)
    if target is None:
        raise BadInput("nothing to roll back to: the fleet ledger has no earlier completed run")
    extra = {**common_vars(args), "fleet_release_id": target}
    with fleet_state.held(root, f"rollback to {target}", wait=args.lock_wait):
        hosts = fleet_run.inventory_hosts(args.inventory)
        outcome = fleet_run.run_playbook(
            root, "rollback.yml", args.inventory, extra, check=args.check
        )
        return finish(root, "rollback", target, outcome, hosts)


def cmd_status(root: DeployRoot, args: argparse.Namespace) -> Result:
    hosts = fleet_run.inventory_hosts(args.inventory)
    extra = {"fleet_hosts": args.limit} if args.limit else {}
    outcome = fleet_run.run_playbook(root, "status.yml", args.inventory, extra)
    rows = []
    for h in hosts:
        res = outcome.hosts.get(h)
        st = (res.status if res else None) or {}
        running = (st.get("running") or {}).get("release")
        reason = res.reason if res and res.outcome in ("failed", "unreachable") else ""
        rows.append(
            {
                "host": h,
                "current": st.get("current"),
                "running": running,
                "refused": st.get("refused", []),
                "error": reason,
            }
        )
    width = max([4, *(len(h) for h in hosts)])
    lines = [f"{'HOST':<{width}}  {'CURRENT':<8}  {'RUNNING':<8}  NOTE"]
    for r in rows:
        refused = ", ".join(str(x.get("id")) for x in r["refused"])
        note = r["error"] or (f"refused: {refused}" if refused else "")
        lines.append(
            f"{r['host']:<{width}}  {r['current'] or '-':<8}  {r['running'] or '-':<8}  {note}"
        )
    code = 0 if outcome.rc == 0 else 1
    return {"hosts": rows, "lock": fleet_state.read_holder(root)}, "\n".join(lines), code


def cmd_lock(root: DeployRoot, args: argparse.Namespace) -> Result:
    held = fleet_state.acquire(root, args.what, wait=args.lock_wait, pid=None)
    return held, f"fleet locked: {fleet_state.describe(held)}", 0


def cmd_unlock(root: DeployRoot, args: argparse.Namespace) -> Result:
    was = fleet_state.read_holder(root)
    fleet_state.release(root)
    text = f"fleet unlocked (was {fleet_state.describe(was)})" if was else "fleet was not locked"
    return {"was": was}, text, 0


def cmd_fleet(root: DeployRoot, args: argparse.Namespace) -> Result:
    match args.fleet_command:
        case "deploy":
            return cmd_deploy(root, args)
        case "rollback":
            return cmd_rollback(root, args)
        case "status":
            return cmd_status(root, args)
        case "lock":
            return cmd_lock(root, args)
        case _:
            return cmd_unlock(root, args)

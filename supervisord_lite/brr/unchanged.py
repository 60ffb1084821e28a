"""`--if-changed`: a release that would equal the current one is not made.

A rolling deploy is run again and again (a retry, a cron, a second operator); each run
must not mint a new `vN` when nothing changed. Equal means the same build, config and
formation as the release `current` points at, or, where nothing is current (a fleet's
controller, which releases but never runs), the newest release: those three are what a
release is made of (sockets, switch and the release command come from the build). The
would-be release is worked out here the way releases.py makes it, without writing.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from supervisord_lite.brr import releases as rel
from supervisord_lite.brr.build import load_build_meta
from supervisord_lite.layout import DeployRoot
from supervisord_lite.manifest import Release, load_release


@dataclass(frozen=True)
class Wanted:
    build: str
    config: dict[str, str]
    formation: dict[str, int]


def wanted(root: DeployRoot, args: argparse.Namespace) -> Wanted | None:
    """What `release`, `config set|unset` or `scale` would make; None if it cannot tell."""
    newest = rel.newest_release(root)
    # config and scale start from --from, else current, else the newest (releases.py)
    base = rel.base_release(root, getattr(args, "from_id", None))
    match args.command:
        case "release":
            decl = load_build_meta(root, args.build_id).declaration
            change = rel.ConfigChange(tuple(args.env_file), tuple(args.sets), tuple(args.unsets))
            config = change.apply(newest.config if newest else {})
            formation = {name: spec.scale for name, spec in decl.processes.items()}
            return Wanted(args.build_id, config, formation)
        case "config" if base is not None:
            items = tuple(args.items)
            if args.config_command == "set":
                change = rel.ConfigChange(sets=items)
            else:
                change = rel.ConfigChange(unsets=items)
            return Wanted(base.build, change.apply(base.config), base.formation())
        case "scale" if base is not None:
            formation = {**base.formation(), **rel.parse_formation(tuple(args.items))}
            return Wanted(base.build, dict(base.config), formation)
    return None


def current_if_equal(root: DeployRoot, args: argparse.Namespace) -> Release | None:
    """The current (else newest) release when it is what the command would make."""
    ids = root.release_ids()
    current_id = root.current_release_id() or (ids[-1] if ids else None)
    if current_id is None:
        return None
    want = wanted(root, args)
    if want is None:
        return None
    current = load_release(root.release_manifest(current_id))
    same = (current.build, current.config, current.formation())
    return current if same == (want.build, want.config, want.formation) else None

"""`--plugin exec --plugin-opt exec.cmd=CMD [--plugin-opt exec.on=switch_done,process_fatal]`

Runs CMD with /bin/sh for each chosen event, the event as one JSON object on stdin:
alerting, cache warm-up after a switch, a chat message on FATAL. A command that fails or
runs past `timeout` (10 s) is logged and does not count against the plugin: a flaky
alert script must not switch off alerting.
"""

from __future__ import annotations

import json
import logging
import subprocess

import anyio

from supervisord_lite.daemon.bus import Event
from supervisord_lite.errors import BadInput
from supervisord_lite.plugins import float_option, kinds_option

log = logging.getLogger(__name__)


class ExecPlugin:
    def __init__(self, options: dict[str, str]) -> None:
        self.cmd = options.get("cmd", "").strip()
        if not self.cmd:
            raise BadInput("plugin exec: needs --plugin-opt exec.cmd=COMMAND")
        self.kinds = kinds_option(options, "exec")
        self.timeout = float_option(options, "timeout", 10.0, "exec")
        extra = set(options) - {"cmd", "on", "timeout"}
        if extra:
            raise BadInput(f"plugin exec: unknown option {sorted(extra)[0]!r}")

    async def on_event(self, event: Event) -> None:
        if self.kinds is not None and event.kind not in self.kinds:
            return
        payload = json.dumps(event.to_dict()).encode() + b"\n"
        with anyio.move_on_after(self.timeout) as scope:
            proc = await anyio.run_process(
                ["/bin/sh", "-c", self.cmd],
                input=payload,
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if proc.returncode != 0:
                err = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
                log.error(
                    "exec plugin: `%s` exited %d on %s: %s",
                    self.cmd,
                    proc.returncode,
                    event.kind,
                    err[0],
                )
        if scope.cancelled_caught:
            log.error(
                "exec plugin: `%s` ran over %g s on %s: killed", self.cmd, self.timeout, event.kind
            )

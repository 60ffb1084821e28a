"""`--plugin webhook --plugin-opt webhook.url=http://HOST/PATH [webhook.on=...]`

POSTs each chosen event as JSON. Each attempt is bounded by `timeout` (1 s); a failed
attempt (connection error or a non-2xx status) is retried `retries` times (2) after a
short pause that doubles, so one event costs at most a few seconds before it is logged
as lost. Delivery happens in a worker thread (urllib): the daemon's loop never waits.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

import anyio

from supervisord_lite.daemon.bus import Event
from supervisord_lite.errors import BadInput
from supervisord_lite.plugins import float_option, kinds_option

log = logging.getLogger(__name__)


class WebhookPlugin:
    def __init__(self, options: dict[str, str]) -> None:
        self.url = options.get("url", "")
        if not self.url.startswith(("http://", "https://")):
            raise BadInput("plugin webhook: needs --plugin-opt webhook.url=http://...")
        self.kinds = kinds_option(options, "webhook")
        self.timeout = float_option(options, "timeout", 1.0, "webhook")
        self.retries = int(float_option(options, "retries", 2, "webhook"))
        self.pause = float_option(options, "pause", 0.2, "webhook")
        extra = set(options) - {"url", "on", "timeout", "retries", "pause"}
        if extra:
            raise BadInput(f"plugin webhook: unknown option {sorted(extra)[0]!r}")
        self.lost = 0

    async def on_event(self, event: Event) -> None:
        if self.kinds is not None and event.kind not in self.kinds:
            return
        body = json.dumps(event.to_dict()).encode()
        pause = self.pause
        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await anyio.sleep(pause)
                pause *= 2
            error = await anyio.to_thread.run_sync(self._post, body, abandon_on_cancel=True)
            if not error:
                return
        self.lost += 1
        log.error("webhook: %s lost after %d attempts: %s", event.kind, self.retries + 1, error)

    def _post(self, body: bytes) -> str:
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                resp.read()
                return "" if 200 <= resp.status < 300 else f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"

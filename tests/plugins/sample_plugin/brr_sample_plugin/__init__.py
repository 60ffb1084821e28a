"""The minimal plugin of docs/plugins.md: writes every event it gets as a JSON line."""

from __future__ import annotations

import json
from typing import Any


class Recorder:
    def __init__(self, options: dict[str, str]) -> None:
        self.path = options["path"]  # --plugin-opt recorder.path=/some/file.jsonl

    async def on_event(self, event: Any) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(event.to_dict()) + "\n")

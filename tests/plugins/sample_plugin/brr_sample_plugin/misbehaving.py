"""Plugins that misbehave on purpose: the daemon must cut them off and go on supervising."""

from __future__ import annotations

from typing import Any

import anyio


class Hangs:
    """Never returns from a call, not even from aclose."""

    def __init__(self, options: dict[str, str]) -> None:
        pass

    async def on_event(self, event: Any) -> None:
        await anyio.sleep_forever()

    async def aclose(self) -> None:
        await anyio.sleep_forever()


class Raises:
    def __init__(self, options: dict[str, str]) -> None:
        pass

    async def on_event(self, event: Any) -> None:
        raise RuntimeError(f"this plugin fails on {event.kind}, on purpose")

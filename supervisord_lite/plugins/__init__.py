"""The built-in plugins: exec, webhook, metrics. Enabled with `--plugin NAME`."""

from __future__ import annotations

from supervisord_lite.errors import BadInput


def kinds_option(options: dict[str, str], plugin: str) -> frozenset[str] | None:
    """`on=kind,kind`: the event kinds a plugin acts on (None: all)."""
    from supervisord_lite.daemon.bus import EVENT_KINDS

    raw = options.get("on", "").strip()
    if not raw:
        return None
    kinds = frozenset(k.strip() for k in raw.split(",") if k.strip())
    unknown = sorted(kinds - set(EVENT_KINDS))
    if unknown:
        raise BadInput(f"plugin {plugin}: on={raw}: unknown event kind {unknown[0]!r}")
    return kinds


def float_option(options: dict[str, str], key: str, default: float, plugin: str) -> float:
    try:
        value = float(options.get(key, default))
    except ValueError:
        raise BadInput(f"plugin {plugin}: {key}={options[key]!r}: expected a number") from None
    if value < 0:
        raise BadInput(f"plugin {plugin}: {key} must not be negative")
    return value

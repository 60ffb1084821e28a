"""Strict reading of untrusted YAML into typed values: the one parser of the project.

Both the app's declaration (`brr.yaml`) and the release manifest (`release.yaml`) are
read through `Fields`, so both reject unknown keys and wrong types the same way and every
error names the file, the field and the problem in one line. Nothing here guesses: a
config value written `yes` in YAML is a boolean, and is refused with a hint to quote it,
rather than silently becoming "True".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NoReturn

from supervisord_lite.errors import ValidationError
from supervisord_lite.names import is_env_name


def load_yaml(text: bytes | str, source: str) -> Any:
    """Parse YAML text; any failure becomes a one-line ValidationError."""
    # here: a daemon that reads its releases from their JSON twins never loads PyYAML
    import yaml

    from supervisord_lite import yamlsafe

    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return yamlsafe.load(text, source)  # no duplicate keys, no alias bombs
    except ValidationError:
        raise
    except UnicodeDecodeError as exc:
        raise ValidationError(source, "", f"not UTF-8 text (byte {exc.start})") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ValidationError(source, "", f"not valid YAML: {where}{exc.problem}") from None
    except Exception as exc:  # yaml raises assorted errors on hostile input
        raise ValidationError(source, "", f"not valid YAML: {type(exc).__name__}") from None


def type_name(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case dict():
            return "a mapping"
    return type(value).__name__


class Fields:
    """Reads the keys of one mapping, each at most once, then `done()` refuses the rest."""

    def __init__(self, data: object, source: str, path: str = "") -> None:
        self.source = source
        self.path = path
        if not isinstance(data, dict):
            self.fail("", f"must be a mapping, not {type_name(data)}")
        for key in data:
            if not isinstance(key, str):
                self.fail("", f"key {key!r} must be a string")
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, problem: str) -> NoReturn:
        field = self.at(key) if key else self.path
        raise ValidationError(self.source, field, problem)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return self.data.get(key, default)

    def required(self, key: str) -> Any:
        if key not in self.data:
            self.fail(key, "is required")
        return self.raw(key)

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        value = self.required(key) if required else self.raw(key, default)
        if value is default and not required:
            return value
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {type_name(value)}")
        if "\x00" in value:
            self.fail(key, "must not contain a NUL character")
        return value

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, not {type_name(value)}")
        if not low <= value <= high:
            self.fail(key, f"must be between {low} and {high}, not {value}")
        return value

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        return check_number(self.raw(key, default), self, key, low=low, high=high)

    def string_list(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(key, list(default))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.fail(key, f"must be a list of strings, not {type_name(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"{key}[{i}]", f"must be a string, not {type_name(item)}")
        return tuple(value)

    def string_map(self, key: str) -> dict[str, str]:
        value = self.raw(key, {})
        if value is None:
            return {}
        return string_map(value, self.source, self.at(key))

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.raw(key, {})
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping, not {type_name(value)}")
        for k in value:
            if not isinstance(k, str):
                self.fail(key, f"key {k!r} must be a string")
        return value

    def done(self) -> None:
        extra = sorted(set(self.data) - self.seen)
        if extra:
            self.fail(extra[0], "unknown key")


def check_number(value: object, fields: Fields, key: str, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        fields.fail(key, f"must be a number, not {type_name(value)}")
    if not math.isfinite(value) or not low <= value <= high:
        fields.fail(key, f"must be between {low:g} and {high:g}, not {value}")
    return float(value)


def string_map(value: object, source: str, path: str) -> dict[str, str]:
    """A mapping of environment variables: names are identifiers, values are strings."""
    if not isinstance(value, dict):
        raise ValidationError(source, path, f"must be a mapping, not {type_name(value)}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not is_env_name(k):
            raise ValidationError(source, path, f"{k!r} is not a valid variable name")
        if not isinstance(v, str):
            raise ValidationError(
                source, f"{path}.{k}", f"must be a string, not {type_name(v)} (quote it)"
            )
        if "\x00" in v:
            raise ValidationError(source, f"{path}.{k}", "must not contain a NUL character")
        out[k] = v
    return out


def require_mapping(data: object, source: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError(source, "", f"must be a YAML mapping, not {type_name(data)}")
    return data

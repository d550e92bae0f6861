"""``KEY=VALUE`` settings from the command line (``--set``), typed like the values they replace."""
from __future__ import annotations

from typing import Any, Iterable

from mamakit.errors import ConfigError


def parse_settings(items: Iterable[str] | None, current: Any, keys: Iterable[str], flag: str = "--set") -> dict:
    """``["a=1", "b=0.3,0.8", "c=area"]`` -> ``{"a": 1, "b": (0.3, 0.8), "c": "area"}``.

    Each value takes the type of ``current``'s attribute of that name (an int, a float, a string, or a
    tuple of numbers written comma-separated). A key outside ``keys`` or a value of the wrong type is a
    :class:`ConfigError` naming ``flag`` and the item.
    """
    keys = tuple(keys)
    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or key not in keys:
            raise ConfigError(f"{flag} {item!r}: use KEY=VALUE with KEY one of {', '.join(sorted(keys))}")
        cur = getattr(current, key)
        try:
            if isinstance(cur, tuple):
                parts = [type(cur[0])(x) for x in text.split(",")]
                if len(parts) != len(cur):
                    raise ValueError(f"needs {len(cur)} comma-separated numbers")
                values[key] = tuple(parts)
            elif isinstance(cur, str):
                values[key] = text.strip()
            else:
                values[key] = type(cur)(text)
        except ValueError as exc:
            raise ConfigError(f"{flag} {item!r}: {key} takes a {type(cur).__name__} ({exc})") from None
    return values

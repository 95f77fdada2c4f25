"""Bounds on what is recorded from an implementation, so that records and reports stay small.

An implementation under test may return anything: a 100 KB clientId, megabytes of data, a list
of a million members, a 5,000-digit integer. The checks judge the full values (they read the
`Seen` objects); what goes into the history and the violations, and from there into the
reports, passes through `bounded`, which keeps a prefix of every long value and says so with a
marker:

- a string longer than `MAX_TEXT` characters: its first `MAX_TEXT` characters, then
  `…[truncated: N characters]`;
- binary data longer than `MAX_BINARY` bytes: `{"$binary": <the first MAX_BINARY bytes>,
  "$truncated": "N bytes, the first MAX_BINARY kept"}`;
- a list or mapping with more than `MAX_ITEMS` items, or once `MAX_VALUE_CHARS` characters of
  one value have been kept: the items so far, then a marker item (`"…"` key in a mapping);
- an integer too large to print cheaply, or nesting deeper than `MAX_DEPTH`: a marker string.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_BINARY",
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_TEXT",
    "MAX_VALUE_CHARS",
    "bounded",
    "bounded_text",
]

MAX_TEXT = 256  # characters of one string (a clientId, member data, an error message)
MAX_BINARY = 192  # bytes of one binary value (256 characters of base64)
MAX_ITEMS = 200  # items of one list or mapping
MAX_VALUE_CHARS = 32_000  # characters kept of one recorded value in all
MAX_DEPTH = 32
MAX_INT_BITS = 256  # about 77 decimal digits

_B64_KEPT = (MAX_BINARY // 3) * 4


def bounded_text(text: str, limit: int = MAX_TEXT) -> str:
    """`text` cut to `limit` characters, with a marker saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[truncated: {len(text)} characters]"


def bounded(value: Any) -> Any:
    """A copy of the JSON-ready `value` within the bounds above (unchanged when it fits)."""
    return _Bounder().walk(value, 0)


class _Bounder:
    def __init__(self) -> None:
        self.budget = MAX_VALUE_CHARS

    def walk(self, value: Any, depth: int) -> Any:
        # the exact types a run records most, first (the same result as `_walk`, sooner)
        kind = type(value)
        if kind is str and len(value) <= MAX_TEXT:
            self.budget -= len(value)
            return value
        if value is None or kind is bool or kind is float:
            return value
        if kind is int and value.bit_length() <= MAX_INT_BITS:
            return value
        if (
            kind is dict
            and depth < MAX_DEPTH
            and len(value) <= MAX_ITEMS
            and (len(value) != 1 or "$binary" not in value)
        ):
            result: dict[str, Any] = {}
            for index, (key, item) in enumerate(value.items()):
                if self.budget <= 0:
                    result["…"] = f"[truncated: {len(value) - index} more keys]"
                    break
                name = key if type(key) is str and len(key) <= MAX_TEXT else bounded_text(str(key))
                self.budget -= len(name)
                result[name] = self.walk(item, depth + 1)
            return result
        if kind is list and depth < MAX_DEPTH and len(value) <= MAX_ITEMS:
            items: list[Any] = []
            for index, item in enumerate(value):
                if self.budget <= 0:
                    items.append(f"…[truncated: {len(value) - index} more items]")
                    break
                items.append(self.walk(item, depth + 1))
            return items
        return self._walk(value, depth)

    def _walk(self, value: Any, depth: int) -> Any:
        if value is None or isinstance(value, bool | float):
            return value
        if isinstance(value, int):
            if value.bit_length() > MAX_INT_BITS:
                return f"…[truncated: an integer of {value.bit_length()} bits]"
            return value
        if isinstance(value, str):
            text = bounded_text(value)
            self.budget -= len(text)
            return text
        if isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            kept = data[:MAX_BINARY]
            out: dict[str, Any] = {"$binary": base64.b64encode(kept).decode("ascii")}
            if len(data) > MAX_BINARY:
                out["$truncated"] = f"{len(data)} bytes, the first {MAX_BINARY} kept"
            self.budget -= len(out["$binary"])
            return out
        if depth >= MAX_DEPTH:
            return f"…[truncated: nested deeper than {MAX_DEPTH}]"
        if isinstance(value, Mapping):
            binary = value.get("$binary") if len(value) == 1 else None
            if isinstance(binary, str) and len(binary) > _B64_KEPT:
                size = len(binary) * 3 // 4 - binary[-2:].count("=")
                self.budget -= _B64_KEPT
                return {
                    "$binary": binary[:_B64_KEPT],
                    "$truncated": f"{size} bytes, the first {MAX_BINARY} kept",
                }
            result: dict[str, Any] = {}
            for index, (key, item) in enumerate(value.items()):
                if index >= MAX_ITEMS or self.budget <= 0:
                    result["…"] = f"[truncated: {len(value) - index} more keys]"
                    break
                name = bounded_text(str(key))
                self.budget -= len(name)
                result[name] = self.walk(item, depth + 1)
            return result
        if isinstance(value, list | tuple):
            items: list[Any] = []
            for index, item in enumerate(value):
                if index >= MAX_ITEMS or self.budget <= 0:
                    items.append(f"…[truncated: {len(value) - index} more items]")
                    break
                items.append(self.walk(item, depth + 1))
            return items
        try:
            text = repr(value)
        except Exception as exc:  # an implementation's object whose repr fails
            text = f"<{type(value).__name__}: repr() raised {type(exc).__name__}>"
        return self.walk(text, depth)

"""Jepsen-style history of one case: every invoke and completion, every event a listener saw.

Each entry is a dict (JSON-ready):
    {"index": 7, "time": 0.0123, "process": "alice", "type": "invoke"|"ok"|"fail"|"timeout"|"event"|"info",
     "f": "enter", "value": {...}, "step": 3}
`time` is seconds since the case started (monotonic). For `fail`, `value` carries the error code;
for `event`, `process` is the listener name and `value` the PresenceMessage in its JSON form.
Values are recorded within the bounds of `presence_conformance.harness.record.bounds` (long ones
truncated with a marker): the history is for reading, the checks judge the full values.
"""

from __future__ import annotations

import time
from typing import Any

from presence_conformance.harness.record.bounds import bounded


class History:
    """An append-only, ordered record of one case."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self.entries: list[dict] = []

    def record(
        self, type_: str, process: str, f: str, value: Any = None, step: int | None = None
    ) -> int:
        """Append an entry and return its index."""
        index = len(self.entries)
        self.entries.append(
            {
                "index": index,
                "time": round(time.monotonic() - self._t0, 6),
                "process": process,
                "type": type_,
                "f": f,
                "value": bounded(value),
                "step": step,
            }
        )
        return index

    def excerpt(self, around: int | None, before: int = 8, after: int = 4) -> list[dict]:
        """The entries near `around` (all of them, up to a limit, when None)."""
        if around is None:
            return self.entries[-(before + after) :]
        return self.entries[max(0, around - before) : around + after + 1]

"""Jepsen-style history of one case: every invoke and completion, every event a listener saw.

Each entry is a dict (JSON-ready):
    {"index": 7, "time": 0.0123, "process": "alice", "type": "invoke"|"ok"|"fail"|"timeout"|"event"|"info",
     "f": "enter", "value": {...}, "step": 3}
`time` is seconds since the case started (monotonic), taken when the entry is recorded. For
`fail`, `value` carries the error code; for `event`, `process` is the listener name and `value`
the PresenceMessage in its JSON form.
Values are shown within the bounds of `presence_conformance.harness.record.bounds` (long ones
truncated with a marker): the history is for reading, the checks judge the full values.

Entries are made when they are read: `record` keeps what it is given, the value as it is and the
monotonic time, and `entries` makes the entries recorded since it was last read, each value
bounded then. Only a failing case's history (or one the settings keep) is ever read,
so a passing case never pays for it. This shows the same history as bounding at record time
because no value changes after it is recorded: the run layer records JSON forms it built itself
(dicts and lists made for the entry, `Seen.json`, `jsonable` copies, the step's own arguments)
and immutable scalars. A value holding an object the implementation still owns and might change
(an error code, a connection id it returned, the capability handed to `connect`) is recorded
with `bound_now=True`, which bounds it at once, as before.
"""

from __future__ import annotations

import time
from typing import Any

from presence_conformance.harness.record.bounds import bounded


class _Bounded:
    """A value already bounded at record time (`bound_now`): `entries` takes it as it is."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class History:
    """An append-only, ordered record of one case."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        # what `record` was given, with the monotonic time: (time, type, process, f, value, step)
        self._recorded: list[tuple[float, str, str, str, Any, int | None]] = []
        self._entries: list[dict] = []  # the entries made of the first ones so far

    def __len__(self) -> int:
        """The number of entries so far: the index the next entry will have."""
        return len(self._recorded)

    def record(
        self,
        type_: str,
        process: str,
        f: str,
        value: Any = None,
        step: int | None = None,
        *,
        bound_now: bool = False,
    ) -> int:
        """Append an entry and return its index. `value` must not change afterwards (it is
        bounded when the entries are read); `bound_now` bounds it at once, for a value holding
        objects the implementation still owns."""
        recorded = self._recorded
        if bound_now:
            value = _Bounded(bounded(value))
        recorded.append((time.monotonic(), type_, process, f, value, step))
        return len(recorded) - 1

    @property
    def entries(self) -> list[dict]:
        """Every entry so far, its value bounded (the list the history keeps, not a copy)."""
        entries, t0 = self._entries, self._t0
        for index in range(len(entries), len(self._recorded)):
            at, type_, process, f, value, step = self._recorded[index]
            entries.append(
                {
                    "index": index,
                    "time": round(at - t0, 6),
                    "process": process,
                    "type": type_,
                    "f": f,
                    "value": value.value if type(value) is _Bounded else bounded(value),
                    "step": step,
                }
            )
        return entries

    def excerpt(self, around: int | None, before: int = 8, after: int = 4) -> list[dict]:
        """The entries near `around` (all of them, up to a limit, when None)."""
        if around is None:
            return self.entries[-(before + after) :]
        return self.entries[max(0, around - before) : around + after + 1]

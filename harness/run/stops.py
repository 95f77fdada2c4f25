"""What the parts of the case driver share: the exceptions that stop a case, and the JSON forms
of results recorded in the history."""

from __future__ import annotations

from typing import Any

from presence_conformance.harness.record.records import Seen, jsonable
from presence_conformance.harness.results import Outcome

__all__ = ["Abort", "Stop", "items_json", "summary"]


class Abort(Exception):
    """The case cannot go on: `outcome` is TIMEOUT or ERROR, `message` names the step."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message


class Stop(Exception):
    """The case cannot go on, but what was recorded is judged normally (e.g. a reused
    connectionId the model cannot represent)."""


def summary(result: Any) -> Any:
    return None if result is None else jsonable(result)


def items_json(items: list[Seen] | None, malformed: Any) -> Any:
    if items is None:
        return {"malformed": malformed}
    return [s.json for s in items]

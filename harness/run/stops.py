"""The exceptions that stop a case (`Abort`, `Stop`) or a run (`HarnessError`), and the JSON
forms of results recorded in the history."""

from __future__ import annotations

import asyncio
from typing import Any

from presence_conformance.harness.record.records import Seen, jsonable
from presence_conformance.harness.results import CaseResult, Outcome

__all__ = ["Abort", "HarnessError", "Stop", "adapter_raised", "items_json", "raised", "summary"]


class Abort(Exception):
    """The case cannot go on: `outcome` is TIMEOUT or ERROR, `message` names the step."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message


class Stop(Exception):
    """The case cannot go on, but what was recorded is judged normally (e.g. a reused
    connectionId the model cannot represent)."""


class HarnessError(Exception):
    """The harness itself failed (a bug in the runner or checks, not in the adapter). Exit 3."""

    def __init__(self, message: str, case: CaseResult | None = None) -> None:
        super().__init__(message)
        self.case = case


def adapter_raised(exc: BaseException) -> bool:
    """True if `exc`, caught while awaiting an adapter call, is the adapter's doing: every
    exception (SystemExit, KeyboardInterrupt, GeneratorExit included) except a cancellation of
    the running task itself (the run being cancelled from outside, which must propagate). The
    runner's own timeouts never reach here as CancelledError: `asyncio.timeout` turns them into
    TimeoutError."""
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        return task is not None and task.cancelling() == 0
    return True


BASE_EXCEPTION_NOTE = (
    "a BaseException an adapter must not raise; it ends this case only (docs/adapters.md)"
)


def raised(exc: BaseException) -> str:
    """`exc` named for a message: its type, then its text if it has one; a BaseException that
    is not an Exception (SystemExit, KeyboardInterrupt, GeneratorExit, CancelledError) says what
    it did."""
    text = str(exc)
    named = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return named if isinstance(exc, Exception) else f"{named} ({BASE_EXCEPTION_NOTE})"


def summary(result: Any) -> Any:
    """The JSON form of an adapter call's result, for the history."""
    return None if result is None else jsonable(result)


def items_json(items: list[Seen] | None, malformed: Any) -> Any:
    """The JSON form of members or events read (or of a result that was not a list)."""
    if items is None:
        return {"malformed": malformed}
    return [s.json for s in items]

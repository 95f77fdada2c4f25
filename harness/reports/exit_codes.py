"""Exit codes of `presence-conformance run`, `report` and the pytest route (see docs/ci.md).

| code | name            | meaning                                                              |
|------|-----------------|----------------------------------------------------------------------|
| 0    | CONFORMING      | every case passed (or is known-failing); SHOULDs count only if strict |
| 1    | NOT_CONFORMING  | a MUST failed, a case timed out or errored, a SHOULD failed under     |
|      |                 | `--strict`, or the known-failing list is stale                       |
| 2    | USAGE           | bad command line, unknown adapter, unreadable or invalid input file  |
| 3    | HARNESS_FAILURE | the harness itself broke, or the run is partial (interrupted)        |
| 4    | FLAKY           | `replay` only: some of its `--repeat` runs passed and some failed    |

Failures found take precedence: a partial run that already found a failure exits 1. A run with
known failures (known-failing list entries matched) exits 0, and its reports say
CONFORMING EXCEPT KNOWN DEVIATIONS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from presence_conformance.harness.results import RunResult

CONFORMING = 0
NOT_CONFORMING = 1
USAGE = 2
HARNESS_FAILURE = 3
FLAKY = 4  # `presence-conformance replay --repeat N`: neither FIXED (all pass) nor FAILED (all fail)


def exit_code(run: RunResult, strict: bool = False, stale_errors: list[str] | None = None) -> int:
    """The exit code for `run`.

    NOT_CONFORMING when a case fails the run (`RunResult.conforming(strict)`: known-failing cases
    excepted) or when `stale_errors` (from `KnownFailing.apply`) is not empty; otherwise
    HARNESS_FAILURE when the run is partial; otherwise CONFORMING.
    """
    if not run.conforming(strict=strict) or stale_errors:
        return NOT_CONFORMING
    if run.partial:
        return HARNESS_FAILURE
    return CONFORMING

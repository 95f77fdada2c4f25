"""The check registry: `@check(...)` binds a check function to the requirement IDs it enforces.

A check is a function `(ctx: CheckContext) -> Iterable[Violation]` over one case's record. It
creates violations with `ctx.violation(requirement, message, ...)`, which fills in the level from
the catalogue (never hard-coded) and refuses a requirement the check is not registered for, so
that `CHECKS` (check name -> requirement IDs) is an exact map of what is enforced where.

A check registered with `explicit=True` judges a scenario's explicit expectations (`expect`,
`expect_events`, ...) and reports them against the requirements the step or scenario is tagged
with; it enforces no requirement of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from presence_conformance.harness.record.records import CaseRecord, jsonable
from presence_conformance.harness.results import Violation

if TYPE_CHECKING:  # the catalogue is loaded on first use (run_checks)
    from presence_conformance.spec import Catalogue

CheckFunction = Callable[["CheckContext"], Iterable[Violation]]
T = TypeVar("T")

MAX_PER_REQUIREMENT = 10
"""Violations kept per (check, requirement) in one case; the rest are counted in a summary."""


@dataclass(frozen=True)
class CheckInfo:
    """A registered check."""

    name: str
    family: str
    requirements: tuple[str, ...]
    function: CheckFunction
    explicit: bool = False
    doc: str = ""


REGISTRY: dict[str, CheckInfo] = {}
CHECKS: dict[str, tuple[str, ...]] = {}
"""Check name -> the requirement IDs it enforces (empty for explicit-expectation checks)."""


def check(
    *requirements: str, name: str | None = None, explicit: bool = False
) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check function under `name` (default: the function's name)."""

    def register(function: CheckFunction) -> CheckFunction:
        check_name = name or function.__name__
        if check_name in REGISTRY:
            raise ValueError(f"check {check_name!r} is registered twice")
        family = function.__module__.rsplit(".", 1)[-1]
        REGISTRY[check_name] = CheckInfo(
            check_name,
            family,
            tuple(requirements),
            function,
            explicit,
            (function.__doc__ or "").strip(),
        )
        CHECKS[check_name] = tuple(requirements)
        return function

    return register


class CheckContext:
    """What a check sees: the case record, the catalogue, and a cache shared by the checks."""

    def __init__(self, record: CaseRecord, catalogue: Catalogue) -> None:
        self.record = record
        self.catalogue = catalogue
        self.cache: dict[str, Any] = {}
        self.current: CheckInfo | None = None

    def level(self, requirement: str) -> str:
        return self.catalogue.by_id(requirement).level

    def cached(self, key: str, compute: Callable[[], T]) -> T:
        if key not in self.cache:
            self.cache[key] = compute()
        value: T = self.cache[key]
        return value

    def violation(
        self,
        requirement: str,
        message: str,
        *,
        expected: Any = None,
        observed: Any = None,
        step: int | None = None,
        history_index: int | None = None,
    ) -> Violation:
        info = self.current
        assert info is not None, "violation() called outside a check"
        if not info.explicit and requirement not in info.requirements:
            raise AssertionError(f"check {info.name!r} is not registered for {requirement!r}")
        return Violation(
            requirement=requirement,
            level=self.level(requirement),
            check=info.name,
            message=message,
            expected=jsonable(expected),
            observed=jsonable(observed),
            step=step,
            history_index=history_index,
        )


# what an explicit expectation found wrong -> does a requirement ID speak of it?
_PROBLEM_FITS: dict[str, Callable[[str], bool]] = {
    "data": lambda r: "data" in r or r == "update.changes-data",
    "action": lambda r: (
        r == "message.action"
        or r.endswith(".event-emitted")
        or r.endswith("-action")
        or r in ("update.when-not-present-enters", "sync.present-on-attach")
    ),
    "client": lambda r: r in ("message.client-id", "message.connection-id"),
    # a missing, extra or unlisted event or member: anything but a message field or data
    "count": lambda r: not r.startswith("message.") and "data" not in r,
}
_PROBLEM_FALLBACK = {
    "data": "message.data",
    "action": "message.action",
    "client": "message.client-id",
    "count": "order.exactly-once",
}


def problem_requirements(tags: Iterable[str], problem: str) -> tuple[str, ...]:
    """The requirements an explicit expectation's `problem` (data, action, client, count) is
    reported against: those of the step's (or scenario's) `tags` that speak of that kind of
    problem, else the generic requirement of the kind. A data loss is not a wrong action: one
    root cause must not mark every requirement the step is tagged with failed."""
    fits = _PROBLEM_FITS[problem]
    return tuple(r for r in tags if fits(r)) or (_PROBLEM_FALLBACK[problem],)


def run_checks(
    record: CaseRecord, catalogue: Catalogue | None = None, only: Iterable[str] | None = None
) -> tuple[list[Violation], list[Violation]]:
    """Run every registered check (or those named in `only`) on a case record.

    Returns (violations of MUST and SHOULD requirements, INFO notes), each sorted by history
    index, duplicates removed, at most `MAX_PER_REQUIREMENT` per check and requirement.
    """
    if catalogue is None:
        from presence_conformance import spec

        catalogue = spec.load_requirements()
    ctx = CheckContext(record, catalogue)
    names = list(only) if only is not None else list(REGISTRY)
    found: list[Violation] = []
    for name in names:
        info = REGISTRY[name]
        ctx.current = info
        found.extend(info.function(ctx))
    ctx.current = None
    unique: dict[tuple[str, str, str, int | None], Violation] = {}
    for v in found:
        key = (v.requirement, v.check, v.message, v.step)
        unique.setdefault(key, v)
    kept: list[Violation] = []
    counts: dict[tuple[str, str], int] = {}
    for v in sorted(
        unique.values(), key=lambda v: (v.history_index is None, v.history_index or 0, v.step or 0)
    ):
        pair = (v.check, v.requirement)
        counts[pair] = counts.get(pair, 0) + 1
        if counts[pair] <= MAX_PER_REQUIREMENT:
            kept.append(v)
    for (check_name, requirement), count in counts.items():
        if count > MAX_PER_REQUIREMENT:
            first = next(v for v in kept if v.check == check_name and v.requirement == requirement)
            kept.append(
                Violation(
                    requirement,
                    first.level,
                    check_name,
                    f"... and {count - MAX_PER_REQUIREMENT} more violation(s) of "
                    f"{requirement} found by {check_name}",
                )
            )
    violations = [v for v in kept if v.level != "INFO"]
    infos = [v for v in kept if v.level == "INFO"]
    return violations, infos

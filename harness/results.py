"""Results of a conformance run: outcomes, violations, case results, run results.

This is the one results model every producer (runner, generation, pytest plugin) fills and every
consumer (reports, CLI summary, exit code) reads. It round-trips through JSON
(`spec/schemas/results.json`).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Outcome(enum.StrEnum):
    """Outcome of one case (Autobahn/h2spec lattice)."""

    PASS = "pass"
    NON_STRICT = "non-strict"  # only SHOULD requirements were violated
    FAIL = "fail"  # a MUST requirement was violated
    UNSUPPORTED = "unsupported"  # the case needs a feature the adapter does not declare
    TIMEOUT = "timeout"  # the implementation did not answer in time
    ERROR = "error"  # the adapter itself broke (an exception that is not a PresenceError)

    @property
    def is_failure(self) -> bool:
        return self in (Outcome.FAIL, Outcome.TIMEOUT, Outcome.ERROR)


# Worst first: combining outcomes keeps the worst one.
SEVERITY = [
    Outcome.ERROR,
    Outcome.TIMEOUT,
    Outcome.FAIL,
    Outcome.NON_STRICT,
    Outcome.UNSUPPORTED,
    Outcome.PASS,
]


def worst(outcomes: list[Outcome]) -> Outcome:
    """The most severe of `outcomes` (PASS for none)."""
    return min(outcomes, key=SEVERITY.index, default=Outcome.PASS)


@dataclass
class Violation:
    """One requirement not met: what was expected, what was observed, and where.

    `level` is the requirement's level (MUST, SHOULD or INFO); `history_index` points into the
    case's history (the first event that shows the violation), `step` into the scenario's steps.
    """

    requirement: str
    level: str
    check: str
    message: str
    expected: Any = None
    observed: Any = None
    step: int | None = None
    history_index: int | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class CaseResult:
    """The result of one scenario or generated test against one adapter."""

    case_id: str  # e.g. "history/limit-default-100" or "generated/<seed>"
    adapter: str
    outcome: Outcome
    requirements: list[str] = field(default_factory=list)
    duration: float = 0.0
    kind: str = "scenario"  # scenario | generated
    violations: list[Violation] = field(default_factory=list)  # MUST and SHOULD
    infos: list[Violation] = field(default_factory=list)  # INFO notes: never a failure
    error: str | None = None  # for timeout / error: which step, what happened
    scenario_file: str | None = None
    replay: str | None = None  # the command that replays this case
    history: list[dict] = field(
        default_factory=list
    )  # Jepsen-style events (see presence_conformance.harness.record.history)
    known_failing: bool = False  # matched the adapter's known-failing list

    def to_json(self) -> dict:
        d = asdict(self)
        d["outcome"] = self.outcome.value
        return d

    @classmethod
    def from_json(cls, d: dict) -> CaseResult:
        d = dict(d)
        d["outcome"] = Outcome(d["outcome"])
        d["violations"] = [Violation(**v) for v in d.get("violations", [])]
        d["infos"] = [Violation(**v) for v in d.get("infos", [])]
        return cls(**d)


@dataclass
class RunResult:
    """All cases of one run against one adapter."""

    adapter: str
    cases: list[CaseResult] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    partial: bool = False  # the run was interrupted or the harness failed part-way
    partial_reason: str | None = None
    harness_version: str = ""
    adapter_options: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "adapter": self.adapter,
            "started": self.started,
            "finished": self.finished,
            "partial": self.partial,
            "partial_reason": self.partial_reason,
            "harness_version": self.harness_version,
            "adapter_options": self.adapter_options,
            "cases": [c.to_json() for c in self.cases],
        }

    @classmethod
    def from_json(cls, d: dict) -> RunResult:
        return cls(
            adapter=d["adapter"],
            cases=[CaseResult.from_json(c) for c in d.get("cases", [])],
            started=d.get("started", 0.0),
            finished=d.get("finished", 0.0),
            partial=d.get("partial", False),
            partial_reason=d.get("partial_reason"),
            harness_version=d.get("harness_version", ""),
            adapter_options=d.get("adapter_options", {}),
        )

    def counts(self) -> dict[str, int]:
        out = {o.value: 0 for o in Outcome}
        for c in self.cases:
            out[c.outcome.value] += 1
        return out

    def conforming(self, strict: bool = False) -> bool:
        """True when no case failed (known-failing cases excepted); with `strict`, SHOULDs count."""
        for c in self.cases:
            if c.known_failing:
                continue
            if c.outcome.is_failure or (strict and c.outcome is Outcome.NON_STRICT):
                return False
        return True

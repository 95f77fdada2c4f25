"""A history limit is a maximum (RSP4b3, the seed's "Maximum number of events to return").

An implementation whose pages are shorter than the limit, each saying another follows, is not
failed: that is `history.full-pages` (SHOULD) at most. One whose page holds more than the limit
breaks a MUST.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from presence_conformance.harness.adapter import HistoryPage
from presence_conformance.harness.adapters.reference import (
    ReferenceAdapter,
    ReferenceConnection,
    ReferencePresence,
)
from presence_conformance.harness.results import CaseResult, Outcome
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.harness.scenario import Scenario
from presence_conformance.reference_impl.model import DEFAULT_HISTORY_LIMIT
from presence_conformance.reference_impl.types import PresenceMessage
from support import packaged_suite, run_case

SETTINGS = RunSettings(op_timeout=2.0, quiet_period=0.02)


class ListPage(HistoryPage):
    """A page cut from a list of items, `size` at a time."""

    def __init__(self, items: list[PresenceMessage], size: int) -> None:
        self.items, self._rest, self._size = items[:size], items[size:], size

    def has_next(self) -> bool:
        return bool(self._rest)

    async def next(self) -> HistoryPage | None:
        return ListPage(self._rest, self._size) if self._rest else None


class Repaged(ReferencePresence):
    """The reference's history, cut into pages of `page_size(limit)` items."""

    @staticmethod
    def page_size(limit: int) -> int:
        raise NotImplementedError

    async def history(
        self, start: Any = None, end: Any = None, limit: Any = None, direction: Any = None
    ) -> HistoryPage:
        page: HistoryPage | None = await super().history(start, end, limit, direction)
        items: list[PresenceMessage] = []
        while page is not None:
            items.extend(page.items)
            page = await page.next() if page.has_next() else None
        return ListPage(
            items, self.page_size(limit if limit is not None else DEFAULT_HISTORY_LIMIT)
        )


class ShortPages(Repaged):
    """Pages of half the limit (at most 40): a limit is a maximum."""

    @staticmethod
    def page_size(limit: int) -> int:
        return min(40, max(1, limit // 2))


class OverfullPages(Repaged):
    """Pages of one more item than the limit."""

    @staticmethod
    def page_size(limit: int) -> int:
        return limit + 1


def _adapter(presence: type[ReferencePresence]) -> ReferenceAdapter:
    conn_cls = type("PagesConnection", (ReferenceConnection,), {"presence_class": presence})
    cls = type("PagesAdapter", (ReferenceAdapter,), {"connection_class": conn_cls})
    return cls({"leave_grace": "0.05", "op_delay": "0.002"})


def _history_scenarios() -> list[Scenario]:
    return [s for s in packaged_suite() if any(st.kind == "history" for st in s.iter_steps())]


def _run(case: Scenario, presence: type[ReferencePresence]) -> CaseResult:
    return asyncio.run(run_case(case, _adapter(presence), SETTINGS))


def _by_name() -> dict[str, Scenario]:
    return {s.case_id: s for s in _history_scenarios()}


@pytest.mark.parametrize("case", _history_scenarios(), ids=lambda s: s.case_id)
def test_short_pages_break_no_must(case: Scenario) -> None:
    result = _run(case, ShortPages)
    if result.outcome is Outcome.UNSUPPORTED:
        pytest.skip(result.error or "unsupported")
    musts = [v for v in result.violations if v.level == "MUST"]
    assert not musts, [(v.requirement, v.message) for v in musts]
    assert {v.requirement for v in result.violations} <= {"history.full-pages"}, [
        (v.requirement, v.message) for v in result.violations
    ]


@pytest.mark.parametrize(
    "name", ["history/limit-default-100", "history/limit-default-100-many-members"]
)
def test_short_pages_are_reported_as_should(name: str) -> None:
    result = _run(_by_name()[name], ShortPages)
    assert result.outcome is Outcome.NON_STRICT, result.outcome
    assert {v.requirement for v in result.violations} == {"history.full-pages"}
    assert all(v.level == "SHOULD" for v in result.violations)


@pytest.mark.parametrize(
    ("name", "requirement"),
    [
        ("history/limit-default-100", "history.limit-default-100"),
        ("history/limit-one-pages", "history.pagination"),
    ],
)
def test_pages_over_the_limit_break_a_must(name: str, requirement: str) -> None:
    result = _run(_by_name()[name], OverfullPages)
    assert result.outcome is Outcome.FAIL, result.outcome
    failed = {v.requirement for v in result.violations if v.level == "MUST"}
    assert requirement in failed, failed

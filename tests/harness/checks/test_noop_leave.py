"""A leave() of a client that is not present (RTP10d) succeeds with no member change and no
event, a MUST; whether it is stored in history is said nowhere, so an implementation that stores
it gets at most a note (history.noop-leave, INFO), in every packaged scenario with history.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from presence_conformance.harness.adapter import HistoryPage
from presence_conformance.harness.adapters.reference import (
    ReferenceAdapter,
    ReferenceConnection,
    ReferencePresence,
)
from presence_conformance.harness.results import CaseResult, Outcome
from presence_conformance.harness.run import runner
from presence_conformance.harness.run.driver import CaseDriver
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.harness.scenario import Scenario
from presence_conformance.reference_impl.model import DEFAULT_HISTORY_LIMIT
from presence_conformance.reference_impl.types import Action, PresenceMessage
from support import packaged_suite, run_case

SETTINGS = RunSettings(op_timeout=2.0, quiet_period=0.02)


class _Page(HistoryPage):
    def __init__(self, items: list[PresenceMessage], size: int) -> None:
        self.items, self._rest, self._size = items[:size], items[size:], size

    def has_next(self) -> bool:
        return bool(self._rest)

    async def next(self) -> HistoryPage | None:
        return _Page(self._rest, self._size) if self._rest else None


class _StoresNoopLeaves(ReferencePresence):
    """The reference, with a leave item in history for every leave() of an absent client."""

    def _stored(self) -> list[PresenceMessage]:
        store: dict[str, list[PresenceMessage]] = self.adapter.__dict__.setdefault("noop", {})
        return store.setdefault(self.channel_name, [])

    async def leave(self, data: Any = None) -> None:
        conn = self.service_presence._conn
        model = self.adapter.service.model  # type: ignore[union-attr]
        present = model.get(self.channel_name, conn.client_id, conn.id)
        await super().leave(data)
        if not present and conn.client_id:
            self._stored().append(
                PresenceMessage(
                    Action.LEAVE,
                    conn.client_id,
                    conn.id,
                    data,
                    int(time.time() * 1000),
                    f"{conn.id}:noop:{len(self._stored())}",
                )
            )

    async def history(
        self, start: Any = None, end: Any = None, limit: Any = None, direction: Any = None
    ) -> HistoryPage:
        page: HistoryPage | None = await super().history(start, end, limit, direction)
        items: list[PresenceMessage] = []
        while page is not None:
            items.extend(page.items)
            page = await page.next() if page.has_next() else None
        extra = [
            m
            for m in self._stored()
            if (start is None or m.timestamp >= start) and (end is None or m.timestamp <= end)
        ]
        forwards = direction == "forwards"
        merged = sorted(
            items + extra, key=lambda m: m.timestamp if forwards else -m.timestamp
        )  # stable: the reference's order within a millisecond is kept
        return _Page(merged, limit or DEFAULT_HISTORY_LIMIT)


class _Connection(ReferenceConnection):
    presence_class = _StoresNoopLeaves


class StoresNoopLeaves(ReferenceAdapter):
    connection_class = _Connection


def _cases() -> list[Scenario]:
    return [
        s
        for s in packaged_suite()
        if any(st.kind == "history" for st in s.iter_steps())
        and any(st.kind == "leave" for st in s.iter_steps())
    ]


def _run(case: Scenario) -> CaseResult:
    adapter = StoresNoopLeaves({"leave_grace": "0.05", "op_delay": "0.002"})
    return asyncio.run(run_case(case, adapter, SETTINGS))


@pytest.mark.parametrize("case", _cases(), ids=lambda s: s.case_id)
def test_a_stored_noop_leave_is_at_most_a_note(case: Scenario) -> None:
    result = _run(case)
    if result.outcome is Outcome.UNSUPPORTED:
        pytest.skip(result.error or "unsupported")
    assert result.outcome is Outcome.PASS, [(v.requirement, v.message) for v in result.violations]
    assert {v.requirement for v in result.infos} <= {"history.noop-leave"}


@pytest.mark.parametrize("name", ["leave/when-not-present", "leave/leave-twice"])
def test_the_note_names_the_stored_leave(name: str) -> None:
    case = next(s for s in _cases() if s.case_id == name)
    result = _run(case)
    assert result.outcome is Outcome.PASS
    assert "history.noop-leave" in {v.requirement for v in result.infos}


@pytest.mark.parametrize("name", ["leave/when-not-present", "leave/leave-twice"])
def test_a_stored_noop_leave_settles_the_whole_history_read_at_once(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stored leave is not in the model's log, but reading again would never remove it: the
    # whole-history read accepts it on its first read instead of re-reading for its budget.
    drivers: list[CaseDriver] = []

    class Recording(CaseDriver):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            drivers.append(self)

    monkeypatch.setattr(runner, "CaseDriver", Recording)
    case = next(s for s in _cases() if s.case_id == name)
    result = _run(case)
    assert result.outcome is Outcome.PASS
    canonicals = drivers[0].record.canonicals
    assert canonicals and all(rec.observed is not None for rec in canonicals)
    assert any(len(rec.observed or ()) > len(rec.expected) for rec in canonicals)  # stored
    assert [rec.attempts for rec in canonicals] == [1] * len(canonicals)

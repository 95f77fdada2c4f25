"""One member's events in history: their order across distinct timestamps is a MUST
(history.per-member-order); two of them in the same millisecond are ordered by time no more, so
the causal order the harness knows (it awaited the first operation before issuing the second) is
a SHOULD (history.per-member-order-same-ms), still reported and still failing a strict replay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
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
from presence_conformance.harness.scenario import scenario_from_dict
from presence_conformance.reference_impl.model import DEFAULT_HISTORY_LIMIT
from presence_conformance.reference_impl.service import PresenceService
from presence_conformance.reference_impl.types import PresenceMessage
from support import run_case

SETTINGS = RunSettings(op_timeout=0.5, quiet_period=0.02)


def _frozen_clock() -> Callable[[], int]:
    """One millisecond for every event: real time (message.timestamp wants ms since the epoch
    within the run's window), read when the adapter starts, not when the module loads (a long
    suite would otherwise leave it outside the window)."""
    ms = int(time.time() * 1000)
    return lambda: ms


class _Page(HistoryPage):
    def __init__(self, items: list[PresenceMessage], size: int) -> None:
        self.items, self._rest, self._size = items[:size], items[size:], size

    def has_next(self) -> bool:
        return bool(self._rest)

    async def next(self) -> HistoryPage | None:
        return _Page(self._rest, self._size) if self._rest else None


class _SwapsMemberPair(ReferencePresence):
    """History with the first two adjacent events of one member swapped."""

    async def history(
        self, start: Any = None, end: Any = None, limit: Any = None, direction: Any = None
    ) -> HistoryPage:
        page: HistoryPage | None = await super().history(start, end, limit, direction)
        items: list[PresenceMessage] = []
        while page is not None:
            items.extend(page.items)
            page = await page.next() if page.has_next() else None
        for n in range(len(items) - 1):
            if items[n].member_key == items[n + 1].member_key:
                items[n], items[n + 1] = items[n + 1], items[n]
                break
        return _Page(items, limit or DEFAULT_HISTORY_LIMIT)


class _Connection(ReferenceConnection):
    presence_class = _SwapsMemberPair


class SwapsMemberPair(ReferenceAdapter):
    """The reference with one member's pair swapped in history (distinct timestamps)."""

    connection_class = _Connection


class SwapsMemberPairSameMs(SwapsMemberPair):
    """The same, with every event stamped in one millisecond."""

    async def start(self) -> None:
        if self.service is None or self.service.closed:
            self.service = PresenceService(leave_grace=self.leave_grace, clock=_frozen_clock())


STEPS = [
    {"enter": {"client": "alice", "channel": "room", "data": "a0"}},
    {"update": {"client": "alice", "channel": "room", "data": "a1"}},
    {"enter": {"client": "bob", "channel": "room", "data": "b0"}},
    {"history": {"client": "bob", "channel": "room", "direction": "forwards"}},
]


def _scenario() -> Any:
    return scenario_from_dict(
        {
            "requirements": ["history.per-member-order", "history.per-member-order-same-ms"],
            "clients": {"alice": {}, "bob": {}},
            "channels": ["room"],
            "steps": STEPS,
        },
        case_id="ties/x",
    )


def _run(adapter: ReferenceAdapter) -> CaseResult:
    return asyncio.run(run_case(_scenario(), adapter, SETTINGS))


def test_a_swap_within_one_millisecond_is_a_should() -> None:
    result = _run(SwapsMemberPairSameMs({"leave_grace": "0.02"}))
    assert result.outcome is Outcome.NON_STRICT, [v.to_json() for v in result.violations]
    assert {v.requirement for v in result.violations} == {"history.per-member-order-same-ms"}


def test_a_swap_across_distinct_timestamps_is_a_must() -> None:
    result = _run(SwapsMemberPair({"leave_grace": "0.02", "op_delay": "0.003"}))
    assert result.outcome is Outcome.FAIL, [v.to_json() for v in result.violations]
    failed = {v.requirement for v in result.violations if v.level == "MUST"}
    assert "history.per-member-order" in failed, failed


def test_the_reference_in_one_millisecond_passes() -> None:
    class SameMs(ReferenceAdapter):
        async def start(self) -> None:
            if self.service is None or self.service.closed:
                self.service = PresenceService(leave_grace=self.leave_grace, clock=_frozen_clock())

    result = _run(SameMs({"leave_grace": "0.02"}))
    assert result.outcome is Outcome.PASS, [v.to_json() for v in result.violations]


@pytest.mark.parametrize(("strict", "code", "answer"), [(True, 1, "FAILED"), (False, 0, "FIXED")])
def test_replay_of_a_same_ms_swap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], strict: bool, code: int, answer: str
) -> None:
    """The SHOULD still shows on replay: FAILED every time with --strict; without it FIXED,
    with the SHOULD named (replay treats SHOULDs so for every requirement)."""
    import yaml
    from presence_conformance.harness.cli import main

    saved = tmp_path / "ties.yaml"
    saved.write_text(
        yaml.safe_dump(
            {
                "name": "ties",
                "requirements": ["history.per-member-order-same-ms"],
                "clients": {"alice": {}, "bob": {}},
                "channels": ["room"],
                "steps": STEPS,
            }
        )
    )
    adapter = f"{Path(__file__).resolve()}:SwapsMemberPairSameMs"
    args = ["replay", str(saved), "--adapter", adapter, "--repeat", "3"]
    got = main([*args, "--strict"] if strict else args)
    out = capsys.readouterr().out
    assert got == code, out
    assert answer in out and "history.per-member-order-same-ms" in out, out

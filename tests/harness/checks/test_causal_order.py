"""Order known from causality: when one operation completed before the next was issued on the
same channel, the later event is later, in history (both directions, across pages, at a limit
cut), even when the implementation gives both the same timestamp. Operations in flight together
stay unordered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from presence_conformance.harness.adapters.reference import (
    ReferenceAdapter,
    ReferenceConnection,
    ReferencePresence,
)
from presence_conformance.harness.results import CaseResult, Outcome
from presence_conformance.harness.run.runner import RunSettings, run_scenario
from presence_conformance.harness.scenario import scenario_from_dict
from presence_conformance.reference_impl.service import PresenceService
from support import packaged

SETTINGS = RunSettings(op_timeout=0.5, quiet_period=0.02)


def _frozen_clock() -> Callable[[], int]:
    """One millisecond for every event: real time (message.timestamp wants ms since the epoch
    within the run's window), read when the adapter starts, not when the module loads (a long
    suite would otherwise leave it outside the window)."""
    ms = int(time.time() * 1000)
    return lambda: ms


class FixedClock(ReferenceAdapter):
    """The reference, with every event stamped in the same millisecond."""

    async def start(self) -> None:
        if self.service is None or self.service.closed:
            self.service = PresenceService(leave_grace=self.leave_grace, clock=_frozen_clock())


def _with_presence(presence: type[ReferencePresence]) -> type[FixedClock]:
    class Connection(ReferenceConnection):
        presence_class = presence

    class Adapter(FixedClock):
        connection_class = Connection

    return Adapter


class _OldestFirst(ReferencePresence):
    async def history(self, start: Any = None, end: Any = None, limit: Any = None, **_: Any) -> Any:
        return await super().history(start, end, limit, "forwards")


class _NewestFirst(ReferencePresence):
    async def history(self, start: Any = None, end: Any = None, limit: Any = None, **_: Any) -> Any:
        return await super().history(start, end, limit, "backwards")


class _CutKeepsOldest(ReferencePresence):
    """Backwards with a limit: the oldest `limit` events, newest of them first."""

    async def history(
        self, start: Any = None, end: Any = None, limit: Any = None, direction: Any = None
    ) -> Any:
        if direction == "forwards" or limit is None:
            return await super().history(start, end, limit, direction)
        page = await super().history(start, end, limit, "forwards")
        page.items = page.items[::-1]
        return page


OldestFirst = _with_presence(_OldestFirst)
NewestFirst = _with_presence(_NewestFirst)
CutKeepsOldest = _with_presence(_CutKeepsOldest)


def _scenario(steps: list[dict], case_id: str = "causal/x") -> Any:
    return scenario_from_dict(
        {
            "requirements": ["history.direction-default-backwards"],
            "clients": {"alice": {}, "bob": {}, "carol": {}},
            "channels": ["room"],
            "steps": steps,
        },
        case_id=case_id,
    )


SEQUENTIAL = [
    {"enter": {"client": "alice", "channel": "room", "data": "a0"}},
    {"enter": {"client": "bob", "channel": "room", "data": "b0"}},
    {"update": {"client": "alice", "channel": "room", "data": "a1"}},
    {"enter": {"client": "carol", "channel": "room", "data": "c0"}},
]


async def _run(scenario: Any, adapter: ReferenceAdapter) -> CaseResult:
    await adapter.start()
    try:
        return await run_scenario(scenario, adapter, SETTINGS)
    finally:
        await adapter.stop()


def _requirements(result: CaseResult) -> set[str]:
    return {v.requirement for v in result.violations}


def _suite_case(case_id: str) -> Any:
    return packaged(case_id)


def test_oldest_first_history_with_shared_timestamps_fails_every_time() -> None:
    """The issue's done-when, on the shipped scenario: 10 runs, 10 failures (equal timestamps
    used to excuse it: the replay said FIXED 28 times in 30)."""
    scenario = _suite_case("history/direction-default-backwards")
    for _ in range(10):
        result = asyncio.run(_run(scenario, OldestFirst({"leave_grace": "0.02"})))
        assert result.outcome is Outcome.FAIL, result.error
        assert "history.direction-default-backwards" in _requirements(result)


@pytest.mark.parametrize("direction", [None, "backwards", "forwards"])
@pytest.mark.parametrize("limit", [None, 2, 3])
def test_the_reference_with_shared_timestamps_passes(direction: Any, limit: Any) -> None:
    query: dict[str, Any] = {"client": "bob", "channel": "room"}
    if direction:
        query["direction"] = direction
    if limit:
        query["limit"] = limit
    steps = [*SEQUENTIAL, {"history": query}, {"history": {**query, "pages": "all"}}]
    result = asyncio.run(_run(_scenario(steps), FixedClock({"leave_grace": "0.02"})))
    assert result.outcome is Outcome.PASS, [v.to_json() for v in result.violations]


def test_a_backwards_query_in_causal_disorder_fails() -> None:
    steps = [*SEQUENTIAL, {"history": {"client": "bob", "channel": "room"}}]
    result = asyncio.run(_run(_scenario(steps), OldestFirst({"leave_grace": "0.02"})))
    assert "history.direction-default-backwards" in _requirements(result)


def test_following_pages_in_causal_disorder_fails() -> None:
    steps = [
        *SEQUENTIAL,
        {"history": {"client": "bob", "channel": "room", "limit": 2, "pages": "all"}},
    ]
    result = asyncio.run(_run(_scenario(steps), OldestFirst({"leave_grace": "0.02"})))
    assert "history.pagination" in _requirements(result)


def test_a_limit_cut_must_keep_the_newest() -> None:
    steps = [
        *SEQUENTIAL,
        {"history": {"client": "bob", "channel": "room", "direction": "backwards", "limit": 2}},
    ]
    result = asyncio.run(_run(_scenario(steps), CutKeepsOldest({"leave_grace": "0.02"})))
    assert result.outcome is Outcome.FAIL
    assert _requirements(result) & {"history.pagination", "history.direction-default-backwards"}


def test_a_forwards_history_newest_first_fails_the_canonical_read() -> None:
    steps = [*SEQUENTIAL, {"history": {"client": "bob", "channel": "room"}}]
    result = asyncio.run(_run(_scenario(steps), NewestFirst({"leave_grace": "0.02"})))
    assert "history.direction-forwards" in _requirements(result)


def test_operations_in_flight_together_stay_unordered() -> None:
    """Concurrent enters with one timestamp (each call sleeps first, so that all three are in
    flight together): any order is allowed, in either direction."""
    steps = [
        {
            "concurrently": [
                {"enter": {"client": "alice", "channel": "room", "data": "a"}},
                {"enter": {"client": "bob", "channel": "room", "data": "b"}},
                {"enter": {"client": "carol", "channel": "room", "data": "c"}},
            ]
        },
        {"history": {"client": "bob", "channel": "room"}},
        {"history": {"client": "bob", "channel": "room", "direction": "forwards"}},
    ]
    for adapter in (FixedClock, OldestFirst, NewestFirst):
        options = {"leave_grace": "0.02", "op_delay": "0.02"}
        result = asyncio.run(_run(_scenario(steps), adapter(options)))
        # the concurrent events may come in any order, but one member's order still counts
        assert not _requirements(result) & {
            "history.direction-default-backwards",
            "history.direction-forwards",
        }, (adapter.__name__, [v.to_json() for v in result.violations])


def test_replay_repeat_says_failed_every_time(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`presence-conformance replay FILE --repeat 10` of the same bug: FAILED (every run
    failed), never FIXED or FLAKY."""
    import shutil
    from pathlib import Path

    from presence_conformance.harness.cli import main

    source = _suite_case("history/direction-default-backwards").source
    saved = tmp_path / "failure.yaml"
    shutil.copy(source, saved)
    adapter = f"{Path(__file__).resolve()}:OldestFirst"
    code = main(["replay", str(saved), "--adapter", adapter, "--repeat", "10"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "FAILED" in out and "10 of 10 runs failed" in out, out
    assert "FIXED" not in out and "FLAKY" not in out, out

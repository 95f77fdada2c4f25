"""A new attach right after another connection's operation returned: the protocol does not
promise that the operation is already in the presence set the server syncs to the newcomer (an
ACK confirms receipt and acceptance, RTN7a). Before a step attaches a channel, the runner waits
until a connection already attached there shows the model's members; the newcomer is then
judged as before."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from presence_conformance.harness.adapters.reference import (
    ReferenceAdapter,
    ReferenceConnection,
    ReferencePresence,
)
from presence_conformance.harness.results import CaseResult, Outcome
from presence_conformance.harness.run.member_steps import MemberSteps
from presence_conformance.harness.run.runner import RunSettings, run_scenario
from presence_conformance.harness.scenario import scenario_from_dict

SETTINGS = RunSettings(op_timeout=1.0, quiet_period=0.05)
APPLY_DELAY = 0.05


class _AcksFirst(ReferencePresence):
    """enter/update/leave return at once (the ACK) and take effect APPLY_DELAY later, in order."""

    async def _later(self, operation: Any, data: Any) -> None:
        async def apply() -> None:
            await asyncio.sleep(APPLY_DELAY)
            await operation(data)

        task = asyncio.ensure_future(apply())
        self.adapter.pending.add(task)
        task.add_done_callback(self.adapter.pending.discard)

    async def enter(self, data: Any = None) -> None:
        await self._later(super().enter, data)

    async def update(self, data: Any = None) -> None:
        await self._later(super().update, data)

    async def leave(self, data: Any = None) -> None:
        await self._later(super().leave, data)


class _Connection(ReferenceConnection):
    presence_class = _AcksFirst


class AcksFirst(ReferenceAdapter):
    """Correct, but an operation's call returns before the operation took effect."""

    connection_class = _Connection

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.pending: set[asyncio.Future] = set()

    async def quiesce(self) -> bool:
        return False  # it cannot tell: operations are still being applied


LATE_JOINER = scenario_from_dict(
    {
        "requirements": ["sync.present-on-attach"],
        "clients": {"alice": {}, "bob": {}, "carol": {}},
        "channels": ["room"],
        "steps": [
            {"enter": {"client": "alice", "channel": "room", "data": "one"}},
            {"get": {"client": "carol", "channel": "room"}},  # carol is attached, no listener
            {"update": {"client": "alice", "channel": "room", "data": "two"}},
            {"subscribe": {"client": "bob", "channel": "room", "listener": "late"}},
            {
                "expect_events": {
                    "listener": "late",
                    "events": [{"action": "present", "client": "alice", "data": "two"}],
                }
            },
        ],
    },
    case_id="timing/late-joiner",
)


async def _run(adapter: ReferenceAdapter) -> CaseResult:
    await adapter.start()
    try:
        return await run_scenario(LATE_JOINER, adapter, SETTINGS)
    finally:
        await adapter.stop()


def test_a_newcomer_is_judged_once_an_attached_connection_has_the_operation() -> None:
    for _ in range(3):
        result = asyncio.run(_run(AcksFirst({"leave_grace": "0.02"})))
        assert result.outcome is Outcome.PASS, [v.to_json() for v in result.violations]
        notes = [e for e in result.history if e.get("f") == "settle before attach"]
        assert notes and notes[-1]["value"]["converged"], notes


def test_without_the_wait_the_same_correct_implementation_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The false alarm the wait removes: the newcomer's sync does not have the update yet."""

    async def no_wait(*_: Any) -> None:
        return None

    monkeypatch.setattr(MemberSteps, "before_attach", no_wait)
    result = asyncio.run(_run(AcksFirst({"leave_grace": "0.02"})))
    assert result.outcome is Outcome.FAIL


def test_the_wait_does_not_hide_a_newcomer_that_misses_the_members() -> None:
    from presence_conformance.harness.mutants import get_mutant

    adapter = get_mutant("no-present-on-attach")({"leave_grace": "0.02"})
    result = asyncio.run(_run(adapter))
    assert result.outcome is Outcome.FAIL
    assert "sync.present-on-attach" in {v.requirement for v in result.violations}

"""A drop nobody can watch (no listener, no other attached connection) is settled by waiting out
the grace period, which the server counts from when it noticed the drop, later than the harness
saw its own call return: the run gives the leave the budget any awaited event gets, so a get that
attaches the channel just after the grace does not read the member as a leave that never came.

An implementation that notices a drop within the call (`Adapter.drops_noticed_at_once`, the
in-process reference) is settled sooner: once its grace has passed and `quiesce()` answers."""

from __future__ import annotations

import asyncio
import time

from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.results import CaseResult
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.reference_impl.service import PresenceService
from support import make_scenario, op, run_case

LATE = 0.15  # the server synthesizes the leaves this much after the grace the harness is told


class _NoticesDropsLate(ReferenceAdapter):
    """The reference, whose service counts the grace from a moment `LATE` after the drop (as a
    server behind a socket does: it does not claim to notice drops at once)."""

    drops_noticed_at_once = False

    async def start(self) -> None:
        if self.service is None or self.service.closed:
            self.service = PresenceService(leave_grace=self.leave_grace + LATE)


def _run(wait_timeout: float, adapter: ReferenceAdapter | None = None) -> CaseResult:
    case = make_scenario(
        [
            op("enter", "alice"),
            {"drop": {"client": "alice"}},
            {"connect": {"client": "bob"}},
            op("get", "bob", expect=[]),
        ],
        clients={"alice": {}, "bob": {"connect": "later"}},
        requirements=("disconnect.leave-synthesized",),
    )
    settings = RunSettings(op_timeout=2.0, quiet_period=0.02, wait_timeout=wait_timeout)
    adapter = adapter or _NoticesDropsLate({"leave_grace": "0.1"})
    return asyncio.run(run_case(case, adapter, settings))


def test_an_unwatched_leave_gets_the_wait_budget() -> None:
    result = _run(wait_timeout=1.0)
    assert not result.violations, [(v.requirement, v.message) for v in result.violations]


def test_a_leave_later_than_the_budget_is_still_reported() -> None:
    result = _run(wait_timeout=0.05)
    assert "disconnect.leave-synthesized" in {v.requirement for v in result.violations}


def test_a_drop_noticed_at_once_is_settled_after_its_grace_without_the_budget() -> None:
    assert ReferenceAdapter.drops_noticed_at_once
    started = time.monotonic()
    result = _run(wait_timeout=1.0, adapter=ReferenceAdapter({"leave_grace": "0.1"}))
    assert not result.violations, [(v.requirement, v.message) for v in result.violations]
    assert time.monotonic() - started < 0.8  # the grace, not the grace and the 1 s budget


def test_claiming_to_notice_drops_at_once_is_taken_at_its_word() -> None:
    """The late server claiming it: the run no longer waits the budget, and the get that
    attaches reads the member its leave has not removed yet (what the claim must be true for)."""

    class Claims(_NoticesDropsLate):
        drops_noticed_at_once = True

    result = _run(wait_timeout=1.0, adapter=Claims({"leave_grace": "0.1"}))
    assert "disconnect.leave-synthesized" in {v.requirement for v in result.violations}

"""A get step's explicit `expect` does not call unexpected a member whose leave the model holds
pending (a dropped connection's, within its grace): the read may return it or not. The leave
itself is still judged: by the events, and by the reads once it is due."""

from __future__ import annotations

import asyncio

from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.mutants import get_mutant
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.runner import RunSettings
from support import make_scenario, run_case

SETTINGS = RunSettings(op_timeout=2.0, quiet_period=0.02)

STEPS = [
    {"subscribe": {"client": "bob", "channel": "room", "listener": "L"}},
    {"enter": {"client": "alice", "channel": "room", "data": "a"}},
    {"drop": {"client": "alice", "wait": False}},
    # written as if the leave were immediate; within the grace alice may still be there
    {"get": {"client": "bob", "channel": "room", "expect": []}},
]


def test_a_member_within_its_grace_is_not_unexpected() -> None:
    scenario = make_scenario(STEPS, requirements=("disconnect.leave-synthesized",))
    result = asyncio.run(run_case(scenario, ReferenceAdapter({"leave_grace": "0.4"}), SETTINGS))
    assert result.outcome is Outcome.PASS, [v.message for v in result.violations]
    get = [e for e in result.history if e.get("f") == "get" and e.get("type") == "ok"]
    assert get and get[0]["value"], "the get was meant to see alice within her grace"


def test_a_member_that_never_leaves_still_fails() -> None:
    scenario = make_scenario(STEPS, requirements=("disconnect.leave-synthesized",))
    mutant = get_mutant("no-synthesized-leave")({"leave_grace": "0.05"})
    result = asyncio.run(run_case(scenario, mutant, SETTINGS))
    assert result.outcome is Outcome.FAIL
    assert "disconnect.leave-synthesized" in {v.requirement for v in result.violations}

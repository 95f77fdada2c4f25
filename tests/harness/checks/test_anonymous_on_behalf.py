"""enterClient and friends on an anonymous connection (no clientId, not '*'): RTP15a lets the
library call them, and whether the server lets the connection act for a clientId is its auth's
(RTP8j). Success (the reference model's way) and a refusal without trace are both accepted, a
refusal noted as an INFO (`enter.client-on-anonymous-connection`); a refusal that leaves a trace, or the refusal of an
identified connection's enterClient, still fails."""

from __future__ import annotations

import asyncio
from typing import Any

from presence_conformance.harness.adapters.reference import (
    ReferenceAdapter,
    ReferenceConnection,
    ReferencePresence,
)
from presence_conformance.harness.results import CaseResult, Outcome
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.harness.scenario import Scenario
from presence_conformance.reference_impl.errors import PresenceError
from support import make_scenario, packaged_suite, run_case

SETTINGS = RunSettings(op_timeout=2.0, quiet_period=0.02)
REQUIREMENT = "enter.client-on-anonymous-connection"


class RefusesOnBehalf(ReferencePresence):
    """Refuses every enterClient, updateClient and leaveClient with 40012, changing nothing."""

    async def enter_client(self, client_id: str, data: Any = None) -> None:
        raise PresenceError(40012, "no on-behalf publishing here")

    async def update_client(self, client_id: str, data: Any = None) -> None:
        raise PresenceError(40012, "no on-behalf publishing here")

    async def leave_client(self, client_id: str, data: Any = None) -> None:
        raise PresenceError(40012, "no on-behalf publishing here")


class RefusesWithTrace(ReferencePresence):
    """Enters the member, then reports a refusal (a trace left behind)."""

    async def enter_client(self, client_id: str, data: Any = None) -> None:
        await super().enter_client(client_id, data)
        raise PresenceError(40012, "refused (but entered)")


def _run(case: Scenario, presence: type[ReferencePresence]) -> CaseResult:
    conn_cls = type("OnBehalfConnection", (ReferenceConnection,), {"presence_class": presence})
    cls = type("OnBehalfAdapter", (ReferenceAdapter,), {"connection_class": conn_cls})
    adapter = cls({"leave_grace": "0.05", "op_delay": "0.002"})
    return asyncio.run(run_case(case, adapter, SETTINGS))


def _scenario() -> Scenario:
    by_id = {s.case_id: s for s in packaged_suite()}
    return by_id["enter/client-on-anonymous-connection"]


def _problems(result: CaseResult) -> list[tuple[str, str]]:
    return [(v.requirement, v.message) for v in result.violations]


def test_success_is_accepted() -> None:
    result = _run(_scenario(), ReferencePresence)
    assert result.outcome is Outcome.PASS, _problems(result)
    assert result.infos == [], result.infos


def test_a_refusal_without_trace_is_accepted_and_noted() -> None:
    result = _run(_scenario(), RefusesOnBehalf)
    assert result.outcome is Outcome.PASS, _problems(result)
    notes = [v.message for v in result.infos if v.requirement == REQUIREMENT]
    assert len(notes) == 3 and all("refused with code 40012" in n for n in notes), notes


def test_a_refusal_that_leaves_the_member_fails() -> None:
    result = _run(_scenario(), RefusesWithTrace)
    assert result.outcome is Outcome.FAIL, result.outcome
    # the member the refused call left behind shows up in get() and history (judged there)
    musts = {v.requirement for v in result.violations if v.level == "MUST"}
    assert {"get.empty-channel", "history.returns-events"} <= musts, _problems(result)


def test_refusing_a_wildcard_connection_is_still_a_must_violation() -> None:
    case = make_scenario(
        [
            {"enter_client": {"client": "hub", "channel": "room", "client_id": "x"}},
            {"get": {"client": "bob", "channel": "room"}},
        ],
        clients={"hub": {"client_id": "*"}, "bob": {}},
        requirements=("enter.client-on-behalf",),
    )
    result = _run(case, RefusesOnBehalf)
    assert result.outcome is Outcome.FAIL, result.outcome
    failed = {v.requirement for v in result.violations if v.level == "MUST"}
    assert "enter.client-on-behalf" in failed, _problems(result)
    assert REQUIREMENT not in {v.requirement for v in (*result.violations, *result.infos)}

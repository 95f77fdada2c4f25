"""Violations are filed under the requirement they break, not under the step's tags: a lost event
is a lost event wherever the listener lives, and a data loss is not also a wrong action or a
wrong clientId."""

from __future__ import annotations

import asyncio
from typing import Any

from presence_conformance.harness.adapters.reference import (
    ReferenceAdapter,
    ReferenceConnection,
    ReferencePresence,
)
from presence_conformance.harness.mutants import get_mutant
from presence_conformance.harness.results import CaseResult, Outcome
from presence_conformance.harness.run.runner import RunSettings, run_scenario
from presence_conformance.harness.scenario import scenario_from_dict
from presence_conformance.reference_impl.types import Action
from support import packaged

SETTINGS = RunSettings(op_timeout=0.5, quiet_period=0.02)


class _LosesOwnUpdates(ReferencePresence):
    """Listeners hear their own connection's enters and leaves, but lose its updates."""

    def wrap_listener(self, listener: Any) -> Any:
        own = self.service_presence._conn.id  # the connection this presence object belongs to

        def wrapped(message: Any) -> None:
            if message.action is Action.UPDATE and message.connection_id == own:
                return
            listener(message)

        return wrapped


class _Connection(ReferenceConnection):
    presence_class = _LosesOwnUpdates


class LosesOwnUpdates(ReferenceAdapter):
    connection_class = _Connection


def _scenario(steps: list[dict], requirements: tuple[str, ...] = ("update.event-emitted",)) -> Any:
    return scenario_from_dict(
        {
            "requirements": list(requirements),
            "clients": {"alice": {}, "bob": {}},
            "channels": ["room"],
            "steps": steps,
        },
        case_id="attribution/x",
    )


async def _run(scenario: Any, adapter: ReferenceAdapter) -> CaseResult:
    await adapter.start()
    try:
        return await run_scenario(scenario, adapter, SETTINGS)
    finally:
        await adapter.stop()


def _requirements(result: CaseResult) -> set[str]:
    return {v.requirement for v in result.violations}


OWN = [
    {"subscribe": {"client": "alice", "channel": "room", "listener": "mine"}},
    {"enter": {"client": "alice", "channel": "room", "data": "a"}},
    {"update": {"client": "alice", "channel": "room", "data": "b"}},
    {"leave": {"client": "alice", "channel": "room"}},
]


def test_a_lost_own_event_is_a_lost_event() -> None:
    """The connection echoes its own enter and leave but loses the update: that is the update
    never emitted (a MUST), not a connection that does not echo (the SHOULD)."""
    result = asyncio.run(_run(_scenario(OWN), LosesOwnUpdates({"leave_grace": "0.02"})))
    assert result.outcome is Outcome.FAIL
    assert "update.event-emitted" in _requirements(result)
    assert "enter.echoed-to-own-connection" not in _requirements(result)


def test_a_lost_own_event_also_heard_elsewhere_is_a_lost_event() -> None:
    steps = [{"subscribe": {"client": "bob", "channel": "room", "listener": "theirs"}}, *OWN]
    result = asyncio.run(_run(_scenario(steps), LosesOwnUpdates({"leave_grace": "0.02"})))
    assert result.outcome is Outcome.FAIL
    assert "enter.echoed-to-own-connection" not in _requirements(result)
    assert {v.level for v in result.violations if "update" in v.message} == {"MUST"}


def test_a_connection_that_never_echoes_breaks_the_echo_should() -> None:
    adapter = get_mutant("own-events-not-echoed")({"leave_grace": "0.02"})
    result = asyncio.run(_run(_scenario(OWN), adapter))
    assert _requirements(result) == {"enter.echoed-to-own-connection"}
    assert result.outcome is Outcome.NON_STRICT


def _suite_case(case_id: str) -> Any:
    return packaged(case_id)


def test_a_leave_data_loss_is_not_a_wrong_action_nor_a_wrong_client_id() -> None:
    """message/fields-in-events tags its expect_events step with message.action and
    message.client-id: a leave that loses its data breaks neither."""
    adapter = get_mutant("leave-data-ignored")({"leave_grace": "0.02"})
    result = asyncio.run(_run(_suite_case("message/fields-in-events"), adapter))
    found = _requirements(result)
    assert result.outcome is Outcome.FAIL
    assert "leave.data-given" in found
    assert not found & {"message.action", "message.client-id"}, found


def test_an_explicit_expectation_keeps_the_step_tags_that_fit() -> None:
    """A wrong action in expect_events is still reported under the step's message.action."""
    adapter = get_mutant("update-as-enter")({"leave_grace": "0.02"})
    result = asyncio.run(_run(_suite_case("message/fields-in-events"), adapter))
    explicit = {v.requirement for v in result.violations if v.check == "expected_events"}
    assert explicit == {"message.action"}, explicit

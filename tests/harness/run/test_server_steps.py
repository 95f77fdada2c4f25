"""`server:` steps: the loader's rules, the feature (unsupported where no server takes commands),
the run against a separately run server through its HTTP control endpoint, and the client-map
mutants (`harness/mutants/client_map.py`) each caught by the resync scenarios while the unbroken
client-side oracle, as a client, passes them all."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from presence_conformance.harness.adapter import Feature
from presence_conformance.harness.adapters.ably_wire import AblyWireAdapter
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.mutants.client_map import (
    CLIENT_MAP_MUTANTS,
    QueuedSurvivesSuspend,
    SuspendedGetWrongCode,
    client_map_adapter,
)
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.runner import run_scenario
from presence_conformance.harness.run.settings import RunSettings
from presence_conformance.harness.scenario import Scenario, ScenarioError, load_scenarios
from presence_conformance.reference_impl.server import PresenceServer, ServerConfig
from presence_conformance.reference_impl.server.control import ServerControl
from presence_conformance.reference_impl.server.control_http import add_control_routes
from support import make_scenario, op, run_case

SCENARIOS = Path(__file__).resolve().parents[3] / "scenarios"
RESYNC = [
    s for s in load_scenarios(SCENARIOS) if s.case_id.startswith(("client/", "channel/suspended"))
]
SETTINGS = RunSettings(op_timeout=5.0)
TOKEN = "a-control-token-for-tests"


def _staged(*steps: dict) -> Scenario:
    return make_scenario(
        [op("enter", "bob"), op("get", "alice"), *steps],
        requirements=("client.sync-purges-unseen-members",),
    )


# -- the loader --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "rule"),
    [
        ([op("server", "alice")], "server-command"),
        ([op("server", "alice", sync={}, attached={})], "server-command"),
        ([op("server", "alice", presence={"frames": [[{"of": "zed"}]]})], "unknown-client"),
        ([op("server", "alice", presence={"frames": [[{"action": "enter"}]]})], "server-item"),
        ([op("server", "alice", sync={"omit": ["zed"]})], "unknown-client"),
        (
            [op("server", "alice", presence={"frames": [[{"client_id": "x", "data": 42}]]})],
            "server-item",
        ),
        ([op("server", "alice", sync={}), op("get", "alice")], "server-staged"),
        ([op("subscribe", "alice", listener="l"), op("server", "alice", sync={})], "server-staged"),
    ],
)
def test_loader_rules(steps: list[dict], rule: str) -> None:
    with pytest.raises(ScenarioError) as info:
        _staged(*steps)
    assert rule in {p.rule for p in info.value.problems}


def test_a_server_step_needs_the_feature_and_reads_of_other_pairs_stay_allowed() -> None:
    scenario = _staged(op("server", "alice", sync={}), op("get", "bob"))
    assert Feature.SERVER_CONTROL in scenario.needed_features()
    result = asyncio.run(run_case(scenario, ReferenceAdapter(), SETTINGS))
    assert result.outcome is Outcome.UNSUPPORTED  # no server takes commands in-process


# -- a server run apart, through its control endpoint ------------------------------------------


def _remote(scenario: Scenario, token: str | None) -> Outcome:
    async def main() -> Outcome:
        server = PresenceServer(ServerConfig(leave_grace=0.1))
        control = ServerControl(server.realtime, server.now)
        server.route_hooks.append(lambda app: add_control_routes(app, control, TOKEN))
        host, port = await server.start()
        options = {"endpoint": f"{host}:{port}", "key": server.default_key}
        if token is not None:
            options["control_token"] = token
        try:
            adapter = AblyWireAdapter(options)
            return (await run_case(scenario, adapter, SETTINGS)).outcome
        finally:
            await server.stop()

    return asyncio.run(main())


def test_ably_wire_drives_a_server_run_apart_through_its_control_endpoint() -> None:
    scenario = next(s for s in RESYNC if s.case_id == "client/injected-member-purged")
    assert _remote(scenario, TOKEN) is Outcome.PASS
    assert _remote(scenario, None) is Outcome.UNSUPPORTED  # a foreign server, no control
    assert _remote(scenario, "a-wrong-token-for-tests") is Outcome.ERROR  # refused: 401


# -- mutants of the client map -----------------------------------------------------------------


def _outcomes(name: str, scenarios: list[Scenario]) -> dict[str, tuple[Outcome, set[str]]]:
    async def main() -> dict[str, tuple[Outcome, set[str]]]:
        adapter = client_map_adapter(name)
        await adapter.start()
        try:
            out = {}
            for scenario in scenarios:
                result = await run_scenario(scenario, adapter, SETTINGS)
                out[scenario.case_id] = (result.outcome, {v.requirement for v in result.violations})
            return out
        finally:
            await adapter.stop()

    return asyncio.run(main())


def test_the_unbroken_oracle_as_a_client_passes_every_resync_scenario() -> None:
    assert len(RESYNC) >= 9
    outcomes = _outcomes("oracle", RESYNC)
    assert {case: o for case, (o, _) in outcomes.items() if o is not Outcome.PASS} == {}


@pytest.mark.parametrize("name", sorted(CLIENT_MAP_MUTANTS))
def test_each_client_map_mutant_is_caught_under_its_requirement(name: str) -> None:
    requirements = set(CLIENT_MAP_MUTANTS[name][1])
    tagged = [
        s
        for s in RESYNC
        if requirements
        & (set(s.requirements) | {r for t in s.iter_steps() for r in t.requirements})
    ]
    assert tagged, f"no scenario is tagged with {requirements}"
    outcomes = _outcomes(name, tagged)
    caught = {case for case, (o, found) in outcomes.items() if requirements & found}
    assert caught, f"mutant {name} not caught: {outcomes}"
    assert all(o in (Outcome.FAIL, Outcome.NON_STRICT) for o, found in outcomes.values() if found)


def _judged(adapter: AblyWireAdapter, case_id: str) -> tuple[Outcome, set[str]]:
    """The outcome and the violated requirements of one packaged scenario on `adapter`."""
    scenario = next(s for s in load_scenarios(SCENARIOS) if s.case_id == case_id)

    async def main() -> tuple[Outcome, set[str]]:
        await adapter.start()
        try:
            result = await run_scenario(scenario, adapter, SETTINGS)
        finally:
            await adapter.stop()
        return result.outcome, {v.requirement for v in result.violations}

    return asyncio.run(main())


def test_a_suspended_get_with_the_wrong_code_is_caught() -> None:
    outcome, found = _judged(SuspendedGetWrongCode(), "channel/suspended-keeps-members")
    assert outcome is Outcome.FAIL
    assert found == {"channel.get-when-suspended"}


def test_a_suspend_sends_connected_through_the_control_endpoint() -> None:
    """A `suspend` interrupt's CONNECTED (the short connectionStateTtl, RTN24) goes through the
    HTTP control endpoint of a server run apart, as `serve --control` offers it."""
    scenario = next(s for s in RESYNC if s.case_id == "channel/suspended-keeps-members")
    assert _remote(scenario, TOKEN) is Outcome.PASS
    assert _remote(scenario, "a-wrong-token-for-tests") is Outcome.ERROR  # refused: 401


def test_an_operation_queued_past_suspended_is_caught() -> None:
    """RTL11: a client whose operation, queued while its transport is away on a channel still
    attaching, survives the SUSPENDED state and is sent once the client is back."""
    outcome, found = _judged(QueuedSurvivesSuspend(), "channel/queued-fail-on-suspended")
    assert "channel.queued-fail-on-suspended" in found
    assert outcome in (Outcome.FAIL, Outcome.NON_STRICT)

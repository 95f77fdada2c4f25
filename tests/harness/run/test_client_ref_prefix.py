"""`{of: CLIENT, prefix: true}`: a get filter that is a strict prefix of a client's id, which
an exact-match filter must not take for the id (scenarios/get/filter-connection-id-prefix.yaml)."""

from __future__ import annotations

import asyncio

from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.mutants import get_mutant
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.settings import RunSettings
from presence_conformance.harness.run.state import ref_value
from support import make_scenario, op, run_case


def test_the_prefix_drops_the_last_character() -> None:
    assert ref_value({"of": "bob"}, "conn-12") == "conn-12"
    assert ref_value({"of": "bob", "prefix": True}, "conn-12") == "conn-1"
    assert ref_value({"of": "bob", "prefix": False}, "conn-12") == "conn-12"
    assert ref_value({"of": "bob", "prefix": True}, None) is None


def test_a_prefix_filter_finds_nobody_on_the_reference_and_everybody_on_a_prefix_matcher() -> None:
    scenario = make_scenario(
        [
            op("enter", "alice"),
            op("enter", "bob"),
            op("get", "reader", connection_id={"of": "bob", "prefix": True}),
        ],
        clients={"alice": {}, "bob": {}, "reader": {}},
        requirements=("get.filter-connection-id",),
    )
    settings = RunSettings(op_timeout=2.0)
    result = asyncio.run(run_case(scenario, ReferenceAdapter(), settings))
    assert result.outcome is Outcome.PASS, result.violations
    mutant = get_mutant("get-connection-id-prefix-match")()
    result = asyncio.run(run_case(scenario, mutant, settings))
    assert {v.requirement for v in result.violations} == {"get.filter-connection-id"}

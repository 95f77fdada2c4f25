"""The scenario format for transient disconnects (`interrupt`), enterClient and `rest_get`."""

from __future__ import annotations

from typing import Any

import pytest
from presence_conformance.harness.adapter import Feature
from presence_conformance.harness.scenario import ScenarioError, scenario_from_dict


def scenario(steps: list[dict], clients: dict | None = None) -> Any:
    return scenario_from_dict(
        {
            "requirements": ["disconnect.resume-keeps-members"],
            "clients": clients or {"alice": {}, "bob": {}, "hub": {"client_id": "*"}},
            "channels": ["room"],
            "steps": steps,
        }
    )


def test_interrupt_with_during_loads_round_trips_and_implies_its_features() -> None:
    case = scenario(
        [
            {"enter_client": {"client": "hub", "channel": "room", "client_id": "x"}},
            {
                "interrupt": {
                    "client": "alice",
                    "during": [{"enter": {"client": "bob", "channel": "room"}}],
                }
            },
            {"rest_get": {"client": "bob", "channel": "room", "limit": 5}},
        ]
    )
    interrupt = case.steps[1]
    assert interrupt.args == {"seconds": 0.3, "resume": True}
    assert [s.kind for s in interrupt.steps] == ["enter"]
    assert [s.kind for s in case.iter_steps()] == [
        "enter_client",
        "interrupt",
        "enter",
        "rest_get",
    ]
    assert {
        Feature.TRANSIENT_DISCONNECT,
        Feature.ENTER_CLIENT,
        Feature.REST_PRESENCE,
    } <= case.needed_features()
    assert scenario_from_dict(case.to_dict()).to_dict() == case.to_dict()


@pytest.mark.parametrize(
    ("steps", "rule"),
    [
        (  # a failed resume re-syncs the client's listeners: not modelled
            [
                {"subscribe": {"client": "alice", "channel": "room", "listener": "L"}},
                {"interrupt": {"client": "alice", "resume": False}},
            ],
            "interrupt-listeners",
        ),
        (  # its own operations and its re-entry race
            [
                {
                    "interrupt": {
                        "client": "alice",
                        "resume": False,
                        "during": [{"enter": {"client": "alice", "channel": "room"}}],
                    }
                }
            ],
            "interrupt-during",
        ),
        (
            [{"interrupt": {"client": "alice", "during": [{"drop": {"client": "bob"}}]}}],
            "concurrent-kind",
        ),
        (  # racing is for `concurrently` blocks only
            [
                {
                    "interrupt": {
                        "client": "alice",
                        "during": [
                            {
                                "enter_client": {
                                    "client": "hub",
                                    "channel": "room",
                                    "client_id": "x",
                                }
                            },
                            {
                                "leave_client": {
                                    "client": "hub",
                                    "channel": "room",
                                    "client_id": "x",
                                }
                            },
                        ],
                    }
                }
            ],
            "concurrent-same-member",
        ),
        ([{"enter_client": {"client": "hub", "channel": "room"}}], "required"),
    ],
)
def test_rules(steps: list[dict], rule: str) -> None:
    with pytest.raises(ScenarioError) as info:
        scenario(steps)
    assert rule in [p.rule for p in info.value.problems], info.value


def test_enter_client_for_distinct_client_ids_may_run_concurrently() -> None:
    case = scenario(
        [
            {
                "concurrently": [
                    {"enter_client": {"client": "hub", "channel": "room", "client_id": "x"}},
                    {"enter_client": {"client": "hub", "channel": "room", "client_id": "y"}},
                ]
            }
        ]
    )
    assert [s.args["client_id"] for s in case.steps[0].steps] == ["x", "y"]


def _queued(queued: list[dict], suspend: bool = True, before: list[dict] | None = None) -> Any:
    body: dict[str, Any] = {"client": "alice", "queued": queued}
    if suspend:
        body["suspend"] = True
    return scenario([*(before or []), {"interrupt": body}])


def test_queued_steps_of_a_suspend_load_first_and_round_trip() -> None:
    case = _queued([{"enter": {"client": "alice", "channel": "room", "data": "q"}}])
    interrupt = case.steps[0]
    assert interrupt.args["queued"] == 1
    assert [s.kind for s in interrupt.steps] == ["enter"]
    assert "queued" in interrupt.to_dict()["interrupt"]
    assert "during" not in interrupt.to_dict()["interrupt"]
    assert scenario_from_dict(case.to_dict()).to_dict() == case.to_dict()


@pytest.mark.parametrize(
    ("queued", "suspend", "before"),
    [
        ([{"enter": {"client": "alice", "channel": "room"}}], False, None),  # needs suspend
        ([{"enter": {"client": "bob", "channel": "room"}}], True, None),  # another client
        ([{"get": {"client": "alice", "channel": "room"}}], True, None),  # not a publish
        (  # a channel alice used already is attached: nothing queues behind its attach
            [{"enter": {"client": "alice", "channel": "room"}}],
            True,
            [{"get": {"client": "alice", "channel": "room"}}],
        ),
    ],
)
def test_queued_rules(queued: list[dict], suspend: bool, before: list[dict] | None) -> None:
    with pytest.raises(ScenarioError) as info:
        _queued(queued, suspend, before)
    assert "interrupt-queued" in {p.rule for p in info.value.problems}

"""A client that detached (or failed) a channel and then connects again starts that channel
INITIALIZED on its new connection (RTL2b): its enter there attaches implicitly (RTP8d) and is
not judged as refused by the old connection's DETACHED state."""

from __future__ import annotations

import asyncio

import pytest
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.settings import RunSettings
from support import make_scenario, run_case

SETTINGS = RunSettings(op_timeout=2.0, quiet_period=0.02)


@pytest.mark.parametrize("ending", ["close", "drop"])
def test_a_new_connection_does_not_inherit_a_detached_channel(ending: str) -> None:
    scenario = make_scenario(
        [
            {"enter": {"client": "alice", "channel": "room", "data": "a"}},
            {"detach": {"client": "alice", "channel": "room"}},
            {ending: {"client": "alice"}},
            {"connect": {"client": "alice"}},
            {"enter": {"client": "alice", "channel": "room", "data": "back"}},
            {"channel_state": {"client": "alice", "channel": "room", "expect": "attached"}},
            {
                "get": {
                    "client": "bob",
                    "channel": "room",
                    "expect": [{"client": "alice", "data": "back"}],
                }
            },
        ],
        requirements=("channel.enter-when-detached-or-failed",),
    )
    adapter = ReferenceAdapter({"leave_grace": "0.05"})
    result = asyncio.run(run_case(scenario, adapter, SETTINGS))
    assert result.outcome is Outcome.PASS, [v.to_json() for v in result.violations]

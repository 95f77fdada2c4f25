"""`OracleMapState`: the harness client's presence-map surface computed by the oracle.

Every frame sequence gives, through the bridge, the oracle's members, events and syncComplete;
and the harness's current `PresenceState` agrees with the bridge on every sequence except the
ones listed in `HARNESS_MAP_DIFFERS` (what the switch to the oracle changes).
"""

from __future__ import annotations

from typing import Any

import pytest
from presence_conformance.harness.ably_client.presence_map import PresenceState
from presence_conformance.harness.ably_client.protocol import ProtocolViolation, decode_data
from presence_conformance.reference_impl.client_presence_bridge import OracleMapState
from presence_conformance.reference_impl.types import Action, PresenceMessage
from test_client_presence import NOW, SEQUENCES

# Sequences where harness/ably_client/presence_map.py (today) is not what the oracle expects.
HARNESS_MAP_DIFFERS = {
    # RTP18c: a SYNC without channelSerial during a sync in flight keeps that sync's residual,
    # so a member listed only by the discarded sequence is not removed
    "sync-without-channel-serial-replaces-sync-in-flight",
    # RTP1/RTP18a: an ATTACHED with HAS_PRESENCE during a sync keeps the old sync's residual
    "attached-with-has-presence-restarts-sync-in-flight",
}


class Recorder:
    def __init__(self) -> None:
        self.out: list[PresenceMessage] = []

    def emit_all(self, messages: list[PresenceMessage]) -> None:
        self.out += list(messages)


def drive(state: Any, sequence: list[dict]) -> None:
    for f in sequence:
        if "state" in f:
            if f["state"] in ("detached", "failed"):
                state.on_detached()
            continue
        action = f["action"]
        if action == 11:
            state.on_attached(f.get("flags"))
        elif action == 14:
            state.on_presence(f)
        elif action == 16:
            state.on_sync(f)
        elif action == 9:
            state.on_detached()


def observed(state: Any, recorder: Recorder) -> dict[str, Any]:
    values = state.map.values() if isinstance(state, PresenceState) else state.values()
    return {
        "members": {m.member_key: m.data for m in values},
        "events": [
            [m.action.value, m.member_key] + (["synthesized"] if m.id is None else [])
            for m in recorder.out
        ],
        "sync_complete": state.sync_complete,
    }


@pytest.mark.parametrize("case", SEQUENCES, ids=[s["name"] for s in SEQUENCES])
def test_bridge_gives_the_oracle_result(case: dict[str, Any]) -> None:
    recorder = Recorder()
    state = OracleMapState(recorder.emit_all, clock=lambda: NOW, violation=ProtocolViolation)
    drive(state, case["sequence"])
    assert observed(state, recorder) == case["expect"]


@pytest.mark.parametrize("case", SEQUENCES, ids=[s["name"] for s in SEQUENCES])
def test_harness_map_agrees_except_where_listed(case: dict[str, Any]) -> None:
    recorder = Recorder()
    state = PresenceState(emitter=recorder, clock=lambda: NOW)  # type: ignore[arg-type]
    drive(state, case["sequence"])
    agrees = observed(state, recorder) == case["expect"]
    assert agrees is (case["name"] not in HARNESS_MAP_DIFFERS)


def test_bridge_decodes_and_filters() -> None:
    recorder = Recorder()
    state = OracleMapState(recorder.emit_all, decode=decode_data, violation=ProtocolViolation)
    state.on_attached(0)
    state.on_presence(
        {
            "channel": "ch",
            "presence": [
                {
                    "action": 2,
                    "clientId": "a",
                    "connectionId": "c1",
                    "id": "c1:1:0",
                    "data": '{"x":1}',
                    "encoding": "json",
                },
                {"action": 2, "clientId": "b", "connectionId": "c2", "id": "c2:1:0"},
            ],
        }
    )
    assert [m.data for m in recorder.out] == [{"x": 1}, None]
    assert [m.client_id for m in state.values(client_id="a")] == ["a"]
    assert [m.client_id for m in state.values(connection_id="c2")] == ["b"]
    assert all(m.action is Action.PRESENT for m in state.values())
    state.on_suspended()
    assert len(state.values()) == 2 and state.sync_complete
    state.on_detached()
    assert state.values() == [] and not state.sync_complete


@pytest.mark.parametrize(
    "frame",
    [
        {"presence": {"action": 2}},
        {"presence": [3]},
        {"presence": [{"action": 42, "clientId": "a"}]},
        {"channelSerial": 7, "presence": []},
    ],
)
def test_bridge_raises_the_given_violation(frame: dict) -> None:
    state = OracleMapState(lambda ms: None, violation=ProtocolViolation)
    with pytest.raises(ProtocolViolation):
        state.on_sync({"channel": "ch", **frame})


def test_bridge_sync_flags() -> None:
    state = OracleMapState(lambda ms: None)
    state.on_attached(1)
    assert state.sync_in_progress and not state.sync_complete
    state.on_sync({"channel": "ch", "channelSerial": "s:", "presence": []})
    assert not state.sync_in_progress and state.sync_complete

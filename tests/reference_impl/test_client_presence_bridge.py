"""`OracleMapState`: the harness client's presence-map surface computed by the oracle.

Every frame sequence gives, through the bridge, the oracle's members, events and syncComplete,
and so does the harness's own client map (`PresenceState`), which is the oracle behind the
bridge: on the sequences, and on random frame sequences compared with `ClientPresence` itself.
A mutant oracle plugged into `PresenceState` shows its bug there.

Before the harness's map was switched onto the oracle it differed from it in five places, each
now decided by the spec (the sequence or test that pins each is named):
- RTP18c + RTP18a: a SYNC without `channelSerial` during a sync in flight is a whole sync that
  discards the one in flight ("sync-without-channel-serial-replaces-sync-in-flight");
- RTP1 + RTP18a: an ATTACHED with HAS_PRESENCE during a sync starts a new one, whose residual
  is every member ("attached-with-has-presence-restarts-sync-in-flight");
- RTP2h ("if and only if there is a member with a matching `memberKey` currently in the presence
  map"): a LEAVE for an unknown member during a sync is ignored, not stored ABSENT
  ("leave-for-unknown-member-ignored-during-sync");
- RTP2b1/RTP2b2: a message without `connectionId` (none on its ProtocolMessage either) has no
  connectionId that fails to prefix its id, so its id is compared by msgSerial and index
  ("message-without-connection-id-compared-by-serial");
- TR4i: ATTACHED `flags` that are not an integer are a protocol violation (the old map took
  `int(flags)` of a string or a bool).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from presence_conformance.harness.ably_client.presence_map import PresenceState
from presence_conformance.harness.ably_client.protocol import ProtocolViolation, decode_data
from presence_conformance.reference_impl.client_presence import ClientPresence, Event
from presence_conformance.reference_impl.client_presence_bridge import OracleMapState
from presence_conformance.reference_impl.types import Action, PresenceMessage
from test_client_presence import NOW, SEQUENCES, outcome


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
def test_harness_map_gives_the_oracle_result(case: dict[str, Any]) -> None:
    recorder = Recorder()
    state = PresenceState(emitter=recorder, clock=lambda: NOW)  # type: ignore[arg-type]
    drive(state, case["sequence"])
    assert observed(state, recorder) == case["expect"]


ITEMS = st.fixed_dictionaries(
    {
        "action": st.sampled_from([1, 2, 3, 4]),
        "clientId": st.sampled_from(["a", "b"]),
        "timestamp": st.sampled_from([100, 200, 300]),
    },
    optional={
        "connectionId": st.sampled_from(["c1", "c2"]),
        "id": st.one_of(
            st.builds(
                "c{}:{}:{}".format, st.sampled_from([1, 2]), st.integers(0, 3), st.integers(0, 1)
            ),
            st.sampled_from(["synthetic-1", "synthetic-2"]),
        ),
    },
)
FRAMES = st.one_of(
    st.fixed_dictionaries({"action": st.just(11), "flags": st.sampled_from([0, 1])}),
    st.fixed_dictionaries({"action": st.just(9)}),
    st.fixed_dictionaries(
        {"action": st.just(14), "channel": st.just("ch"), "presence": st.lists(ITEMS, max_size=2)},
        optional={
            "id": st.sampled_from(["p1", "p2"]),
            "connectionId": st.sampled_from(["c1", "c2"]),
        },
    ),
    st.fixed_dictionaries(
        {"action": st.just(16), "channel": st.just("ch"), "presence": st.lists(ITEMS, max_size=2)},
        optional={"channelSerial": st.sampled_from(["s1:", "s1:x", "s2:", "s2:x"])},
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(FRAMES, min_size=1, max_size=8))
def test_harness_map_is_the_oracle_on_random_frames(sequence: list[dict]) -> None:
    recorder = Recorder()
    state = PresenceState(emitter=recorder, clock=lambda: NOW)  # type: ignore[arg-type]
    drive(state, sequence)
    oracle = ClientPresence(clock=lambda: NOW)
    events = oracle.feed({"state": "detached"} if f["action"] == 9 else f for f in sequence)
    seen, expected = observed(state, recorder), outcome(oracle, events)
    assert (seen["members"], seen["sync_complete"]) == (
        expected["members"],
        expected["sync_complete"],
    )
    assert [(m.action, m.member_key, m.id, m.timestamp) for m in recorder.out] == [
        (e.action, e.member.member_key, e.member.id, e.member.timestamp) for e in events
    ]


class ForgetsResidual(ClientPresence):
    """A mutant: the sync never removes the members it did not see (RTP19)."""

    def end_sync(self) -> list[Event]:
        self._residual = set()
        return super().end_sync()


def test_a_mutant_oracle_plugs_into_the_harness_map() -> None:
    sequence = [case for case in SEQUENCES if case["name"] == "residual-member-leaves-at-sync-end"]
    [case] = sequence
    recorder = Recorder()
    state = PresenceState(emitter=recorder, clock=lambda: NOW, oracle=ForgetsResidual)  # type: ignore[arg-type]
    drive(state, case["sequence"])
    assert isinstance(state.map.oracle, ForgetsResidual)
    assert observed(state, recorder) != case["expect"]


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


@pytest.mark.parametrize("flags", ["1", True, 1.0])
def test_bridge_refuses_attached_flags_that_are_not_an_integer(flags: Any) -> None:
    """TR4i: `flags` is an integer (the harness's map once took `int(flags)` of anything)."""
    state = OracleMapState(lambda ms: None, violation=ProtocolViolation)
    with pytest.raises(ProtocolViolation):
        state.on_attached(flags)
    state.on_attached(None)  # no flags field: in sync, empty (RTP1)
    assert state.sync_complete and not state.sync_in_progress

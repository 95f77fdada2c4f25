"""Wire checks (`presence_conformance.harness.checks.wire`): each rule over hand-made frame logs, real SDK frames, the
registry path over a case record, and end to end with the `ably-wire` adapter.

- Hand-made logs break one rule each and must be reported against the right requirement, with
  the frame's index and the frame itself.
- The ably-js frames of docs/protocol.md §11.2 pass every rule; the ably-python
  frames of §11.1 (it sends clientId in its own ENTER) break wire.enter-no-client-id, and so
  do the frames ably-python 3.1.4 really sends to the reference server (live, when installed).
- `ably-wire` against the embedded server passes every wire check on real scenarios; the same
  adapter made to put its clientId into ENTER fails wire.enter-no-client-id.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from presence_conformance.harness.adapters.ably_wire import AblyWireAdapter, WirePresence
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.checks import CHECKS, REGISTRY, run_checks
from presence_conformance.harness.checks.wire import (
    ConnectionFrames,
    WireFinding,
    analyse,
    collect_wire_frames,
    set_wire_frames,
    wire_frames_of,
)
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.driver import CaseDriver
from presence_conformance.harness.run.runner import RunSettings, run_scenario
from presence_conformance.harness.scenario import scenario_from_dict
from presence_conformance.reference_impl.server import PresenceServer, ServerConfig
from presence_conformance.reference_impl.types import Action
from support import packaged_suite

from presence_conformance import spec

WIRE_CHECKS = sorted(name for name, info in REGISTRY.items() if info.family == "wire")
WIRE_REQUIREMENTS = {
    "wire.reenter-no-old-id",
    "wire.enter-no-client-id",
    "wire.update-no-client-id",
    "wire.leave-no-client-id",
    "wire.msg-serial-sequence",
    "wire.presence-after-attach",
    "wire.json-frames-valid",
    "wire.msgpack-binary-data",
}


def log(*frames: Any, client_id: str | None = "alice", truncated: bool = False) -> ConnectionFrames:
    return ConnectionFrames("conn1", client_id, list(frames), "alice", truncated)


def attach(channel: str = "room") -> dict:
    return {"action": 10, "channel": channel}


def presence(serial: int, *items: dict, channel: str = "room") -> dict:
    return {"action": 14, "channel": channel, "presence": list(items), "msgSerial": serial}


def found(logs: ConnectionFrames | list[ConnectionFrames]) -> list[tuple[str, int]]:
    return [
        (f.requirement, f.index)
        for f in analyse([logs] if isinstance(logs, ConnectionFrames) else logs)
    ]


# -- the registry -------------------------------------------------------------------------------


def test_wire_checks_are_registered_for_every_wire_requirement() -> None:
    enforced = {r for name in WIRE_CHECKS for r in CHECKS[name]}
    # the rest of the wire area is the server's frames (test_server_frame_checks.py)
    server = {
        r for name, info in REGISTRY.items() if info.family == "server_frames" for r in CHECKS[name]
    }
    assert enforced == WIRE_REQUIREMENTS
    assert enforced | server == {r.id for r in spec.load_requirements().in_area("wire")}


# -- clientId in the client's own ENTER / UPDATE / LEAVE (RTP8c, RTP9d, RTP10c) ---------------------


@pytest.mark.parametrize(
    ("action", "requirement"),
    [
        (2, "wire.enter-no-client-id"),
        (4, "wire.update-no-client-id"),
        (3, "wire.leave-no-client-id"),
    ],
)
def test_client_id_in_own_presence_item(action: int, requirement: str) -> None:
    frames = [attach(), presence(0, {"action": action, "clientId": "mallory", "data": "x"})]
    findings = analyse([log(*frames)])
    assert [(f.requirement, f.index) for f in findings] == [(requirement, 1)]
    finding = findings[0]
    assert finding.frame == frames[1]
    assert "frame #1" in finding.message and "conn1" in finding.message
    assert "'mallory'" in finding.message


def test_own_client_id_is_still_a_violation() -> None:
    """RTP8c: the clientId must not be present, even when it is the connection's own."""
    frames = [attach(), presence(0, {"action": 2, "clientId": "alice"})]
    findings = analyse([log(*frames)])
    assert [(f.requirement, f.index) for f in findings] == [("wire.enter-no-client-id", 1)]
    assert "its own clientId" in findings[0].message


def test_every_item_of_a_frame_is_judged() -> None:
    frames = [
        attach(),
        presence(
            0, {"action": 2}, {"action": 4, "clientId": "alice"}, {"action": 3, "clientId": "alice"}
        ),
    ]
    assert found(log(*frames)) == [("wire.update-no-client-id", 1), ("wire.leave-no-client-id", 1)]


def test_null_client_id_counts_as_absent_and_wildcards_are_out_of_scope() -> None:
    assert found(log(attach(), presence(0, {"action": 2, "clientId": None}))) == []
    on_behalf = [
        attach(),
        presence(0, {"action": 2, "clientId": "u1"}, {"action": 2, "clientId": "u2"}),
    ]
    assert found(log(*on_behalf, client_id="*")) == []
    # an anonymous connection has no enterClient either: its own frames are judged
    assert found(log(*on_behalf, client_id=None)) == [("wire.enter-no-client-id", 1)] * 2


# -- msgSerial (RTN7b, RTN19a2, TR4j) ---------------------------------------------------------------


def test_msg_serial_must_start_at_zero() -> None:
    findings = analyse([log(attach(), presence(1, {"action": 2}))])
    assert [(f.requirement, f.index) for f in findings] == [("wire.msg-serial-sequence", 1)]
    assert "expected 0" in findings[0].message and "msgSerial 0" in findings[0].message


def test_msg_serial_gap_and_restart() -> None:
    frames = [
        attach(),
        presence(0, {"action": 2}),
        {"action": 0, "id": "ping"},
        presence(2, {"action": 4, "data": "a"}),  # skips 1
        presence(3, {"action": 4, "data": "b"}),  # fine after the gap
        presence(0, {"action": 3}),
    ]  # restarts on the same connectionId
    findings = analyse([log(*frames)])
    assert [(f.requirement, f.index) for f in findings] == [
        ("wire.msg-serial-sequence", 3),
        ("wire.msg-serial-sequence", 5),
    ]
    assert "skips 1" in findings[0].message
    assert "different content" in findings[1].message


def test_message_frames_share_the_sequence() -> None:
    frames = [
        attach(),
        presence(0, {"action": 2}),
        {"action": 15, "channel": "room", "messages": [{"name": "n"}], "msgSerial": 1},
        presence(2, {"action": 3}),
    ]
    assert found(log(*frames)) == []
    wrong = [
        attach(),
        presence(0, {"action": 2}),
        {"action": 15, "channel": "room", "messages": [{"name": "n"}], "msgSerial": 0},
    ]
    assert found(log(*wrong)) == [("wire.msg-serial-sequence", 2)]


def test_resend_after_resume_keeps_its_serial() -> None:
    """A frame resent after a resume repeats its msgSerial (RTN19a); the next new one goes on."""
    frames = [
        attach(),
        presence(0, {"action": 2}),
        presence(1, {"action": 4, "data": "u"}),
        attach(),  # re-attach on the resumed transport
        presence(1, {"action": 4, "data": "u"}),  # the unacknowledged one, resent
        presence(2, {"action": 3}),
    ]
    assert found(log(*frames)) == []


def test_missing_or_bad_msg_serial() -> None:
    no_serial = {"action": 14, "channel": "room", "presence": [{"action": 2}]}
    findings = analyse([log(attach(), no_serial)])
    assert [(f.requirement, f.index) for f in findings] == [("wire.msg-serial-sequence", 1)]
    assert "None" in findings[0].message
    # a string msgSerial is also invalid against the schema
    assert set(found(log(attach(), presence("0", {"action": 2})))) == {  # type: ignore[arg-type]
        ("wire.msg-serial-sequence", 1),
        ("wire.json-frames-valid", 1),
    }


def test_truncated_log_does_not_judge_the_first_serial() -> None:
    frames = [presence(1500, {"action": 4}), presence(1501, {"action": 4})]
    assert [r for r, _ in found(log(*frames, truncated=True))] == ["wire.presence-after-attach"] * 2
    assert ("wire.msg-serial-sequence", 0) in found(log(*frames))


def test_non_ack_frames_are_outside_the_sequence() -> None:
    frames = [{"action": 0, "id": "p"}, attach(), {"action": 12, "channel": "room"}, {"action": 7}]
    assert found(log(*frames)) == []


# -- PRESENCE only on attached channels (RTP16b, RTP5b) --------------------------------------------


def test_presence_without_attach() -> None:
    findings = analyse([log(presence(0, {"action": 2}))])
    assert [(f.requirement, f.index) for f in findings] == [("wire.presence-after-attach", 0)]
    assert "without an ATTACH" in findings[0].message


def test_presence_on_another_channel_than_the_attached_one() -> None:
    frames = [attach("lobby"), presence(0, {"action": 2})]
    assert found(log(*frames)) == [("wire.presence-after-attach", 1)]


def test_presence_after_detach_and_after_reattach() -> None:
    frames = [
        attach(),
        presence(0, {"action": 2}),
        {"action": 12, "channel": "room"},
        presence(1, {"action": 4}),
        attach(),
        presence(2, {"action": 3}),
    ]
    findings = analyse([log(*frames)])
    assert [(f.requirement, f.index) for f in findings] == [("wire.presence-after-attach", 3)]
    assert "after its DETACH" in findings[0].message


# -- frames are JSON ProtocolMessages (TR2, TR4) ---------------------------------------------------


def test_invalid_json_and_non_objects() -> None:
    frames = [
        {"$malformed": "{not json", "$size": 9},  # the server's record of invalid JSON
        {"$malformed": [1, 2]},  # valid JSON, but not an object
        {"$binary": 12},  # binary on a JSON connection: refused by the server, not judged
        attach(),
    ]
    findings = analyse([log(*frames)])
    assert [(f.requirement, f.index) for f in findings] == [
        ("wire.json-frames-valid", 0),
        ("wire.json-frames-valid", 1),
    ]
    assert "not valid JSON" in findings[0].message and findings[0].frame == frames[0]
    assert "not an object" in findings[1].message


def test_msgpack_frames_are_judged_with_binary_item_data_allowed() -> None:
    """MessagePack frames (decoded by the server) are judged like JSON ones; a presence item's
    data may be a `bin` (RSL4c1), binary anywhere else is not a valid field."""
    frames = [
        attach(),
        presence(0, {"action": 2, "data": b"\x00\xff"}),  # bin data: valid
        presence(1, {"action": 4, "data": b"\x01", "encoding": "utf-8"}),  # valid too
        {"action": 10, "channel": b"room"},  # a channel as bin: invalid
        presence(2, {"action": 4, "clientId": b"alice"}),  # clientId as bin: invalid
        {"$malformed": b"\xc1", "$size": 1},  # the server's record of a non-MessagePack frame
        {"$text": 12},  # text on a msgpack connection: refused by the server, not judged
        presence(3, {"action": 9, "data": b"x"}),  # binary data does not hide a bad action
    ]
    findings = analyse([log(*frames, client_id=None)])
    assert [(f.requirement, f.index) for f in findings] == [
        ("wire.json-frames-valid", 3),
        ("wire.update-no-client-id", 4),  # a clientId, whatever its type
        ("wire.json-frames-valid", 4),
        ("wire.json-frames-valid", 5),
        ("wire.json-frames-valid", 7),
    ]
    assert "channel" in findings[0].message
    assert "presence[0].clientId" in findings[2].message
    assert "not valid MessagePack" in findings[3].message
    assert "presence[0].action" in findings[4].message
    assert findings[4].frame["presence"][0]["data"] == b"x"  # the frame as sent, not the view


@pytest.mark.parametrize(
    "frame",
    [
        {"channel": "room"},  # no action
        {"action": "10", "channel": "room"},  # action a string
        {"action": 99},  # unknown action
        {"action": 10, "channel": 7},  # channel not a string
        {"action": 10, "channel": "room", "params": {"rewind": 1}},  # params values are strings
    ],
)
def test_schema_invalid_frames(frame: dict) -> None:
    findings = analyse([log(frame)])
    assert [(f.requirement, f.index) for f in findings] == [("wire.json-frames-valid", 0)]
    assert "not a valid ProtocolMessage" in findings[0].message


def test_schema_invalid_presence_item() -> None:
    frames = [attach(), presence(0, {"action": 7})]
    findings = analyse([log(*frames)])
    assert [(f.requirement, f.index) for f in findings] == [("wire.json-frames-valid", 1)]
    assert "presence" in findings[0].message


def test_huge_frames_are_shown_bounded() -> None:
    frames = [attach(), presence(0, {"action": 2, "clientId": "alice", "data": "x" * 100_000})]
    finding = analyse([log(*frames)])[0]
    assert len(finding.frame["presence"][0]["data"]) < 400


# -- real SDK frames (docs/protocol.md §11) -----------------------------------------


JS_FRAMES = [  # ably-js 2.28.0, §11.2, carol: attach, enter, ping, detach
    {"action": 10, "channel": "room2"},
    {
        "action": 14,
        "channel": "room2",
        "presence": [{"data": '{"mood":"ok"}', "action": 2, "encoding": "json"}],
        "msgSerial": 0,
    },
    {"action": 0, "id": "920935822569622"},
    {"action": 12, "channel": "room2"},
]

JS_RECONNECT_FRAMES = [  # §4.1 / §6 shapes: JS attach, two updates, leave, close
    {"action": 10, "channel": "room2"},
    {
        "action": 14,
        "channel": "room2",
        "presence": [{"data": '{"mood":"ok"}', "action": 2, "encoding": "json"}],
        "msgSerial": 0,
    },
    {
        "action": 14,
        "channel": "room2",
        "presence": [{"data": "later", "action": 4}],
        "msgSerial": 1,
    },
    {"action": 14, "channel": "room2", "presence": [{"action": 3}], "msgSerial": 2},
    {"action": 7},
]

PYTHON_FRAMES = [  # ably-python 3.1.4, §11.1 (the UPDATE, msgSerial 1)
    {"action": 10, "params": None, "channel": "room1"},
    {
        "action": 14,
        "channel": "room1",
        "presence": [
            {"action": 2, "data": '{"mood": "happy"}', "encoding": "json", "clientId": "alice"}
        ],
        "msgSerial": 0,
    },
    {
        "action": 14,
        "channel": "room1",
        "presence": [{"action": 4, "data": "new-data", "clientId": "alice"}],
        "msgSerial": 1,
    },
    {
        "action": 14,
        "channel": "room1",
        "presence": [{"action": 3, "data": None, "clientId": "alice"}],
        "msgSerial": 2,
    },
    {"action": 0, "id": "pVw7RAZ5"},
    {"action": 7},
]

PYTHON_REENTRY_FRAMES = [  # §11.1: after an idle-timeout reconnect, a new connectionId (RTP17i)
    {
        "action": 10,
        "params": None,
        "channel": "multi",
        "flags": 32,
        "channelSerial": "multi@1795877705477",
    },
    {
        "action": 14,
        "channel": "multi",
        "presence": [{"action": 2, "data": "d-u0", "clientId": "u0"}],
        "msgSerial": 0,
    },
]


def test_ably_js_frames_pass() -> None:
    assert analyse([ConnectionFrames("conn0003", "carol", JS_FRAMES, "carol")]) == []
    assert analyse([ConnectionFrames("conn0003", "carol", JS_RECONNECT_FRAMES, "carol")]) == []


def test_ably_python_frames_send_client_id() -> None:
    findings = analyse([ConnectionFrames("conn0001", "alice", PYTHON_FRAMES, "alice")])
    assert [(f.requirement, f.index) for f in findings] == [
        ("wire.enter-no-client-id", 1),
        ("wire.update-no-client-id", 2),
        ("wire.leave-no-client-id", 3),
    ]
    assert findings[0].frame == PYTHON_FRAMES[1]
    reentry = analyse([ConnectionFrames("conn0006", "u0", PYTHON_REENTRY_FRAMES, "u0")])
    assert [(f.requirement, f.index) for f in reentry] == [("wire.enter-no-client-id", 1)]


def test_ably_python_live_frames_send_client_id() -> None:
    """ably-python 3.1.4, unmodified, against the reference server: its real frames."""
    pytest.importorskip("ably", reason="ably-python is in the dev extra: pip install -e '.[dev]'")
    from ably import AblyRealtime

    async def main() -> list[WireFinding]:
        server = PresenceServer(ServerConfig())
        await server.start()
        client = AblyRealtime(
            key=server.default_key,
            client_id="alice",
            endpoint=f"127.0.0.1:{server.port}",
            tls=False,
            use_binary_protocol=False,
            fallback_hosts=[],
        )
        try:
            await asyncio.wait_for(client.connection.once_async("connected"), 10)
            connection_id = client.connection.connection_manager.connection_id
            channel = client.channels.get("room")
            await asyncio.wait_for(channel.attach(), 10)
            await asyncio.wait_for(channel.presence.enter({"mood": "happy"}), 10)
            await asyncio.wait_for(channel.presence.update("new"), 10)
            await asyncio.wait_for(channel.presence.leave(), 10)
            frames = server.frames(connection_id)
        finally:
            await client.close()
            await server.stop()
        assert [f["action"] for f in frames if f.get("action") == 14] == [14, 14, 14]
        return analyse([ConnectionFrames(connection_id, "alice", frames, "alice")])

    findings = asyncio.run(main())
    requirements = [f.requirement for f in findings]
    assert requirements == [
        "wire.enter-no-client-id",
        "wire.update-no-client-id",
        "wire.leave-no-client-id",
    ], [f.message for f in findings]


# -- through the registry, on a case record -------------------------------------------------------


def empty_record() -> Any:
    """A real `CaseRecord` of a scenario that was never run (built by the driver's constructor)."""
    scenario = scenario_from_dict(
        {
            "name": "wire",
            "requirements": ["wire.enter-no-client-id"],
            "clients": {"alice": {}},
            "channels": ["room"],
            "steps": [{"enter": {"client": "alice", "channel": "room"}}],
        }
    )

    async def build() -> Any:
        return CaseDriver(scenario, ReferenceAdapter(), RunSettings()).record

    return asyncio.run(build())


def test_checks_report_through_the_registry() -> None:
    record = empty_record()
    assert run_checks(record, only=WIRE_CHECKS) == ([], [])  # no frames collected: nothing
    set_wire_frames(
        record,
        [
            ConnectionFrames("c1", "alice", PYTHON_FRAMES, "alice"),
            ConnectionFrames("c2", "bob", [presence(3, {"action": 2})], "bob"),
        ],
    )
    violations, infos = run_checks(record, only=WIRE_CHECKS)
    assert infos == []
    assert sorted((v.check, v.requirement) for v in violations) == [
        ("wire_msg_serial", "wire.msg-serial-sequence"),
        ("wire_no_client_id", "wire.enter-no-client-id"),
        ("wire_no_client_id", "wire.leave-no-client-id"),
        ("wire_no_client_id", "wire.update-no-client-id"),
        ("wire_presence_after_attach", "wire.presence-after-attach"),
    ]
    assert {v.level for v in violations} == {"MUST"}
    enter = next(v for v in violations if v.requirement == "wire.enter-no-client-id")
    assert "frame #1" in enter.message and enter.observed == PYTHON_FRAMES[1]


def test_adapters_without_wire_frames_collect_nothing() -> None:
    record = empty_record()
    record.client_connections = {"alice": ["x1"]}
    assert collect_wire_frames(record, ReferenceAdapter()) == []
    assert wire_frames_of(record) == []


# -- end to end: ably-wire against the embedded reference server -----------------------------------


SCENARIOS = ["enter/adds-member", "disconnect/leave-synthesized", "subscribe/action-list"]


def run_cases(case_ids: list[str]) -> list[tuple[Any, list[ConnectionFrames]]]:
    scenarios = {s.case_id: s for s in packaged_suite()}
    out = []

    async def main() -> None:
        adapter = AblyWireAdapter({"leave_grace": "0.1"})
        await adapter.start()
        captured: dict[int, list[ConnectionFrames]] = {}
        original = collect_wire_frames

        def spy(record: Any, adapter_: Any) -> list[ConnectionFrames]:
            captured[0] = original(record, adapter_)
            return captured[0]

        import presence_conformance.harness.run.runner as runner

        runner.collect_wire_frames = spy  # type: ignore[assignment]
        try:
            for case_id in case_ids:
                result = await run_scenario(scenarios[case_id], adapter, RunSettings())
                out.append((result, captured.pop(0, [])))
        finally:
            runner.collect_wire_frames = original  # type: ignore[assignment]
            await adapter.stop()

    asyncio.run(main())
    return out


def test_ably_wire_passes_the_wire_checks_end_to_end() -> None:
    for result, logs in run_cases(SCENARIOS):
        assert result.outcome is Outcome.PASS, (result.case_id, result.error, result.violations)
        assert not [
            v for v in result.violations + result.infos if v.requirement.startswith("wire.")
        ]
        assert logs, f"{result.case_id}: no wire frames were collected"
        actions = [f.get("action") for entry in logs for f in entry.frames]
        assert 10 in actions and 14 in actions and 7 in actions, (result.case_id, actions)
        assert analyse(logs) == []


def test_ably_wire_sending_its_client_id_fails_end_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter's client made to behave like ably-python: clientId in its own ENTER."""

    async def enter(self: WirePresence, data: Any = None) -> None:
        await self._presence._publish(Action.ENTER, data, self._realtime.client_id)

    monkeypatch.setattr(WirePresence, "enter", enter)
    [(result, _logs)] = run_cases(["enter/adds-member"])
    assert result.outcome is Outcome.FAIL
    assert {(v.check, v.requirement) for v in result.violations} == {
        ("wire_no_client_id", "wire.enter-no-client-id")
    }
    violation = result.violations[0]
    assert (
        "frame #" in violation.message and violation.observed["presence"][0]["clientId"] == "alice"
    )


def test_ably_wire_reentering_with_the_old_id_fails_end_to_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RTP17g1: the client made to re-enter with the id of the old connection's member."""
    from presence_conformance.harness.ably_client.connection import RealtimeConnection

    interrupt, send_acked = RealtimeConnection.interrupt, RealtimeConnection.send_acked

    async def remember(self: RealtimeConnection, seconds: float, key: Any = None) -> None:
        self.old_id = self.id  # type: ignore[attr-defined]
        await interrupt(self, seconds, key)

    async def with_old_id(self: RealtimeConnection, frame: dict, channel: Any = None) -> Any:
        old = getattr(self, "old_id", None)
        if old and old != self.id:
            for item in frame.get("presence", ()):
                if item.get("action") == 2 and "id" not in item:
                    item["id"] = f"{old}:0:0"
        return await send_acked(self, frame, channel)

    monkeypatch.setattr(RealtimeConnection, "interrupt", remember)
    monkeypatch.setattr(RealtimeConnection, "send_acked", with_old_id)
    [(result, _logs)] = run_cases(["disconnect/reenter-after-failed-resume"])
    assert ("reentry_id_omitted", "wire.reenter-no-old-id") in {
        (v.check, v.requirement) for v in result.violations
    }, result.violations

"""Server frame checks (`presence_conformance.harness.checks.server_frames`): each rule over
hand-made logs (a frame that breaks it, and the frames it must accept), the problems the client
notices, the registry path over a case record, and which adapters are judged at all.

The mutants of the reference server and the reference passing every scenario with these checks
are in `tests/harness/mutants/test_server_mutants.py`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from presence_conformance.harness.ably_client.server_log import ServerFrames
from presence_conformance.harness.adapter import Feature
from presence_conformance.harness.adapters.ably_js import AblyJsAdapter
from presence_conformance.harness.adapters.ably_python import AblyPythonAdapter
from presence_conformance.harness.adapters.ably_wire import AblyWireAdapter
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.checks import CHECKS, REGISTRY, run_checks
from presence_conformance.harness.checks.server_frames import (
    SYNC_GRACE,
    analyse,
    collect_server_frames,
    server_frames_of,
    set_server_frames,
)
from presence_conformance.harness.run.driver import CaseDriver
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.harness.scenario import scenario_from_dict

from presence_conformance import spec

SERVER_CHECKS = sorted(n for n, info in REGISTRY.items() if info.family == "server_frames")
MODES = 983040


def sf(
    *entries: tuple,
    conn: str = "c1",
    noticed: tuple[str, ...] = (),
    truncated: bool = False,
) -> ServerFrames:
    """A log from (direction, frame) or (direction, seconds, frame) entries; the seconds default
    to the entry's position / 100."""
    out = []
    for position, entry in enumerate(entries):
        if len(entry) == 2:
            out.append((entry[0], position / 100, entry[1]))
        else:
            out.append(entry)
    return ServerFrames(conn, "alice", out, list(noticed), truncated, "alice")


def connected(conn: str = "c1") -> tuple:
    return ("in", {"action": 4, "connectionId": conn, "connectionDetails": {}})


def attach(channel: str = "room") -> tuple:
    return ("out", {"action": 10, "channel": channel})


def attached(flags: int = MODES, channel: str = "room") -> tuple:
    return ("in", {"action": 11, "channel": channel, "flags": flags})


def member(
    client: str, conn: str = "c9", action: int = 1, id_: str | None = None, **more: Any
) -> dict:
    item = {"action": action, "clientId": client, "connectionId": conn, "timestamp": 1000}
    item["id"] = id_ if id_ is not None else f"{conn}:0:0"
    item.update(more)
    return {k: v for k, v in item.items() if v is not None}


def sync(serial: str | None, *items: dict, channel: str = "room") -> tuple:
    frame: dict[str, Any] = {"action": 16, "channel": channel, "presence": list(items)}
    if serial is not None:
        frame["channelSerial"] = serial
    return ("in", frame)


def event(*items: dict, channel: str = "room", **fields: Any) -> tuple:
    return ("in", {"action": 14, "channel": channel, "presence": list(items), **fields})


def publish(serial: int, action: int = 2, channel: str = "room") -> tuple:
    return (
        "out",
        {"action": 14, "channel": channel, "msgSerial": serial, "presence": [{"action": action}]},
    )


def found(*logs: ServerFrames) -> list[tuple[str, int]]:
    return [(f.requirement, f.index) for f in analyse(logs)]


def requirements(*logs: ServerFrames) -> list[str]:
    return [f.requirement for f in analyse(logs)]


# -- the registry ---------------------------------------------------------------------------------


NEW = {
    "wire.server-frames-valid": "MUST",
    "wire.server-protocol": "MUST",
    "wire.server-channel-attached": "SHOULD",
    "wire.has-presence-sync": "MUST",
    "wire.attached-without-presence-empty": "SHOULD",
    "wire.sync-cursor": "MUST",
    "wire.sync-member-once": "SHOULD",
    "wire.sync-present-action": "SHOULD",
    "wire.server-ids-unique": "MUST",
    "wire.server-id-form": "SHOULD",
    "wire.synthesized-leave": "SHOULD",
}


def test_every_server_frame_requirement_has_a_check_and_its_level() -> None:
    enforced = {r for name in SERVER_CHECKS for r in CHECKS[name]}
    assert enforced == set(NEW)
    catalogue = spec.load_requirements()
    assert {rid: catalogue.by_id(rid).level for rid in NEW} == NEW


# -- a clean log ----------------------------------------------------------------------------------


def clean_log() -> ServerFrames:
    return sf(
        connected(),
        attach(),
        attached(MODES | 1),
        sync("s1:1", member("a", "c8")),
        sync("s1:", member("b", "c9"), member("b", "c8", id_="c8:1:0")),
        publish(0),
        event(member("alice", "c1", 2, "c1:0:0")),
        event(member("z", "c7", 2, id_=None), id="c7:4", connectionId="c7", timestamp=5),
        event(member("a", "c8", 3, "synthetic-1")),
        attach("empty"),
        attached(channel="empty"),
        event(member("a", "c8", 2, "c8:2:0"), channel="room"),
        ("out", {"action": 7}),
        ("in", {"action": 8}),
    )


def test_a_conforming_log_passes_every_rule() -> None:
    assert found(clean_log()) == []


# -- SYNC ---------------------------------------------------------------------------------------------


def test_a_member_listed_twice_in_one_sequence() -> None:
    log = sf(
        connected(),
        attach(),
        attached(MODES | 1),
        sync("s1:1", member("a")),
        sync("s1:", member("b", "c8"), member("a")),
        sync("s2:", member("a")),  # a new sequence may list it again
    )
    assert found(log) == [("wire.sync-member-once", 4)]
    # the memberKey is connectionId:clientId: the same clientId on two connections is two members
    assert (
        found(
            sf(
                connected(),
                attach(),
                attached(MODES | 1),
                sync(None, member("a", "c8"), member("a", "c9", id_="c9:1:0")),
            )
        )
        == []
    )
    # a SYNC without channelSerial is a whole sync: a member twice in it is reported
    assert requirements(
        sf(connected(), attach(), attached(MODES | 1), sync(None, member("a"), member("a")))
    ) == ["wire.sync-member-once"]


def test_sync_items_are_present() -> None:
    log = sf(connected(), attach(), attached(MODES | 1), sync("s1:", member("a", action=2)))
    assert found(log) == [("wire.sync-present-action", 3)]


@pytest.mark.parametrize("serial", ["s1", ":1", ":", 17])
def test_a_malformed_sync_cursor(serial: Any) -> None:
    log = sf(connected(), attach(), attached(MODES | 1), sync(None, member("a")))
    log.entries[3][2]["channelSerial"] = serial
    # TR4c: a channelSerial is a string, so 17 breaks the frame's schema as well
    schema = [("wire.server-frames-valid", 3)] if serial == 17 else []
    assert found(log) == [*schema, ("wire.sync-cursor", 3)]


def test_a_sequence_that_never_ends() -> None:
    # left open at CLOSED, the client having closed SYNC_GRACE later
    late = sf(
        connected(),
        attach(),
        attached(MODES | 1),
        ("in", 0.0, sync("s1:1", member("a"))[1]),
        ("out", SYNC_GRACE + 0.1, {"action": 7}),
        ("in", SYNC_GRACE + 0.2, {"action": 8}),
    )
    assert found(late) == [("wire.sync-cursor", 3)]
    # closed at once: not judged (the server may abandon a sync on CLOSE)
    quick = sf(
        connected(),
        attach(),
        attached(MODES | 1),
        sync("s1:1", member("a")),
        ("out", {"action": 7}),
        ("in", {"action": 8}),
    )
    assert found(quick) == []
    # replaced by a new sequence (RTP18a) or an additional ATTACHED (RTL12), or ended by a
    # DETACHED, before a late CLOSE: fine
    close = [("out", SYNC_GRACE + 1, {"action": 7}), ("in", SYNC_GRACE + 1, {"action": 8})]
    replaced = sf(
        connected(),
        attach(),
        attached(MODES | 1),
        sync("s1:1", member("a")),
        sync("s2:", member("a")),
        *close,
    )
    reattached = sf(
        connected(),
        attach(),
        attached(MODES | 1),
        sync("s1:1", member("a")),
        attached(MODES),
        *close,
    )
    detached = sf(
        connected(),
        attach(),
        attached(MODES | 1),
        sync("s1:1", member("a")),
        ("in", {"action": 13, "channel": "room"}),
        *close,
    )
    assert found(replaced) == found(reattached) == found(detached) == []


def test_has_presence_is_followed_by_a_sync() -> None:
    late = sf(
        connected(),
        attach(),
        ("in", 0.0, attached(MODES | 1)[1]),
        ("out", SYNC_GRACE + 0.1, {"action": 7}),
        ("in", SYNC_GRACE + 0.2, {"action": 8}),
    )
    assert found(late) == [("wire.has-presence-sync", 2)]
    assert "no SYNC" in analyse([late])[0].message
    # an empty SYNC keeps the promise (RTP1: "the sync may be empty"); a DETACHED or an
    # additional ATTACHED (RTL12) ends the duty; a client that closes at once is not judged
    close = [("out", SYNC_GRACE + 1, {"action": 7}), ("in", SYNC_GRACE + 1, {"action": 8})]
    for between in (
        [sync("s:")],
        [("in", {"action": 13, "channel": "room"})],
        [attached(MODES)],
    ):
        log = sf(connected(), attach(), attached(MODES | 1), *between, *close)
        assert found(log) == [], between
    quick = sf(
        connected(), attach(), attached(MODES | 1), ("out", {"action": 7}), ("in", {"action": 8})
    )
    assert found(quick) == []


def test_attached_without_has_presence_is_not_followed_by_members() -> None:
    log = sf(connected(), attach(), attached(MODES), sync("s1:", member("a")))
    assert found(log) == [("wire.attached-without-presence-empty", 3)]
    # an empty sync, or a later server-initiated sync (RTP18) after another frame: fine
    assert found(sf(connected(), attach(), attached(MODES), sync("s1:"))) == []
    later = sf(
        connected(),
        attach(),
        attached(MODES),
        event(member("b", action=2)),
        sync("s1:", member("a", id_="c9:1:0")),
    )
    assert found(later) == []


# -- channels -------------------------------------------------------------------------------------


def test_presence_for_a_channel_not_attached() -> None:
    log = sf(
        connected(),
        attach(),
        attached(),
        event(member("a", action=2), channel="lobby"),  # never attached: a leak
        ("out", {"action": 12, "channel": "room"}),
        event(member("b", action=2, id_="c9:1:0")),  # crossed the DETACH: fine
        ("in", {"action": 13, "channel": "room"}),
        event(member("c", action=2, id_="c9:2:0")),  # after DETACHED
        sync(None, member("c", id_="c9:2:0"), channel="lobby"),
    )
    assert found(log) == [
        ("wire.server-channel-attached", 3),
        ("wire.server-channel-attached", 7),
        ("wire.server-channel-attached", 8),
    ]
    message = analyse([log])[0].message
    assert "'lobby'" in message and "never sent ATTACH" in message


def test_a_truncated_log_does_not_guess_attaches_it_lost() -> None:
    log = sf(event(member("a", action=2)), truncated=True)
    assert found(log) == []


def test_a_new_connection_id_attaches_nothing_but_a_resume_keeps_its_channels() -> None:
    new = sf(connected("c1"), attach(), attached(), connected("c2"), event(member("a", action=2)))
    resumed = sf(
        connected("c1"), attach(), attached(), connected("c1"), event(member("a", action=2))
    )
    assert found(new) == [("wire.server-channel-attached", 4)]
    assert found(resumed) == []


# -- ids ------------------------------------------------------------------------------------------


def test_two_messages_with_one_id() -> None:
    log = sf(
        connected(),
        attach(),
        attached(MODES | 1),
        sync("s:", member("a", "c9", id_="c9:0:0"), member("b", "c8", id_="c9:0:0")),
    )
    assert ("wire.server-ids-unique", 3) in found(log)
    # the same message again (a PRESENT of the sync, a redelivery) is not a second message
    same = sf(
        connected(),
        attach(),
        attached(MODES | 1),
        event(member("a", "c9", 2, "c9:0:0", data="x")),
        sync("s:", member("a", "c9", 1, "c9:0:0", data="x")),
        event(member("a", "c9", 2, "c9:0:0", data="x")),
    )
    assert found(same) == []
    # an UPDATE with an ENTER's id is another message
    other = sf(
        connected(),
        attach(),
        attached(),
        event(member("a", "c9", 2, "c9:0:0")),
        event(member("a", "c9", 4, "c9:0:0")),
    )
    assert found(other) == [("wire.server-ids-unique", 4)]


def test_published_ids_have_the_form_conn_serial_index() -> None:
    log = sf(
        connected(),
        attach(),
        attached(),
        event(member("a", "c9", 2, "x-1")),
        event(member("b", "c9", 4, "c9-3-0")),
        event(member("c", "c9", 2, id_="")),  # no id at all
        event(member("d", "c9", 3, "c9:x:0")),  # a LEAVE of its own form, malformed
    )
    assert found(log) == [("wire.server-id-form", i) for i in (3, 4, 5, 6)]


def test_ids_name_what_the_publisher_sent() -> None:
    publisher = sf(
        connected("c2"),
        attach(),
        attached(),
        publish(0, 2),
        publish(1, 4),
        publish(2, 3),
        conn="c2",
    )
    receiver = sf(
        connected(),
        attach(),
        attached(MODES | 1),
        event(member("bob", "c2", 2, "c2:0:0")),
        event(member("bob", "c2", 2, "c2:1:0")),  # sent as UPDATE, broadcast as ENTER: fine
        sync("s:", member("bob", "c2", 1, "c2:1:0")),
        event(member("bob", "c2", 4, "c2:0:3")),  # index 3 was never sent
        event(member("bob", "c2", 4, "c2:7:0")),  # nor msgSerial 7
        event(member("bob", "c2", 3, "c2:2:0")),
    )
    assert found(publisher, receiver) == [("wire.server-id-form", 6), ("wire.server-id-form", 7)]
    # an unknown publisher, or one whose log lost frames, is judged by the form only
    assert found(receiver) == []
    publisher.truncated = True
    assert requirements(publisher, receiver) == []


def test_synthesized_leaves() -> None:
    publisher = sf(connected("c2"), attach(), attached(), publish(0, 2), conn="c2")
    receiver = sf(
        connected(),
        attach(),
        attached(),
        event(member("bob", "c2", 3, "synthetic-1")),  # fine
        event(member("bob", "c2", 3, "synthetic-2", timestamp=None)),  # no timestamp
        event(member("bob", "c2", 3, "synthetic-3", timestamp=None), timestamp=7),  # TP3g
        event(member("bob", "c2", 3, "c2:5:0")),  # c2 never left: a synthesized leave
        event(member("bob", "c2", 3, id_="")),  # no id
    )
    assert found(publisher, receiver) == [
        ("wire.synthesized-leave", 4),
        ("wire.synthesized-leave", 6),
        ("wire.synthesized-leave", 7),
    ]


# -- frames, and what the client noticed ------------------------------------------------------------


def test_invalid_server_frames() -> None:
    log = sf(
        connected(),
        attach(),
        attached(),
        event(member("a", action=2), timestamp="now"),
        ("in", ["x"]),
    )
    assert found(log) == [("wire.server-frames-valid", 3), ("wire.server-frames-valid", 4)]


NOTICED = [
    ("undecodable frame (Expecting value): b'nope'", "wire.server-frames-valid"),
    ("binary frame on a format=json connection: b'\\x80'", "wire.server-frames-valid"),
    ("unexpected action 99 from the server: {'action': 99}", "wire.server-protocol"),
    ("CONNECTED without connectionId: {'action': 4}", "wire.server-protocol"),
    ("no frame from the server for 16.0 s (maxIdleInterval 15000 ms)", "wire.server-protocol"),
]


@pytest.mark.parametrize(("text", "requirement"), NOTICED)
def test_what_the_client_noticed_is_a_violation(text: str, requirement: str) -> None:
    findings = analyse([sf(connected(), noticed=(text,))])
    assert [f.requirement for f in findings] == [requirement]
    assert text[:30] in findings[0].message


def test_acks_answer_the_clients_own_serials_once() -> None:
    ack = lambda serial, count=1: ("in", {"action": 1, "msgSerial": serial, "count": count})  # noqa: E731
    log = sf(
        connected(),
        attach(),
        attached(),
        publish(0),
        publish(1),
        ack(0, 2),
        ack(1),  # answered already
        (
            "in",
            {
                "action": 2,
                "msgSerial": 5,
                "count": 1,
                "error": {"code": 40000, "statusCode": 400, "message": "no"},
            },
        ),  # never sent
        noticed=(
            "ACK/NACK for msgSerial(s) [1] that are not pending: {}",
            "ACK/NACK for msgSerial(s) [5] that are not pending: {}",
        ),
    )
    assert found(log) == [("wire.server-protocol", 6), ("wire.server-protocol", 7)]
    # an answer after the client gave up waiting (it says "not pending") is late, not wrong
    late = sf(
        connected(),
        attach(),
        attached(),
        publish(0),
        ack(0),
        noticed=("ACK/NACK for msgSerial(s) [0] that are not pending: {}",),
    )
    assert found(late) == []
    # a new connectionId starts the serials again; a resumed one keeps them, and may answer
    # again what the old transport answered
    again = sf(connected("c1"), attach(), attached(), publish(0), ack(0), connected("c1"), ack(0))
    assert found(again) == []
    assert found(sf(connected("c1"), publish(0), ack(0), connected("c2"), ack(0))) == [
        ("wire.server-protocol", 4)
    ]


def test_a_noticed_leak_is_reported_once_from_the_frames() -> None:
    text = "PRESENCE for channel 'lobby' that this connection never attached"
    log = sf(connected(), event(member("a", action=2), channel="lobby"), noticed=(text,))
    assert found(log) == [("wire.server-channel-attached", 1)]


# -- through the registry, and who is judged ------------------------------------------------------


def empty_record() -> Any:
    scenario = scenario_from_dict(
        {
            "name": "server-frames",
            "requirements": ["enter.adds-member"],
            "clients": {"alice": {}},
            "channels": ["room"],
            "steps": [{"enter": {"client": "alice", "channel": "room"}}],
        }
    )

    async def build() -> Any:
        return CaseDriver(scenario, ReferenceAdapter(), RunSettings()).record

    return asyncio.run(build())


def test_checks_report_through_the_registry_with_the_catalogue_levels() -> None:
    record = empty_record()
    assert run_checks(record, only=SERVER_CHECKS) == ([], [])
    log = sf(
        connected(),
        attach(),
        attached(MODES | 1),
        sync("s1", member("a"), member("a", action=2)),
        event(member("b", action=2), channel="lobby"),
    )
    set_server_frames(record, [log])
    violations, infos = run_checks(record, only=SERVER_CHECKS)
    assert infos == []
    assert sorted((v.check, v.requirement, v.level) for v in violations) == [
        ("server_channel_attached", "wire.server-channel-attached", "SHOULD"),
        ("server_sync", "wire.sync-cursor", "MUST"),
        ("server_sync", "wire.sync-member-once", "SHOULD"),
        ("server_sync", "wire.sync-present-action", "SHOULD"),
    ]
    assert all(v.observed for v in violations)


def test_only_adapters_that_see_server_frames_are_judged() -> None:
    assert Feature.SERVER_FRAMES in AblyWireAdapter.features
    assert (
        Feature.SERVER_FRAMES
        in AblyWireAdapter({"endpoint": "127.0.0.1:1", "key": "a.b:c"}).features
    )  # another server: no frame log of its own, but its frames to our client
    for sdk in (ReferenceAdapter, AblyPythonAdapter, AblyJsAdapter):
        assert Feature.SERVER_FRAMES not in sdk.features
    record = empty_record()
    record.client_connections = {"alice": ["x1"]}
    assert collect_server_frames(record, ReferenceAdapter()) == []
    assert server_frames_of(record) == []


def test_a_case_that_scripts_the_server_is_not_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    """`server:` steps make the embedded server send odd frames on purpose (to test a client):
    stand-in here, the `enter` kind of the record's one step."""
    import presence_conformance.harness.checks.server_frames as server_frames

    record = empty_record()
    set_server_frames(record, [sf(connected(), event(member("a", action=2), channel="lobby"))])
    assert run_checks(record, only=SERVER_CHECKS)[0]
    monkeypatch.setattr(server_frames, "SCRIPTED_STEPS", frozenset({"enter"}))
    assert run_checks(record, only=SERVER_CHECKS) == ([], [])


def test_frame_schema_is_judged_alike_for_frames_of_both_directions() -> None:
    """One helper (`wire.frame_schema_finding`) judges the frames a client sent and those a
    server sent: the same frames get the same problem, each under its own requirement."""
    from presence_conformance.harness.checks.server_frames import frames_valid_findings
    from presence_conformance.harness.checks.wire import ConnectionFrames, frame_validity_findings

    bad = [["not", "an", "object"], {"action": "fifteen"}, {"action": 15, "channel": "room"}]
    server = ServerFrames("c1", "alice", [("in", 0.0, f) for f in bad], [], False, "alice")
    client = ConnectionFrames("c1", "alice", list(bad), "alice")
    from_server = list(frames_valid_findings(server))
    from_client = list(frame_validity_findings(client))
    assert [f.index for f in from_server] == [f.index for f in from_client] == [0, 1]
    assert {f.requirement for f in from_server} == {"wire.server-frames-valid"}
    assert {f.requirement for f in from_client} == {"wire.json-frames-valid"}
    for a, b in zip(from_server, from_client, strict=True):
        assert a.message.split(f"#{a.index} ", 1)[1] == b.message.split(f"#{b.index} ", 1)[1]
        assert a.expected == b.expected

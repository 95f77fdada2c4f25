"""The JSON Schemas in `spec/schemas/`: valid themselves, accepting good samples, and refusing bad
ones with messages that name the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from presence_conformance.spec import validate

from presence_conformance import spec

OURS = [
    "presence-message",
    "wire-presence-message",
    "wire-protocol-message",
    "get-options",
    "history-options",
    "history-page",
    "error-info",
]

MEMBER: dict[str, Any] = {
    "action": "enter",
    "clientId": "alice",
    "connectionId": "conn-1",
    "data": {"mood": "happy"},
    "timestamp": 1795877671635,
    "id": "conn-1:0:0",
}

# Frames copied from docs/protocol.md (§4.1 and §5 ATTACH/ATTACHED/SYNC, §6 PRESENCE,
# §2.2 CONNECTED, §2.4 HEARTBEAT, §11 the rest), as the official SDKs and the prototype server sent them.
WIRE_FRAMES = [
    # §6 PRESENCE, client to server
    '{"action": 14, "channel": "room1", "presence": [{"action": 2, "data": "{\\"mood\\": \\"happy\\"}",'
    ' "encoding": "json", "clientId": "alice"}], "msgSerial": 0}',
    '{"action":14,"channel":"room2","presence":[{"data":"{\\"mood\\":\\"ok\\"}","action":2,'
    '"encoding":"json"}],"msgSerial":0}',
    '{"action": 14, "channel": "room1", "presence": [{"action": 3, "data": null, "clientId": "alice"}],'
    ' "msgSerial": 2}',
    # §4.1 ATTACH and ATTACHED, §5 SYNC
    '{"action": 10, "params": null, "channel": "room1"}',
    '{"action": 10, "params": null, "channel": "multi", "flags": 32, "channelSerial": "multi@1795877705477"}',
    '{"action":11,"channel":"room1","flags":983040,"channelSerial":"room1@1795877671635"}',
    '{"action":16,"channel":"multi","channelSerial":"sync1:c1","presence":[{"id":"conn0008:0:0",'
    '"action":1,"clientId":"u0","connectionId":"conn0008","timestamp":1795877741729,"data":"d-u0"}]}',
    '{"action":16,"channel":"multi","channelSerial":"sync1:","presence":[]}',
    # §2.2 CONNECTED
    '{"action": 4, "connectionId": "conn0001", "connectionKey": "key0001!conn0001",'
    ' "connectionDetails": {"clientId": "alice", "connectionKey": "key0001!conn0001",'
    ' "maxMessageSize": 65536, "maxInboundRate": 250, "maxOutboundRate": 100,'
    ' "maxFrameSize": 524288, "serverId": "proto-1", "connectionStateTtl": 120000,'
    ' "maxIdleInterval": 15000}}',
    # §2.4 HEARTBEAT, §11 ACK, NACK, CLOSE, CLOSED, DETACH
    '{"action":0,"id":"920935822569622"}',
    '{"action": 1, "msgSerial": 0, "count": 1}',
    '{"action": 2, "msgSerial": 0, "count": 1, "error": {"code": 40160, "statusCode": 401,'
    ' "message": "presence not permitted (prototype NACK)"}}',
    '{"action": 7}',
    '{"action": 8}',
    '{"action":12,"channel":"room2"}',
    # a synthesized leave (§8.1)
    '{"action":14,"channel":"room1","presence":[{"id":"synthetic-conn0001:1795877672777","action":3,'
    '"clientId":"alice","connectionId":"conn0001","timestamp":1795877672777}]}',
]


def _has(messages: list[str], *parts: str) -> bool:
    return any(all(p in m for p in parts) for m in messages)


# -- the schemas themselves ----------------------------------------------------------------------


def test_expected_schemas_exist() -> None:
    assert set(OURS) <= set(spec.schema_names())


@pytest.mark.parametrize("name", spec.schema_names())
def test_schema_is_valid(name: str) -> None:
    # Every schema in the directory, including those other parts of the harness add.
    Draft202012Validator.check_schema(spec.schema(name))
    assert spec.schema(name).get("$id", f"/{name}.json").endswith(f"/{name}.json")


def test_schema_ids_unique() -> None:
    ids = [spec.schema(n).get("$id") for n in spec.schema_names()]
    ids = [i for i in ids if i]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", OURS)
def test_schema_metadata(name: str) -> None:
    s = spec.schema(name)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["$id"] == f"https://presence-conformance.dev/schemas/{name}.json"
    assert s["title"] and s["description"]


def test_schema_returns_a_copy() -> None:
    spec.schema("get-options")["properties"].clear()
    assert spec.schema("get-options")["properties"]


def test_unknown_schema() -> None:
    with pytest.raises(KeyError, match=r"known schemas: .*presence-message"):
        spec.schema("presence-msg")


def test_validator_is_cached() -> None:
    assert spec.validator("presence-message") is spec.validator("presence-message")
    assert isinstance(spec.validator("presence-message"), Draft202012Validator)


# -- presence-message (API form) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        None,
        "",
        "text",
        "emoji \U0001f600 and ünïcödé",
        {"mood": "happy", "nested": {"a": [1, 2]}},
        {},
        [1, "two", {"three": 3}],
        [],
        {"$binary": "AAE="},
        {"$binary": ""},
        {"$binary": "AAECAw=="},
        {"$binary": "not base64 but", "other": "key: an ordinary object"},
    ],
)
def test_presence_message_data_accepted(data: Any) -> None:
    assert validate("presence-message", {**MEMBER, "data": data}) == []


@pytest.mark.parametrize("action", ["enter", "leave", "update", "present"])
def test_presence_message_actions_accepted(action: str) -> None:
    assert validate("presence-message", {**MEMBER, "action": action}) == []


def test_presence_message_optional_fields() -> None:
    without_data = {k: v for k, v in MEMBER.items() if k != "data"}
    assert validate("presence-message", without_data) == []
    assert validate("presence-message", {**MEMBER, "extras": {"headers": {"k": "v"}}}) == []
    # RTP19: a leave a client synthesizes after a sync has a null id
    assert validate("presence-message", {**MEMBER, "action": "leave", "id": None}) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"clientId": 5}, "clientId"),
        ({"clientId": ""}, "clientId"),
        ({"connectionId": None}, "connectionId"),
        ({"action": "absent"}, "action"),
        ({"action": 2}, "action"),
        ({"timestamp": -1}, "timestamp"),
        ({"timestamp": 1.5}, "timestamp"),
        ({"timestamp": "1795877671635"}, "timestamp"),
        ({"timestamp": True}, "timestamp"),
        ({"id": ""}, "id"),
        ({"id": 7}, "id"),
        ({"id": None}, "id"),  # only a leave may have a null id
        ({"data": 5}, "data"),
        ({"data": True}, "data"),
        ({"data": {"$binary": 5}}, "data.$binary"),
        ({"data": {"$binary": "AAE"}}, "data.$binary"),
        ({"data": {"$binary": "not base64!"}}, "data.$binary"),
        ({"extras": "x"}, "extras"),
        ({"encoding": "json"}, "encoding"),
        ({"memberKey": "conn-1:alice"}, "memberKey"),
    ],
)
def test_presence_message_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    messages = validate("presence-message", {**MEMBER, **change})
    assert messages, change
    assert all(m.startswith(f"{field}: ") for m in messages), messages


def test_presence_message_example_message() -> None:
    assert validate("presence-message", {**MEMBER, "clientId": 5}) == [
        "clientId: 5 is not of type 'string'"
    ]


@pytest.mark.parametrize("field", ["action", "clientId", "connectionId", "timestamp", "id"])
def test_presence_message_required(field: str) -> None:
    messages = validate("presence-message", {k: v for k, v in MEMBER.items() if k != field})
    assert messages == [f"{field}: is a required property"]


def test_not_an_object() -> None:
    assert validate("presence-message", [MEMBER]) == [
        f"(root): {[MEMBER]!r} is not of type 'object'"
    ]


def test_reference_model_messages_are_valid() -> None:
    from presence_conformance.reference_impl.types import Action, PresenceMessage

    for data in (None, "s", {"a": 1}, [1, 2], b"\x00\x01\xff", b""):
        for action in (Action.ENTER, Action.UPDATE, Action.LEAVE, Action.PRESENT):
            msg = PresenceMessage(
                action=action,
                client_id="alice",
                connection_id="conn-1",
                data=data,
                timestamp=1,
                id="conn-1:3:0",
            )
            assert validate("presence-message", msg.to_json()) == [], (action, data)
            assert validate("presence-message", json.loads(json.dumps(msg.to_json()))) == []


# -- wire forms --------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", WIRE_FRAMES)
def test_wire_frames_from_the_research_validate(frame: str) -> None:
    assert validate("wire-protocol-message", json.loads(frame)) == []


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"channel": "room1"}, "action"),
        ({"action": 22}, "action"),
        ({"action": "PRESENCE"}, "action"),
        ({"action": 14, "msgSerial": -1}, "msgSerial"),
        ({"action": 14, "msgSerial": "0"}, "msgSerial"),
        ({"action": 14, "presence": {"action": 2}}, "presence"),
        ({"action": 14, "presence": [{"data": "x"}]}, "presence[0].action"),
        ({"action": 14, "presence": [{"action": 2}, {"action": 5}]}, "presence[1].action"),
        ({"action": 14, "presence": [{"action": 2, "clientId": 5}]}, "presence[0].clientId"),
        ({"action": 14, "presence": [{"action": 2, "timestamp": -5}]}, "presence[0].timestamp"),
        (
            {"action": 2, "error": {"code": "40160", "statusCode": 401, "message": "m"}},
            "error.code",
        ),
        ({"action": 2, "error": {"code": 40160, "message": "m"}}, "error.statusCode"),
        ({"action": 10, "channel": 5}, "channel"),
        ({"action": 10, "flags": -1}, "flags"),
        ({"action": 10, "params": {"rewind": 1}}, "params.rewind"),
        (
            {"action": 4, "connectionDetails": {"maxMessageSize": "64k"}},
            "connectionDetails.maxMessageSize",
        ),
        ({"action": 4, "connectionDetails": []}, "connectionDetails"),
    ],
)
def test_wire_frames_refused_naming_the_field(frame: dict[str, Any], field: str) -> None:
    messages = validate("wire-protocol-message", frame)
    assert messages and _has(messages, f"{field}: "), messages


def test_wire_allows_unknown_fields() -> None:
    assert validate("wire-protocol-message", {"action": 14, "futureField": {"x": 1}}) == []
    assert validate("wire-presence-message", {"action": 2, "version": "1"}) == []


def test_wire_presence_message_alone() -> None:
    assert validate("wire-presence-message", {"action": 0}) == []
    assert (
        validate("wire-presence-message", {"action": 4, "data": {"a": 1}, "encoding": None}) == []
    )
    assert _has(validate("wire-presence-message", {"action": -1}), "action: ")
    assert _has(validate("wire-presence-message", {"action": 2, "encoding": 1}), "encoding: ")


# -- options, pages, errors ----------------------------------------------------------------------


def test_get_options() -> None:
    assert validate("get-options", {}) == []
    assert (
        validate("get-options", {"clientId": "a", "connectionId": "c", "waitForSync": False}) == []
    )
    assert _has(validate("get-options", {"waitForSync": "yes"}), "waitForSync: ")
    assert _has(validate("get-options", {"clientId": 1}), "clientId: ")
    assert _has(validate("get-options", {"limit": 10}), "limit: ", "unexpected")


def test_history_options() -> None:
    assert validate("history-options", {}) == []
    ok = {"start": 0, "end": 1795877671635, "limit": 1000, "direction": "forwards"}
    assert validate("history-options", ok) == []
    assert validate("history-options", {"limit": 1, "direction": "backwards"}) == []
    for bad, field in [
        ({"limit": 1001}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": 2.5}, "limit"),
        ({"direction": "sideways"}, "direction"),
        ({"start": -1}, "start"),
        ({"end": "now"}, "end"),
        ({"cursor": "x"}, "cursor"),
    ]:
        assert _has(validate("history-options", bad), f"{field}: "), bad


def test_history_page() -> None:
    assert validate("history-page", {"items": [], "hasNext": False}) == []
    assert validate("history-page", {"items": [MEMBER], "hasNext": True, "cursor": "f:1"}) == []
    assert validate("history-page", {"items": [MEMBER], "hasNext": False, "cursor": None}) == []
    assert _has(
        validate("history-page", {"items": [{**MEMBER, "clientId": 5}], "hasNext": False}),
        "items[0].clientId: ",
    )
    assert _has(validate("history-page", {"items": []}), "hasNext: ", "required")
    assert _has(validate("history-page", {"items": [], "hasNext": 0}), "hasNext: ")


def test_error_info() -> None:
    from presence_conformance.reference_impl.errors import PresenceError

    assert validate("error-info", PresenceError(40160, "no presence capability").to_dict()) == []
    assert (
        validate(
            "error-info",
            {
                "code": 40003,
                "statusCode": 400,
                "message": "limit",
                "href": "https://help.ably.io/error/40003",
                "cause": {"code": 40000, "statusCode": 400, "message": "m"},
                "detail": {"argument": "limit"},
            },
        )
        == []
    )
    assert _has(validate("error-info", {"statusCode": 400, "message": "m"}), "code: ", "required")
    assert _has(validate("error-info", {"code": 400, "statusCode": 400, "message": "m"}), "code: ")
    assert _has(
        validate(
            "error-info", {"code": 40000, "statusCode": 400, "message": "m", "cause": {"code": "x"}}
        ),
        "cause.code: ",
    )

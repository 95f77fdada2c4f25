"""Unit tests of the harness's Ably client: presence rules fed with hand-made frames.

No network: `PresenceState` is fed ATTACHED / PRESENCE / SYNC ProtocolMessages as dicts, the
way the connection's reader feeds it, and the events it emits are collected.
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from presence_conformance.harness.ably_client import (
    PresenceEmitter,
    PresenceState,
    decode_data,
    encode_data,
    parse_links,
    presence_from_wire,
    presence_to_wire,
)
from presence_conformance.reference_impl.client_presence import is_newer, is_synthesized
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.types import Action, PresenceMessage

NOW = 1_800_000_000_000
HAS_PRESENCE = 1


def item(
    action: str,
    client: str,
    conn: str,
    serial: int | None = 0,
    index: int = 0,
    ts: int = NOW,
    data: object = None,
    id_: str | None = None,
) -> dict:
    """A wire presence item; `id` is `conn:serial:index` unless given (or serial is None)."""
    out: dict = {
        "action": Action(action).wire,
        "clientId": client,
        "connectionId": conn,
        "timestamp": ts,
    }
    if id_ is not None:
        out["id"] = id_
    elif serial is not None:
        out["id"] = f"{conn}:{serial}:{index}"
    if data is not None:
        out["data"] = data
    return out


def presence(*items: dict, channel: str = "room") -> dict:
    return {"action": 14, "channel": channel, "presence": list(items)}


def sync(serial: str | None, *items: dict, channel: str = "room") -> dict:
    frame: dict = {"action": 16, "channel": channel, "presence": list(items)}
    if serial is not None:
        frame["channelSerial"] = serial
    return frame


class Recorder:
    """A PresenceState with a listener on all actions that records what it is given."""

    def __init__(self, clock_value: int = NOW + 10_000) -> None:
        self.events: list[PresenceMessage] = []
        self.state = PresenceState(clock=lambda: clock_value)
        self.state.emitter.subscribe(self.events.append)

    def seen(self) -> list[tuple[str, str, str | None]]:
        out = [(e.action.value, e.client_id, e.id) for e in self.events]
        self.events.clear()
        return out

    def members(self) -> list[tuple[str, str]]:
        return [(m.client_id, m.connection_id) for m in self.state.map.values()]


def attached(rec: Recorder, has_presence: bool = False) -> None:
    rec.state.on_attached(HAS_PRESENCE if has_presence else 0)


# -- newness (RTP2b) ---------------------------------------------------------------------------


def msg(
    id_: str | None, conn: str = "c1", ts: int = NOW, action: str = "present"
) -> PresenceMessage:
    return PresenceMessage(
        action=Action(action), client_id="a", connection_id=conn, timestamp=ts, id=id_
    )  # type: ignore[arg-type]


def test_newness_compares_msg_serial_numerically_not_as_text():
    assert is_newer(msg("c1:10:0"), msg("c1:9:0"))
    assert not is_newer(msg("c1:9:0"), msg("c1:10:0"))


def test_newness_compares_index_when_msg_serial_is_equal():
    assert is_newer(msg("c1:3:10"), msg("c1:3:9"))
    assert not is_newer(msg("c1:3:1"), msg("c1:3:2"))
    assert not is_newer(msg("c1:3:1"), msg("c1:3:1"))  # a duplicate is not newer


def test_newness_ignores_timestamps_for_real_ids():
    assert is_newer(msg("c1:2:0", ts=NOW - 5000), msg("c1:1:0", ts=NOW))


def test_synthesized_messages_compare_by_timestamp_and_a_tie_goes_to_the_incoming_one():
    synthetic = msg("synthetic-7", ts=NOW)
    assert is_synthesized(synthetic)
    assert not is_synthesized(msg("c1:0:0"))
    assert is_newer(synthetic, msg("c1:99:0", ts=NOW - 1))
    assert not is_newer(synthetic, msg("c1:0:0", ts=NOW + 1))
    assert is_newer(synthetic, msg("c1:0:0", ts=NOW))  # RTP2b1a
    assert is_newer(msg("c1:0:0", ts=NOW), synthetic)  # either side synthesized
    assert is_synthesized(msg(None))
    # RTP2b1 is about a connectionId that is not a prefix of the id; without a connectionId the
    # ids are compared by RTP2b2
    assert not is_synthesized(msg("c1:0:0", conn=""))
    assert is_newer(msg("c1:2:0", conn="", ts=NOW - 1), msg("c1:1:0", conn="", ts=NOW))


def test_malformed_ids_fall_back_to_timestamps():
    assert is_newer(msg("c1:x:0", ts=NOW + 1), msg("c1:5:0", ts=NOW))
    assert not is_newer(msg("c1:x:0", ts=NOW - 1), msg("c1:5:0", ts=NOW))


# -- PRESENCE frames (RTP2d, RTP2h) ------------------------------------------------------------


def test_enter_update_present_are_emitted_with_their_action_and_stored_as_present():
    rec = Recorder()
    attached(rec)
    rec.state.on_presence(presence(item("enter", "a", "c1", 0)))
    rec.state.on_presence(presence(item("update", "a", "c1", 1, data="x")))
    rec.state.on_presence(presence(item("present", "b", "c2", 0)))
    assert rec.seen() == [
        ("enter", "a", "c1:0:0"),
        ("update", "a", "c1:1:0"),
        ("present", "b", "c2:0:0"),
    ]
    members = rec.state.map.values()
    assert [m.action for m in members] == [Action.PRESENT, Action.PRESENT]
    assert members[0].data == "x"


def test_stale_messages_are_discarded_without_events():
    rec = Recorder()
    attached(rec)
    rec.state.on_presence(presence(item("update", "a", "c1", 10, data="new")))
    rec.state.on_presence(presence(item("update", "a", "c1", 9, data="old")))
    assert rec.seen() == [("update", "a", "c1:10:0")]
    assert rec.state.map.values()[0].data == "new"
    rec.state.on_presence(presence(item("leave", "a", "c1", 2)))  # older than 10: ignored
    assert rec.seen() == [] and rec.members() == [("a", "c1")]


def test_leave_outside_sync_is_emitted_and_deletes_the_member():
    rec = Recorder()
    attached(rec)
    rec.state.on_presence(presence(item("enter", "a", "c1", 0)))
    rec.state.on_presence(presence(item("leave", "a", "c1", 1)))
    assert rec.seen() == [("enter", "a", "c1:0:0"), ("leave", "a", "c1:1:0")]
    assert rec.members() == []


def test_leave_for_an_unknown_member_emits_nothing():
    rec = Recorder()
    attached(rec)
    rec.state.on_presence(presence(item("leave", "a", "c1", 0)))
    assert rec.seen() == [] and rec.members() == []


def test_member_key_is_connection_and_client():
    rec = Recorder()
    attached(rec)
    rec.state.on_presence(presence(item("enter", "a", "c1", 0), item("enter", "a", "c2", 0)))
    assert rec.members() == [("a", "c1"), ("a", "c2")]


def test_synthesized_leave_wins_by_timestamp():
    rec = Recorder()
    attached(rec)
    rec.state.on_presence(presence(item("enter", "a", "c1", 5, ts=NOW)))
    # a synthesized leave older than the member is discarded...
    rec.state.on_presence(presence(item("leave", "a", "c1", id_="synthetic-1", ts=NOW - 1)))
    assert rec.members() == [("a", "c1")]
    # ...one with a later (or equal) timestamp removes it, whatever its id says
    rec.state.on_presence(presence(item("leave", "a", "c1", id_="synthetic-2", ts=NOW)))
    assert rec.seen() == [("enter", "a", "c1:5:0"), ("leave", "a", "synthetic-2")]
    assert rec.members() == []


def test_missing_id_connection_and_timestamp_are_filled_from_the_protocol_message():
    rec = Recorder()
    attached(rec)
    frame = {
        "action": 14,
        "channel": "room",
        "id": "c9:4",
        "connectionId": "c9",
        "timestamp": NOW + 7,
        "presence": [{"action": 2, "clientId": "a"}, {"action": 2, "clientId": "b"}],
    }
    rec.state.on_presence(frame)
    assert [(e.id, e.connection_id, e.timestamp) for e in rec.events] == [
        ("c9:4:0", "c9", NOW + 7),
        ("c9:4:1", "c9", NOW + 7),
    ]
    # the filled ids take part in newness: an older serial for 'a' is ignored
    rec.events.clear()
    rec.state.on_presence(presence(item("update", "a", "c9", 3)))
    assert rec.seen() == []


def test_several_items_in_one_frame_are_applied_in_order():
    rec = Recorder()
    attached(rec)
    rec.state.on_presence(presence(item("enter", "a", "c1", 0, 0), item("leave", "a", "c1", 0, 1)))
    assert rec.seen() == [("enter", "a", "c1:0:0"), ("leave", "a", "c1:0:1")]
    assert rec.members() == []


# -- SYNC (RTP18, RTP19) -------------------------------------------------------------------------


def test_attached_with_has_presence_waits_for_sync_end():
    rec = Recorder()
    attached(rec, has_presence=True)
    assert not rec.state.sync_complete and rec.state.sync_in_progress
    rec.state.on_sync(sync("s1:c1", item("present", "a", "c1", 0)))
    assert not rec.state.sync_complete
    rec.state.on_sync(sync("s1:", item("present", "b", "c2", 0)))
    assert rec.state.sync_complete and not rec.state.sync_in_progress
    assert rec.seen() == [("present", "a", "c1:0:0"), ("present", "b", "c2:0:0")]
    assert rec.members() == [("a", "c1"), ("b", "c2")]


def test_multi_page_sync_with_an_empty_sync():
    rec = Recorder()
    attached(rec, has_presence=True)
    for page, cursor in enumerate(["p1", "p2", "p3", ""]):
        rec.state.on_sync(sync(f"seq-{7}:{cursor}", item("present", f"u{page}", "c1", page)))
        assert rec.state.sync_complete is (cursor == "")
    assert [m.client_id for m in rec.state.map.values()] == ["u0", "u1", "u2", "u3"]
    empty = Recorder()
    attached(empty, has_presence=True)
    empty.state.on_sync(sync("x:"))
    assert empty.state.sync_complete and empty.members() == []


def test_sync_without_channel_serial_is_complete_in_itself():
    rec = Recorder()
    attached(rec, has_presence=True)
    rec.state.on_sync(sync(None, item("present", "a", "c1", 0)))
    assert rec.state.sync_complete and rec.members() == [("a", "c1")]


def test_residual_members_get_a_synthesized_leave_at_sync_end():
    rec = Recorder(clock_value=NOW + 999)
    attached(rec)
    rec.state.on_presence(
        presence(item("enter", "a", "c1", 0, data="da"), item("enter", "b", "c2", 0))
    )
    rec.seen()
    # a server-initiated sync (RTP18) that only mentions b
    rec.state.on_sync(sync("s2:more", item("present", "b", "c2", 0)))
    assert rec.seen() == []  # b is unchanged: no event (not newer)
    rec.state.on_sync(sync("s2:"))
    assert rec.seen() == [("leave", "a", None)]
    assert rec.members() == [("b", "c2")]
    # RTP19: the original attributes, id null, timestamp now
    # (recorded before seen() cleared it: check with a second run)
    rec2 = Recorder(clock_value=NOW + 999)
    attached(rec2)
    rec2.state.on_presence(presence(item("enter", "a", "c1", 0, data="da")))
    rec2.events.clear()
    rec2.state.on_sync(sync(None))
    [leave] = rec2.events
    assert (
        leave.action,
        leave.client_id,
        leave.connection_id,
        leave.data,
        leave.id,
        leave.timestamp,
    ) == (Action.LEAVE, "a", "c1", "da", None, NOW + 999)


def test_a_member_updated_by_presence_during_sync_is_not_residual():
    rec = Recorder()
    attached(rec)
    rec.state.on_presence(presence(item("enter", "a", "c1", 0)))
    rec.seen()
    rec.state.on_sync(sync("s:1"))
    rec.state.on_presence(presence(item("update", "a", "c1", 1)))
    rec.state.on_sync(sync("s:"))
    assert rec.seen() == [("update", "a", "c1:1:0")]
    assert rec.members() == [("a", "c1")]


def test_leave_during_sync_is_stored_absent_and_deleted_at_sync_end():
    rec = Recorder()
    attached(rec)
    rec.state.on_presence(presence(item("enter", "a", "c1", 1)))
    rec.seen()
    rec.state.on_attached(HAS_PRESENCE)  # a re-attach: a sync follows
    # the leave arrives before the (older) SYNC entry for the same member
    rec.state.on_presence(presence(item("leave", "a", "c1", 3)))
    assert rec.state.map.get("c1:a").action is Action.ABSENT  # RTP2h2a
    assert rec.members() == []  # ABSENT is not a member
    rec.state.on_sync(sync("s:1", item("present", "a", "c1", 2)))  # older than the leave
    assert rec.members() == []
    rec.state.on_sync(sync("s:"))
    assert rec.state.map.get("c1:a") is None
    assert rec.seen() == [("leave", "a", "c1:3:0")]  # RTP2h2b: no leave beyond RTP19's


def test_leave_during_sync_for_an_unknown_member_is_ignored():
    # RTP2h applies "if and only if there is a member with a matching memberKey currently in
    # the presence map": the LEAVE is not stored, so the older SYNC entry adds the member
    rec = Recorder()
    attached(rec, has_presence=True)
    rec.state.on_presence(presence(item("leave", "a", "c1", 3)))
    assert rec.state.map.get("c1:a") is None
    rec.state.on_sync(sync("s:", item("present", "a", "c1", 2)))
    assert rec.members() == [("a", "c1")]
    assert rec.seen() == [("present", "a", "c1:2:0")]


def test_leave_during_sync_for_a_present_member_is_emitted_once():
    rec = Recorder()
    attached(rec, has_presence=True)
    rec.state.on_sync(sync("s:1", item("present", "a", "c1", 0)))
    rec.state.on_presence(presence(item("leave", "a", "c1", 1)))
    assert rec.state.map.get("c1:a").action is Action.ABSENT
    rec.state.on_sync(sync("s:"))
    assert rec.seen() == [("present", "a", "c1:0:0"), ("leave", "a", "c1:1:0")]
    assert rec.members() == []


def test_sync_entries_are_checked_for_newness():
    rec = Recorder()
    attached(rec, has_presence=True)
    rec.state.on_sync(sync("s:1", item("present", "a", "c1", 10, data="new")))
    rec.state.on_sync(sync("s:", item("present", "a", "c1", 9, data="old")))
    assert rec.state.map.values()[0].data == "new"
    assert rec.seen() == [("present", "a", "c1:10:0")]


def test_a_new_sync_sequence_discards_the_one_in_flight():
    rec = Recorder()
    attached(rec)
    rec.state.on_presence(presence(item("enter", "a", "c1", 0), item("enter", "b", "c2", 0)))
    rec.seen()
    rec.state.on_sync(sync("old:1", item("present", "a", "c1", 0)))
    # a new sequence starts: 'a' must be confirmed again by it
    rec.state.on_sync(sync("new:1", item("present", "b", "c2", 0)))
    rec.state.on_sync(sync("new:"))
    assert rec.seen() == [("leave", "a", None)]
    assert rec.members() == [("b", "c2")]


def test_attached_without_has_presence_clears_the_set_with_leaves():
    rec = Recorder(clock_value=NOW + 5)
    attached(rec)
    rec.state.on_presence(presence(item("enter", "a", "c1", 0), item("enter", "b", "c2", 0)))
    rec.seen()
    rec.state.on_attached(0)  # RTP19a
    assert rec.seen() == [("leave", "a", None), ("leave", "b", None)]
    assert rec.members() == [] and rec.state.sync_complete


def test_attached_without_has_presence_ends_a_sync_in_progress():
    rec = Recorder()
    attached(rec, has_presence=True)
    rec.state.on_sync(sync("s:1", item("present", "a", "c1", 0)))
    rec.seen()
    rec.state.on_attached(None)
    assert rec.seen() == [("leave", "a", None)]
    assert rec.state.sync_complete and not rec.state.sync_in_progress


def test_detached_clears_without_events():
    rec = Recorder()
    attached(rec)
    rec.state.on_presence(presence(item("enter", "a", "c1", 0)))
    rec.seen()
    rec.state.on_detached()
    assert rec.seen() == [] and rec.members() == []


def test_wait_synced_is_bounded():
    async def main() -> tuple[bool, bool]:
        rec = Recorder()
        attached(rec, has_presence=True)
        first = await rec.state.wait_synced(0.05)
        asyncio.get_running_loop().call_later(0.01, rec.state.on_sync, sync("s:"))
        second = await rec.state.wait_synced(1.0)
        return first, second

    assert asyncio.run(main()) == (False, True)


# -- subscriptions (RTP6, RTP7) --------------------------------------------------------------------


def _event(action: str) -> PresenceMessage:
    return PresenceMessage(action=Action(action), client_id="a", connection_id="c1", id="c1:0:0")


def test_subscribe_filters_and_unsubscribe_forms():
    emitter = PresenceEmitter()
    got: list[tuple[str, str]] = []

    def one(m: PresenceMessage) -> None:
        got.append(("one", m.action.value))

    def two(m: PresenceMessage) -> None:
        got.append(("two", m.action.value))

    emitter.subscribe(one)
    emitter.subscribe(two, ["enter", "leave"])
    for a in ("enter", "update", "leave"):
        emitter.emit(_event(a))
    assert got == [
        ("one", "enter"),
        ("two", "enter"),
        ("one", "update"),
        ("one", "leave"),
        ("two", "leave"),
    ]
    got.clear()
    emitter.unsubscribe(two, ["enter"])  # RTP7b
    emitter.unsubscribe(one, ["update"])  # removes 'update' from an all-actions listener
    for a in ("enter", "update", "leave"):
        emitter.emit(_event(a))
    assert got == [("one", "enter"), ("one", "leave"), ("two", "leave")]
    got.clear()
    emitter.subscribe(one, "update")  # subscribing again brings it back
    emitter.emit(_event("update"))
    assert got == [("one", "update"), ("one", "update")]  # two registrations now
    got.clear()
    emitter.unsubscribe(one)  # RTP7a
    emitter.emit(_event("leave"))
    assert got == [("two", "leave")]
    got.clear()
    emitter.unsubscribe(None, ["leave"])  # actions without a listener
    emitter.emit(_event("leave"))
    emitter.subscribe(one)
    emitter.unsubscribe()  # RTP7c
    emitter.emit(_event("enter"))
    assert got == [] and len(emitter) == 0


def test_subscribe_refuses_unknown_actions_and_survives_raising_listeners():
    emitter = PresenceEmitter()
    with pytest.raises(PresenceError) as info:
        emitter.subscribe(print, ["enter", "bogus"])
    assert info.value.code == 40003 and len(emitter) == 0
    got = []
    emitter.subscribe(lambda m: 1 / 0)
    emitter.subscribe(got.append)
    emitter.emit(_event("enter"))
    assert len(got) == 1


# -- data encoding (docs/protocol.md §3.5, RSL4/RSL6) ------------------------------------------------------------------


def test_outgoing_data_encoding_and_no_client_id():
    assert presence_to_wire(Action.ENTER, {"a": 1}) == {
        "action": 2,
        "data": '{"a":1}',
        "encoding": "json",
    }
    assert presence_to_wire(Action.UPDATE, [1, "x"])["encoding"] == "json"
    assert presence_to_wire(Action.LEAVE, None) == {"action": 3}
    assert presence_to_wire(Action.ENTER, "text") == {"action": 2, "data": "text"}
    assert presence_to_wire(Action.ENTER, b"\x00\xff") == {
        "action": 2,
        "data": "AP8=",
        "encoding": "base64",
    }
    assert "clientId" not in presence_to_wire(Action.ENTER, "x")
    assert presence_to_wire(Action.ENTER, "x", client_id="bob")["clientId"] == "bob"
    assert encode_data(5) == (5, None)  # left for the server to refuse (40013)
    with pytest.raises(PresenceError) as info:
        encode_data({1, 2})
    assert info.value.code == 40013
    with pytest.raises(PresenceError):
        encode_data({"x": float("nan")})


def test_incoming_data_decoding():
    assert decode_data('{"a":1}', "json") == ({"a": 1}, None)
    assert decode_data("AP8=", "base64") == (b"\x00\xff", None)
    raw = base64.b64encode(json.dumps({"k": "v"}).encode()).decode()
    assert decode_data(raw, "json/base64") == ({"k": "v"}, None)
    assert decode_data(base64.b64encode("é".encode()).decode(), "utf-8/base64") == ("é", None)
    assert decode_data("abc", "cipher+aes/base64") == ("abc", "cipher+aes/base64")  # not base64
    assert decode_data("abc", None) == ("abc", None)
    assert decode_data("not json", "json") == ("not json", "json")
    m = presence_from_wire(
        {
            "action": 1,
            "clientId": "a",
            "connectionId": "c",
            "id": "c:0:0",
            "timestamp": 1,
            "data": "AQI=",
            "encoding": "base64",
        }
    )
    assert m.data == b"\x01\x02" and m.action is Action.PRESENT


def test_link_header_parsing():
    header = (
        '<./history?start=0&limit=2&direction=forwards>; rel="first", '
        '<./history?start=0&limit=2&direction=forwards&cursor=f:2>; rel="next"'
    )
    assert parse_links(header)["next"] == "./history?start=0&limit=2&direction=forwards&cursor=f:2"
    assert parse_links(None) == {}

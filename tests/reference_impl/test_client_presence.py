"""The client-side presence oracle (`reference_impl/client_presence.py`): rules and invariants.

The frame sequences in `client_presence_sequences.yaml` are each run against the oracle; unit
tests pin the single rules (newness, TP3 defaults, sync cursors, state changes), and Hypothesis
checks invariants: after a complete SYNC the map holds the SYNC's members plus the live updates
that were not stale, and the order of ENTER/UPDATE deliveries does not change the final map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from presence_conformance.reference_impl.client_presence import (
    ChannelState,
    ClientPresence,
    Event,
    MalformedFrame,
    is_newer,
    is_synthesized,
    item_from_wire,
    serial_index,
)
from presence_conformance.reference_impl.types import Action, PresenceMessage

SEQUENCES_FILE = Path(__file__).parent / "client_presence_sequences.yaml"
SEQUENCES: list[dict[str, Any]] = yaml.safe_load(SEQUENCES_FILE.read_text())
NOW = 99_999


def run_sequence(oracle: ClientPresence, sequence: list[dict]) -> list[Event]:
    return oracle.feed(sequence)


def outcome(oracle: ClientPresence, events: list[Event]) -> dict[str, Any]:
    """The observable result in the form of a sequence's `expect`."""
    return {
        "members": {m.member_key: m.data for m in oracle.members()},
        "events": [
            [e.action.value, e.member.member_key] + (["synthesized"] if e.synthesized else [])
            for e in events
        ],
        "sync_complete": oracle.sync_complete,
    }


def presence(action: int, client: str, conn: str, serial: int, index: int = 0, **kw: Any) -> dict:
    item = {"action": action, "clientId": client, "connectionId": conn}
    item["id"] = f"{conn}:{serial}:{index}"
    item.setdefault("timestamp", 100)
    item.update(kw)
    return item


def frame(action: int, *items: dict, **kw: Any) -> dict:
    return {"action": action, "channel": "ch", "presence": list(items), **kw}


def msg(
    id_: str | None, conn: str = "c1", ts: int = 0, action: Action = Action.ENTER
) -> PresenceMessage:
    return PresenceMessage(action=action, client_id="a", connection_id=conn, timestamp=ts, id=id_)


# -- the sequences -------------------------------------------------------------------------------


def test_sequences_are_well_formed() -> None:
    names = [s["name"] for s in SEQUENCES]
    assert len(names) == len(set(names))
    for s in SEQUENCES:
        assert (
            s["points"]
            and s["sequence"]
            and set(s["expect"])
            == {
                "members",
                "events",
                "sync_complete",
            }
        ), s["name"]


@pytest.mark.parametrize("case", SEQUENCES, ids=[s["name"] for s in SEQUENCES])
def test_sequence(case: dict[str, Any]) -> None:
    oracle = ClientPresence(clock=lambda: NOW)
    events = run_sequence(oracle, case["sequence"])
    assert outcome(oracle, events) == case["expect"]
    for event in events:
        if event.synthesized:  # RTP19 / RTP19a: id null, timestamp now, original attributes
            assert event.action is Action.LEAVE
            assert event.member.id is None and event.member.timestamp == NOW


def test_synthesized_leave_keeps_original_attributes() -> None:
    case = next(s for s in SEQUENCES if s["name"] == "residual-member-leaves-at-sync-end")
    oracle = ClientPresence(clock=lambda: NOW)
    events = oracle.feed(case["sequence"])
    leave = events[-1]
    assert leave == Event(
        Action.LEAVE,
        PresenceMessage(Action.LEAVE, "b", "c2", data="bee", timestamp=NOW, id=None),
        synthesized=True,
    )


# -- single rules --------------------------------------------------------------------------------


def test_tp3_defaults_from_enclosing_message() -> None:
    parent = {"id": "conn:12", "connectionId": "conn", "timestamp": 777}
    m = item_from_wire({"action": 2, "clientId": "x"}, parent, 3)
    assert (m.id, m.connection_id, m.timestamp, m.action) == (
        "conn:12:3",
        "conn",
        777,
        Action.ENTER,
    )
    own = item_from_wire(
        {"action": 4, "clientId": "x", "id": "o:1:0", "connectionId": "o", "timestamp": 5},
        parent,
        3,
    )
    assert (own.id, own.connection_id, own.timestamp) == ("o:1:0", "o", 5)
    bare = item_from_wire({"action": 1}, {}, 0)
    assert (bare.id, bare.connection_id, bare.timestamp, bare.client_id) == (None, "", 0, "")


def test_item_data_kept_or_decoded() -> None:
    item = {"action": 2, "clientId": "x", "data": '{"k":1}', "encoding": "json", "extras": {"e": 1}}
    raw = item_from_wire(item)
    assert raw.data == '{"k":1}' and raw.extra == {"encoding": "json", "extras": {"e": 1}}
    decoded = item_from_wire(item, decode=lambda d, e: ({"k": 1}, None))
    assert decoded.data == {"k": 1} and decoded.extra == {"extras": {"e": 1}}


@pytest.mark.parametrize(
    "item", [None, 3, "x", {"action": 9}, {"action": "enter"}, {"action": None}]
)
def test_malformed_items_refused(item: Any) -> None:
    with pytest.raises(MalformedFrame):
        item_from_wire(item)


def test_malformed_presence_array_refused() -> None:
    with pytest.raises(MalformedFrame):
        ClientPresence().receive({"action": 14, "channel": "ch", "presence": {"action": 2}})


def test_serial_index() -> None:
    assert serial_index("c1:10:2") == (10, 2)
    assert serial_index("a:b:3:4") == (3, 4)
    assert serial_index("c1:x:2") is None
    assert serial_index("c1:2") is None
    assert serial_index(None) is None and serial_index("") is None


def test_is_synthesized() -> None:
    assert not is_synthesized(msg("c1:1:0"))
    assert is_synthesized(msg("other:1:0"))
    assert is_synthesized(msg(None))
    assert is_synthesized(msg(""))


@pytest.mark.parametrize(
    ("incoming", "existing", "newer"),
    [
        (msg("c1:2:0", ts=1), msg("c1:1:9", ts=9), True),  # RTP2b2: msgSerial first
        (msg("c1:1:3", ts=1), msg("c1:1:2", ts=9), True),  # then index
        (msg("c1:1:2", ts=9), msg("c1:1:3", ts=1), False),
        (msg("c1:10:0"), msg("c1:9:0"), True),  # numerically
        (msg("c1:1:0", ts=5), msg("c1:1:0", ts=5), False),  # the same message again
        (msg("s:1:0", ts=5), msg("c1:9:0", ts=5), True),  # RTP2b1a: tie to the incoming
        (msg("s:1:0", ts=4), msg("c1:1:0", ts=5), False),  # RTP2b1 by timestamp
        (msg("c1:1:0", ts=6), msg("s:9:0", ts=5), True),  # either one synthesized
        (msg("c1:x:0", ts=6), msg("c1:1:0", ts=5), True),  # unparseable id: timestamp
        (msg("c1:x:0", ts=4), msg("c1:1:0", ts=5), False),
    ],
)
def test_is_newer(incoming: PresenceMessage, existing: PresenceMessage, newer: bool) -> None:
    assert is_newer(incoming, existing) is newer


def test_initial_state() -> None:
    oracle = ClientPresence()
    assert oracle.members() == [] and not oracle.sync_complete and not oracle.sync_in_progress


def test_attached_with_has_presence_starts_sync() -> None:
    oracle = ClientPresence()
    assert oracle.receive({"action": 11, "channel": "ch", "flags": 1 | (1 << 16)}) == []
    assert oracle.sync_in_progress and not oracle.sync_complete


@pytest.mark.parametrize("flags", [None, 0, 1 << 16, True, "1"])
def test_attached_without_has_presence_is_in_sync(flags: Any) -> None:
    oracle = ClientPresence()
    f = {"action": 11, "channel": "ch"} | ({} if flags is None else {"flags": flags})
    oracle.receive(f)
    assert oracle.sync_complete and not oracle.sync_in_progress


def test_sync_page_before_attached_starts_sync() -> None:
    oracle = ClientPresence()
    oracle.receive(frame(16, presence(1, "a", "c1", 1), channelSerial="s1:p"))
    assert oracle.sync_in_progress and not oracle.sync_complete
    oracle.receive(frame(16, channelSerial="s1:"))
    assert oracle.sync_complete and [m.member_key for m in oracle.members()] == ["c1:a"]


def test_sync_serial_without_colon_ends_sync() -> None:
    oracle = ClientPresence()
    oracle.receive({"action": 11, "channel": "ch", "flags": 1})
    oracle.receive(frame(16, presence(1, "a", "c1", 1), channelSerial="s1"))
    assert oracle.sync_complete


def test_sync_entries_hold_absent_until_end() -> None:
    oracle = ClientPresence(clock=lambda: NOW)
    oracle.receive({"action": 11, "channel": "ch", "flags": 1})
    oracle.receive(frame(16, presence(1, "a", "c1", 1), channelSerial="s1:p"))
    oracle.receive(frame(14, presence(3, "a", "c1", 2)))
    assert oracle.entries()["c1:a"].action is Action.ABSENT
    assert oracle.members() == []
    # a second, newer LEAVE for the ABSENT entry updates it and is not emitted again
    assert oracle.receive(frame(14, presence(3, "a", "c1", 3))) == []
    assert oracle.entries()["c1:a"].id == "c1:3:0"
    assert oracle.receive(frame(16, channelSerial="s1:")) == []
    assert oracle.entries() == {}


def test_newer_enter_after_absent_during_sync_returns() -> None:
    oracle = ClientPresence()
    oracle.feed(
        [
            {"action": 11, "channel": "ch", "flags": 1},
            frame(16, presence(1, "a", "c1", 1), channelSerial="s1:p"),
            frame(14, presence(3, "a", "c1", 2)),
        ]
    )
    events = oracle.feed([frame(14, presence(2, "a", "c1", 3)), frame(16, channelSerial="s1:")])
    assert [e.action for e in events] == [Action.ENTER]
    assert [m.member_key for m in oracle.members()] == ["c1:a"]


def test_emit_leave_during_sync_option() -> None:
    oracle = ClientPresence(emit_leave_during_sync=False)
    events = oracle.feed(
        [
            {"action": 11, "channel": "ch"},
            frame(14, presence(2, "a", "c1", 1)),
            {"action": 11, "channel": "ch", "flags": 1},
            frame(14, presence(3, "a", "c1", 2)),
            frame(16, channelSerial="s1:"),
        ]
    )
    assert [e.action for e in events] == [Action.ENTER]  # RTP2h2b: no leave at the purge either
    assert oracle.members() == []


def test_absent_for_unknown_leave_option() -> None:
    seq = [
        {"action": 11, "channel": "ch", "flags": 1},
        frame(14, presence(3, "a", "c1", 5)),
        frame(16, presence(1, "a", "c1", 4), channelSerial="s1:"),
    ]
    literal = ClientPresence()
    literal.feed(seq)
    assert [m.member_key for m in literal.members()] == ["c1:a"]  # RTP2h: ignored, so it enters
    keeping = ClientPresence(absent_for_unknown_leave=True)
    events = keeping.feed(seq)
    assert keeping.members() == [] and events == []


def test_absent_action_on_wire_ignored() -> None:
    oracle = ClientPresence()
    oracle.receive({"action": 11, "channel": "ch"})
    assert oracle.receive(frame(14, presence(0, "a", "c1", 1))) == []
    assert oracle.members() == []


@pytest.mark.parametrize("state", ["detached", "failed"])
def test_detached_and_failed_clear_silently(state: str) -> None:
    oracle = ClientPresence()
    oracle.feed(
        [
            {"action": 11, "channel": "ch", "flags": 1},
            frame(16, presence(1, "a", "c1", 1), channelSerial="s:p"),
        ]
    )
    assert oracle.channel_state(state) == []
    assert oracle.members() == [] and not oracle.sync_in_progress and not oracle.sync_complete


@pytest.mark.parametrize(
    "state", ["suspended", "attaching", "attached", "detaching", "initialized"]
)
def test_other_states_keep_map(state: str) -> None:
    oracle = ClientPresence()
    oracle.feed([{"action": 11, "channel": "ch"}, frame(14, presence(2, "a", "c1", 1))])
    assert oracle.channel_state(state) == []
    assert [m.member_key for m in oracle.members()] == ["c1:a"] and oracle.sync_complete


def test_unknown_state_refused() -> None:
    with pytest.raises(ValueError):
        ClientPresence().channel_state("closed-ish")
    assert ChannelState("failed") is ChannelState.FAILED


def test_server_detached_frame_alone_changes_nothing() -> None:
    oracle = ClientPresence()
    oracle.feed([{"action": 11, "channel": "ch"}, frame(14, presence(2, "a", "c1", 1))])
    assert oracle.receive({"action": 13, "channel": "ch"}) == []  # RTL13a: it re-attaches
    assert oracle.receive({"action": 9}) == []  # a connection ERROR is not the channel's
    assert len(oracle.members()) == 1


# -- invariants --------------------------------------------------------------------------------

KEYS = [("a", "c1"), ("b", "c1"), ("a", "c2"), ("c", "c3")]
action_st = st.sampled_from([2, 3, 4])


@st.composite
def resync_story(draw: st.DrawFn) -> tuple[list[dict], list[dict], list[int]]:
    """Items of a SYNC (PRESENT) and live PRESENCE items, with distinct serials per member."""
    serials = iter(draw(st.permutations(range(1, 41))))
    sync_items = [
        presence(1, c, conn, next(serials), data=f"sync-{c}{conn}")
        for c, conn in KEYS
        if draw(st.booleans())
    ]
    live = [
        presence(draw(action_st), c, conn, next(serials), data=f"live-{c}{conn}")
        for c, conn in draw(st.lists(st.sampled_from(KEYS), max_size=8))
    ]
    pages = draw(st.integers(1, 4))
    # where each live item goes: just before SYNC page i, so during the sync
    slots = [draw(st.integers(0, pages - 1)) for _ in live]
    return sync_items, live, [pages, *slots]


@settings(max_examples=300, deadline=None)
@given(resync_story(), st.booleans())
def test_complete_sync_is_sync_members_plus_fresh_live_updates(
    story: tuple[list[dict], list[dict], list[int]], emit_during_sync: bool
) -> None:
    """After a complete SYNC, the members are exactly those whose newest message (among the
    SYNC's items and the live updates received during it) is not a LEAVE; every member known
    before and not mentioned leaves with a synthesized LEAVE."""
    sync_items, live, (pages, *slots) = story
    oracle = ClientPresence(clock=lambda: NOW, emit_leave_during_sync=emit_during_sync)
    # everyone is known first, with serial 0, so that every LEAVE finds its member (RTP2h)
    oracle.receive({"action": 11, "channel": "ch"})
    oracle.receive(frame(14, *[presence(2, c, conn, 0) for c, conn in KEYS]))
    oracle.receive({"action": 11, "channel": "ch", "flags": 1})
    chunk = -(-len(sync_items) // pages) or 1
    page_items = [sync_items[i * chunk : (i + 1) * chunk] for i in range(pages)]
    events: list[Event] = []
    for i in range(pages + 1):
        events += oracle.feed(
            [frame(14, item) for item, s in zip(live, slots, strict=True) if s == i]
        )
        if i < pages:
            serial = f"seq:{'' if i == pages - 1 else i}"
            events += oracle.receive(frame(16, *page_items[i], channelSerial=serial))
    assert oracle.sync_complete and not oracle.sync_in_progress
    newest: dict[str, dict] = {}
    for item in sync_items + live:
        key = f"{item['connectionId']}:{item['clientId']}"
        if key not in newest or serial_index(item["id"]) > serial_index(newest[key]["id"]):
            newest[key] = item
    expected = {k: i["data"] for k, i in newest.items() if i["action"] != 3}
    assert {m.member_key: m.data for m in oracle.members()} == expected
    synthesized = {e.member.member_key for e in events if e.synthesized}
    assert synthesized == {f"{conn}:{c}" for c, conn in KEYS} - set(newest)
    assert all(e.member.id is None and e.member.timestamp == NOW for e in events if e.synthesized)
    assert oracle.entries().keys() == expected.keys()  # no ABSENT left behind


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_enter_update_order_does_not_matter(data: st.DataObject) -> None:
    """Outside a sync, ENTER/UPDATE deliveries in any order give the newest per member."""
    items = [
        presence(data.draw(st.sampled_from([2, 4])), c, conn, s, i, data=f"{s}.{i}")
        for s in range(1, 4)
        for i in range(2)
        for c, conn in data.draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True))
    ]
    shuffled = data.draw(st.permutations(items))
    oracle = ClientPresence()
    oracle.receive({"action": 11, "channel": "ch"})
    events = oracle.feed([frame(14, item) for item in shuffled])
    newest: dict[str, dict] = {}
    for item in items:
        key = f"{item['connectionId']}:{item['clientId']}"
        if key not in newest or serial_index(item["id"]) > serial_index(newest[key]["id"]):
            newest[key] = item
    assert {m.member_key: m.data for m in oracle.members()} == {
        k: i["data"] for k, i in newest.items()
    }
    assert all(not e.synthesized and e.action is not Action.LEAVE for e in events)
    # every event is strictly newer than the previous one for its member
    last: dict[str, tuple[int, int]] = {}
    for e in events:
        si = serial_index(e.member.id)
        assert si is not None and si > last.get(e.member.member_key, (-1, -1))
        last[e.member.member_key] = si


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from([2, 3, 4])), max_size=12))
def test_map_never_holds_absent_outside_sync(ops: list[tuple[tuple[str, str], int]]) -> None:
    oracle = ClientPresence()
    oracle.receive({"action": 11, "channel": "ch"})
    for n, ((c, conn), action) in enumerate(ops):
        oracle.receive(frame(14, presence(action, c, conn, n)))
        assert all(m.action is Action.PRESENT for m in oracle.entries().values())
    assert oracle.sync_complete

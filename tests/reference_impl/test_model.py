"""Tests of the pure reference model (`presence_conformance.reference_impl.model.PresenceModel`), behaviour by behaviour."""

from __future__ import annotations

from typing import Any

import pytest
from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.model import (
    DEFAULT_HISTORY_LIMIT,
    MAX_HISTORY_LIMIT,
    Delivery,
    PresenceModel,
)
from presence_conformance.reference_impl.types import Action, PresenceMessage

CH = "room"


class Clock:
    """A settable fake clock in milliseconds that moves `step` ms per call."""

    def __init__(self, start: int = 1_000, step: int = 1) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> int:
        value = self.now
        self.now += self.step
        return value


def make(**kwargs: Any) -> PresenceModel:
    return PresenceModel(kwargs.pop("clock", Clock()), **kwargs)


def snapshot(model: PresenceModel, *channels: str) -> list:
    """Everything a refused call must leave unchanged."""
    names = channels or (CH,)
    return [(model.get(ch), model.history_all(ch)) for ch in names]


def deliveries_for(outcome, connection_id: str, listener: str | None = None) -> list[Delivery]:
    return [
        d
        for d in outcome.deliveries
        if d.connection_id == connection_id and (listener is None or d.listener == listener)
    ]


def actions_of(deliveries: list[Delivery]) -> list[str]:
    return [d.event.action.value for d in deliveries]


def expect_error(code: int, argument: str, fn, *args: Any, **kwargs: Any) -> PresenceError:
    with pytest.raises(PresenceError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value
    assert argument in info.value.message, info.value.message
    return info.value


# -- enter / update / leave ------------------------------------------------------------------------


def test_enter_publishes_an_enter_and_stores_a_present_member() -> None:
    m = make()
    c = m.open_connection("alice")
    out = m.enter(c, CH, {"mood": "happy"})
    assert len(out.events) == 1
    event = out.events[0]
    assert event.action is Action.ENTER
    assert (event.client_id, event.connection_id, event.data) == ("alice", c, {"mood": "happy"})
    assert event.timestamp == 1_000
    assert event.id == f"{c}:0:0"
    members = m.get(CH)
    assert len(members) == 1
    assert members[0].action is Action.PRESENT
    assert members[0].data == {"mood": "happy"}
    assert members[0].id == event.id
    assert m.history_all(CH) == [event]
    assert m.is_attached(c, CH)  # implicit attach (RTP8d)


def test_member_key_is_connection_id_and_client_id() -> None:
    m = make()
    c1 = m.open_connection("alice")
    c2 = m.open_connection("alice")
    m.enter(c1, CH, "one")
    m.enter(c2, CH, "two")
    members = m.get(CH)
    assert {p.member_key for p in members} == {f"{c1}:alice", f"{c2}:alice"}
    assert m.member_count(CH) == 2
    m.leave(c1, CH)
    assert [p.connection_id for p in m.get(CH)] == [c2]


def test_enter_again_replaces_the_data_without_a_second_member() -> None:
    m = make()
    c = m.open_connection("alice")
    m.enter(c, CH, "a")
    out = m.enter(c, CH, "b")
    assert out.events[0].data == "b"
    assert [p.data for p in m.get(CH)] == ["b"]


def test_update_changes_the_data() -> None:
    m = make()
    c = m.open_connection("alice")
    m.enter(c, CH, "a")
    out = m.update(c, CH, "b")
    assert out.events[0].action is Action.UPDATE
    assert [(p.action, p.data) for p in m.get(CH)] == [(Action.PRESENT, "b")]


def test_update_when_not_present_enters() -> None:
    m = make()
    c = m.open_connection("alice")
    out = m.update(c, CH, "x")
    assert [e.action for e in out.events] == [Action.UPDATE]
    assert [(p.client_id, p.data) for p in m.get(CH)] == [("alice", "x")]


def test_leave_removes_the_member_and_carries_the_given_data() -> None:
    m = make()
    c = m.open_connection("alice")
    m.enter(c, CH, "a")
    out = m.leave(c, CH, "bye")
    assert [(e.action, e.data) for e in out.events] == [(Action.LEAVE, "bye")]
    assert m.get(CH) == []


def test_leave_without_data_carries_the_member_data() -> None:
    m = make()
    c = m.open_connection("alice")
    m.enter(c, CH, {"k": 1})
    m.update(c, CH, {"k": 2})
    out = m.leave(c, CH)
    assert out.events[0].data == {"k": 2}


def test_leave_when_not_present_emits_nothing() -> None:
    m = make()
    c = m.open_connection("alice")
    watcher = m.open_connection("bob")
    m.subscribe(watcher, CH, "L")
    before = snapshot(m)
    out = m.leave(c, CH, "bye")
    assert out.events == [] and out.deliveries == []
    assert snapshot(m) == before
    m.enter(c, CH)
    m.leave(c, CH)
    assert m.leave(c, CH).events == []
    assert len(m.history_all(CH)) == 2


@pytest.mark.parametrize("data", ["text", "", {"a": [1, 2]}, [1, "two"], b"\x00\xff", None])
def test_every_supported_data_type_round_trips(data: Any) -> None:
    m = make()
    c = m.open_connection("alice")
    m.enter(c, CH, data)
    assert m.get(CH)[0].data == data
    assert type(m.get(CH)[0].data) is type(data)


def test_bytearray_is_stored_as_bytes() -> None:
    m = make()
    c = m.open_connection("alice")
    m.enter(c, CH, bytearray(b"ab"))
    assert m.get(CH)[0].data == b"ab" and isinstance(m.get(CH)[0].data, bytes)


def test_event_ids_are_unique_and_carry_the_message_serial() -> None:
    m = make()
    c = m.open_connection("alice")
    ids = [
        m.enter(c, CH, "a").events[0].id,
        m.update(c, CH, "b").events[0].id,
        m.leave(c, CH).events[0].id,
        m.enter(c, "other").events[0].id,
    ]
    assert len(set(ids)) == 4
    assert all(i.startswith(f"{c}:") for i in ids)


def test_timestamps_never_go_backwards_even_if_the_clock_does() -> None:
    times = iter([50, 40, 40, 60, 10])
    m = PresenceModel(lambda: next(times))
    c = m.open_connection("alice")
    for _ in range(5):
        m.update(c, CH, "x")
    assert [e.timestamp for e in m.history_all(CH)] == [50, 50, 50, 60, 60]


def test_channels_are_independent() -> None:
    m = make()
    c = m.open_connection("alice")
    m.enter(c, "a", "1")
    m.enter(c, "b", "2")
    m.leave(c, "a")
    assert m.get("a") == [] and [p.data for p in m.get("b")] == ["2"]
    assert m.channels() == ["a", "b"]


# -- get -------------------------------------------------------------------------------------------


def _three_members(m: PresenceModel) -> tuple[str, str, str]:
    c1 = m.open_connection("alice")
    c2 = m.open_connection("alice")
    c3 = m.open_connection("bob")
    for c in (c1, c2, c3):
        m.enter(c, CH, c)
    return c1, c2, c3


def test_get_filters_by_client_id_connection_id_and_both() -> None:
    m = make()
    c1, c2, c3 = _three_members(m)
    assert {p.connection_id for p in m.get(CH, client_id="alice")} == {c1, c2}
    assert [p.client_id for p in m.get(CH, client_id="bob")] == ["bob"]
    assert [p.client_id for p in m.get(CH, connection_id=c3)] == ["bob"]
    assert [p.connection_id for p in m.get(CH, client_id="alice", connection_id=c2)] == [c2]
    assert m.get(CH, client_id="bob", connection_id=c1) == []
    assert m.get(CH, client_id="nobody") == []
    assert m.get(CH, connection_id="conn-404") == []
    assert m.get("never-used") == []
    assert all(p.action is Action.PRESENT for p in m.get(CH))


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"client_id": 5}, "clientId"),
        ({"connection_id": ["x"]}, "connectionId"),
    ],
)
def test_get_with_a_bad_filter_raises(kwargs: dict, argument: str) -> None:
    m = make()
    _three_members(m)
    before = snapshot(m)
    expect_error(errors.INVALID_PARAMETER_VALUE, argument, m.get, CH, **kwargs)
    assert snapshot(m) == before


# -- subscribe / deliveries ------------------------------------------------------------------------


def test_subscribe_to_all_actions_receives_every_event() -> None:
    m = make()
    a = m.open_connection("alice")
    w = m.open_connection("watcher")
    m.subscribe(w, CH, "L")
    got = []
    for op in (m.enter, m.update, m.leave):
        out = op(a, CH, "x")
        got += deliveries_for(out, w, "L")
    assert actions_of(got) == ["enter", "update", "leave"]
    assert all((d.min_count, d.max_count, d.channel) == (1, 1, CH) for d in got)


def test_the_publishing_connection_hears_its_own_events() -> None:
    m = make()
    a = m.open_connection("alice")
    m.subscribe(a, CH, "self")
    assert actions_of(deliveries_for(m.enter(a, CH), a, "self")) == ["enter"]


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        ("enter", ["enter"]),
        ("update", ["update"]),
        ("leave", ["leave"]),
        (["enter", "leave"], ["enter", "leave"]),
        (("update",), ["update"]),
        ({"enter", "update", "leave"}, ["enter", "update", "leave"]),
        (Action.ENTER, ["enter"]),
    ],
)
def test_subscribe_with_an_action_filter(actions: Any, expected: list[str]) -> None:
    m = make()
    a = m.open_connection("alice")
    w = m.open_connection("watcher")
    m.subscribe(w, CH, "L", actions)
    got = []
    for op in (m.enter, m.update, m.leave):
        got += deliveries_for(op(a, CH, "x"), w)
    assert actions_of(got) == expected


def test_subscribe_present_only_gets_present_on_attach_and_nothing_else() -> None:
    m = make()
    a = m.open_connection("alice")
    m.enter(a, CH, "x")
    w = m.open_connection("watcher")
    out = m.subscribe(w, CH, "L", "present")
    assert actions_of(deliveries_for(out, w)) == ["present"]
    assert deliveries_for(m.update(a, CH, "y"), w) == []


def test_two_listeners_on_one_connection_each_get_the_event() -> None:
    m = make()
    a = m.open_connection("alice")
    w = m.open_connection("watcher")
    m.subscribe(w, CH, "L1")
    m.subscribe(w, CH, "L2", "enter")
    out = m.enter(a, CH)
    assert sorted(d.listener for d in deliveries_for(out, w)) == ["L1", "L2"]
    assert m.listeners(w, CH) == ["L1", "L2"]


def test_a_listener_subscribed_twice_may_hear_an_event_once_or_twice() -> None:
    m = make()
    a = m.open_connection("alice")
    w = m.open_connection("watcher")
    m.subscribe(w, CH, "L")
    m.subscribe(w, CH, "L")
    (d,) = deliveries_for(m.enter(a, CH), w)
    assert (d.min_count, d.max_count) == (1, 2)


def test_listeners_on_another_channel_hear_nothing() -> None:
    m = make()
    a = m.open_connection("alice")
    w = m.open_connection("watcher")
    m.subscribe(w, "elsewhere", "L")
    assert m.enter(a, CH).deliveries == []


def test_subscribe_attaches_and_delivers_present_for_existing_members() -> None:
    m = make()
    c1, c2, c3 = _three_members(m)
    w = m.open_connection("watcher")
    out = m.subscribe(w, CH, "L")
    got = deliveries_for(out, w, "L")
    assert actions_of(got) == ["present"] * 3
    assert {d.event.connection_id for d in got} == {c1, c2, c3}
    assert m.is_attached(w, CH) and m.sync_complete(w, CH)
    assert out.events == []  # present is not an event of the channel: history is unchanged
    # a second subscription on an attached channel delivers no present again
    assert deliveries_for(m.subscribe(w, CH, "L2"), w) == []


def test_attach_is_idempotent_and_without_listeners_delivers_nothing() -> None:
    m = make()
    _three_members(m)
    w = m.open_connection("watcher")
    assert m.attach(w, CH).deliveries == []
    assert m.is_attached(w, CH)
    assert m.attach(w, CH).deliveries == []
    assert deliveries_for(m.subscribe(w, CH, "L"), w) == []  # already attached: no SYNC again


def test_subscribe_with_a_bad_action_raises_and_changes_nothing() -> None:
    m = make()
    _three_members(m)
    w = m.open_connection("watcher")
    before = snapshot(m)
    for bad in ("entered", "absent", [], ["enter", "bogus"], 3):
        expect_error(errors.INVALID_PARAMETER_VALUE, "action", m.subscribe, w, CH, "L", bad)
    assert snapshot(m) == before
    assert m.listeners(w, CH) == []
    assert not m.is_attached(w, CH)


# -- unsubscribe (RTP7) ----------------------------------------------------------------------------


def _watched() -> tuple[PresenceModel, str, str]:
    m = make()
    a = m.open_connection("alice")
    w = m.open_connection("watcher")
    return m, a, w


def test_unsubscribe_without_arguments_removes_every_listener() -> None:
    m, a, w = _watched()
    m.subscribe(w, CH, "L1")
    m.subscribe(w, CH, "L2", "enter")
    m.unsubscribe(w, CH)
    assert m.listeners(w, CH) == []
    assert deliveries_for(m.enter(a, CH), w) == []


def test_unsubscribe_a_listener_removes_only_that_listener() -> None:
    m, a, w = _watched()
    m.subscribe(w, CH, "L1")
    m.subscribe(w, CH, "L1", "enter")
    m.subscribe(w, CH, "L2")
    m.unsubscribe(w, CH, "L1")
    assert [d.listener for d in deliveries_for(m.enter(a, CH), w)] == ["L2"]
    m.unsubscribe(w, CH, "unknown")  # an unknown listener: nothing happens
    assert m.listeners(w, CH) == ["L2"]


def test_unsubscribe_action_and_listener_removes_that_action_registration() -> None:
    m, a, w = _watched()
    m.subscribe(w, CH, "L", ["enter", "leave"])
    m.subscribe(w, CH, "M", "enter")
    m.unsubscribe(w, CH, "L", "enter")
    assert sorted((d.listener, d.min_count) for d in deliveries_for(m.enter(a, CH), w)) == [
        ("M", 1)
    ]
    assert actions_of(deliveries_for(m.leave(a, CH), w, "L")) == ["leave"]


def test_unsubscribe_action_without_listener_removes_it_from_every_listener() -> None:
    m, a, w = _watched()
    m.subscribe(w, CH, "L", "enter")
    m.subscribe(w, CH, "M", ["enter", "update"])
    m.unsubscribe(w, CH, None, "enter")
    assert m.listeners(w, CH) == ["M"]
    assert deliveries_for(m.enter(a, CH), w) == []
    assert [d.listener for d in deliveries_for(m.update(a, CH), w)] == ["M"]


def test_unsubscribe_action_from_an_all_actions_listener_is_open_rtp7b() -> None:
    """RTP7b does not say whether off(action, L) touches a listener subscribed to all actions:
    the model says it may (min_count 0, max_count 1) for that action only."""
    m, a, w = _watched()
    m.subscribe(w, CH, "L")
    m.unsubscribe(w, CH, "L", "enter")
    (enter,) = deliveries_for(m.enter(a, CH), w)
    assert (enter.min_count, enter.max_count) == (0, 1)
    (update,) = deliveries_for(m.update(a, CH), w)
    assert (update.min_count, update.max_count) == (1, 1)
    # the same through unsubscribe(action) without a listener
    m.unsubscribe(w, CH, None, ["update"])
    (update,) = deliveries_for(m.update(a, CH), w)
    assert (update.min_count, update.max_count) == (0, 1)
    # a fresh subscription for the action settles the question
    m.subscribe(w, CH, "L", "enter")
    (enter,) = deliveries_for(m.enter(a, CH, "again"), w)
    assert (enter.min_count, enter.max_count) == (1, 2)


def test_unsubscribe_with_a_bad_action_raises_and_changes_nothing() -> None:
    m, a, w = _watched()
    m.subscribe(w, CH, "L", "enter")
    expect_error(errors.INVALID_PARAMETER_VALUE, "action", m.unsubscribe, w, CH, "L", "nope")
    assert actions_of(deliveries_for(m.enter(a, CH), w)) == ["enter"]


# -- close, drop, expire ---------------------------------------------------------------------------


def test_close_makes_every_member_leave_at_once() -> None:
    m, a, w = _watched()
    m.enter(a, "r1", "d1")
    m.enter(a, "r2", "d2")
    m.subscribe(w, "r1", "L")
    m.subscribe(w, "r2", "L")
    m.subscribe(a, "r1", "own")
    out = m.close_connection(a)
    assert sorted((e.action.value, e.data) for e in out.events) == [
        ("leave", "d1"),
        ("leave", "d2"),
    ]
    assert all(e.id.startswith(f"{a}:") is False for e in out.events)
    assert sorted(d.channel for d in deliveries_for(out, w)) == ["r1", "r2"]
    assert deliveries_for(out, a) == []  # a closed connection hears nothing, not even its leaves
    assert m.get("r1") == [] and m.get("r2") == []
    assert m.connection_state(a) == "closed"
    expect_error(errors.CONNECTION_CLOSED, "connection", m.enter, a, "r1")
    assert m.close_connection(a).events == []  # closing again: nothing left


def test_drop_keeps_members_until_expire_synthesizes_their_leaves() -> None:
    m, a, w = _watched()
    m.enter(a, CH, "d")
    m.subscribe(a, CH, "own")
    m.subscribe(w, CH, "L")
    m.drop_connection(a)
    assert m.connection_state(a) == "dropped"
    assert [p.connection_id for p in m.get(CH)] == [a]  # still present during the grace
    expect_error(errors.CONNECTION_CLOSED, "connection", m.update, a, CH, "x")
    other = m.open_connection("carol")
    assert deliveries_for(m.enter(other, CH), a) == []  # the dropped connection hears nothing
    out = m.expire_connection(a)
    (leave,) = out.events
    assert (leave.action, leave.connection_id, leave.client_id, leave.data) == (
        Action.LEAVE,
        a,
        "alice",
        "d",
    )
    assert not leave.id.startswith(a)  # RTP2b1: synthesized
    assert actions_of(deliveries_for(out, w, "L")) == ["leave"]
    assert deliveries_for(out, a) == []
    assert [p.client_id for p in m.get(CH)] == ["carol"]
    assert m.history_all(CH)[-1] == leave
    assert m.connection_state(a) == "closed"
    assert m.expire_connection(a).events == []


def test_synthesized_leave_ids_are_unique() -> None:
    m = make()
    conns = [m.open_connection(f"u{i}") for i in range(3)]
    for c in conns:
        m.enter(c, CH)
        m.enter(c, "other")
        m.drop_connection(c)
    ids = [e.id for c in conns for e in m.expire_connection(c).events]
    assert len(ids) == 6 == len(set(ids))
    assert not any(i.startswith(c) for i in ids for c in conns)


def test_operations_on_an_unknown_connection_raise_404() -> None:
    m = make()
    expect_error(errors.NOT_FOUND, "connectionId", m.enter, "conn-404", CH)
    expect_error(errors.NOT_FOUND, "connectionId", m.close_connection, "conn-404")


def test_open_connection_validates_client_id_and_connection_id() -> None:
    m = make()
    for bad in ("", "*", 5):
        expect_error(errors.INVALID_CLIENT_ID, "clientId", m.open_connection, bad)
    c = m.open_connection("alice", connection_id="mine")
    assert c == "mine" and m.connection_client_id("mine") == "alice"
    expect_error(errors.BAD_REQUEST, "connectionId", m.open_connection, "bob", connection_id="mine")


# -- history ---------------------------------------------------------------------------------------


def _log(n: int, clock: Clock | None = None) -> tuple[PresenceModel, list[PresenceMessage]]:
    m = make(clock=clock or Clock(start=0, step=10))
    c = m.open_connection("alice")
    for i in range(n):
        m.update(c, CH, str(i))
    return m, m.history_all(CH)


def test_history_default_is_backwards_with_limit_100() -> None:
    m, log = _log(150)
    page = m.history(CH)
    assert page.items == log[::-1][:DEFAULT_HISTORY_LIMIT]
    assert page.next_cursor is not None


def test_history_forwards() -> None:
    m, log = _log(5)
    assert m.history(CH, direction="forwards").items == log
    assert m.history(CH, direction="backwards").items == log[::-1]


def test_history_limit_cap_is_1000() -> None:
    m, log = _log(1_005)
    assert len(m.history(CH, limit=MAX_HISTORY_LIMIT).items) == 1_000
    assert m.history(CH, limit=1).items == [log[-1]]


def test_history_start_and_end_are_inclusive() -> None:
    m, _ = _log(10)  # timestamps 0, 10, …, 90
    items = m.history(CH, start=20, end=50, direction="forwards").items
    assert [e.timestamp for e in items] == [20, 30, 40, 50]
    assert [e.timestamp for e in m.history(CH, start=20, end=20).items] == [20]
    assert m.history(CH, start=21, end=29).items == []
    assert [e.timestamp for e in m.history(CH, start=85).items] == [90]
    assert [e.timestamp for e in m.history(CH, end=5, direction="forwards").items] == [0]


def test_history_with_equal_timestamps_keeps_every_event_at_the_bounds() -> None:
    m, log = _log(6, Clock(start=0, step=0))  # all at 0 ms
    assert m.history(CH, start=0, end=0, direction="forwards").items == log


def _all_pages(m: PresenceModel, **params: Any) -> list[list[PresenceMessage]]:
    pages = []
    page = m.history(CH, **params)
    pages.append(page.items)
    while page.next_cursor is not None:
        page = m.history(CH, cursor=page.next_cursor, **params)
        pages.append(page.items)
    return pages


@pytest.mark.parametrize("direction", ["forwards", "backwards"])
def test_cursor_pagination_covers_the_range_once_in_order(direction: str) -> None:
    m, log = _log(23)
    pages = _all_pages(m, start=30, end=200, limit=4, direction=direction)
    expected = [e for e in log if 30 <= e.timestamp <= 200]
    if direction == "backwards":
        expected.reverse()
    assert [len(p) for p in pages] == [4, 4, 4, 4, 2]
    assert [e for p in pages for e in p] == expected


def test_pagination_ends_exactly_at_a_full_page() -> None:
    m, _ = _log(8)
    assert [len(p) for p in _all_pages(m, limit=4)] == [4, 4]
    assert [len(p) for p in _all_pages(m, limit=4, direction="forwards")] == [4, 4]


def test_history_of_an_unknown_channel_is_empty() -> None:
    m = make()
    page = m.history("nothing-here")
    assert page.items == [] and page.next_cursor is None


@pytest.mark.parametrize(
    ("params", "argument"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"limit": 2.5}, "limit"),
        ({"limit": -1}, "limit"),
        ({"start": 50, "end": 40}, "start"),
        ({"start": -1}, "start"),
        ({"end": "soon"}, "end"),
        ({"start": True}, "start"),
        ({"direction": "sideways"}, "direction"),
        ({"direction": "Forwards"}, "direction"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "b:3", "direction": "forwards"}, "cursor"),
        ({"cursor": "f:999"}, "cursor"),
    ],
)
def test_bad_history_parameters_raise_40003_naming_the_parameter(
    params: dict, argument: str
) -> None:
    m, _ = _log(5)
    before = snapshot(m)
    err = expect_error(errors.INVALID_PARAMETER_VALUE, argument, m.history, CH, **params)
    assert err.argument == argument
    assert snapshot(m) == before


# -- refused operations change nothing ------------------------------------------------------------


def _populated() -> tuple[PresenceModel, str, str]:
    m = make()
    a = m.open_connection("alice")
    w = m.open_connection("watcher")
    m.enter(a, CH, "a")
    m.subscribe(w, CH, "L")
    return m, a, w


@pytest.mark.parametrize("data", [5, True, 1.5, object(), {1, 2}, {"k": {1}}, {"n": float("nan")}])
@pytest.mark.parametrize("op", ["enter", "update", "leave"])
def test_unsupported_data_raises_40013_and_changes_nothing(op: str, data: Any) -> None:
    m, a, _ = _populated()
    before = snapshot(m)
    err = expect_error(errors.INVALID_DATA, "data", getattr(m, op), a, CH, data)
    assert err.argument == "data"
    assert snapshot(m) == before


@pytest.mark.parametrize("op", ["enter", "update", "leave"])
def test_no_client_id_raises_91000_and_changes_nothing(op: str) -> None:
    m, _, _ = _populated()
    anonymous = m.open_connection(None)
    before = snapshot(m)
    expect_error(errors.NO_CLIENT_ID, "clientId", getattr(m, op), anonymous, CH, "x")
    assert snapshot(m) == before
    assert not m.is_attached(anonymous, CH)


@pytest.mark.parametrize(
    "capability",
    [
        {},
        {"other": ["presence"]},
        {CH: ["subscribe", "history"]},
        {"lobby:*": ["presence"]},
    ],
)
def test_no_presence_capability_raises_40160_and_changes_nothing(capability: dict) -> None:
    m, _, _ = _populated()
    limited = m.open_connection("limited", capability)
    before = snapshot(m)
    expect_error(errors.CAPABILITY_DENIED, "capability", m.enter, limited, CH, "x")
    assert snapshot(m) == before
    # RTP8d then RTP8h: the implicit attach happens when the key grants anything on the channel
    assert m.is_attached(limited, CH) == (CH in capability)


@pytest.mark.parametrize(
    "capability",
    [
        None,
        {"*": ["*"]},
        {CH: ["presence"]},
        {"*": ["presence"]},
        {CH: ["*"]},
    ],
)
def test_presence_capability_grants_enter(capability: dict | None) -> None:
    m = make()
    c = m.open_connection("ok", capability)
    m.enter(c, CH)
    assert len(m.get(CH)) == 1


@pytest.mark.parametrize(
    ("capability", "receives"),
    [
        (None, True),
        ({CH: ["subscribe", "presence"]}, True),
        ({"*": ["*"]}, True),
        ({CH: ["presence"]}, False),
        ({CH: ["presence", "history"]}, False),
        ({"other": ["subscribe"], CH: ["presence"]}, False),
    ],
)
def test_receives_presence_needs_subscribe(capability: dict | None, receives: bool) -> None:
    """RTP11f, RTP17a: without subscribe a connection hears only its own members."""
    m = make()
    c = m.open_connection("c", capability)
    other = m.open_connection("other")
    m.subscribe(c, CH, "l")
    assert m.receives_presence(c, CH) is receives
    assert bool(m.enter(other, CH, "o").deliveries) is receives
    assert [d.connection_id for d in m.enter(c, CH, "mine").deliveries] == [c]


def test_a_namespace_wildcard_capability_grants_its_channels() -> None:
    m = make()
    c = m.open_connection("ok", {"lobby:*": ["presence"]})
    m.enter(c, "lobby:1")
    expect_error(errors.CAPABILITY_DENIED, "capability", m.enter, c, "hall:1")


def test_message_too_large_raises_40009_and_changes_nothing() -> None:
    m = make(max_message_size=100)
    c = m.open_connection("alice")
    m.enter(c, CH, "small")
    before = snapshot(m)
    expect_error(errors.MESSAGE_TOO_LARGE, "data", m.update, c, CH, "x" * 100)
    assert snapshot(m) == before
    m.update(c, CH, "x" * 95)  # 5 bytes of clientId + 95 bytes of data fit


@pytest.mark.parametrize("channel", ["", None, 7])
def test_bad_channel_name_raises_and_changes_nothing(channel: Any) -> None:
    m, a, _ = _populated()
    before = snapshot(m)
    expect_error(errors.INVALID_PARAMETER_VALUE, "channel", m.enter, a, channel)
    expect_error(errors.INVALID_PARAMETER_VALUE, "channel", m.subscribe, a, channel, "L")
    assert snapshot(m) == before


def test_errors_carry_their_ably_shape() -> None:
    m = make()
    c = m.open_connection(None)
    err = expect_error(errors.NO_CLIENT_ID, "clientId", m.enter, c, CH)
    assert err.to_dict() == {"code": 91000, "statusCode": 400, "message": err.message}
    assert err.argument == "clientId"

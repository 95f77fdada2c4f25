"""Property tests of the reference model (Hypothesis).

(a) The presence set equals the fold of each member's own operations, each member folded alone.
(b) The history holds every event exactly once, in timestamp order.
(c) History pages cover a range exactly once, in order, in both directions.
The fake clock sometimes repeats a timestamp and sometimes goes backwards.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.model import PresenceModel
from presence_conformance.reference_impl.types import Action, PresenceMessage

CLIENTS = ["alice", "alice", "bob", "carol"]  # connection i has clientId CLIENTS[i]
CHANNELS = ["x", "y", "z"]
ABSENT = object()

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

data_values = st.one_of(
    st.none(),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.dictionaries(st.text(max_size=2), st.integers(-3, 3) | st.text(max_size=2), max_size=2),
    st.lists(st.integers(0, 3), max_size=2),
)
connection_index = st.integers(0, len(CLIENTS) - 1)
channel_name = st.sampled_from(CHANNELS)
# (name, connection index, channel, data); close / drop / expire ignore channel and data.
# Mostly presence operations, so that channels get long histories before connections go away.
OPERATION_NAMES = ["enter"] * 4 + ["update"] * 4 + ["leave"] * 3 + ["close", "drop", "expire"]
operation = st.tuples(st.sampled_from(OPERATION_NAMES), connection_index, channel_name, data_values)
operations = st.lists(operation, min_size=20, max_size=60)
clock_steps = st.lists(st.sampled_from([0, 0, 1, 1, 2, 7, -3]), min_size=1, max_size=8)


class SteppingClock:
    """A fake millisecond clock that moves by a cycle of steps (0: repeat; negative: backwards)."""

    def __init__(self, steps: list[int], start: int = 1_000) -> None:
        self._steps = itertools.cycle(steps)
        self.now = start

    def __call__(self) -> int:
        value = self.now
        self.now = max(0, self.now + next(self._steps))
        return value


def run_ops(model: PresenceModel, conns: list[str], ops: list[tuple]) -> list[PresenceMessage]:
    """Apply `ops`; refused calls must raise 80017 (connection gone). Return every event emitted."""
    emitted: list[PresenceMessage] = []
    for op in ops:
        name, index = op[0], op[1]
        cid = conns[index]
        try:
            if name in ("enter", "update", "leave"):
                outcome = getattr(model, name)(cid, op[2], op[3])
            elif name == "close":
                outcome = model.close_connection(cid)
            elif name == "drop":
                if model.connection_state(cid) != "connected":
                    continue
                model.drop_connection(cid)
                continue
            else:  # expire: only meaningful after a drop
                if model.connection_state(cid) != "dropped":
                    continue
                outcome = model.expire_connection(cid)
        except PresenceError as exc:
            assert exc.code == errors.CONNECTION_CLOSED
            assert model.connection_state(cid) != "connected"
            continue
        emitted.extend(outcome.events)
    return emitted


def fold_member(ops: list[tuple], index: int, channel: str) -> Any:
    """The data of member (connection `index`, `channel`) after `ops`, folding only its own
    operations and its connection's fate; ABSENT if it is not present."""
    state, data = "connected", ABSENT
    for op in ops:
        if op[1] != index:
            continue
        name = op[0]
        if name in ("enter", "update", "leave"):
            if state != "connected" or op[2] != channel:
                continue
            data = ABSENT if name == "leave" else op[3]
        elif name == "close":
            state, data = "closed", ABSENT
        elif name == "drop" and state == "connected":
            state = "dropped"
        elif name == "expire" and state == "dropped":
            state, data = "closed", ABSENT
    return data


def new_model(steps: list[int]) -> tuple[PresenceModel, list[str]]:
    model = PresenceModel(SteppingClock(steps))
    conns = [model.open_connection(client) for client in CLIENTS]
    return model, conns


@SETTINGS
@given(ops=operations, steps=clock_steps)
def test_presence_set_is_the_fold_of_each_members_operations(
    ops: list[tuple], steps: list[int]
) -> None:
    model, conns = new_model(steps)
    run_ops(model, conns, ops)
    for channel in CHANNELS:
        expected = {}
        for index, cid in enumerate(conns):
            data = fold_member(ops, index, channel)
            if data is not ABSENT:
                expected[(cid, CLIENTS[index])] = data
        members = model.get(channel)
        assert {(p.connection_id, p.client_id): p.data for p in members} == expected
        assert len(members) == len(expected)
        assert all(p.action is Action.PRESENT for p in members)
        for client in set(CLIENTS):
            assert sorted(p.connection_id for p in model.get(channel, client_id=client)) == sorted(
                cid for cid, c in expected if c == client
            )
        for index, cid in enumerate(conns):
            got = model.get(channel, connection_id=cid)
            assert [(p.client_id, p.data) for p in got] == (
                [(CLIENTS[index], expected[(cid, CLIENTS[index])])]
                if (cid, CLIENTS[index]) in expected
                else []
            )


@SETTINGS
@given(ops=operations, steps=clock_steps)
def test_history_holds_every_event_once_in_timestamp_order(
    ops: list[tuple], steps: list[int]
) -> None:
    model, conns = new_model(steps)
    emitted = run_ops(model, conns, ops)
    position = {e.id: i for i, e in enumerate(emitted)}
    assert len(position) == len(emitted)  # ids are unique
    seen = 0
    for channel in CHANNELS:
        log = model.history_all(channel)
        seen += len(log)
        assert all(e.id in position and emitted[position[e.id]] == e for e in log)
        positions = [position[e.id] for e in log]
        assert positions == sorted(positions)  # in publication order
        times = [e.timestamp for e in log]
        assert times == sorted(times)  # and so in timestamp order
        # replaying the channel's history gives its presence set
        replay: dict[str, Any] = {}
        for e in log:
            if e.action is Action.LEAVE:
                replay.pop(e.member_key, None)
            else:
                replay[e.member_key] = e.data
        assert replay == {p.member_key: p.data for p in model.get(channel)}
        # the default query (backwards) pages through the same events, newest first
        pages, page = [], model.history(channel, limit=7)
        pages += page.items
        while page.next_cursor:
            page = model.history(channel, limit=7, cursor=page.next_cursor)
            pages += page.items
        assert pages == log[::-1]
    assert seen == len(emitted)  # every event exactly once


@st.composite
def history_queries(draw: st.DrawFn) -> tuple[list[int], int, int, int | None, int | None, str]:
    steps = draw(clock_steps)
    count = draw(st.integers(0, 60))
    limit = draw(st.integers(1, 70))
    direction = draw(st.sampled_from(["forwards", "backwards"]))
    low = draw(st.none() | st.integers(995, 1_200))
    high = draw(st.none() | st.integers(995, 1_200))
    if low is not None and high is not None and low > high:
        low, high = high, low
    return steps, count, limit, low, high, direction


@SETTINGS
@given(query=history_queries())
def test_pages_cover_the_range_exactly_once_in_order(query: tuple) -> None:
    steps, count, limit, start, end, direction = query
    model = PresenceModel(SteppingClock(steps))
    cid = model.open_connection("alice")
    for i in range(count):
        model.update(cid, "h", str(i))
    log = model.history_all("h")
    expected = [
        e
        for e in log
        if (start is None or e.timestamp >= start) and (end is None or e.timestamp <= end)
    ]
    if direction == "backwards":
        expected.reverse()
    pages = []
    page = model.history("h", start=start, end=end, limit=limit, direction=direction)
    pages.append(page.items)
    while page.next_cursor is not None:
        page = model.history(
            "h", start=start, end=end, limit=limit, direction=direction, cursor=page.next_cursor
        )
        pages.append(page.items)
    assert [e for p in pages for e in p] == expected
    assert all(len(p) == limit for p in pages[:-1])  # every page but the last is full
    assert 0 < len(pages[-1]) <= limit or (len(pages) == 1 and not expected)


# (d) listener_state is a deep copy of the registrations, made without copy.deepcopy
subscription = st.tuples(
    st.sampled_from(["L1", "L2", "L3"]),
    st.none()
    | st.sampled_from(["enter", "leave", "update", "present"])
    | st.lists(st.sampled_from(["enter", "leave", "update", "present"]), min_size=1, max_size=3),
    st.booleans(),  # then unsubscribe (some) actions of that listener
)


@SETTINGS
@given(st.lists(subscription, max_size=12))
def test_listener_state_is_a_deep_copy(subscriptions: list[tuple]) -> None:
    model = PresenceModel(lambda: 1)
    cid = model.open_connection("alice")
    for name, actions, then_unsubscribe in subscriptions:
        model.subscribe(cid, "x", name, actions)
        if then_unsubscribe:
            model.unsubscribe(cid, "x", name, ["enter", "update"])
    live = model._conn(cid).listeners.get("x", {})
    saved = model.listener_state(cid, "x")
    assert saved == copy.deepcopy(live)
    for regs in saved.values():  # nothing shared with the model's registrations
        for reg in regs:
            assert all(
                reg is not r and reg.maybe_removed is not r.maybe_removed
                for rs in live.values()
                for r in rs
            )

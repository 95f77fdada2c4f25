"""The model's side of interleavings: pending leaves of dropped connections, and enters and
updates of one member applied in an order other than the one the model used."""

from __future__ import annotations

import itertools

import pytest
from presence_conformance.reference_impl.model import PresenceModel
from presence_conformance.reference_impl.types import Action

CH = "room"


def make() -> PresenceModel:
    clock = itertools.count(1_000)
    return PresenceModel(lambda: next(clock))


def test_a_dropped_members_leave_is_pending_until_the_grace_ends() -> None:
    model = make()
    old = model.open_connection("alice")
    model.enter(old, CH, "first")
    model.drop_connection(old)
    assert [m.data for m in model.pending_leaves(CH)] == ["first"]
    assert [m.data for m in model.get(CH)] == ["first"]  # still present
    new = model.open_connection("alice")  # the same clientId within the grace: a new member
    model.enter(new, CH, "second")
    assert {m.connection_id for m in model.get(CH, client_id="alice")} == {old, new}
    assert [m.connection_id for m in model.pending_leaves(CH)] == [old]
    outcome = model.expire_connection(old)
    assert [(e.action, e.connection_id) for e in outcome.events] == [(Action.LEAVE, old)]
    assert not model.pending_leaves(CH)
    assert [(m.connection_id, m.data) for m in model.get(CH)] == [(new, "second")]


def test_apply_order_reorders_the_log_and_keeps_the_last_applied() -> None:
    model = make()
    cid = model.open_connection("alice")
    other = model.open_connection("bob")
    enter = model.enter(cid, CH, "entered").events[0]
    model.enter(other, CH, "bob")
    update = model.update(cid, CH, "updated").events[0]
    model.apply_order(CH, [update.id, enter.id])
    log = model.history_all(CH)
    assert [e.data for e in log] == ["updated", "bob", "entered"]
    assert [m.data for m in model.get(CH, client_id="alice")] == ["entered"]


@pytest.mark.parametrize("kind", ["leave", "other member"])
def test_apply_order_takes_only_enters_and_updates_of_one_member(kind: str) -> None:
    model = make()
    cid = model.open_connection("alice")
    first = model.enter(cid, CH, "a").events[0]
    if kind == "leave":
        second = model.leave(cid, CH).events[0]
    else:
        second = model.enter(model.open_connection("bob"), CH, "b").events[0]
    with pytest.raises(ValueError):
        model.apply_order(CH, [second.id, first.id])
    assert [e.id for e in model.history_all(CH)] == [first.id, second.id]


def test_retract_restores_the_member_as_before_the_race() -> None:
    model = make()
    cid = model.open_connection("alice")
    other = model.open_connection("bob")
    model.enter(cid, CH, "first")
    update = model.update(cid, CH, "updated").events[0]
    model.enter(other, CH, "bob")
    leave = model.leave(cid, CH).events[0]
    assert model.get(CH, client_id="alice") == []
    model.retract(CH, [update.id, leave.id])
    assert [e.data for e in model.history_all(CH)] == ["first", "bob"]
    assert [m.data for m in model.get(CH, client_id="alice")] == ["first"]
    assert [m.data for m in model.get(CH, connection_id=cid)] == ["first"]
    # applied again in the other order: the leave first, then the update enters (RTP9b)
    again = model.leave(cid, CH).events + model.update(cid, CH, "updated").events
    assert [(e.action.value, e.data) for e in again] == [("leave", "first"), ("update", "updated")]
    assert [m.data for m in model.get(CH, client_id="alice")] == ["updated"]


def test_retract_to_absent_clears_the_indexes() -> None:
    model = make()
    cid = model.open_connection("alice")
    enter = model.enter(cid, CH, "a").events[0]
    model.retract(CH, [enter.id])
    assert model.get(CH) == [] and model.get(CH, client_id="alice") == []
    assert model.get(CH, connection_id=cid) == [] and model.history_all(CH) == []


@pytest.mark.parametrize("kind", ["not the latest", "two members", "unknown"])
def test_retract_takes_only_a_members_latest_events(kind: str) -> None:
    model = make()
    cid = model.open_connection("alice")
    first = model.enter(cid, CH, "a").events[0]
    later = model.update(cid, CH, "b").events[0]
    bob = model.enter(model.open_connection("bob"), CH, "b").events[0]
    ids = {"not the latest": [first.id], "two members": [later.id, bob.id], "unknown": ["x"]}
    with pytest.raises(ValueError):
        model.retract(CH, ids[kind])
    assert len(model.history_all(CH)) == 3

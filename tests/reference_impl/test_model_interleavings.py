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

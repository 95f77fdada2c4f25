"""The runner's use of the reference model beyond its public API (`harness/run/oracle`): who may
receive an event reported with either of two actions, and putting one connection's listener
registrations back after the implementation refused a subscribe or unsubscribe the model took.

Observed only through the model's public API (`listeners`, and who the next event reaches)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from presence_conformance.harness.run.oracle import open_action_outcome
from presence_conformance.reference_impl.model import Outcome, PresenceModel

ROOM = "room"


def new_model() -> tuple[PresenceModel, str, str]:
    """A model with alice's and bob's connections; bob will watch."""
    ticks = itertools.count(1)
    model = PresenceModel(clock=lambda: next(ticks))
    return model, model.open_connection("alice"), model.open_connection("bob")


def reach(outcome: Outcome) -> dict[tuple[str, str], tuple[int, int]]:
    """Who must receive the outcome's last event: (connection, listener) -> (min, max)."""
    last = outcome.events[-1].id
    return {
        (d.connection_id, d.listener): (d.min_count, d.max_count)
        for d in outcome.deliveries
        if d.event.id == last
    }


_probes = itertools.count(1)


def probe(model: PresenceModel, watcher: str) -> dict[str, tuple[int, int]]:
    """Which of `watcher`'s listeners an enter of a fresh member reaches: listener -> (min, max)."""
    conn = model.open_connection(f"probe-{next(_probes)}")
    outcome = model.enter(conn, ROOM, "p")
    return {
        listener: bounds for (cid, listener), bounds in reach(outcome).items() if cid == watcher
    }


# -- open_action_outcome -----------------------------------------------------------------------


def watched(*subscriptions: tuple[str, Any]) -> tuple[PresenceModel, str, str]:
    model, alice, bob = new_model()
    for listener, actions in subscriptions:
        model.subscribe(bob, ROOM, listener, actions)
    return model, alice, bob


FILTERS = (("all", None), ("enters", "enter"), ("updates", "update"), ("leaves", "leave"))


def test_enter_while_present_may_reach_enter_and_update_listeners() -> None:
    model, alice, bob = watched(*FILTERS)
    model.enter(alice, ROOM, "a")
    outcome = model.enter(alice, ROOM, "b")  # present already: may be reported as update
    assert reach(outcome) == {(bob, "all"): (1, 1), (bob, "enters"): (1, 1)}
    opened = open_action_outcome(model, ROOM, outcome, "update")
    assert reach(opened) == {
        (bob, "all"): (1, 1),  # takes both actions: must get it once
        (bob, "enters"): (0, 1),  # gets it only if reported as enter
        (bob, "updates"): (0, 1),  # gets it only if reported as update
    }


def test_update_while_absent_may_reach_update_and_enter_listeners() -> None:
    model, alice, bob = watched(*FILTERS)
    outcome = model.update(alice, ROOM, "a")  # not present: enters, may be reported as enter
    opened = open_action_outcome(model, ROOM, outcome, "enter")
    assert reach(opened) == {
        (bob, "all"): (1, 1),
        (bob, "enters"): (0, 1),
        (bob, "updates"): (0, 1),
    }


def test_a_listener_of_both_actions_must_get_it_once() -> None:
    model, alice, bob = watched(("both", ["enter", "update"]))
    model.enter(alice, ROOM, "a")
    outcome = model.enter(alice, ROOM, "b")
    assert reach(open_action_outcome(model, ROOM, outcome, "update")) == {(bob, "both"): (1, 1)}


def test_a_listener_registered_twice_may_get_it_twice() -> None:
    model, alice, bob = watched(("twice", None), ("twice", None))
    model.enter(alice, ROOM, "a")
    outcome = model.enter(alice, ROOM, "b")
    assert reach(open_action_outcome(model, ROOM, outcome, "update")) == {(bob, "twice"): (1, 2)}


def test_a_listener_of_one_action_registered_twice_may_get_it_twice_or_not_at_all() -> None:
    model, alice, bob = watched(("enters", "enter"), ("enters", "enter"))
    model.enter(alice, ROOM, "a")
    outcome = model.enter(alice, ROOM, "b")
    assert reach(outcome) == {(bob, "enters"): (1, 2)}
    assert reach(open_action_outcome(model, ROOM, outcome, "update")) == {(bob, "enters"): (0, 2)}


def test_a_listener_that_may_have_dropped_one_action_may_miss_it() -> None:
    # off(enter) on an all-actions listener: RTP7b leaves open whether it still gets enters
    model, alice, bob = watched(("all", None))
    model.unsubscribe(bob, ROOM, "all", "enter")
    model.enter(alice, ROOM, "a")
    outcome = model.enter(alice, ROOM, "b")
    assert reach(outcome) == {(bob, "all"): (0, 1)}
    assert reach(open_action_outcome(model, ROOM, outcome, "update")) == {(bob, "all"): (0, 1)}


def test_the_alternative_deliveries_carry_the_models_event() -> None:
    model, alice, bob = watched(("updates", "update"))
    model.enter(alice, ROOM, "a")
    outcome = model.enter(alice, ROOM, "b")
    assert reach(outcome) == {}  # as an enter, nobody gets it
    [delivery] = open_action_outcome(model, ROOM, outcome, "update").deliveries
    assert delivery.event == outcome.events[-1]  # the event itself: action enter, the model's id
    assert (delivery.connection_id, delivery.channel, delivery.listener) == (bob, ROOM, "updates")


def test_only_connections_attached_to_the_channel_are_reached() -> None:
    model, alice, bob = watched(("all", None))
    elsewhere = model.open_connection("carol")
    model.subscribe(elsewhere, "other", "all")
    dropped = model.open_connection("dave")
    model.subscribe(dropped, ROOM, "all")
    model.drop_connection(dropped)
    model.enter(alice, ROOM, "a")
    outcome = model.enter(alice, ROOM, "b")
    assert set(reach(open_action_outcome(model, ROOM, outcome, "update"))) == {(bob, "all")}


def test_other_events_of_the_outcome_and_the_outcome_itself_are_left_alone() -> None:
    model, alice, _ = watched(*FILTERS)
    carol = model.open_connection("carol")
    model.enter(alice, ROOM, "a")
    combined = Outcome()
    combined.extend(model.enter(carol, ROOM, "c"))  # an earlier event of the same outcome
    combined.extend(model.enter(alice, ROOM, "b"))
    earlier = [d for d in combined.deliveries if d.event.id == combined.events[0].id]
    before = (list(combined.events), list(combined.deliveries))
    opened = open_action_outcome(model, ROOM, combined, "update")
    assert opened.events == combined.events
    assert [d for d in opened.deliveries if d.event.id == combined.events[0].id] == earlier
    assert (combined.events, combined.deliveries) == before  # not changed in place


def test_nobody_listening_nobody_reached() -> None:
    model, alice, _ = new_model()
    model.enter(alice, ROOM, "a")
    outcome = model.enter(alice, ROOM, "b")
    opened = open_action_outcome(model, ROOM, outcome, "update")
    assert opened.deliveries == [] and opened.events == outcome.events


# -- model.listener_state, model.restore_listener_state-----------------------------------------------------


def test_restore_undoes_a_subscribe() -> None:
    model, _, bob = watched(("all", None))
    saved = model.listener_state(bob, ROOM)
    model.subscribe(bob, ROOM, "more", "enter")
    model.subscribe(bob, ROOM, "all", None)  # a second registration of the same listener
    assert model.listeners(bob, ROOM) == ["all", "more"]
    assert probe(model, bob) == {"all": (1, 2), "more": (1, 1)}
    model.restore_listener_state(bob, ROOM, saved)
    assert model.listeners(bob, ROOM) == ["all"]
    assert probe(model, bob) == {"all": (1, 1)}


def test_restore_undoes_the_first_subscribe_of_a_connection() -> None:
    # nothing registered before: afterwards the connection is reached by nothing at all
    model, _, bob = new_model()
    saved = model.listener_state(bob, ROOM)
    model.subscribe(bob, ROOM, "all")
    assert probe(model, bob) == {"all": (1, 1)}
    model.restore_listener_state(bob, ROOM, saved)
    assert model.listeners(bob, ROOM) == []
    assert probe(model, bob) == {}


@pytest.mark.parametrize(
    ("listener", "actions"),
    [(None, None), ("all", None), (None, "enter"), ("all", ["enter", "update"])],
)
def test_restore_undoes_an_unsubscribe(listener: str | None, actions: Any) -> None:
    model, _, bob = watched(("all", None), ("enters", "enter"))
    expected = probe(model, bob)
    saved = model.listener_state(bob, ROOM)
    model.unsubscribe(bob, ROOM, listener, actions)
    assert probe(model, bob) != expected
    model.restore_listener_state(bob, ROOM, saved)
    assert model.listeners(bob, ROOM) == ["all", "enters"]
    assert probe(model, bob) == expected


def test_a_saved_state_is_a_copy() -> None:
    model, _, bob = watched(("all", None))
    saved = model.listener_state(bob, ROOM)
    model.unsubscribe(bob, ROOM, "all", "enter")  # changes the registration saved, in place
    model.subscribe(bob, ROOM, "all", "update")
    assert probe(model, bob) == {"all": (0, 1)}
    model.restore_listener_state(bob, ROOM, saved)
    assert probe(model, bob) == {"all": (1, 1)}


def test_state_is_per_connection_and_channel() -> None:
    model, alice, bob = watched(("all", None))
    model.subscribe(alice, ROOM, "mine")
    model.subscribe(bob, "other", "elsewhere")
    saved = model.listener_state(bob, ROOM)
    model.subscribe(bob, ROOM, "more")
    model.restore_listener_state(bob, ROOM, saved)
    assert model.listeners(bob, ROOM) == ["all"]
    assert model.listeners(bob, "other") == ["elsewhere"]
    assert model.listeners(alice, ROOM) == ["mine"]
    assert "mine" in probe(model, alice)


def test_restore_on_a_channel_never_attached() -> None:
    # a refused subscribe before the channel exists in the model: restoring must not invent it
    model, _, bob = new_model()
    saved = model.listener_state(bob, "nowhere")
    model.restore_listener_state(bob, "nowhere", saved)
    assert model.listeners(bob, "nowhere") == []
    assert "nowhere" not in model.channels()

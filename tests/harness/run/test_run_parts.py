"""Parts the case driver is built from: `poll_until`, and the reference model's public methods
the runner and the mutants use to follow an implementation (listener state, deliveries of an
event with another action, a connection's capability)."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from presence_conformance.harness.run.oracle import open_action_outcome
from presence_conformance.harness.run.poll import poll_until
from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.model import PresenceModel
from presence_conformance.reference_impl.types import Action


def make() -> PresenceModel:
    clock = itertools.count(1)
    return PresenceModel(lambda: next(clock))


# -- poll_until ----------------------------------------------------------------------------------


def test_poll_until_stops_at_the_first_true_answer() -> None:
    answers = iter([False, False, True, False])
    calls = []

    async def attempt() -> bool:
        calls.append(1)
        return next(answers)

    async def main() -> bool:
        deadline = asyncio.get_running_loop().time() + 5.0
        return await poll_until(attempt, deadline, 0.001)

    assert asyncio.run(main()) is True
    assert len(calls) == 3


def test_poll_until_tries_once_after_the_deadline_and_gives_up() -> None:
    calls = []

    async def attempt() -> bool:
        calls.append(1)
        return False

    async def main() -> bool:
        return await poll_until(attempt, asyncio.get_running_loop().time() - 1.0, 0.001)

    assert asyncio.run(main()) is False
    assert len(calls) == 1


def test_poll_until_is_bounded_by_the_deadline() -> None:
    calls = []

    async def attempt() -> bool:
        calls.append(1)
        return False

    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await poll_until(attempt, started + 0.05, 0.01)
        return answer, loop.time() - started

    answer, elapsed = asyncio.run(main())
    assert answer is False
    assert 0.05 <= elapsed < 1.0
    assert 2 < len(calls) < 100  # pauses grow (0, 0.5 ms, 1 ms, ...) up to 10 ms


# -- listener state ------------------------------------------------------------------------------


def test_restored_listener_state_undoes_an_unsubscribe() -> None:
    model = make()
    alice, bob = model.open_connection("alice"), model.open_connection("bob")
    model.subscribe(bob, "room", "l1", ["enter"])
    saved = model.listener_state(bob, "room")
    model.unsubscribe(bob, "room")
    assert model.listeners(bob, "room") == []
    assert model.enter(alice, "room", None).deliveries == []

    model.restore_listener_state(bob, "room", saved)
    assert model.listeners(bob, "room") == ["l1"]
    outcome = model.update(alice, "room", "x")  # filtered out: l1 takes enter only
    assert outcome.deliveries == []
    model.leave(alice, "room")
    outcome = model.enter(alice, "room", None)
    assert [(d.connection_id, d.listener) for d in outcome.deliveries] == [(bob, "l1")]


def test_restored_empty_listener_state_undoes_a_subscribe() -> None:
    model = make()
    alice, bob = model.open_connection("alice"), model.open_connection("bob")
    model.attach(bob, "room")
    saved = model.listener_state(bob, "room")
    model.subscribe(bob, "room", "l1")
    model.restore_listener_state(bob, "room", saved)
    assert model.listeners(bob, "room") == []
    assert model.enter(alice, "room", None).deliveries == []


def test_listener_state_is_a_copy() -> None:
    model = make()
    bob = model.open_connection("bob")
    model.subscribe(bob, "room", "l1")
    saved = model.listener_state(bob, "room")
    model.subscribe(bob, "room", "l2")
    assert sorted(saved) == ["l1"]


# -- deliveries of an event with another action ------------------------------------------------


def test_deliveries_for_changes_nothing_and_follows_filters() -> None:
    model = make()
    alice, bob = model.open_connection("alice"), model.open_connection("bob")
    model.subscribe(bob, "room", "enters", ["enter"])
    model.subscribe(bob, "room", "updates", ["update"])
    event = model.enter(alice, "room", None).events[0]
    as_update = event.with_action(Action.UPDATE)
    assert [d.listener for d in model.deliveries_for("room", as_update)] == ["updates"]
    assert [d.listener for d in model.deliveries_for("room", event)] == ["enters"]
    assert model.deliveries_for("elsewhere", event) == []
    assert len(model.history_all("room")) == 1


def test_open_action_outcome_makes_a_one_action_listener_optional() -> None:
    model = make()
    alice, bob = model.open_connection("alice"), model.open_connection("bob")
    model.subscribe(bob, "room", "enters", ["enter"])
    model.subscribe(bob, "room", "all")
    model.enter(alice, "room", None)
    outcome = model.enter(alice, "room", "again")  # while present: enter or update
    counts = {
        d.listener: (d.min_count, d.max_count)
        for d in open_action_outcome(model, "room", outcome, "update").deliveries
    }
    assert counts == {"enters": (0, 1), "all": (1, 1)}


# -- capability ----------------------------------------------------------------------------------


def test_replace_capability_returns_the_previous_one() -> None:
    model = make()
    alice = model.open_connection("alice", {"other": ["presence"]})
    with pytest.raises(PresenceError) as refused:
        model.check_capability(alice, "room", "presence")
    assert refused.value.code == errors.CAPABILITY_DENIED
    assert model.replace_capability(alice, None) == {"other": ["presence"]}
    model.check_capability(alice, "room", "presence")
    assert model.replace_capability(alice, {"other": ["presence"]}) is None
    with pytest.raises(PresenceError):
        model.check_capability(alice, "room", "presence")

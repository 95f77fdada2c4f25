"""Tests of the asyncio presence service (`presence_conformance.reference_impl.service`), each in its own event loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

import pytest
from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.service import (
    PresenceService,
    ServiceConnection,
    ServicePresence,
)
from presence_conformance.reference_impl.types import Action, PresenceMessage
from support import until

CH = "room"


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run an async test body in a fresh event loop (no pytest-asyncio)."""
    asyncio.run(asyncio.wait_for(test(), timeout=10))


async def settle(hops: int = 10) -> None:
    """Let every ready callback and task run (a few event-loop iterations)."""
    for _ in range(hops):
        await asyncio.sleep(0)


# the service answers within a few turns of the event loop: a short bound, a tight poll
eventually = partial(until, timeout=2.0, interval=0.001)


class Recorder:
    """A listener that records what it receives."""

    def __init__(self) -> None:
        self.events: list[PresenceMessage] = []

    def __call__(self, message: PresenceMessage) -> None:
        self.events.append(message)

    @property
    def actions(self) -> list[str]:
        return [e.action.value for e in self.events]

    def seen(self) -> list[tuple[str, str, Any]]:
        return [(e.action.value, e.client_id, e.data) for e in self.events]


async def two_clients(
    **service_kwargs: Any,
) -> tuple[PresenceService, ServiceConnection, ServiceConnection]:
    service = PresenceService(**service_kwargs)
    return service, await service.connect("alice"), await service.connect("bob")


def presence(conn: ServiceConnection, channel: str = CH) -> ServicePresence:
    return conn.channels.get(channel).presence


async def expect_error(
    code: int, argument: str, awaitable: Awaitable[Any] | Callable[[], Any]
) -> PresenceError:
    with pytest.raises(PresenceError) as info:
        if callable(awaitable):
            result = awaitable()
            if asyncio.iscoroutine(result):
                await result
        else:
            await awaitable
    assert info.value.code == code, info.value
    assert argument in info.value.message, info.value.message
    return info.value


# -- delivery --------------------------------------------------------------------------------------


def test_events_are_delivered_after_the_call_returns() -> None:
    async def body() -> None:
        service, alice, bob = await two_clients()
        in_call = False
        during_call: list[bool] = []

        def listener(message: PresenceMessage) -> None:
            during_call.append(in_call)

        await presence(bob).subscribe(listener)
        await presence(alice).subscribe(listener)
        in_call = True
        await presence(alice).enter("hi")
        in_call = False
        assert during_call == []  # nothing ran inside the caller's stack
        await settle()
        assert during_call == [False, False]
        await service.close()

    run(body)


def test_events_reach_each_listener_in_order() -> None:
    async def body() -> None:
        service, alice, bob = await two_clients()
        sync_rec = Recorder()
        slow: list[Any] = []

        async def async_listener(message: PresenceMessage) -> None:
            await asyncio.sleep(0.001 if len(slow) % 2 else 0)
            slow.append(message.data)

        await presence(bob).subscribe(sync_rec)
        await presence(bob).subscribe(async_listener)
        await settle()
        await presence(alice).enter("0")
        for i in range(1, 30):
            await presence(alice).update(str(i))
        await presence(alice).leave()
        await eventually(lambda: len(slow) == 31)
        assert [e.data for e in sync_rec.events] == [str(i) for i in range(30)] + ["29"]
        assert sync_rec.actions == ["enter"] + ["update"] * 29 + ["leave"]
        assert slow == [str(i) for i in range(30)] + ["29"]
        assert [e.timestamp for e in sync_rec.events] == sorted(
            e.timestamp for e in sync_rec.events
        )
        await service.close()

    run(body)


def test_own_events_are_delivered_to_own_listeners() -> None:
    async def body() -> None:
        service, alice, _ = await two_clients()
        rec = Recorder()
        await presence(alice).subscribe(rec)
        await presence(alice).enter({"k": 1})
        await eventually(lambda: len(rec.events) == 1)
        assert rec.seen() == [("enter", "alice", {"k": 1})]
        await service.close()

    run(body)


def test_subscribe_action_filters() -> None:
    async def body() -> None:
        service, alice, bob = await two_clients()
        enters, both, everything = Recorder(), Recorder(), Recorder()
        p = presence(bob)
        await p.subscribe(enters, "enter")
        await p.subscribe(both, ["enter", "leave"])
        await p.subscribe("update", everything)  # the seed's order (action, listener)
        await p.subscribe(everything, "leave")
        for op in ("enter", "update", "leave"):
            await getattr(presence(alice), op)("x")
        await eventually(lambda: len(everything.events) == 2)
        await settle()
        assert enters.actions == ["enter"]
        assert both.actions == ["enter", "leave"]
        assert everything.actions == ["update", "leave"]
        await service.close()

    run(body)


def test_present_is_delivered_to_a_late_subscriber() -> None:
    async def body() -> None:
        service, alice, bob = await two_clients()
        await presence(alice).enter("here")
        rec = Recorder()
        await presence(bob).subscribe(rec)
        assert rec.events == []
        await eventually(lambda: len(rec.events) == 1)
        assert rec.seen() == [("present", "alice", "here")]
        await service.close()

    run(body)


def test_unsubscribe_forms() -> None:
    async def body() -> None:
        service, alice, bob = await two_clients()
        p = presence(bob)
        l1, l2, l3 = Recorder(), Recorder(), Recorder()

        async def subscribe_all() -> None:
            for rec in (l1, l2, l3):
                await p.subscribe(rec, ["enter", "update"])

        async def publish() -> None:
            for rec in (l1, l2, l3):
                rec.events.clear()
            await presence(alice).enter("a")
            await presence(alice).update("b")
            await presence(alice).leave()
            await settle()

        await subscribe_all()
        p.unsubscribe()  # ()
        await publish()
        assert (l1.actions, l2.actions, l3.actions) == ([], [], [])

        await subscribe_all()
        p.unsubscribe(l1)  # (listener)
        await publish()
        assert (l1.actions, l2.actions, l3.actions) == (
            [],
            ["enter", "update"],
            ["enter", "update"],
        )

        p.unsubscribe(l2, "enter")  # (listener, action) in this API's order
        p.unsubscribe("update", l3)  # (action, listener) in the seed's order
        await publish()
        assert (l2.actions, l3.actions) == (["update"], ["enter"])

        p.unsubscribe("update")  # (action): from every listener
        await publish()
        assert (l2.actions, l3.actions) == ([], ["enter"])
        p.unsubscribe(Recorder())  # a listener never subscribed: nothing happens
        await publish()
        assert l3.actions == ["enter"]
        await service.close()

    run(body)


def test_unsubscribe_an_action_from_an_all_actions_listener_removes_that_action() -> None:
    """The choice where RTP7b is open (model min_count 0): the service delivers nothing."""

    async def body() -> None:
        service, alice, bob = await two_clients()
        rec = Recorder()
        await presence(bob).subscribe(rec)
        presence(bob).unsubscribe(rec, "enter")
        await presence(alice).enter("a")
        await presence(alice).update("b")
        await eventually(lambda: len(rec.events) == 1)
        await settle()
        assert rec.actions == ["update"]
        await service.close()

    run(body)


def test_a_listener_that_raises_does_not_break_delivery(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        service, alice, bob = await two_clients()
        calls: list[str] = []

        def bad(message: PresenceMessage) -> None:
            calls.append(message.action.value)
            raise RuntimeError("listener bug")

        async def bad_async(message: PresenceMessage) -> None:
            raise ValueError("async listener bug")

        good = Recorder()
        await presence(bob).subscribe(bad)
        await presence(bob).subscribe(bad_async)
        await presence(bob).subscribe(good)
        await presence(alice).enter("a")
        await presence(alice).leave()
        await eventually(lambda: len(good.events) == 2)
        assert good.actions == ["enter", "leave"]
        assert calls == ["enter", "leave"]  # the failing listener still gets later events
        await service.close()

    with caplog.at_level(logging.ERROR, logger="presence_conformance.reference_impl.service"):
        run(body)
    assert sum("listener bug" in r.exc_text for r in caplog.records if r.exc_text) == 4


# -- sync ------------------------------------------------------------------------------------------


def test_sync_complete_is_false_until_the_attach_is_processed() -> None:
    async def body() -> None:
        service, alice, bob = await two_clients()
        await presence(alice).enter("a")
        p = presence(bob)
        assert not p.sync_complete
        await p.subscribe(Recorder())
        assert not p.sync_complete  # the attach has not been processed yet
        await asyncio.sleep(0)
        assert p.sync_complete
        await service.close()

    run(body)


def test_get_waits_for_sync_and_without_waiting_returns_the_view_so_far() -> None:
    async def body() -> None:
        service, alice, bob = await two_clients()
        await presence(alice).enter("a")
        p = presence(bob)
        assert await p.get(wait_for_sync=False) == []  # nothing received yet
        assert not p.sync_complete
        await asyncio.sleep(0)
        assert p.sync_complete
        assert [(m.client_id, m.data) for m in await p.get(wait_for_sync=False)] == [("alice", "a")]

        carol = await service.connect("carol")
        q = presence(carol)
        members = await q.get()  # waits for the sync
        assert q.sync_complete
        assert [(m.action, m.client_id, m.data) for m in members] == [
            (Action.PRESENT, "alice", "a")
        ]
        await service.close()

    run(body)


def test_get_filters() -> None:
    async def body() -> None:
        service = PresenceService()
        a1, a2, b = [await service.connect(c) for c in ("alice", "alice", "bob")]
        for conn in (a1, a2, b):
            await presence(conn).enter(conn.id)
        p = presence(b)
        assert {m.connection_id for m in await p.get(client_id="alice")} == {a1.id, a2.id}
        assert [m.client_id for m in await p.get(connection_id=b.id)] == ["bob"]
        assert [m.connection_id for m in await p.get(client_id="alice", connection_id=a2.id)] == [
            a2.id
        ]
        assert await p.get(client_id="nobody") == []
        await service.close()

    run(body)


def test_enter_update_leave_semantics_through_the_service() -> None:
    async def body() -> None:
        service, alice, bob = await two_clients()
        rec = Recorder()
        await presence(bob).subscribe(rec)
        p = presence(alice)
        await p.update("u")  # update when not present enters
        await p.leave()  # leave without data carries the member data
        await p.leave("again")  # leave when not present: nothing
        await p.enter(b"\x01")
        await eventually(lambda: len(rec.events) == 3)
        await settle()
        assert rec.seen() == [
            ("update", "alice", "u"),
            ("leave", "alice", "u"),
            ("enter", "alice", b"\x01"),
        ]
        await service.close()

    run(body)


# -- close and drop --------------------------------------------------------------------------------


def test_close_makes_members_leave_at_once() -> None:
    async def body() -> None:
        service, alice, bob = await two_clients()
        rec, own = Recorder(), Recorder()
        await presence(bob).subscribe(rec)
        await presence(alice).subscribe(own)
        await presence(alice).enter("a")
        await presence(alice, "other").enter("b")
        await eventually(lambda: len(rec.events) == 1 and len(own.events) == 1)
        await alice.close()
        assert alice.state == "closed"
        await eventually(lambda: len(rec.events) == 2)
        await settle()
        assert rec.seen()[-1] == ("leave", "alice", "a")
        assert own.actions == ["enter"]  # a closed connection hears nothing more
        assert await presence(bob).get() == []
        await expect_error(errors.CONNECTION_CLOSED, "connection", presence(alice).enter("x"))
        await expect_error(errors.CONNECTION_CLOSED, "connection", presence(alice).get())
        await alice.close()  # closing again does nothing
        await service.close()

    run(body)


def test_drop_then_grace_delivers_synthesized_leaves_exactly_once() -> None:
    async def body() -> None:
        service, alice, bob = await two_clients(leave_grace=0.05)
        rec = Recorder()
        await presence(bob).subscribe(rec)
        await presence(alice).enter("a")
        await eventually(lambda: len(rec.events) == 1)
        alice.drop()
        assert alice.state == "dropped"
        await asyncio.sleep(0.01)
        assert rec.actions == ["enter"]  # still present during the grace
        assert [m.client_id for m in await presence(bob).get()] == ["alice"]
        await expect_error(errors.CONNECTION_CLOSED, "connection", presence(alice).update("x"))
        await expect_error(errors.CONNECTION_CLOSED, "connection", presence(alice).get())
        await expect_error(errors.CONNECTION_CLOSED, "connection", presence(alice).history())
        await expect_error(
            errors.CONNECTION_CLOSED, "connection", lambda: presence(alice).unsubscribe()
        )
        await eventually(lambda: len(rec.events) == 2)
        await asyncio.sleep(0.1)
        assert rec.actions == ["enter", "leave"]  # exactly once
        leave = rec.events[1]
        assert (leave.client_id, leave.connection_id, leave.data) == ("alice", alice.id, "a")
        assert not leave.id.startswith(alice.id)  # synthesized (RTP2b1)
        assert await presence(bob).get() == []
        assert alice.state == "closed"
        await service.close()

    run(body)


def test_drop_can_be_awaited_and_a_dropped_connection_hears_nothing() -> None:
    async def body() -> None:
        service, alice, bob = await two_clients(leave_grace=10)
        rec = Recorder()
        await presence(alice).subscribe(rec)
        await alice.drop()
        await alice.drop()  # again: nothing
        await presence(bob).enter("b")
        await settle()
        assert rec.events == []
        await service.close()

    run(body)


def test_an_ended_connection_lets_its_listeners_go_after_delivering_what_was_queued() -> None:
    """A closed or dropped connection keeps no listener (a service that lives across many
    callers would otherwise keep each caller's state for ever); events queued before it ended
    are still delivered."""

    async def body() -> None:
        service, alice, bob = await two_clients(leave_grace=10)
        for end in (alice.close, bob.drop):
            rec = Recorder()
            conn = alice if end == alice.close else bob
            await presence(conn).subscribe(rec)
            await presence(conn, "other").subscribe(rec)
            await presence(conn).enter("x")  # its event is queued, not yet delivered
            ref = weakref.ref(rec)
            result = end()
            if result is not None:
                await result
            await settle()
            assert rec.actions == ["enter"]
            del rec
            gc.collect()
            assert ref() is None, f"{end.__name__}: the listener is still held"
        await service.close()

    run(body)


def test_the_service_lets_go_of_ended_connections_which_still_answer_as_closed() -> None:
    """A service used for a whole run keeps no connection that has ended: closed (once its
    queued events are delivered) or dropped and expired. Each still answers as closed."""

    async def body() -> None:
        service = PresenceService(leave_grace=0.01)
        watcher = await service.connect("watcher")
        rec = Recorder()
        await presence(watcher).subscribe(rec)
        ended = []
        for i in range(5):
            conn = await service.connect(f"c{i}")
            await presence(conn).subscribe(Recorder())
            await presence(conn).enter("x")
            if i % 2:
                await conn.close()
            else:
                conn.drop()
            ended.append(conn)
        await eventually(lambda: rec.actions.count("leave") == 5)
        await eventually(lambda: not any(c.id in service._connections for c in ended))
        assert list(service._connections) == [watcher.id]
        for conn in ended:
            assert conn.state == "closed"
            await expect_error(errors.CONNECTION_CLOSED, "connection", presence(conn).enter("y"))
            with pytest.raises(PresenceError):
                service.model.connection_state(conn.id)  # the model let go too
        assert [m.client_id for m in await presence(watcher).get()] == []
        await service.close()

    run(body)


def test_closing_the_service_cancels_grace_timers_and_delivery() -> None:
    async def body() -> None:
        service, alice, bob = await two_clients(leave_grace=0.02)
        rec = Recorder()
        await presence(bob).subscribe(rec)
        await presence(alice).enter("a")
        await eventually(lambda: len(rec.events) == 1)
        alice.drop()
        await service.close()
        await asyncio.sleep(0.06)
        assert rec.actions == ["enter"]
        assert [m.client_id for m in service.model.get(CH)] == ["alice"]  # never expired
        await expect_error(errors.CONNECTION_CLOSED, "service", service.connect("carol"))
        await expect_error(errors.CONNECTION_CLOSED, "closed", presence(bob).enter("x"))

    run(body)


# -- history ---------------------------------------------------------------------------------------


def test_history_pages_through_the_service() -> None:
    async def body() -> None:
        ticks = iter(range(1_000, 10_000, 10))
        service = PresenceService(clock=lambda: next(ticks))
        alice = await service.connect("alice")
        p = presence(alice)
        for i in range(7):
            await p.update(str(i))
        page = await p.history(limit=3)
        assert [e.data for e in page.items] == ["6", "5", "4"]
        assert page.has_next() and not page.is_last()
        datas = []
        current = page
        while current is not None:
            datas += [e.data for e in current.items]
            last = current
            current = await current.next()
        assert datas == ["6", "5", "4", "3", "2", "1", "0"]
        assert last.is_last() and await last.next() is None
        forwards = await p.history(start=1_010, end=1_040, limit=2, direction="forwards")
        assert [e.data async for e in forwards] == ["1", "2", "3", "4"]
        await service.close()

    run(body)


# -- refused calls ---------------------------------------------------------------------------------


def test_bad_input_raises_and_leaves_the_state_unchanged() -> None:
    async def body() -> None:
        service, alice, bob = await two_clients()
        rec = Recorder()
        await presence(bob).subscribe(rec)
        await presence(alice).enter("a")
        await eventually(lambda: len(rec.events) == 1)
        model = service.model

        def state() -> tuple:
            return model.get(CH), model.history_all(CH), model.listeners(bob.id, CH)

        before = state()
        p = presence(alice)
        await expect_error(errors.INVALID_DATA, "data", p.enter(5))
        await expect_error(errors.INVALID_DATA, "data", p.update(True))
        await expect_error(errors.INVALID_DATA, "data", p.leave(1.5))
        await expect_error(errors.INVALID_PARAMETER_VALUE, "clientId", p.get(client_id=5))
        await expect_error(
            errors.INVALID_PARAMETER_VALUE, "waitForSync", p.get(wait_for_sync="yes")
        )
        for params in (
            {"limit": 0},
            {"limit": 1001},
            {"limit": True},
            {"start": 5, "end": 1},
            {"direction": "up"},
        ):
            argument = "start" if "start" in params else next(iter(params))
            await expect_error(errors.INVALID_PARAMETER_VALUE, argument, p.history(**params))
        await expect_error(
            errors.INVALID_PARAMETER_VALUE, "action", presence(bob).subscribe(Recorder(), "bogus")
        )
        await expect_error(errors.INVALID_PARAMETER_VALUE, "listener", presence(bob).subscribe(42))
        await expect_error(
            errors.INVALID_PARAMETER_VALUE,
            "action",
            lambda: presence(bob).unsubscribe(rec, "bogus"),
        )
        with pytest.raises(PresenceError) as info:
            alice.channels.get("")
        assert info.value.code == errors.INVALID_PARAMETER_VALUE and "channel" in info.value.message
        assert state() == before
        await settle()
        assert rec.actions == ["enter"]

        anonymous = await service.connect()
        await expect_error(errors.NO_CLIENT_ID, "clientId", presence(anonymous).enter("x"))
        limited = await service.connect("limited", {CH: ["subscribe"]})
        await expect_error(errors.CAPABILITY_DENIED, "capability", presence(limited).enter("x"))
        assert state() == before
        # a refused get does not attach either
        fresh = await service.connect("fresh")
        await expect_error(
            errors.INVALID_PARAMETER_VALUE, "connectionId", presence(fresh).get(connection_id=1)
        )
        assert not model.is_attached(fresh.id, CH)
        await settle()
        assert not presence(fresh).sync_complete
        await service.close()

    run(body)


def test_channels_get_returns_the_same_object() -> None:
    async def body() -> None:
        service = PresenceService()
        conn = await service.connect("alice")
        assert conn.channels.get(CH) is conn.channels.get(CH)
        assert conn.channels.get(CH).presence is conn.channels.get(CH).presence
        assert conn.channels.get("other") is not conn.channels.get(CH)
        assert conn.client_id == "alice" and conn.id
        await service.close()

    run(body)


def test_default_clock_is_wall_clock_milliseconds() -> None:
    async def body() -> None:
        import time

        service = PresenceService()
        conn = await service.connect("alice")
        before = int(time.time() * 1000)
        await presence(conn).enter()
        (event,) = service.model.history_all(CH)
        assert before <= event.timestamp <= int(time.time() * 1000)
        await service.close()

    run(body)


def test_bad_leave_grace_is_refused() -> None:
    with pytest.raises(PresenceError) as info:
        PresenceService(leave_grace=-1)
    assert info.value.code == errors.INVALID_PARAMETER_VALUE


def test_pending_deliveries_counts_events_not_yet_handled() -> None:
    async def body() -> None:
        service, alice, bob = await two_clients()
        release = asyncio.Event()

        async def slow(message: PresenceMessage) -> None:
            await release.wait()

        await presence(bob).subscribe(slow)
        await presence(alice).enter("a")
        await presence(alice).update("b")
        assert service.pending_deliveries() == 2
        await settle()
        assert service.pending_deliveries() == 2  # one in the listener, one queued
        release.set()
        await eventually(lambda: service.pending_deliveries() == 0)
        await service.close()

    run(body)

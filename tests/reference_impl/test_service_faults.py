"""The in-process service's transient disconnects (RTN15), enterClient (RTP14, RTP15) and REST
get (RSP3)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.service import PresenceService
from presence_conformance.reference_impl.types import Action, PresenceMessage

CH = "room"


def run(body: Any) -> None:
    asyncio.run(asyncio.wait_for(body(), 10))


def brief(events: list[PresenceMessage]) -> list[tuple[str, str | None, Any]]:
    return [(e.action.value, e.client_id, e.data) for e in events]


def test_resumed_interrupt_keeps_the_id_queues_calls_and_delivers_missed_events() -> None:
    async def body() -> None:
        service = PresenceService(leave_grace=0.5)
        alice, bob = await service.connect("alice"), await service.connect("bob")
        seen: list[PresenceMessage] = []
        await alice.channels.get(CH).presence.subscribe(seen.append)
        await alice.channels.get(CH).presence.enter("a")
        await asyncio.sleep(0.01)  # delivered before the cut
        old = alice.id
        alice.interrupt(0.05, resume=True)
        assert alice.interrupted
        await bob.channels.get(CH).presence.enter("b")
        await asyncio.sleep(0.01)
        assert brief(seen) == [("enter", "alice", "a")]  # nothing arrives while away
        await alice.channels.get(CH).presence.update("a2")  # queued (RTP16), done once back
        await alice.reconnected()
        await asyncio.sleep(0.01)
        assert alice.id == old and not alice.interrupted
        assert brief(seen) == [
            ("enter", "alice", "a"),
            ("enter", "bob", "b"),
            ("update", "alice", "a2"),
        ]
        await service.close()

    run(body)


def test_refused_resume_gives_a_new_id_re_enters_and_the_old_member_leaves() -> None:
    async def body() -> None:
        service = PresenceService(leave_grace=0.05)
        hub, bob = await service.connect("*"), await service.connect("bob")
        watch: list[PresenceMessage] = []
        await bob.channels.get(CH).presence.subscribe(watch.append)
        await hub.channels.get(CH).presence.enter_client("x", "1")
        old = hub.id
        hub.interrupt(0.02, resume=False)
        await hub.reconnected()
        assert hub.id != old and hub.previous_ids == [old]
        await asyncio.sleep(0.1)
        assert [(e.action, e.client_id, e.connection_id) for e in watch] == [
            (Action.ENTER, "x", old),
            (Action.ENTER, "x", hub.id),  # RTP17i, RTP17g
            (Action.LEAVE, "x", old),  # after the grace
        ]
        members = await bob.channels.get(CH).presence.get()
        assert [(m.client_id, m.connection_id) for m in members] == [("x", hub.id)]
        await service.close()

    run(body)


def test_enter_client_family_and_the_client_id_mismatch() -> None:
    async def body() -> None:
        service = PresenceService()
        hub, alice = await service.connect("*"), await service.connect("alice")
        presence = hub.channels.get(CH).presence
        await presence.enter_client("a", "1")
        await presence.enter_client("b", "2")
        await presence.update_client("a", "3")
        await presence.leave_client("b")
        members = await presence.get()
        assert [(m.client_id, m.data) for m in members] == [("a", "3")]
        with pytest.raises(PresenceError) as info:
            await alice.channels.get(CH).presence.enter_client("bob", "x")  # RTP15f
        assert info.value.code == 40012
        await alice.channels.get(CH).presence.enter_client("alice", "ok")  # its own: fine
        await service.close()

    run(body)


def test_rest_get_limit_and_filters() -> None:
    async def body() -> None:
        service = PresenceService()
        hub, reader = await service.connect("*"), await service.connect("r")
        for n in range(5):
            await hub.channels.get(CH).presence.enter_client(f"m{n}", str(n))
        rest = reader.channels.get(CH).presence
        assert len(await rest.rest_get()) == 5
        assert len(await rest.rest_get(limit=2)) == 2
        assert [m.client_id for m in await rest.rest_get(client_id="m3")] == ["m3"]
        assert len(await rest.rest_get(connection_id=hub.id)) == 5
        assert not rest.sync_complete  # REST does not attach
        for bad in (0, 1001, True):
            with pytest.raises(PresenceError):
                await rest.rest_get(limit=bad)
        await service.close()

    run(body)

"""Mutants that only interleavings reveal: bugs that need an operation in flight while an
earlier event of its member is still being delivered, or a reconnection of the same clientId
while a dropped connection's leave is pending. The scenarios under `scenarios/interleave/` catch
them; the scenarios that wait after every step never give them the chance to show.

The in-process service delivers each connection's events from a queue (`ServiceConnection`):
an event "in flight" is one still in a connection's queue.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, cast

from presence_conformance.harness.mutants.base import MutantAdapter, MutantPresence, mutant
from presence_conformance.reference_impl.model import Outcome
from presence_conformance.reference_impl.service import PresenceService, ServiceConnection
from presence_conformance.reference_impl.types import Action, PresenceMessage


def _on_channel(conn: ServiceConnection, channel: str) -> list[int]:
    """The positions in the connection's delivery queue of events for its listeners on
    `channel` (the queue holds (listener, event) pairs; events do not name their channel)."""
    ch = conn.channels._channels.get(channel)
    listeners = [id(x) for x in ch.presence._by_name.values()] if ch is not None else []
    items = list(conn._queue._queue)  # type: ignore[attr-defined]
    return [
        i for i, item in enumerate(items) if isinstance(item, tuple) and id(item[0]) in listeners
    ]


def _queued(conn: ServiceConnection, channel: str, key: str) -> list[PresenceMessage]:
    """The events of member `key` on `channel` still waiting in the connection's queue."""
    items = list(conn._queue._queue)  # type: ignore[attr-defined]
    return [items[i][1] for i in _on_channel(conn, channel) if items[i][1].member_key == key]


def _synthesized(event: PresenceMessage) -> bool:
    return event.action is Action.LEAVE and not str(event.id).startswith(event.connection_id)


class _UpdateBeforeEnterLost(PresenceService):
    def _dispatch(self, outcome: Outcome) -> None:
        kept = []
        for delivery in outcome.deliveries:
            conn = self._connections.get(delivery.connection_id)
            event = delivery.event
            if (
                conn is not None
                and event.action is Action.UPDATE
                and any(
                    e.action is Action.ENTER
                    for e in _queued(conn, delivery.channel, event.member_key)
                )
            ):
                continue
            kept.append(delivery)
        super()._dispatch(Outcome(outcome.events, kept))


@mutant("update-before-enter-lost", "update.event-emitted")
class UpdateBeforeEnterLost(MutantAdapter):
    """An update that reaches a connection while the member's enter is still on its way there
    is dropped: the client treats an update of a member it does not know yet as stale (RTP2d1
    broken for an update in flight behind its enter)."""

    Service = _UpdateBeforeEnterLost


class _RacingUpdateNotStored(PresenceService):
    def _dispatch(self, outcome: Outcome) -> None:
        earlier: dict[tuple[str, str], PresenceMessage] = {}
        for delivery in outcome.deliveries:
            event = delivery.event
            conn = self._connections.get(delivery.connection_id)
            if event.action is not Action.UPDATE or conn is None:
                continue
            queued = _queued(conn, delivery.channel, event.member_key)
            if queued:
                earlier[(delivery.channel, event.member_key)] = queued[-1]
        super()._dispatch(outcome)
        for (channel, key), before in earlier.items():
            members = self.model._channels[channel].members
            if key in members:
                members[key] = before.with_action(Action.PRESENT)


@mutant("racing-update-not-stored", "update.changes-data", "sync.converges")
class RacingUpdateNotStored(MutantAdapter):
    """An update made while the member's previous event is still being delivered is broadcast
    but not stored: the presence set keeps the earlier data (RTP2d2 broken for operations in
    flight together)."""

    Service = _RacingUpdateNotStored


class _QueuedEventOvertaken(PresenceService):
    def _dispatch(self, outcome: Outcome) -> None:
        super()._dispatch(outcome)
        for delivery in outcome.deliveries:
            event = delivery.event
            conn = self._connections.get(delivery.connection_id)
            if conn is None or conn.id == event.connection_id or not delivery.min_count:
                continue
            queue = conn._queue._queue  # type: ignore[attr-defined]
            items = list(queue)
            mine = [
                i
                for i in _on_channel(conn, delivery.channel)
                if items[i][1].member_key == event.member_key
            ]
            if len(mine) < 2 or items[mine[-1]][1] is not event:
                continue
            item = items.pop(mine[-1])
            items.insert(mine[0], item)  # overtakes the member's earlier events
            queue.clear()
            queue.extend(items)


@mutant("queued-event-overtaken", "order.per-member")
class QueuedEventOvertaken(MutantAdapter):
    """On other connections, a member's event overtakes that member's earlier events still
    waiting to be delivered there (the server fans out from unordered workers): listeners see an
    update before the enter it follows (RTP2a / RTP2b2 ordering broken)."""

    Service = _QueuedEventOvertaken


class _PendingLeaveTakesReconnected(PresenceService):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._known_at_drop: dict[str, set[str]] = {}

    def _schedule_expiry(self, connection_id: str) -> None:
        self._known_at_drop[connection_id] = set(self._connections)
        super()._schedule_expiry(connection_id)

    def _expire(self, connection_id: str) -> None:
        model = self.model
        client_id = model.connection_client_id(connection_id)
        channels = model.channels()
        known = self._known_at_drop.pop(connection_id, set())
        super()._expire(connection_id)
        if self._closed or client_id is None:
            return
        for channel in channels:
            for member in model.get(channel, client_id=client_id):
                other = member.connection_id
                if other not in known and model.connection_state(other) == "connected":
                    self._dispatch(model.leave(other, channel))


@mutant("pending-leave-takes-reconnected", "member.key", "disconnect.reconnect-new-member")
class PendingLeaveTakesReconnected(MutantAdapter):
    """The server keys a dropped connection's pending leave by clientId: when the grace ends it
    also removes the member that the same clientId entered on a new connection within the grace
    (TP3h: the new connection is another member)."""

    Service = _PendingLeaveTakesReconnected


class _ReconnectCancelsPendingLeave(PresenceService):
    def _dispatch(self, outcome: Outcome) -> None:
        super()._dispatch(outcome)
        model = self.model
        for event in outcome.events:
            if event.action is not Action.ENTER:
                continue
            for cid, timer in list(self._timers.items()):
                if cid != event.connection_id and model.connection_client_id(cid) == (
                    event.client_id
                ):
                    timer.cancel()
                    del self._timers[cid]


@mutant("reconnect-cancels-pending-leave", "disconnect.leave-synthesized")
class ReconnectCancelsPendingLeave(MutantAdapter):
    """When the same clientId enters again on a new connection within the grace, the server
    takes it for the dropped member coming back and cancels the old connection's pending leave:
    the old member never leaves (RTP2b1: its synthesized leave must still come)."""

    Service = _ReconnectCancelsPendingLeave


@mutant("synthesized-leave-clears-client-id", "member.key", "get.returns-members")
class SynthesizedLeaveClearsClientId(MutantAdapter):
    """The client's presence map applies a synthesized leave to every member of that clientId:
    after a dropped connection's leave, get() loses the member the same clientId entered on a
    new connection within the grace (TP3h, RTP2: members are keyed by connectionId and
    clientId)."""

    def on_member(
        self, message: PresenceMessage, presence: MutantPresence
    ) -> list[PresenceMessage]:
        channel = presence.service_presence._channel
        for event in presence.model.history_all(channel):
            if (
                _synthesized(event)
                and event.client_id == message.client_id
                and event.connection_id != message.connection_id
                and event.timestamp >= message.timestamp
            ):
                return []
        return [message]


class _RacingUpdatesCoalesced(PresenceService):
    def _dispatch(self, outcome: Outcome) -> None:
        for delivery in outcome.deliveries:
            event = delivery.event
            conn = self._connections.get(delivery.connection_id)
            if event.action is not Action.UPDATE or conn is None:
                continue
            queue = conn._queue._queue  # type: ignore[attr-defined]
            items = list(queue)
            stale = [
                i
                for i in _on_channel(conn, delivery.channel)
                if items[i][1].member_key == event.member_key
                and items[i][1].action is Action.UPDATE
            ]
            if not stale:
                continue
            for i in reversed(stale):  # the newer update replaces the queued ones
                del items[i]
            queue.clear()
            queue.extend(items)
            conn._pending -= len(stale)
            for _ in stale:
                conn._queue.task_done()
        super()._dispatch(outcome)


@mutant("racing-updates-coalesced", "update.event-emitted", "order.exactly-once")
class RacingUpdatesCoalesced(MutantAdapter):
    """Updates of one member still waiting to be delivered are coalesced: a newer update
    replaces the queued ones, so a listener misses the updates made in quick succession (RTP2d1:
    each update must be emitted)."""

    Service = _RacingUpdatesCoalesced


@mutant("leave-lost-racing-update", "leave.event-emitted", "leave.removes-member")
class LeaveLostRacingUpdate(MutantAdapter):
    """A leave that reaches the server while an update of the same member is being applied is
    acknowledged but lost: the update holds the member's record and writes it back after the
    leave, so the member stays present and nobody hears a leave (RTP10a broken for a leave
    racing an update; the server may apply them in either order, but the leave must happen)."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.updating: Counter[tuple[str, str]] = Counter()

    class Presence(MutantPresence):
        def _member(self) -> tuple[str, str]:
            return (self.service_connection.id, self.service_presence._channel)

        async def update(self, data: Any = None) -> None:
            updating = cast(LeaveLostRacingUpdate, self.adapter).updating
            updating[self._member()] += 1
            try:
                await asyncio.sleep(0.01)  # reading the member's record
                await super().update(data)
            finally:
                updating[self._member()] -= 1

        async def leave(self, data: Any = None) -> None:
            if cast(LeaveLostRacingUpdate, self.adapter).updating[self._member()]:
                return  # the update in progress writes the member back
            await super().leave(data)

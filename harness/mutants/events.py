"""Mutants that break event delivery: actions, sync, order, channels, subscribe and unsubscribe."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any, cast

from presence_conformance.harness.mutants.base import MutantAdapter, MutantPresence, mutant
from presence_conformance.reference_impl.model import Outcome
from presence_conformance.reference_impl.service import PresenceService
from presence_conformance.reference_impl.types import Action, PresenceMessage


@mutant("no-synthesized-leave", "disconnect.leave-synthesized")
class NoSynthesizedLeave(MutantAdapter):
    """Leave lost after an abrupt disconnect: the server never synthesizes a leave for the
    members of a dropped connection, so they stay present for ever (pusher-js #299,
    sc-stateless-presence #4)."""

    class Service(PresenceService):
        def _schedule_expiry(self, connection_id: str) -> None:
            pass  # the grace timer is never started


@mutant("synthesized-leave-twice", "disconnect.leave-synthesized", "order.exactly-once")
class SynthesizedLeaveTwice(MutantAdapter):
    """The leave synthesized after an abrupt disconnect is broadcast twice (once by the node
    that noticed the drop, once by the grace timer)."""

    class Service(PresenceService):
        def _expire(self, connection_id: str) -> None:
            self._timers.pop(connection_id, None)
            if self.closed:
                return
            outcome: Outcome = self.model.expire_connection(connection_id)
            self._dispatch(outcome)
            self._dispatch(outcome)


@mutant("update-as-enter", "update.event-emitted")
class UpdateAsEnter(MutantAdapter):
    """An update is broadcast with action enter (the server reuses the enter path for
    updates), so subscribers cannot tell a data change from a new member."""

    def on_event(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        if message.action is Action.UPDATE:
            return [message.with_action(Action.ENTER)]
        return [message]


@mutant("present-as-enter", "sync.present-on-attach")
class PresentAsEnter(MutantAdapter):
    """The members already on a channel are announced to a new subscriber as enter events
    instead of present events (the sync replays the members as if they had just joined)."""

    def on_event(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        if message.action is Action.PRESENT:
            return [message.with_action(Action.ENTER)]
        return [message]


@mutant("duplicate-present", "sync.no-duplicate-present")
class DuplicatePresent(MutantAdapter):
    """Duplicate present during sync: each existing member is sent twice to a new subscriber
    (a periodic sync overlapping the attach sync; ably-go #655)."""

    def on_event(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        return [message, message] if message.action is Action.PRESENT else [message]


@mutant("no-present-on-attach", "sync.present-on-attach")
class NoPresentOnAttach(MutantAdapter):
    """Late joiner not synced: a listener that attaches after others entered never hears a
    present event for them (the second attach ignored the SYNC; ably-js #284)."""

    def on_event(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        return [] if message.action is Action.PRESENT else [message]


@mutant("member-events-reordered", "order.per-member")
class MemberEventsReordered(MutantAdapter):
    """One member's events reordered: each listener buffers a member's enter and releases it
    only when that member's next event arrives, after it (a per-member buffer flushed newest
    first), so a subscriber sees update-then-enter or leave-then-enter."""

    class Presence(MutantPresence):
        def wrap_listener(self, listener: Callable[[PresenceMessage], Any]) -> Callable[[Any], Any]:
            held: dict[str, PresenceMessage] = {}

            def wrapped(message: PresenceMessage) -> None:
                key = message.member_key
                if key in held:
                    listener(message)
                    listener(held.pop(key))
                elif message.action is Action.ENTER:
                    held[key] = message
                else:
                    listener(message)

            return wrapped


@mutant("cross-channel-leak", "order.channel-isolation")
class CrossChannelLeak(MutantAdapter):
    """Events leaking across channels: subscribing on one channel also registers the listener
    on every other channel the connection has opened (listeners kept per connection, not per
    channel), so it receives the other channels' events."""

    class Presence(MutantPresence):
        async def subscribe(
            self, listener: Callable[[PresenceMessage], Any], actions: list[str] | None = None
        ) -> None:
            await super().subscribe(listener, actions)
            for channel in self.service_connection.channels:
                if channel.name != self.channel_name:
                    await channel.presence.subscribe(self._wrapper(listener), actions)


@mutant("subscribe-filter-ignored", "subscribe.single-action", "subscribe.action-list")
class SubscribeFilterIgnored(MutantAdapter):
    """subscribe(actions, listener) ignores the action filter: the listener receives every
    action."""

    class Presence(MutantPresence):
        async def subscribe(
            self, listener: Callable[[PresenceMessage], Any], actions: list[str] | None = None
        ) -> None:
            await super().subscribe(listener, None)


@mutant("subscribe-list-first-only", "subscribe.action-list")
class SubscribeListFirstOnly(MutantAdapter):
    """subscribe([a, b], listener) only honours the first action of the list (the list is read
    as a single action name), so the listener misses the events of the other actions."""

    class Presence(MutantPresence):
        async def subscribe(
            self, listener: Callable[[PresenceMessage], Any], actions: list[str] | None = None
        ) -> None:
            if isinstance(actions, list) and len(actions) > 1:
                actions = actions[:1]
            await super().subscribe(listener, actions)


@mutant("invalid-action-accepted", "subscribe.invalid-action")
class InvalidActionAccepted(MutantAdapter):
    """subscribe() silently drops action names it does not know instead of refusing them
    (and subscribes to all actions when none is left)."""

    class Presence(MutantPresence):
        async def subscribe(
            self, listener: Callable[[PresenceMessage], Any], actions: list[str] | None = None
        ) -> None:
            known = ("enter", "leave", "update", "present")
            if actions is not None:
                names = actions if isinstance(actions, list) else [actions]
                actions = [a for a in names if a in known] or None
            await super().subscribe(listener, actions)


@mutant("unsubscribe-action-removes-all", "unsubscribe.action")
class UnsubscribeActionRemovesAll(MutantAdapter):
    """unsubscribe(action) without a listener removes every listener of the channel, whatever
    actions they subscribed to."""

    class Presence(MutantPresence):
        async def unsubscribe(
            self,
            listener: Callable[[PresenceMessage], Any] | None = None,
            actions: list[str] | None = None,
        ) -> None:
            if listener is None and actions is not None:
                actions = None
            await super().unsubscribe(listener, actions)


@mutant("unsubscribe-listener-noop", "unsubscribe.listener")
class UnsubscribeListenerNoop(MutantAdapter):
    """unsubscribe(listener) leaves the listener subscribed (the wrapper registered for it is
    not the function the caller passes, so nothing matches)."""

    class Presence(MutantPresence):
        async def unsubscribe(
            self,
            listener: Callable[[PresenceMessage], Any] | None = None,
            actions: list[str] | None = None,
        ) -> None:
            if listener is not None and actions is None:
                return
            await super().unsubscribe(listener, actions)


@mutant("unsubscribe-all-noop", "unsubscribe.all")
class UnsubscribeAllNoop(MutantAdapter):
    """unsubscribe() with no arguments removes nothing: the "remove all" branch looks the
    listener None up and finds no registration, so every listener keeps receiving events."""

    class Presence(MutantPresence):
        async def unsubscribe(
            self,
            listener: Callable[[PresenceMessage], Any] | None = None,
            actions: list[str] | None = None,
        ) -> None:
            if listener is None and actions is None:
                return
            await super().unsubscribe(listener, actions)


@mutant("own-events-not-echoed", "enter.echoed-to-own-connection")
class OwnEventsNotEchoed(MutantAdapter):
    """A connection's listeners never hear the presence events of its own members (echo
    suppressed, as for messages with echoMessages off)."""

    def on_event(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        own = presence.service_connection.id
        if message.connection_id == own and message.action is not Action.PRESENT:
            return []
        return [message]


@mutant("leave-without-data-drops-data", "leave.data-defaults-to-member-data")
class LeaveWithoutDataDropsData(MutantAdapter):
    """leave() without data emits a leave event with null data instead of the member's data
    (the leave message is built from the call's arguments only)."""

    class Presence(MutantPresence):
        async def leave(self, data: Any = None) -> None:
            model = self.model
            before = len(model.history_all(self.channel_name))
            await super().leave(data)
            if data is None:
                for event in model.history_all(self.channel_name)[before:]:
                    if event.action is Action.LEAVE:
                        cast("LeaveWithoutDataDropsData", self.adapter).nulled.add(event.model_id)

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.nulled: set[str] = set()

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        if message.id in self.nulled:
            return [dataclasses.replace(message, data=None)]
        return [message]


@mutant("sync-complete-never-true", "sync.complete-after-attach")
class SyncCompleteNeverTrue(MutantAdapter):
    """syncComplete stays false after the channel has synced (the flag is never set)."""

    class Presence(MutantPresence):
        async def sync_complete(self) -> bool:
            await asyncio.sleep(0)
            return False

"""Mutants of transient disconnects (RTN15, RTP16, RTP17), enterClient (RTP14, RTP15) and the
REST presence get (RSP3)."""

from __future__ import annotations

from typing import Any

from presence_conformance.harness.adapters.reference import ReferenceConnection
from presence_conformance.harness.mutants.base import MutantAdapter, MutantPresence, mutant
from presence_conformance.reference_impl.model import Outcome
from presence_conformance.reference_impl.service import PresenceService
from presence_conformance.reference_impl.types import PresenceMessage


@mutant("resume-gives-new-connection", "disconnect.resume-keeps-members")
class ResumeGivesNewConnection(MutantAdapter):
    """The server never accepts a resume: after every transient disconnect the client is on a
    new connection with a new connectionId and re-enters its members (RTN15c6 broken)."""

    class Connection(ReferenceConnection):
        async def interrupt(self, seconds: float, resume: bool = True) -> None:
            self.service_connection.interrupt(seconds, False)


@mutant("no-reentry-after-failed-resume", "disconnect.reenter-after-failed-resume")
class NoReentryAfterFailedResume(MutantAdapter):
    """When its resume is refused the client comes back on a new connection but does not
    re-enter its members: they vanish when the old connection's grace ends (RTP17i broken)."""

    class Connection(ReferenceConnection):
        async def interrupt(self, seconds: float, resume: bool = True) -> None:
            conn = self.service_connection
            conn.interrupt(seconds, resume)
            if not resume and conn._reconnect is not None:
                handle, conn._reconnect = conn._reconnect, None
                handle.cancel()
                loop = handle._loop  # type: ignore[attr-defined]
                conn._reconnect = loop.call_later(seconds, conn._come_back, False, {})


@mutant("queued-presence-lost", "disconnect.queued-while-disconnected")
class QueuedPresenceLost(MutantAdapter):
    """A presence operation made while the connection is disconnected reports success but is
    never sent (RTP16 queueing broken)."""

    class Presence(MutantPresence):
        async def enter(self, data: Any = None) -> None:
            if not self.service_connection.interrupted:
                await super().enter(data)

        async def update(self, data: Any = None) -> None:
            if not self.service_connection.interrupted:
                await super().update(data)


class _LosesMissedEvents(PresenceService):
    """Drops every delivery due to a connection while it is interrupted."""

    def _dispatch(self, outcome: Outcome) -> None:
        kept = []
        for delivery in outcome.deliveries:
            conn = self._connections.get(delivery.connection_id)
            if conn is None or not conn.interrupted:
                kept.append(delivery)
        super()._dispatch(Outcome(outcome.events, kept))


@mutant("missed-events-lost-on-resume", "disconnect.resume-keeps-members")
class MissedEventsLostOnResume(MutantAdapter):
    """After a resume the events published while the connection was away are not delivered to
    its listeners (RTN15c6: the resumed connection misses them)."""

    Service = _LosesMissedEvents


@mutant("enter-client-drops-data", "enter.client-on-behalf")
class EnterClientDropsData(MutantAdapter):
    """enterClient and updateClient publish without the data they were given."""

    class Presence(MutantPresence):
        async def enter_client(self, client_id: str, data: Any = None) -> None:
            await super().enter_client(client_id, None)

        async def update_client(self, client_id: str, data: Any = None) -> None:
            await super().update_client(client_id, None)


@mutant("enter-client-id-mismatch-accepted", "enter.client-id-mismatch")
class EnterClientIdMismatchAccepted(MutantAdapter):
    """enterClient on a connection with its own clientId ignores the clientId argument and
    enters the connection's own clientId instead of refusing (RTP15f)."""

    class Presence(MutantPresence):
        async def enter_client(self, client_id: str, data: Any = None) -> None:
            own = self.service_connection.client_id
            if own not in (None, "*"):
                await self.enter(data)
                return
            await super().enter_client(client_id, data)


@mutant("rest-get-ignores-limit", "get.rest-limit")
class RestGetIgnoresLimit(MutantAdapter):
    """The REST presence get returns every member whatever the limit (RSP3a1)."""

    class Presence(MutantPresence):
        async def rest_get(
            self,
            limit: int | None = None,
            client_id: str | None = None,
            connection_id: str | None = None,
        ) -> list[PresenceMessage]:
            return await super().rest_get(1000, client_id, connection_id)


@mutant("rest-get-ignores-filters", "get.rest-filter-client-id", "get.rest-filter-connection-id")
class RestGetIgnoresFilters(MutantAdapter):
    """The REST presence get ignores its clientId and connectionId filters (RSP3a2, RSP3a3)."""

    class Presence(MutantPresence):
        async def rest_get(
            self,
            limit: int | None = None,
            client_id: str | None = None,
            connection_id: str | None = None,
        ) -> list[PresenceMessage]:
            return await super().rest_get(limit)


class _NoOwnEventsWithoutSubscribe(PresenceService):
    """Delivers nothing to a connection without the subscribe capability on the channel."""

    def _dispatch(self, outcome: Outcome) -> None:
        kept = []
        for delivery in outcome.deliveries:
            conn = self._connections.get(delivery.connection_id)
            capability = None if conn is None else self.model.connection_capability(conn.id)
            if capability is None or any(
                "*" in ops or "subscribe" in ops for ops in capability.values()
            ):
                kept.append(delivery)
        super()._dispatch(Outcome(outcome.events, kept))


@mutant("own-events-need-subscribe", "enter.own-members-without-subscribe")
class OwnEventsNeedSubscribe(MutantAdapter):
    """A connection without the subscribe capability hears nothing, not even the events of its
    own members (RTP17a: those are always published to it)."""

    Service = _NoOwnEventsWithoutSubscribe


@mutant("get-stops-at-100-members", "enter.client-many-members")
class GetStopsAt100Members(MutantAdapter):
    """get() returns at most 100 members: a sync that stops after its first page of 100."""

    class Presence(MutantPresence):
        async def get(
            self,
            client_id: str | None = None,
            connection_id: str | None = None,
            wait_for_sync: bool = True,
        ) -> list[PresenceMessage]:
            return (await super().get(client_id, connection_id, wait_for_sync))[:100]


@mutant("leave-client-leaves-everywhere", "enter.client-no-side-effects")
class LeaveClientLeavesEverywhere(MutantAdapter):
    """leaveClient(X) removes every member with clientId X on the channel, those entered by
    other connections with enter() too (RTP15c: no side effects on them)."""

    class Presence(MutantPresence):
        async def leave_client(self, client_id: str, data: Any = None) -> None:
            await super().leave_client(client_id, data)
            service = self.adapter.service
            assert service is not None
            for member in self.model.get(self.channel_name, client_id):
                if member.connection_id != self.service_connection.id:
                    outcome = self.model.leave(member.connection_id, self.channel_name)
                    service._dispatch(outcome)

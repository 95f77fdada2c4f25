"""Red-team mutants: broken implementations written by an independent tester, each modelled on a
presence bug that an SDK or a presence server has had (the docstring names it).

The adapter mutants here are the reference adapter with one bug (`MutantAdapter`); the server
mutants are `ably-wire` against the embedded reference server with one bug in the frames it
sends (`ServerMutantAdapter`). The client-map mutants of this set live in
`harness/mutants/client_map.py` (the block marked "red-team"). docs/generation.md ("Red-team
mutants") gives, for each, whether the packaged scenarios and generation alone caught it before
the scenarios it led to, and the one dropped as no bug.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from typing import Any

from presence_conformance.harness.adapter import HistoryPage
from presence_conformance.harness.adapters.reference import ReferenceConnection
from presence_conformance.harness.mutants.base import (
    MutantAdapter,
    MutantPresence,
    ServerMutantAdapter,
    mutant,
)
from presence_conformance.harness.mutants.server import sync_items
from presence_conformance.reference_impl.model import Outcome
from presence_conformance.reference_impl.protocol import ProtocolAction
from presence_conformance.reference_impl.service import PresenceService
from presence_conformance.reference_impl.types import Action, PresenceMessage

__all__: list[str] = []


# -- adapter mutants ---------------------------------------------------------------------------


@mutant("resume-leave-timer-not-cancelled", "disconnect.resume-keeps-members")
class ResumeLeaveTimerNotCancelled(MutantAdapter):
    """The grace timer started when the transport dropped is not cancelled by a successful
    resume: when it fires, the members of the resumed (live) connection leave (ably-go #164:
    the member appears offline though its connection is back)."""

    class Connection(ReferenceConnection):
        async def interrupt(self, seconds: float, resume: bool = True) -> None:
            conn = self.service_connection
            was_live = conn.state == "connected" and not conn.interrupted
            await super().interrupt(seconds, resume)
            if not (resume and was_live):
                return
            service = conn._service

            def fire() -> None:
                if service.closed or conn.state != "connected":
                    return
                model = service.model
                for name in model.channels():
                    for member in model.get(name, connection_id=conn.id):
                        service._dispatch(
                            model.leave(conn.id, name, None, client_id=member.client_id)
                        )

            asyncio.get_running_loop().call_later(service.leave_grace, fire)


class _PagedPresence(MutantPresence):
    """history() whose later pages are fetched with other parameters (`later`)."""

    def later(self, params: tuple[Any, Any, Any, Any]) -> tuple[Any, Any, Any, Any]:
        return params

    async def history(
        self,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        direction: str | None = None,
    ) -> HistoryPage:
        page = await super().history(start, end, limit, direction)
        service_page = page._page  # type: ignore[attr-defined]
        service_page._params = self.later(service_page._params)
        original_next = type(service_page).next

        async def next_page(self_page: Any = service_page) -> Any:
            nxt = await original_next(self_page)
            if nxt is not None:
                nxt._params = self_page._params
                nxt.next = lambda p=nxt: next_page(p)
            return nxt

        service_page.next = next_page
        return page


@mutant("history-next-page-drops-bounds", "history.pagination")
class HistoryNextPageDropsBounds(MutantAdapter):
    """The link to the next history page keeps the limit and the direction but not the start and
    end bounds of the query, so later pages run past them (a `next` URL built from a subset of
    the query's parameters)."""

    class Presence(_PagedPresence):
        def later(self, params: tuple[Any, Any, Any, Any]) -> tuple[Any, Any, Any, Any]:
            _start, _end, limit, direction = params
            return None, None, limit, direction


class _ReversedPage(HistoryPage):
    """A backwards page shown oldest first, and so are the pages after it."""

    def __init__(self, page: HistoryPage) -> None:
        self._inner = page
        self.items = list(reversed(page.items))

    def has_next(self) -> bool:
        return self._inner.has_next()

    async def next(self) -> HistoryPage | None:
        nxt = await self._inner.next()
        return None if nxt is None else _ReversedPage(nxt)


@mutant("history-forwards-limit-takes-newest", "history.direction-forwards")
class HistoryForwardsLimitTakesNewest(MutantAdapter):
    """history(direction=forwards) reads the newest events and reverses each page (the query
    sorts descending, applies the limit, then reverses for display): with a limit below the
    number of events, the first forwards page holds the newest events, not the oldest."""

    class Presence(MutantPresence):
        async def history(
            self,
            start: int | None = None,
            end: int | None = None,
            limit: int | None = None,
            direction: str | None = None,
        ) -> HistoryPage:
            if direction != "forwards":
                return await super().history(start, end, limit, direction)
            return _ReversedPage(await super().history(start, end, limit, "backwards"))


class _ExpiresOwnClientIdOnly(PresenceService):
    """When the grace ends, leaves are synthesized only for the members whose clientId is the
    connection's own; the members it entered for other clientIds stay."""

    def _expire(self, connection_id: str) -> None:
        model = self.model
        own = model.connection_client_id(connection_id)
        original = model._synthesize_leaves

        def only_own(ch: Any, cid: str) -> Outcome:
            keys = ch.by_connection.get(cid)
            if not keys:
                return original(ch, cid)
            hidden = {k for k in keys if ch.members[k].client_id != own}
            keys -= hidden
            try:
                return original(ch, cid)
            finally:
                if hidden:
                    ch.by_connection.setdefault(cid, set()).update(hidden)

        model._synthesize_leaves = only_own  # type: ignore[method-assign,assignment]
        try:
            super()._expire(connection_id)
        finally:
            del model._synthesize_leaves


@mutant("drop-leaves-own-client-id-only", "disconnect.leave-synthesized")
class DropLeavesOwnClientIdOnly(MutantAdapter):
    """After an abrupt disconnect the server synthesizes leaves only for the members with the
    connection's own clientId: the members a wildcard connection entered with enterClient stay
    present for ever (the grace timer looks members up by the connection's clientId)."""

    Service = _ExpiresOwnClientIdOnly


@mutant("update-when-absent-skips-capability", "enter.requires-presence-capability")
class UpdateWhenAbsentSkipsCapability(MutantAdapter):
    """update() by a client that is not present enters it (RTP9b) without the presence
    capability check that enter() makes (the capability is checked on the enter path only)."""

    class Presence(MutantPresence):
        async def update(self, data: Any = None) -> None:
            conn = self.service_connection
            model = self.model
            absent = not model.get(self.channel_name, conn.client_id, conn.id)
            if not absent or conn.state != "connected":
                await super().update(data)
                return
            previous = model.replace_capability(conn.id, None)
            try:
                await super().update(data)
            finally:
                model.replace_capability(conn.id, previous)


@mutant("reentry-with-entered-data", "disconnect.reenter-after-failed-resume")
class ReentryWithEnteredData(MutantAdapter):
    """After a refused resume the client re-enters its members with the data they entered with,
    not their latest update (the re-entry list is filled on enter and never updated;
    ably-java #930, "presence data is overwritten on reconnection")."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.entered: dict[tuple[str, str, str | None], Any] = {}

    class Presence(MutantPresence):
        adapter: ReentryWithEnteredData

        def _remember(self, client_id: str | None, data: Any) -> None:
            key = (self.service_connection.id, self.channel_name, client_id)
            self.adapter.entered.setdefault(key, data)

        async def enter(self, data: Any = None) -> None:
            await super().enter(data)
            self._remember(self.service_connection.client_id, data)

        async def enter_client(self, client_id: str, data: Any = None) -> None:
            await super().enter_client(client_id, data)
            self._remember(client_id, data)

    class Connection(ReferenceConnection):
        async def interrupt(self, seconds: float, resume: bool = True) -> None:
            conn = self.service_connection
            old = conn.id
            await super().interrupt(seconds, resume)
            handle = conn._reconnect
            if resume or handle is None:
                return
            _resume, saved = handle._args
            handle.cancel()
            entered = self.adapter.entered  # type: ignore[attr-defined]
            stale = {
                name: (
                    listeners,
                    [_with_data(m, entered.get((old, name, m.client_id), m.data)) for m in members],
                )
                for name, (listeners, members) in saved.items()
            }
            loop = handle._loop  # type: ignore[attr-defined]
            conn._reconnect = loop.call_later(seconds, conn._come_back, False, stale)


def _with_data(message: PresenceMessage, data: Any) -> PresenceMessage:
    return replace(message, data=data)


class _DeliversMissedTwice(PresenceService):
    """Every delivery due to a connection while it is interrupted is enqueued twice."""

    def _dispatch(self, outcome: Outcome) -> None:
        extra = []
        for delivery in outcome.deliveries:
            conn = self._connections.get(delivery.connection_id)
            if conn is not None and conn.interrupted:
                extra.append(delivery)
        super()._dispatch(outcome)
        if extra:
            super()._dispatch(Outcome([], extra))


@mutant("resume-duplicates-missed-events", "order.exactly-once")
class ResumeDuplicatesMissedEvents(MutantAdapter):
    """After a resume, the events published while the connection was away are delivered twice:
    once replayed from the resume buffer and once from the live subscription that was never
    paused (RTN15c6 asks for each missed message once)."""

    Service = _DeliversMissedTwice


@mutant("leave-leaves-every-channel", "order.channel-isolation")
class LeaveLeavesEveryChannel(MutantAdapter):
    """leave() on one channel also removes the member from the other channels the connection
    entered (one presence record per connection and clientId, not per channel)."""

    class Presence(MutantPresence):
        async def leave(self, data: Any = None) -> None:
            await super().leave(data)
            conn = self.service_connection
            service = self.adapter.service
            assert service is not None
            model = service.model
            for name in model.channels():
                if name != self.channel_name and model.get(name, conn.client_id, conn.id):
                    service._dispatch(model.leave(conn.id, name, data))


@mutant("rest-get-connection-id-as-client-id", "get.rest-filter-connection-id")
class RestGetConnectionIdAsClientId(MutantAdapter):
    """The REST presence get compares its connectionId filter with the members' clientId (the
    two query parameters mapped to one column), so a connectionId filter finds nobody."""

    class Presence(MutantPresence):
        async def rest_get(
            self,
            limit: int | None = None,
            client_id: str | None = None,
            connection_id: str | None = None,
        ) -> list[PresenceMessage]:
            members = await super().rest_get(limit, client_id)
            if connection_id is None:
                return members
            return [m for m in members if m.client_id == connection_id]


class _LeavesWithoutData(PresenceService):
    """Leaves synthesized when a connection's grace ends carry no data."""

    def _expire(self, connection_id: str) -> None:
        model = self.model
        original = model._apply

        def apply(ch: Any, event: PresenceMessage, key: str | None = None) -> Outcome:
            if event.action is Action.LEAVE and event.data is not None:
                event = _with_data(event, None)
            return original(ch, event, key)

        model._apply = apply  # type: ignore[method-assign]
        try:
            super()._expire(connection_id)
        finally:
            del model._apply


@mutant("synthesized-leave-without-data", "leave.data-defaults-to-member-data")
class SynthesizedLeaveWithoutData(MutantAdapter):
    """The leave synthesized after an abrupt disconnect carries no data (built from the
    connection record, not the member's last message)."""

    Service = _LeavesWithoutData


@mutant("reenter-after-leave-restores-data", "enter.data")
class ReenterAfterLeaveRestoresData(MutantAdapter):
    """enter() without data after a leave brings the member back with the data it had before
    leaving (the member's record is kept as a tombstone and the enter merges into it)."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.last_data: dict[tuple[str, str, str | None], Any] = {}

    class Presence(MutantPresence):
        adapter: ReenterAfterLeaveRestoresData

        def _key(self) -> tuple[str, str, str | None]:
            conn = self.service_connection
            return conn.id, self.channel_name, conn.client_id

        async def enter(self, data: Any = None) -> None:
            if data is None:
                data = self.adapter.last_data.get(self._key())
            await super().enter(data)
            if data is not None:
                self.adapter.last_data[self._key()] = data

        async def update(self, data: Any = None) -> None:
            await super().update(data)
            self.adapter.last_data[self._key()] = data


@mutant("get-connection-id-prefix-match", "get.filter-connection-id")
class GetConnectionIdPrefixMatch(MutantAdapter):
    """get(connectionId=...) matches every member whose connectionId starts with the filter (a
    `LIKE 'x%'` or `startswith` lookup): the connection `conn-1` also finds the members of
    `conn-10` and `conn-11`."""

    class Presence(MutantPresence):
        async def get(
            self,
            client_id: str | None = None,
            connection_id: str | None = None,
            wait_for_sync: bool = True,
        ) -> list[PresenceMessage]:
            members = await super().get(client_id, None, wait_for_sync)
            if connection_id is None:
                return members
            return [m for m in members if m.connection_id.startswith(connection_id)]


@mutant("update-client-updates-other-connection", "enter.client-no-side-effects")
class UpdateClientUpdatesOtherConnection(MutantAdapter):
    """updateClient(X) on a connection that has not entered X updates the member X of another
    connection instead of entering X for itself (RTP9b): the member is looked up by clientId
    alone, so the other connection's member changes (RTP15c: no side effects on it)."""

    class Presence(MutantPresence):
        async def update_client(self, client_id: str, data: Any = None) -> None:
            conn = self.service_connection
            service = self.adapter.service
            assert service is not None
            model = service.model
            name = self.channel_name
            mine = model.get(name, client_id, conn.id)
            others = [m for m in model.get(name, client_id) if m.connection_id != conn.id]
            if mine or not others or conn.state != "connected":
                await super().update_client(client_id, data)
                return
            owner = others[0].connection_id
            behalf = None if model.connection_client_id(owner) == client_id else client_id
            service._dispatch(model.update(owner, name, data, client_id=behalf))


@mutant("leave-client-data-ignored", "leave.data-given")
class LeaveClientDataIgnored(MutantAdapter):
    """leaveClient(X, data) leaves without the data given: the leave carries the member's last
    data (the data argument is not forwarded to the leave message, RTP15a: as leave(data))."""

    class Presence(MutantPresence):
        async def leave_client(self, client_id: str, data: Any = None) -> None:
            await super().leave_client(client_id, None)


# -- server mutants ----------------------------------------------------------------------------


@mutant("server-sync-drops-page-end", "sync.present-on-attach")
class ServerSyncDropsPageEnd(ServerMutantAdapter):
    """Each SYNC page but the last loses its last member (an off-by-one between the page size
    and the cursor: the cursor points past an item never sent). A channel whose members fit in
    one page syncs correctly."""

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        items = sync_items(frame)
        serial = frame.get("channelSerial")
        if not items or not isinstance(serial, str) or serial.endswith(":") or ":" not in serial:
            return [frame]
        out = copy.deepcopy(frame)
        out["presence"] = out["presence"][:-1]
        return [out]


@mutant("server-sync-drops-encoding", "data.json-object", "data.binary")
class ServerSyncDropsEncoding(ServerMutantAdapter):
    """SYNC items lose their `encoding` field (the sync serializer is not the publish one): a
    late joiner reads JSON data as its text and binary data as base64."""

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        if not sync_items(frame):
            return [frame]
        out = copy.deepcopy(frame)
        for item in out["presence"]:
            if isinstance(item, dict):
                item.pop("encoding", None)
        return [out]


@mutant("server-leave-timestamp-of-enter", "disconnect.leave-synthesized")
class ServerLeaveTimestampOfEnter(ServerMutantAdapter):
    """A synthesized leave carries the timestamp of the member's enter (the member record keeps
    its creation time, copied into the leave) instead of the time of the leave: a client that
    saw a later update keeps the member, since the leave is older (RTP2b1)."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.entered: dict[tuple[Any, Any, Any], int] = {}

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        if frame.get("action") != ProtocolAction.PRESENCE or not isinstance(
            frame.get("presence"), list
        ):
            return [frame]
        out = copy.deepcopy(frame)
        changed = False
        for item in out["presence"]:
            if not isinstance(item, dict):
                continue
            connection_id = item.get("connectionId", frame.get("connectionId"))
            key = (frame.get("channel"), connection_id, item.get("clientId"))
            stamp = item.get("timestamp", frame.get("timestamp"))
            if item.get("action") == 2 and isinstance(stamp, int):  # ENTER
                self.entered[key] = stamp
            elif item.get("action") == 3:  # LEAVE
                synthesized = not str(item.get("id", "")).startswith(str(connection_id))
                if synthesized and key in self.entered:
                    item["timestamp"] = self.entered[key]
                    changed = True
        return [out] if changed else [frame]


@mutant("server-presence-after-detach", "wire.server-channel-attached")
class ServerPresenceAfterDetach(ServerMutantAdapter):
    """A DETACH removes the connection from the channel's presence set but not from its
    subscribers: the server goes on sending it the channel's PRESENCE frames."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.detached: dict[Any, list[Any]] = {}

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        if conn is not None and frame.get("action") == ProtocolAction.DETACHED:
            subscribers = self.detached.setdefault(frame.get("channel"), [])
            if conn not in subscribers:
                subscribers.append(conn)
        elif conn is not None and frame.get("action") == ProtocolAction.ATTACHED:
            subscribers = self.detached.get(frame.get("channel"), [])
            if conn in subscribers:
                subscribers.remove(conn)
        return [frame]

    def on_broadcast(self, frame: dict[str, Any], conns: list[Any]) -> list[Any]:
        if frame.get("action") != ProtocolAction.PRESENCE:
            return conns
        extra = [
            c
            for c in self.detached.get(frame.get("channel"), [])
            if c not in conns and not getattr(c, "closed", False)
        ]
        return conns + extra

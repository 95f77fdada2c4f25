"""Mutants whose bugs only show with varied data: client ids that share a prefix, differ in case,
are unicode or long; filters that pair one client's clientId with another's connectionId;
timestamps in the wrong unit; members that left before a get(waitForSync=false) attached;
listeners on several channels; data at type and size edges."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from presence_conformance.harness.mutants.base import MutantAdapter, MutantPresence, mutant
from presence_conformance.reference_impl.types import Action, PresenceMessage

LONG_ID = 64  # where long-client-id-truncated cuts


class _FilteredGet(MutantPresence):
    """get() that applies its own clientId filter (`matches`) instead of the service's."""

    @staticmethod
    def matches(member: str, wanted: str) -> bool:
        return member == wanted

    async def get(
        self,
        client_id: str | None = None,
        connection_id: str | None = None,
        wait_for_sync: bool = True,
    ) -> list[PresenceMessage]:
        members = await super().get(None, connection_id, wait_for_sync)
        if client_id is None:
            return members
        return [m for m in members if self.matches(m.client_id, client_id)]


@mutant("get-client-id-prefix-match", "get.filter-client-id")
class GetClientIdPrefixMatch(MutantAdapter):
    """get(clientId=...) matches every member whose clientId starts with the filter
    (`startswith` instead of equality): get(clientId "al") also returns alice and alice2."""

    class Presence(_FilteredGet):
        @staticmethod
        def matches(member: str, wanted: str) -> bool:
            return member.startswith(wanted)


@mutant("get-client-id-case-insensitive", "get.filter-client-id")
class GetClientIdCaseInsensitive(MutantAdapter):
    """get(clientId=...) compares clientIds case-insensitively: get(clientId "alice") also
    returns the member "Alice"."""

    class Presence(_FilteredGet):
        @staticmethod
        def matches(member: str, wanted: str) -> bool:
            return member.casefold() == wanted.casefold()


@mutant("get-connection-id-ignored-with-client-id", "get.filter-both")
class GetConnectionIdIgnoredWithClientId(MutantAdapter):
    """get() with both filters applies only the clientId one (an `if/elif` over the filters):
    alice's clientId with bob's connectionId returns alice instead of nobody."""

    class Presence(MutantPresence):
        async def get(
            self,
            client_id: str | None = None,
            connection_id: str | None = None,
            wait_for_sync: bool = True,
        ) -> list[PresenceMessage]:
            if client_id is not None:
                connection_id = None
            return await super().get(client_id, connection_id, wait_for_sync)


@mutant("get-filters-ored", "get.filter-both")
class GetFiltersOred(MutantAdapter):
    """get() with both filters returns the members matching either of them (OR instead of
    AND)."""

    class Presence(MutantPresence):
        async def get(
            self,
            client_id: str | None = None,
            connection_id: str | None = None,
            wait_for_sync: bool = True,
        ) -> list[PresenceMessage]:
            if client_id is None or connection_id is None:
                return await super().get(client_id, connection_id, wait_for_sync)
            by_client = await super().get(client_id, None, wait_for_sync)
            by_connection = await super().get(None, connection_id, wait_for_sync)
            keys = {m.member_key for m in by_client}
            return by_client + [m for m in by_connection if m.member_key not in keys]


@mutant("client-id-unicode-mangled", "message.client-id")
class ClientIdUnicodeMangled(MutantAdapter):
    """A clientId with non-ASCII characters comes back as mojibake (its UTF-8 bytes decoded as
    Latin-1) in events, get() and history."""

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        cid = message.client_id
        if isinstance(cid, str) and not cid.isascii():
            return [dataclasses.replace(message, client_id=cid.encode().decode("latin-1"))]
        return [message]


@mutant("long-client-id-truncated", "message.client-id")
class LongClientIdTruncated(MutantAdapter):
    """ClientIds longer than 64 characters are truncated to 64 in every message (a fixed-width
    column)."""

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        cid = message.client_id
        if isinstance(cid, str) and len(cid) > LONG_ID:
            return [dataclasses.replace(message, client_id=cid[:LONG_ID])]
        return [message]


@mutant("timestamps-integer-seconds", "message.timestamp")
class TimestampsIntegerSeconds(MutantAdapter):
    """Realtime messages (events and get()) carry whole seconds since the epoch as their
    timestamp (the protocol message's timestamp read with the wrong unit; REST history is
    right): an integer, so it looks valid, and only the run's wall-clock window shows it is 1000
    times too small."""

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        return [dataclasses.replace(message, timestamp=message.timestamp // 1000)]

    def on_history(
        self, message: PresenceMessage, presence: MutantPresence
    ) -> list[PresenceMessage]:
        return [message]


@mutant("timestamps-in-microseconds", "message.timestamp")
class TimestampsInMicroseconds(MutantAdapter):
    """Timestamps in microseconds since the epoch (a server clock read with the wrong unit)."""

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        return [dataclasses.replace(message, timestamp=message.timestamp * 1000)]


@mutant("get-no-sync-returns-departed", "get.wait-for-sync-false")
class GetNoSyncReturnsDeparted(MutantAdapter):
    """get(waitForSync=false) answers from a cache of every member the channel ever had,
    departed ones included (a leave never evicts the cache entry)."""

    class Presence(MutantPresence):
        async def get(
            self,
            client_id: str | None = None,
            connection_id: str | None = None,
            wait_for_sync: bool = True,
        ) -> list[PresenceMessage]:
            members = await super().get(client_id, connection_id, wait_for_sync)
            if wait_for_sync:
                return members
            keys = {m.member_key for m in members}
            departed: dict[str, PresenceMessage] = {}
            for event in self.model.history_all(self.channel_name):
                if event.member_key in keys or event.action is Action.LEAVE:
                    continue
                if client_id is not None and event.client_id != client_id:
                    continue
                if connection_id is not None and event.connection_id != connection_id:
                    continue
                departed[event.member_key] = event.with_action(Action.PRESENT)
            return members + list(departed.values())


@mutant("unsubscribe-all-every-channel", "unsubscribe.all", "unsubscribe.others-unaffected")
class UnsubscribeAllEveryChannel(MutantAdapter):
    """unsubscribe() with no arguments removes the connection's listeners on every channel, not
    only on the channel it was called on (one listener registry per connection)."""

    class Presence(MutantPresence):
        async def unsubscribe(self, listener: Any = None, actions: Any = None) -> None:
            await super().unsubscribe(listener, actions)
            if listener is None and actions is None:
                cid = self.service_connection.id
                for channel in self.model.channels():
                    if channel != self.channel_name and self.model.is_attached(cid, channel):
                        self.model.unsubscribe(cid, channel, None, None)


@mutant("twin-events-merged", "member.key")
class TwinEventsMerged(MutantAdapter):
    """Events of a clientId's second connection carry the connectionId of its first connection
    on the channel (listeners key members by clientId, Pusher-style)."""

    def on_event(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        for event in presence.model.history_all(presence.channel_name):
            if event.client_id == message.client_id:
                if event.connection_id != message.connection_id:
                    return [dataclasses.replace(message, connection_id=event.connection_id)]
                break
        return [message]


@mutant("empty-containers-as-null", "data.json-object", "data.json-array")
class EmptyContainersAsNull(MutantAdapter):
    """Empty objects and arrays as data come back as null (a falsy check, `data or None`)."""

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        if message.data == {} or message.data == []:
            return [dataclasses.replace(message, data=None)]
        return [message]


@mutant("nested-data-flattened", "data.json-object")
class NestedDataFlattened(MutantAdapter):
    """Objects nested more than two levels deep come back as their JSON text (the decoder
    recurses only two levels)."""

    @staticmethod
    def _flatten(value: Any, depth: int = 0) -> Any:
        if isinstance(value, dict):
            if depth >= 2:
                return json.dumps(value, separators=(",", ":"))
            return {k: NestedDataFlattened._flatten(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [NestedDataFlattened._flatten(v, depth + 1) for v in value]
        return value

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        flat = self._flatten(message.data)
        if flat != message.data:
            return [dataclasses.replace(message, data=flat)]
        return [message]


@mutant("large-string-truncated", "data.string")
class LargeStringTruncated(MutantAdapter):
    """String data longer than 32 KiB is truncated to 32768 characters (a buffer sized below
    the 64 KiB message limit)."""

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        if isinstance(message.data, str) and len(message.data) > 32768:
            return [dataclasses.replace(message, data=message.data[:32768])]
        return [message]

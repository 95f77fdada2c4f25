"""Mutants that break the presence set: get() and its filters, sync, member identity, updates,
entering without a clientId or capability."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from presence_conformance.harness.mutants.base import MutantAdapter, MutantPresence, mutant
from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.types import Action, PresenceMessage


@mutant("get-ignores-client-id", "get.filter-client-id")
class GetIgnoresClientId(MutantAdapter):
    """get(clientId=...) ignores the clientId filter and returns every member of the channel
    (the filter is applied to the wrong field of the query, so it never matches)."""

    class Presence(MutantPresence):
        async def get(
            self,
            client_id: str | None = None,
            connection_id: str | None = None,
            wait_for_sync: bool = True,
        ) -> list[PresenceMessage]:
            return await super().get(None, connection_id, wait_for_sync)


@mutant("get-ignores-connection-id", "get.filter-connection-id")
class GetIgnoresConnectionId(MutantAdapter):
    """get(connectionId=...) ignores the connectionId filter and returns the members of every
    connection (only the clientId filter is passed on to the presence map)."""

    class Presence(MutantPresence):
        async def get(
            self,
            client_id: str | None = None,
            connection_id: str | None = None,
            wait_for_sync: bool = True,
        ) -> list[PresenceMessage]:
            return await super().get(client_id, None, wait_for_sync)


@mutant("get-action-not-present", "get.action-present")
class GetActionNotPresent(MutantAdapter):
    """get() returns each member with the action of its last event (enter or update) instead
    of present (the presence map stores messages as they arrived)."""

    def on_member(
        self, message: PresenceMessage, presence: MutantPresence
    ) -> list[PresenceMessage]:
        last = Action.ENTER
        for event in presence.model.history_all(presence.channel_name):
            if event.member_key == message.member_key and event.action is not Action.LEAVE:
                last = event.action
        return [message.with_action(last)]


@mutant("sync-complete-too-early", "get.wait-for-sync-default", "sync.late-joiner-get")
class SyncCompleteTooEarly(MutantAdapter):
    """syncComplete is true before the sync ends (set on ATTACHED, not at the end of the SYNC),
    and get() with waitForSync waits only for that flag, so it returns before the members
    arrive: a late joiner's first get() misses everyone."""

    class Presence(MutantPresence):
        async def get(
            self,
            client_id: str | None = None,
            connection_id: str | None = None,
            wait_for_sync: bool = True,
        ) -> list[PresenceMessage]:
            if not self.service_presence.sync_complete:
                return await super().get(client_id, connection_id, False)
            return await super().get(client_id, connection_id, wait_for_sync)

        async def sync_complete(self) -> bool:
            await asyncio.sleep(0)
            return True


@mutant("member-key-client-id-only", "member.key")
class MemberKeyClientIdOnly(MutantAdapter):
    """Members keyed by clientId only: two connections with the same clientId collapse into
    one member in get() (Pusher-style de-duplication by user id)."""

    class Presence(MutantPresence):
        async def get(
            self,
            client_id: str | None = None,
            connection_id: str | None = None,
            wait_for_sync: bool = True,
        ) -> list[PresenceMessage]:
            members = await super().get(client_id, connection_id, wait_for_sync)
            by_client: dict[str, PresenceMessage] = {}
            for member in members:
                by_client[member.client_id] = member  # the last connection wins
            return list(by_client.values())


@mutant("stale-data-after-update", "update.changes-data")
class StaleDataAfterUpdate(MutantAdapter):
    """get() returns stale data after an update: the presence map keeps the data a member
    entered with and ignores update messages for members it already has."""

    def on_member(
        self, message: PresenceMessage, presence: MutantPresence
    ) -> list[PresenceMessage]:
        first: PresenceMessage | None = None  # the first event of the member's current life
        for event in presence.model.history_all(presence.channel_name):
            if event.member_key == message.member_key:
                first = None if event.action is Action.LEAVE else (first or event)
        if first is None:
            return [message]
        return [dataclasses.replace(message, data=first.data)]


@mutant("update-when-absent-ignored", "update.when-not-present-enters")
class UpdateWhenAbsentIgnored(MutantAdapter):
    """update() by a client that is not present is acknowledged and does nothing, instead of
    entering it (RTP9b)."""

    class Presence(MutantPresence):
        async def update(self, data: Any = None) -> None:
            conn = self.service_connection
            if conn.client_id and not self.model.get(self.channel_name, conn.client_id, conn.id):
                await self.delay()
                conn._check_live()
                return
            await super().update(data)


@mutant("enter-without-client-id-accepted", "enter.requires-client-id")
class EnterWithoutClientIdAccepted(MutantAdapter):
    """enter() on a connection without a clientId is acknowledged (and ignored) instead of
    failing with 91000."""

    class Presence(MutantPresence):
        async def enter(self, data: Any = None) -> None:
            try:
                await super().enter(data)
            except PresenceError as exc:
                if exc.code != errors.NO_CLIENT_ID:
                    raise


@mutant("capability-not-enforced", "enter.requires-presence-capability")
class CapabilityNotEnforced(MutantAdapter):
    """The presence capability is not enforced: every connection may enter anywhere."""

    async def connect(
        self, client_id: str | None, capability: dict[str, list[str]] | None = None
    ) -> Any:
        return await super().connect(client_id, None)


@mutant("refused-enter-still-broadcast", "error.state-unchanged")
class RefusedEnterStillBroadcast(MutantAdapter):
    """The presence capability is checked after the enter was applied: the caller gets the
    40160 error, but the member was added and its enter broadcast."""

    class Presence(MutantPresence):
        async def enter(self, data: Any = None) -> None:
            model, cid = self.model, self.service_connection.id
            granted = model.replace_capability(cid, None)
            try:
                await super().enter(data)
            finally:
                model.replace_capability(cid, granted)
            model.check_capability(cid, self.channel_name, "presence")

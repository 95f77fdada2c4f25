"""Mutants that break the channel lifecycle: detach, attach again, the channel's state, and the
presence operations a channel's state refuses (RTP5a, RTP8g, RTL14)."""

from __future__ import annotations

import asyncio
from typing import Any

from presence_conformance.harness.adapters.reference import ReferenceChannel, ReferenceConnection
from presence_conformance.harness.mutants.base import MutantAdapter, MutantPresence, mutant
from presence_conformance.reference_impl.types import Action, PresenceMessage


def _lifecycle_connection(channel_class: type[ReferenceChannel]) -> type[ReferenceConnection]:
    return type("LifecycleConnection", (ReferenceConnection,), {"channel_class": channel_class})


class _DetachEmitsLeaves(ReferenceChannel):
    async def detach(self) -> None:
        presence = self.service_channel.presence
        if self.service_channel.state == "attached":
            members = await presence.get()
            listeners = list(presence._by_name.values())
            loop = asyncio.get_running_loop()
            for member in members:
                leave = PresenceMessage(
                    Action.LEAVE,
                    member.client_id,
                    member.connection_id,
                    member.data,
                    member.timestamp,
                    None,
                )
                for listener in listeners:
                    loop.call_soon(listener, leave)
        await super().detach()


@mutant("detach-emits-leaves", "channel.detach-clears-silently")
class DetachEmitsLeaves(MutantAdapter):
    """Detaching a channel clears its presence map with a LEAVE event for every member, as if
    they had left (RTP5a: the map is cleared silently, their state is unknown)."""

    Connection = _lifecycle_connection(_DetachEmitsLeaves)


class _EnterReattaches(MutantPresence):
    async def _reattach(self) -> None:
        if self.service_presence._channel_state == "detached":
            await self.service_connection.channels.get(self.channel_name).attach()

    async def enter(self, data: Any = None) -> None:
        await self._reattach()
        await super().enter(data)

    async def update(self, data: Any = None) -> None:
        await self._reattach()
        await super().update(data)


@mutant(
    "enter-reattaches-detached",
    "channel.enter-when-detached-or-failed",
    "channel.update-leave-when-detached-or-failed",
)
class EnterReattachesDetached(MutantAdapter):
    """enter() and update() on a DETACHED channel attach it again and go ahead, as on an
    INITIALIZED one (RTP8g: they must fail at once)."""

    Presence = _EnterReattaches


class _ReattachReenters(ReferenceChannel):
    saved: list[PresenceMessage] | None = None

    async def detach(self) -> None:
        if self.service_channel.state == "attached":
            conn = self.service_channel.connection
            self.saved = await self.service_channel.presence.get(connection_id=conn.id)
        await super().detach()

    async def attach(self) -> None:
        await super().attach()
        saved, self.saved = self.saved or [], None
        for member in saved:  # RTP17-style re-entry of the members entered before the detach
            await self.service_channel.presence.enter_client(member.client_id, member.data)


@mutant("reattach-reenters", "channel.reattach-no-reenter")
class ReattachReenters(MutantAdapter):
    """Attaching a channel again after a detach re-enters the members the client had entered
    before it (RTP5a: the internal PresenceMap is cleared on DETACHED, so nothing is
    re-entered)."""

    Connection = _lifecycle_connection(_ReattachReenters)


class _FailedReadsDetached(ReferenceChannel):
    async def state(self) -> str:
        state = await super().state()
        return "detached" if state == "failed" else state


@mutant("failed-reported-detached", "channel.failed-on-refused-attach")
class FailedReportedDetached(MutantAdapter):
    """A channel whose attach the server refused reports the DETACHED state instead of FAILED
    (RTL14)."""

    Connection = _lifecycle_connection(_FailedReadsDetached)


class _GetNeedsSubscribe(MutantPresence):
    async def get(
        self,
        client_id: str | None = None,
        connection_id: str | None = None,
        wait_for_sync: bool = True,
    ) -> list[PresenceMessage]:
        conn = self.service_connection
        self.model.check_capability(conn.id, self.channel_name, "subscribe")
        return await super().get(client_id, connection_id, wait_for_sync)


@mutant("get-needs-subscribe", "channel.get-without-presence-subscribe")
class GetNeedsSubscribe(MutantAdapter):
    """get() on a channel attached without the subscribe capability is refused as a capability
    error (40160), not with 91008 (RTP11f1) nor answered (RTP11f2)."""

    Presence = _GetNeedsSubscribe


class _DetachKeepsMembers(ReferenceChannel):
    async def detach(self) -> None:
        channel = self.service_channel
        if channel.state != "attached":
            await super().detach()
            return
        presence = channel.presence
        model, cid = presence._model, channel.connection.id
        presence._saved_listeners = model.listener_state(cid, channel.name)
        model.detach(cid, channel.name)  # hears nothing more; its members stay
        presence._release()
        presence._channel_state = "detached"


@mutant("detach-keeps-members", "channel.detach-members-leave")
class DetachKeepsMembers(MutantAdapter):
    """A client's detach leaves its members in the channel's presence set: other clients never
    hear them leave (the service does not remove the members of a connection no longer
    attached)."""

    Connection = _lifecycle_connection(_DetachKeepsMembers)


class _DetachInitializedDetaches(ReferenceChannel):
    async def detach(self) -> None:
        presence = self.service_channel.presence
        if presence._channel_state == "initialized":
            presence._channel_state = "detached"  # as if a DETACH had been sent and answered
            return
        await super().detach()


@mutant("detach-initialized-detaches", "channel.detach-when-not-attached")
class DetachInitializedDetaches(MutantAdapter):
    """detach() on a channel never attached sends DETACH and leaves it DETACHED, instead of
    doing nothing (RTL5a): a later enter() is refused instead of attaching implicitly."""

    Connection = _lifecycle_connection(_DetachInitializedDetaches)

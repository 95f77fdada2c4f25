"""Mutants of the client-side presence rules: broken client maps, for the harness's own client.

Each is a subclass of the client-side oracle (`reference_impl.client_presence.ClientPresence`)
that breaks one rule the way SDKs have broken it; `breaks` names the Ably spec points. They
serve twice:

- `tests/reference_impl/test_client_presence_mutants.py` feeds them frame sequences and
  requires each to be caught by the sequences it names;
- plugged into the harness's own client (`RealtimeConnection(presence_oracle=...)`, or an
  `ably-wire` adapter from `ably_wire_with(mutant)`), they make a client with that bug, so a
  scenario can show it catches the bug through the wire (a scripted server sending the frames).

    CLIENT_MUTANTS              # class name -> mutant class
    ably_wire_with(mutant)      # an AblyWireAdapter subclass whose client maps are `mutant`
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from presence_conformance.harness.adapters.ably_wire import AblyWireAdapter
from presence_conformance.reference_impl.client_presence import (
    ChannelState,
    ClientPresence,
    Event,
    item_from_wire,
)
from presence_conformance.reference_impl.types import Action, PresenceMessage

__all__ = ["CLIENT_MUTANTS", "ClientMutant", "ably_wire_with"]


class ClientMutant(ClientPresence):
    """A broken client map; `breaks` lists the Ably spec points it violates."""

    breaks: ClassVar[tuple[str, ...]] = ()


class IgnoresNewness(ClientMutant):
    """Every incoming message replaces the member (no RTP2a check)."""

    breaks = ("RTP2a",)

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        return True


class ComparesIdsAsStrings(ClientMutant):
    """Serials compared as text: "c1:9:0" > "c1:10:0" (RTP2b2 says numerically)."""

    breaks = ("RTP2b2",)

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        return (incoming.id or "") > (existing.id or "")


class AlwaysComparesTimestamps(ClientMutant):
    """Timestamps compared for messages that are not synthesized (RTP2b1 is for those only)."""

    breaks = (
        "RTP2b1",
        "RTP2b2",
    )

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        return incoming.timestamp >= existing.timestamp


class SynthesizedTieGoesToExisting(ClientMutant):
    """A synthesized leave with the same timestamp is discarded (RTP2b1a gives it the win)."""

    breaks = ("RTP2b1a",)

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        if incoming.timestamp == existing.timestamp and not (incoming.id or "").startswith(
            incoming.connection_id
        ):
            return False
        return super().newer(incoming, existing)


class ForgetsResidualLeaves(ClientMutant):
    """A sync that forgets to purge: members not seen during it stay (RTP19)."""

    breaks = ("RTP19",)

    def end_sync(self) -> list[Event]:
        self._residual = set()
        return super().end_sync()


class KeepsAbsentEntries(ClientMutant):
    """ABSENT entries outlive the sync (RTP2h2b): they go on hiding older messages."""

    breaks = ("RTP2h2b",)

    def end_sync(self) -> list[Event]:
        absent = {k: m for k, m in self._map.items() if m.action is Action.ABSENT}
        events = super().end_sync()
        self._map.update(absent)
        return events


class ResyncKeepsStaleMembers(ClientMutant):
    """A new sync sequence does not discard the one in flight (RTP18a): members listed only by
    the discarded sequence stay."""

    breaks = ("RTP18a",)

    def start_sync(self, restart: bool = False) -> None:
        super().start_sync(restart=restart and not self.sync_in_progress)


class LeaveDuringSyncDeletes(ClientMutant):
    """A LEAVE during a sync deletes the member instead of keeping it ABSENT (RTP2h2a), so an
    older PRESENT later in the same sync brings it back."""

    breaks = ("RTP2h2a",)

    def remove(self, message: PresenceMessage) -> list[Event]:
        residual, self._residual = self._residual, None
        try:
            events = super().remove(message)
        finally:
            self._residual = residual
        if residual is not None:
            residual.discard(message.member_key)
        return events


class LeaveDuringSyncLeftResidual(ClientMutant):
    """A LEAVE during a sync does not count as an update (RTP19): a second, synthesized LEAVE
    follows at the end of the sync (RTP2h2b: no leave events other than RTP19's)."""

    breaks = (
        "RTP19",
        "RTP2h2b",
    )

    def remove(self, message: PresenceMessage) -> list[Event]:
        before = set(self._residual) if self._residual is not None else None
        events = super().remove(message)
        if before is not None and message.member_key in before:
            assert self._residual is not None
            self._residual.add(message.member_key)
            self._map[message.member_key] = message.with_action(Action.PRESENT)
        return events


class SerialLessSyncNotComplete(ClientMutant):
    """A SYNC without `channelSerial` is taken as one page of a sync that never ends (RTP18c)."""

    breaks = ("RTP18c",)

    def on_sync(self, frame: Any) -> list[Event]:
        if not frame.get("channelSerial"):
            frame = {**frame, "channelSerial": "unnamed:more"}
        return super().on_sync(frame)


class SerialLessSyncKeepsInFlight(ClientMutant):
    """A SYNC without `channelSerial` ends the sync in flight instead of replacing it (RTP18c)."""

    breaks = ("RTP18c",)

    def on_sync(self, frame: Any) -> list[Event]:
        if not frame.get("channelSerial") and self.sync_in_progress:
            return self._apply(self._items(frame)) + self.end_sync()
        return super().on_sync(frame)


class IgnoresCursor(ClientMutant):
    """Every SYNC page ends the sync (RTP18b: only an empty cursor does)."""

    breaks = ("RTP18b",)

    def on_sync(self, frame: Any) -> list[Event]:
        serial = frame.get("channelSerial")
        if isinstance(serial, str) and serial:
            frame = {**frame, "channelSerial": serial.partition(":")[0] + ":"}
        return super().on_sync(frame)


class AttachedWithoutPresenceKeeps(ClientMutant):
    """ATTACHED without HAS_PRESENCE leaves the map as it was (RTP19a, RTP1)."""

    breaks = (
        "RTP19a",
        "RTP1",
    )

    def clear_with_leaves(self) -> list[Event]:
        self._residual = None
        self.sync_complete = True
        return []


class DetachedEmitsLeaves(ClientMutant):
    """DETACHED/FAILED clear the map with LEAVE events (RTP5a: silently)."""

    breaks = ("RTP5a",)

    def channel_state(self, state: str) -> list[Event]:
        if ChannelState(state) in (ChannelState.DETACHED, ChannelState.FAILED):
            events = self.clear_with_leaves()
            self.sync_complete = False
            return events
        return super().channel_state(state)


class SuspendedClears(ClientMutant):
    """SUSPENDED clears the map (RTP5f: it is maintained), so a re-sync re-emits everyone."""

    breaks = ("RTP5f",)

    def channel_state(self, state: str) -> list[Event]:
        if state == ChannelState.SUSPENDED:
            self.clear_silently()
        return super().channel_state(state)


class OnlySyncItemsConfirm(ClientMutant):
    """A PRESENCE received during a sync does not confirm its member (RTP19 says it does)."""

    breaks = ("RTP19",)

    def receive(self, frame: Any) -> list[Event]:
        if frame.get("action") == 14 and self._residual is not None:
            residual = set(self._residual)
            events = super().receive(frame)
            self._residual = {k for k in residual if k in self._map}
            return events
        return super().receive(frame)


class NoProtocolMessageDefaults(ClientMutant):
    """Missing `id`/`connectionId`/`timestamp` are not taken from the ProtocolMessage (TP3a/d/g)."""

    breaks = (
        "TP3a",
        "TP3d",
        "TP3g",
    )

    def _items(self, frame: Any) -> list[PresenceMessage]:
        raw = frame.get("presence") or []
        return [item_from_wire(item, {}, i, self.decode) for i, item in enumerate(raw)]


class LeaveForUnknownEmitted(ClientMutant):
    """A LEAVE for a member not in the map is emitted (RTP2h: if and only if it is there)."""

    breaks = ("RTP2h",)

    def remove(self, message: PresenceMessage) -> list[Event]:
        if message.member_key not in self._map:
            return [Event(Action.LEAVE, message)]
        return super().remove(message)


class ReemitsDuplicates(ClientMutant):
    """The same message delivered twice is emitted twice (RTP2a: not newer, discarded)."""

    breaks = ("RTP2a",)

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        return incoming.id == existing.id or super().newer(incoming, existing)


class SynthesizedLeaveKeepsId(ClientMutant):
    """The RTP19 LEAVE keeps the member's id and timestamp (RTP19: id null, timestamp now)."""

    breaks = ("RTP19",)

    def _synthesized_leave(self, member: PresenceMessage) -> Event:
        return Event(Action.LEAVE, replace(member, action=Action.LEAVE), synthesized=True)


CLIENT_MUTANTS: dict[str, type[ClientMutant]] = {
    cls.__name__: cls for cls in ClientMutant.__subclasses__()
}
"""Every client-rule mutant, by class name."""


def ably_wire_with(mutant: type[ClientPresence]) -> type[AblyWireAdapter]:
    """An `ably-wire` adapter whose client keeps each channel's presence with `mutant`."""
    return type(
        f"AblyWire{mutant.__name__}",
        (AblyWireAdapter,),
        {
            "__doc__": f"ably-wire with a broken client map: {mutant.__doc__}",
            "name": f"ably-wire+{mutant.__name__}",
            "presence_oracle": mutant,
        },
    )

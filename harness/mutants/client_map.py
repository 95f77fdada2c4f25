"""Mutants of a client's presence map, as clients under test: `ably-wire` with one client rule
broken, to show that the `server:` scenarios catch the bugs client SDKs have had.

Each mutant is a `ClientPresence` subclass (the client-side oracle with one rule broken, as in
`tests/reference_impl/test_client_presence_mutants.py`). `ClientMapMutantAdapter` is `ably-wire`
against the embedded server whose channels keep their presence map in `OracleBackedState` over
that subclass, instead of the harness client's own map. The seam is small on purpose: the
adapter swaps `channel.presence.state` before the channel attaches, and `OracleBackedState`
has the surface `harness/ably_client/connection.py` uses of its `PresenceState`.

`CLIENT_MAP_MUTANTS` maps a name to (the `ClientPresence` subclass, the requirement IDs it
breaks); `client_map_adapter(name)` builds the adapter. The scenario `client.*` checks catch each
one (`tests/harness/mutants/test_client_map_mutants.py`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from presence_conformance.harness.ably_client.emitter import PresenceEmitter
from presence_conformance.harness.ably_client.protocol import ProtocolViolation, decode_data
from presence_conformance.harness.adapters.ably_wire import AblyWireAdapter, WireChannel
from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.client_presence import (
    ChannelState,
    ClientPresence,
    Event,
    is_synthesized,
    serial_index,
)
from presence_conformance.reference_impl.client_presence_bridge import OracleMapState
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.types import Action, PresenceMessage

__all__ = [
    "CLIENT_MAP_MUTANTS",
    "ClientMapMutantAdapter",
    "NoReentryOnAttached",
    "OracleBackedState",
    "QueuedSurvivesSuspend",
    "ReentryFailureSilent",
    "SuspendedGetWrongCode",
    "client_map_adapter",
    "client_map_class",
]


class _Values:
    def __init__(self, bridge: OracleMapState) -> None:
        self._bridge = bridge

    def values(
        self, client_id: str | None = None, connection_id: str | None = None
    ) -> list[PresenceMessage]:
        return self._bridge.values(client_id, connection_id)


class OracleBackedState:
    """A channel's presence state for the harness client, computed by a `ClientPresence`."""

    def __init__(self, oracle: type[ClientPresence]) -> None:
        self.emitter = PresenceEmitter()
        self._synced = asyncio.Event()
        self.bridge = OracleMapState(
            emit=self.emitter.emit_all, decode=decode_data, violation=ProtocolViolation
        )
        self.bridge.oracle = oracle(clock=self.bridge.oracle.clock, decode=decode_data)
        self.map = _Values(self.bridge)

    @property
    def sync_complete(self) -> bool:
        return self.bridge.sync_complete

    @property
    def sync_in_progress(self) -> bool:
        return self.bridge.sync_in_progress

    async def wait_synced(self, timeout: float) -> bool:
        if not self.sync_in_progress and self.sync_complete:
            return True
        try:
            async with asyncio.timeout(timeout):
                while self.sync_in_progress or not self.sync_complete:
                    self._synced.clear()
                    await self._synced.wait()
        except TimeoutError:
            return False
        return True

    def _after(self) -> None:
        if self.sync_complete and not self.sync_in_progress:
            self._synced.set()

    def on_attached(self, flags: int | None) -> None:
        self.bridge.on_attached(flags)
        self._after()

    def on_detached(self) -> None:
        self.bridge.on_detached()
        self._synced.set()

    def on_suspended(self) -> None:
        self.bridge.on_suspended()
        self._synced.set()

    def on_presence(self, frame: dict) -> None:
        self.bridge.on_presence(frame)
        self._after()

    def on_sync(self, frame: dict) -> None:
        self.bridge.on_sync(frame)
        self._after()


# -- the mutants -------------------------------------------------------------------------------


class IgnoresNewness(ClientPresence):
    """Every incoming message replaces the member: no RTP2a newness check."""

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        return True


class SyncNeverPurges(ClientPresence):
    """A sync that ends without removing the members it did not list (no RTP19)."""

    def end_sync(self) -> list[Event]:
        self._residual = set()
        return super().end_sync()


class ResyncKeepsFirstSequence(ClientPresence):
    """A new sync sequence continues the one in flight (RTP18a: it must discard it), so members
    confirmed only by the discarded sequence stay."""

    def start_sync(self, restart: bool = False) -> None:
        super().start_sync(restart=False)


class AttachedKeepsMembers(ClientPresence):
    """ATTACHED without HAS_PRESENCE leaves the map as it was (RTP19a: it empties it)."""

    def clear_with_leaves(self) -> list[Event]:
        self._residual = None
        self._sync_id = None
        self.sync_complete = True
        return []


class NoChannelSerialIsPartial(ClientPresence):
    """A SYNC without channelSerial is taken as one page of a sync that never ends (RTP18c)."""

    def on_sync(self, frame: Mapping[str, Any]) -> list[Event]:
        if not frame.get("channelSerial"):
            frame = {**frame, "channelSerial": "unnamed:more"}
        return super().on_sync(frame)


class NoDefaultsFromFrame(ClientPresence):
    """Items without id/connectionId/timestamp keep them empty (TP3a/d/g: take the frame's)."""

    def _items(self, frame: Mapping[str, Any]) -> list[PresenceMessage]:
        bare = {k: v for k, v in frame.items() if k not in ("id", "connectionId", "timestamp")}
        return super()._items(bare)


class SynthesizedLeaveAlwaysWins(ClientPresence):
    """A synthesized leave removes the member whatever its timestamp (RTP2b1 compares them)."""

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        if incoming.action is Action.LEAVE and is_synthesized(incoming):
            return True
        return super().newer(incoming, existing)


class LeaveDuringSyncForgotten(ClientPresence):
    """A LEAVE during a sync is dropped, so the member stays present (RTP2h2a: keep it ABSENT)."""

    def remove(self, message: PresenceMessage) -> list[Event]:
        if self.sync_in_progress:
            return []
        return super().remove(message)


class DuplicatesEmitted(ClientPresence):
    """A message with the same id as the member's is taken as newer (emitted again)."""

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        if incoming.id is not None and incoming.id == existing.id:
            return True
        return super().newer(incoming, existing)


class ClearingEmitsLeaves(ClientPresence):
    """A channel that fails (or detaches) clears its map with a LEAVE per member (RTP5a: the
    members' state is unknown, so no LEAVE is emitted)."""

    def channel_state(self, state: str) -> list[Event]:
        if ChannelState(state) in (ChannelState.DETACHED, ChannelState.FAILED):
            return self.clear_with_leaves()
        return super().channel_state(state)


class SuspendedForgets(ClientPresence):
    """SUSPENDED clears the map silently (RTP5f: it is maintained; RTP11d: get without waiting
    returns the members held when the channel was suspended)."""

    def channel_state(self, state: str) -> list[Event]:
        if ChannelState(state) is ChannelState.SUSPENDED:
            self.clear_silently()
            return []
        return super().channel_state(state)


class SuspendedEmitsLeaves(ClientPresence):
    """SUSPENDED clears the map with a LEAVE per member (RTP5f: the map is maintained, so the
    sync after the re-attach emits only what changed)."""

    def channel_state(self, state: str) -> list[Event]:
        if ChannelState(state) is ChannelState.SUSPENDED:
            return self.clear_with_leaves()
        return super().channel_state(state)


class ChannelWideNewness(ClientPresence):
    """Newness against the newest message seen on the channel, whoever its member (RTP2a
    compares only with the same member's): a late message of one member, delivered after newer
    ones of others, is discarded."""

    _newest = -1

    @staticmethod
    def _serial(message: PresenceMessage) -> int | None:
        parts = (message.id or "").split(":")
        return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        serial = self._serial(incoming)
        if serial is not None and serial < self._newest:
            return False
        return super().newer(incoming, existing)

    def put(self, message: PresenceMessage) -> list[Event]:
        events = super().put(message)
        serial = self._serial(message)
        if events and serial is not None:
            self._newest = max(self._newest, serial)
        return events


class EncodingLeftUndecoded(ClientPresence):
    """Member data kept as it came off the wire: the `encoding` is not undone (RSL6a), so a JSON
    object stays its JSON string and binary on a JSON connection its base64 text."""

    def _items(self, frame: Mapping[str, Any]) -> list[PresenceMessage]:
        decode, self.decode = self.decode, None
        try:
            return super()._items(frame)
        finally:
            self.decode = decode


class JsonGuessedWithoutEncoding(ClientPresence):
    """String data without an encoding parsed as JSON when it looks like JSON (RSL6a decodes by
    the `encoding` field only: such a string was sent as a string)."""

    def _items(self, frame: Mapping[str, Any]) -> list[PresenceMessage]:
        out = []
        for message in super()._items(frame):
            data = message.data
            if isinstance(data, str) and "encoding" not in message.extra:
                try:
                    message = replace(message, data=json.loads(data))
                except ValueError:
                    pass
            out.append(message)
        return out


# -- red-team client-map mutants (harness/mutants/redteam.py has the others) ---------------------


class LeaveSkipsNewness(ClientPresence):
    """A LEAVE removes the member whatever its newness: a stale LEAVE, older than the member's
    current message, removes a member that entered again (RTP2h applies the RTP2b check)."""

    def remove(self, message: PresenceMessage) -> list[Event]:
        self.newer = lambda incoming, existing: True  # type: ignore[method-assign]
        try:
            return super().remove(message)
        finally:
            del self.newer


class PurgesEveryPage(ClientPresence):
    """The members a sync has not confirmed yet are purged at the end of every SYNC page, not
    only when the sync completes (a member listed on a later page leaves and comes back; ably-
    cocoa #1870 review: "cleaning up should only happen at the end of the sync")."""

    def on_sync(self, frame: Mapping[str, Any]) -> list[Event]:
        events = super().on_sync(frame)
        if self.sync_in_progress and self._residual:
            gone = [self._map.pop(k) for k in sorted(self._residual) if k in self._map]
            self._residual = set()
            events += [self._synthesized_leave(m) for m in gone]
        return events


class UpdateForUnknownIgnored(ClientPresence):
    """An UPDATE for a member the map does not hold is dropped (update read as "change an
    existing member"), where RTP2d adds it as PRESENT and emits it."""

    def put(self, message: PresenceMessage) -> list[Event]:
        if message.action is Action.UPDATE and message.member_key not in self._map:
            return []
        return super().put(message)


class PresenceDuringSyncNotConfirming(ClientPresence):
    """During a sync only SYNC items confirm a member: an ENTER or UPDATE received in a PRESENCE
    message during the sync leaves it unconfirmed, so the end of the sync removes a member that
    just changed (RTP19: "a member can be added or updated when received in a SYNC message or
    when received in a PRESENCE message during the sync process")."""

    def put(self, message: PresenceMessage) -> list[Event]:
        residual = self._residual
        keep = (
            residual is not None
            and message.action is not Action.PRESENT
            and message.member_key in residual
        )
        events = super().put(message)
        if keep and self._residual is not None:
            self._residual.add(message.member_key)
        return events


class AbsentShownByGet(ClientPresence):
    """The ABSENT entries a LEAVE leaves during a sync are returned by get() as members (the
    map's values are not filtered by action): a member that left during the sync is still there
    until the sync ends (RTP2h2a, RTP11)."""

    def members(self) -> list[PresenceMessage]:
        return [
            m.with_action(Action.PRESENT) if m.action is Action.ABSENT else m
            for _, m in sorted(self._map.items())
        ]


class SerialsComparedAsText(ClientPresence):
    """The msgSerial and index of two ids are compared as text, not as integers: "c:9:0" is
    taken for newer than "c:10:0", so a member's update with serial 10 after one with serial 9 is
    discarded (RTP2b2: "parse the latter two as integers")."""

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        if not is_synthesized(incoming) and not is_synthesized(existing):
            a = (incoming.id or "").rsplit(":", 2)
            b = (existing.id or "").rsplit(":", 2)
            if len(a) == 3 and len(b) == 3:
                return (a[1], a[2]) > (b[1], b[2])
        return super().newer(incoming, existing)


class IndexBeforeSerial(ClientPresence):
    """Ids compared by index first, then msgSerial (the tuple built the wrong way round): a
    message `c:5:0` loses to an older `c:4:1` (RTP2b2: "first by msgSerial ..., then (if msgSerial
    is equal) by index")."""

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        if not is_synthesized(incoming) and not is_synthesized(existing):
            a, b = serial_index(incoming.id), serial_index(existing.id)
            if a is not None and b is not None:
                return (a[1], a[0]) > (b[1], b[0])
        return super().newer(incoming, existing)


CLIENT_MAP_MUTANTS: dict[str, tuple[type[ClientPresence], tuple[str, ...]]] = {
    "ignores-newness": (IgnoresNewness, ("client.older-message-discarded",)),
    "sync-never-purges": (SyncNeverPurges, ("client.sync-purges-unseen-members",)),
    "resync-keeps-first-sequence": (
        ResyncKeepsFirstSequence,
        ("client.new-sync-sequence-discards",),
    ),
    "attached-keeps-members": (AttachedKeepsMembers, ("client.attached-without-presence-clears",)),
    "no-channel-serial-is-partial": (
        NoChannelSerialIsPartial,
        ("client.sync-without-channel-serial",),
    ),
    "no-defaults-from-frame": (NoDefaultsFromFrame, ("client.item-fields-default-from-frame",)),
    "synthesized-leave-always-wins": (
        SynthesizedLeaveAlwaysWins,
        ("client.synthesized-leave-by-timestamp",),
    ),
    "leave-during-sync-forgotten": (
        LeaveDuringSyncForgotten,
        ("client.leave-during-sync-absent",),
    ),
    "duplicates-emitted": (DuplicatesEmitted, ("client.duplicate-discarded",)),
    "clearing-emits-leaves": (ClearingEmitsLeaves, ("client.channel-error-clears-silently",)),
    "suspended-forgets": (
        SuspendedForgets,
        ("channel.get-when-suspended-no-wait", "channel.suspended-map-maintained"),
    ),
    "suspended-emits-leaves": (SuspendedEmitsLeaves, ("channel.suspended-map-maintained",)),
    "channel-wide-newness": (ChannelWideNewness, ("client.late-message-per-member",)),
    "encoding-left-undecoded": (EncodingLeftUndecoded, ("client.data-decoded",)),
    "json-guessed-without-encoding": (JsonGuessedWithoutEncoding, ("client.data-decoded",)),
    # -- red-team client-map mutants
    "leave-skips-newness": (LeaveSkipsNewness, ("client.synthesized-leave-by-timestamp",)),
    "purges-every-page": (PurgesEveryPage, ("client.sync-purges-unseen-members",)),
    "update-for-unknown-ignored": (UpdateForUnknownIgnored, ("client.staged-member-stored",)),
    "presence-during-sync-not-confirming": (
        PresenceDuringSyncNotConfirming,
        ("client.sync-purges-unseen-members",),
    ),
    "absent-shown-by-get": (AbsentShownByGet, ("client.leave-during-sync-absent",)),
    "serials-compared-as-text": (SerialsComparedAsText, ("client.older-message-discarded",)),
    "index-before-serial": (IndexBeforeSerial, ("client.older-message-discarded",)),
}


class ClientMapMutantAdapter(AblyWireAdapter):
    """`ably-wire` whose client keeps each channel's presence in a mutant `ClientPresence`."""

    oracle: type[ClientPresence] = ClientPresence

    async def connect(
        self, client_id: str | None, capability: dict[str, list[str]] | None = None
    ) -> Any:
        return self._mutated(await super().connect(client_id, capability))

    async def connect_with_token(
        self,
        client_id: str | None,
        capability: dict[str, list[str]] | None,
        token_client_id: str | None,
    ) -> Any:
        # a client holding another's token keeps its map the same (broken) way
        return self._mutated(
            await super().connect_with_token(client_id, capability, token_client_id)
        )

    def _mutated(self, conn: Any) -> Any:
        original: Callable[[str], WireChannel] = conn.channel
        oracle = self.oracle

        def channel(name: str) -> WireChannel:
            wire = original(name)
            presence = wire.realtime.presence
            if not isinstance(presence.state, OracleBackedState):
                presence.state = OracleBackedState(oracle)  # type: ignore[assignment]
            return wire

        conn.channel = channel
        return conn


class _PatchedChannels(AblyWireAdapter):
    """`ably-wire` whose channels get `patch(realtime_channel)` once, when first used."""

    @staticmethod
    def patch(channel: Any) -> None:
        raise NotImplementedError

    async def connect(
        self, client_id: str | None, capability: dict[str, list[str]] | None = None
    ) -> Any:
        conn = await super().connect(client_id, capability)
        original: Callable[[str], WireChannel] = conn.channel

        def channel(name: str) -> WireChannel:
            wire = original(name)
            if not getattr(wire.realtime, "_patched", False):
                self.patch(wire.realtime)
                wire.realtime._patched = True  # type: ignore[attr-defined]
            return wire

        conn.channel = channel  # type: ignore[method-assign]
        return conn


class NoReentryOnAttached(_PatchedChannels):
    """`ably-wire` whose channels never re-enter their members on an ATTACHED (RTP17i)."""

    name = "client-map:no-reentry-on-attached"

    @staticmethod
    def patch(channel: Any) -> None:
        async def nothing(own: Any) -> None:
            return None

        channel._reenter = nothing


class ReentryFailureSilent(_PatchedChannels):
    """`ably-wire` whose refused automatic re-entry emits no channel UPDATE (RTP17e)."""

    name = "client-map:reentry-failure-silent"

    @staticmethod
    def patch(channel: Any) -> None:
        channel._reentry_failed = lambda client_id, cause: None


class QueuedSurvivesSuspend(_PatchedChannels):
    """`ably-wire` whose presence operations made while the transport is away wait for the
    connection to come back, even past SUSPENDED, and are sent then (RTL11: a channel that
    becomes SUSPENDED fails the operations queued on it)."""

    name = "client-map:queued-survives-suspend"

    @staticmethod
    def patch(channel: Any) -> None:
        connection = channel.connection

        async def wait_online() -> None:
            async with asyncio.timeout(connection.timeout):
                await connection._online.wait()

        connection.wait_usable = wait_online


class SuspendedGetWrongCode(AblyWireAdapter):
    """`ably-wire` whose get() on a SUSPENDED channel fails with 90001 (a generic channel-state
    error) where RTP11d names 91005."""

    name = "client-map:suspended-get-wrong-code"

    async def connect(
        self, client_id: str | None, capability: dict[str, list[str]] | None = None
    ) -> Any:
        conn = await super().connect(client_id, capability)
        original: Callable[[str], WireChannel] = conn.channel

        def channel(name: str) -> WireChannel:
            wire = original(name)
            presence = wire.realtime.presence
            if not getattr(presence, "_wrong_code", False):
                get = presence.get

                async def wrong(*args: Any, **kwargs: Any) -> Any:
                    try:
                        return await get(*args, **kwargs)
                    except PresenceError as exc:
                        if exc.code == errors.OUT_OF_SYNC:
                            raise PresenceError(errors.CHANNEL_STATE, str(exc)) from None
                        raise

                presence.get = wrong  # type: ignore[method-assign]
                presence._wrong_code = True  # type: ignore[attr-defined]
            return wire

        conn.channel = channel  # type: ignore[method-assign]
        return conn


def client_map_class(name: str) -> type[ClientMapMutantAdapter]:
    """The `ably-wire` adapter class with the client map mutant `name` ("oracle": the unbroken
    oracle, which must pass every scenario)."""
    oracle = ClientPresence if name == "oracle" else CLIENT_MAP_MUTANTS[name][0]
    return type(
        f"ClientMap_{name}",
        (ClientMapMutantAdapter,),
        {"oracle": oracle, "name": f"client-map:{name}"},
    )


def client_map_adapter(name: str, options: Mapping[str, str] | None = None) -> AblyWireAdapter:
    """An instance of `client_map_class(name)`."""
    return client_map_class(name)(options)

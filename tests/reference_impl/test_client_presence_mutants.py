"""Mutants of the client-side presence rules, each caught by a frame sequence.

Every mutant is a subclass of the oracle (`ClientPresence`) that breaks one rule the way SDKs
have broken it. Each names the sequences of `client_presence_sequences.yaml` that must catch it
(the result differs from the sequence's `expect`), and the suite checks that the sequences, run
against the mutant, do. A sequence that no longer catches its mutant fails here, as does a
mutant caught by nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import pytest
from presence_conformance.reference_impl.client_presence import (
    ChannelState,
    ClientPresence,
    Event,
    item_from_wire,
)
from presence_conformance.reference_impl.types import Action, PresenceMessage
from test_client_presence import NOW, SEQUENCES, outcome


class Mutant(ClientPresence):
    """A broken client map; `caught_by` lists the sequences that must expose it."""

    caught_by: ClassVar[tuple[str, ...]] = ()


class IgnoresNewness(Mutant):
    """Every incoming message replaces the member (no RTP2a check)."""

    caught_by = ("newness-older-serial-discarded", "leave-during-sync-kept-absent")

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        return True


class ComparesIdsAsStrings(Mutant):
    """Serials compared as text: "c1:9:0" > "c1:10:0" (RTP2b2 says numerically)."""

    caught_by = ("newness-serial-numeric-not-lexicographic",)

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        return (incoming.id or "") > (existing.id or "")


class AlwaysComparesTimestamps(Mutant):
    """Timestamps compared for messages that are not synthesized (RTP2b1 is for those only)."""

    caught_by = ("newness-serial-beats-timestamp", "item-fields-default-from-protocol-message")

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        return incoming.timestamp >= existing.timestamp


class SynthesizedTieGoesToExisting(Mutant):
    """A synthesized leave with the same timestamp is discarded (RTP2b1a gives it the win)."""

    caught_by = ("server-synthesized-leave-by-timestamp",)

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        if incoming.timestamp == existing.timestamp and not (incoming.id or "").startswith(
            incoming.connection_id
        ):
            return False
        return super().newer(incoming, existing)


class ForgetsResidualLeaves(Mutant):
    """A sync that forgets to purge: members not seen during it stay (RTP19)."""

    caught_by = ("residual-member-leaves-at-sync-end", "sync-without-channel-serial-is-whole")

    def end_sync(self) -> list[Event]:
        self._residual = set()
        return super().end_sync()


class KeepsAbsentEntries(Mutant):
    """ABSENT entries outlive the sync (RTP2h2b): they go on hiding older messages."""

    caught_by = ("absent-purged-at-sync-end",)

    def end_sync(self) -> list[Event]:
        absent = {k: m for k, m in self._map.items() if m.action is Action.ABSENT}
        events = super().end_sync()
        self._map.update(absent)
        return events


class ResyncKeepsStaleMembers(Mutant):
    """A new sync sequence does not discard the one in flight (RTP18a): members listed only by
    the discarded sequence stay."""

    caught_by = (
        "new-sequence-discards-sync-in-flight",
        "attached-with-has-presence-restarts-sync-in-flight",
    )

    def start_sync(self, restart: bool = False) -> None:
        super().start_sync(restart=restart and not self.sync_in_progress)


class LeaveDuringSyncDeletes(Mutant):
    """A LEAVE during a sync deletes the member instead of keeping it ABSENT (RTP2h2a), so an
    older PRESENT later in the same sync brings it back."""

    caught_by = ("leave-during-sync-kept-absent",)

    def remove(self, message: PresenceMessage) -> list[Event]:
        residual, self._residual = self._residual, None
        try:
            events = super().remove(message)
        finally:
            self._residual = residual
        if residual is not None:
            residual.discard(message.member_key)
        return events


class LeaveDuringSyncLeftResidual(Mutant):
    """A LEAVE during a sync does not count as an update (RTP19): a second, synthesized LEAVE
    follows at the end of the sync (RTP2h2b: no leave events other than RTP19's)."""

    caught_by = ("leave-during-sync-no-second-leave",)

    def remove(self, message: PresenceMessage) -> list[Event]:
        before = set(self._residual) if self._residual is not None else None
        events = super().remove(message)
        if before is not None and message.member_key in before:
            assert self._residual is not None
            self._residual.add(message.member_key)
            self._map[message.member_key] = message.with_action(Action.PRESENT)
        return events


class SerialLessSyncNotComplete(Mutant):
    """A SYNC without `channelSerial` is taken as one page of a sync that never ends (RTP18c)."""

    caught_by = ("sync-without-channel-serial-is-whole",)

    def on_sync(self, frame: Any) -> list[Event]:
        if not frame.get("channelSerial"):
            frame = {**frame, "channelSerial": "unnamed:more"}
        return super().on_sync(frame)


class SerialLessSyncKeepsInFlight(Mutant):
    """A SYNC without `channelSerial` ends the sync in flight instead of replacing it (RTP18c)."""

    caught_by = ("sync-without-channel-serial-replaces-sync-in-flight",)

    def on_sync(self, frame: Any) -> list[Event]:
        if not frame.get("channelSerial") and self.sync_in_progress:
            return self._apply(self._items(frame)) + self.end_sync()
        return super().on_sync(frame)


class IgnoresCursor(Mutant):
    """Every SYNC page ends the sync (RTP18b: only an empty cursor does)."""

    caught_by = ("sync-in-flight-not-complete", "sync-in-pages-completes-at-empty-cursor")

    def on_sync(self, frame: Any) -> list[Event]:
        serial = frame.get("channelSerial")
        if isinstance(serial, str) and serial:
            frame = {**frame, "channelSerial": serial.partition(":")[0] + ":"}
        return super().on_sync(frame)


class AttachedWithoutPresenceKeeps(Mutant):
    """ATTACHED without HAS_PRESENCE leaves the map as it was (RTP19a, RTP1)."""

    caught_by = ("attached-without-has-presence-clears-with-leaves",)

    def clear_with_leaves(self) -> list[Event]:
        self._residual = None
        self.sync_complete = True
        return []


class DetachedEmitsLeaves(Mutant):
    """DETACHED/FAILED clear the map with LEAVE events (RTP5a: silently)."""

    caught_by = ("detached-clears-silently", "channel-error-fails-and-clears-silently")

    def channel_state(self, state: str) -> list[Event]:
        if ChannelState(state) in (ChannelState.DETACHED, ChannelState.FAILED):
            events = self.clear_with_leaves()
            self.sync_complete = False
            return events
        return super().channel_state(state)


class SuspendedClears(Mutant):
    """SUSPENDED clears the map (RTP5f: it is maintained), so a re-sync re-emits everyone."""

    caught_by = ("suspended-keeps-map-and-resync-emits-only-changes",)

    def channel_state(self, state: str) -> list[Event]:
        if state == ChannelState.SUSPENDED:
            self.clear_silently()
        return super().channel_state(state)


class OnlySyncItemsConfirm(Mutant):
    """A PRESENCE received during a sync does not confirm its member (RTP19 says it does)."""

    caught_by = ("live-presence-confirms-during-sync",)

    def receive(self, frame: Any) -> list[Event]:
        if frame.get("action") == 14 and self._residual is not None:
            residual = set(self._residual)
            events = super().receive(frame)
            self._residual = {k for k in residual if k in self._map}
            return events
        return super().receive(frame)


class NoProtocolMessageDefaults(Mutant):
    """Missing `id`/`connectionId`/`timestamp` are not taken from the ProtocolMessage (TP3a/d/g)."""

    caught_by = ("item-fields-default-from-protocol-message",)

    def _items(self, frame: Any) -> list[PresenceMessage]:
        return [item_from_wire(item, {}, i) for i, item in enumerate(frame.get("presence") or [])]


class LeaveForUnknownEmitted(Mutant):
    """A LEAVE for a member not in the map is emitted (RTP2h: if and only if it is there)."""

    caught_by = ("leave-for-unknown-member-ignored",)

    def remove(self, message: PresenceMessage) -> list[Event]:
        if message.member_key not in self._map:
            return [Event(Action.LEAVE, message)]
        return super().remove(message)


class ReemitsDuplicates(Mutant):
    """The same message delivered twice is emitted twice (RTP2a: not newer, discarded)."""

    caught_by = (
        "duplicate-delivery-not-reemitted",
        "suspended-keeps-map-and-resync-emits-only-changes",
    )

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        return incoming.id == existing.id or super().newer(incoming, existing)


class SynthesizedLeaveKeepsId(Mutant):
    """The RTP19 LEAVE keeps the member's id and timestamp (RTP19: id null, timestamp now)."""

    caught_by = ("residual-member-leaves-at-sync-end",)

    def _synthesized_leave(self, member: PresenceMessage) -> Event:
        return Event(Action.LEAVE, replace(member, action=Action.LEAVE), synthesized=True)


MUTANTS: list[type[Mutant]] = Mutant.__subclasses__()
BY_NAME = {s["name"]: s for s in SEQUENCES}


def deviates(oracle: ClientPresence, case: dict[str, Any]) -> bool:
    """True if the sequence's result on `oracle` is not its `expect` (or RTP19 leave shape)."""
    events = oracle.feed(case["sequence"])
    if outcome(oracle, events) != case["expect"]:
        return True
    return any(
        e.member.id is not None or e.member.timestamp != NOW for e in events if e.synthesized
    )


def test_enough_mutants() -> None:
    assert len(MUTANTS) >= 10


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.__name__ for m in MUTANTS])
def test_mutant_caught_by_its_sequences(mutant: type[Mutant]) -> None:
    assert mutant.caught_by, f"{mutant.__name__} names no sequence"
    for name in mutant.caught_by:
        assert deviates(mutant(clock=lambda: NOW), BY_NAME[name]), (
            f"{mutant.__name__} not caught by {name}"
        )


@pytest.mark.parametrize("case", SEQUENCES, ids=[s["name"] for s in SEQUENCES])
def test_oracle_passes_every_sequence(case: dict[str, Any]) -> None:
    assert not deviates(ClientPresence(clock=lambda: NOW), case)


def test_every_sequence_names_a_spec_point() -> None:
    for case in SEQUENCES:
        assert all(isinstance(p, str) and p[:2] in ("RT", "TP") for p in case["points"])

"""Mutants of the client-side presence rules, each caught by a frame sequence.

Every mutant (`presence_conformance.harness.mutants.client_presence`) is a subclass of the
oracle (`ClientPresence`) that breaks one rule the way SDKs have broken it. `CAUGHT_BY` names
the sequences of `client_presence_sequences.yaml` that must catch each (the result differs from
the sequence's `expect`), and the suite checks that the sequences, run against the mutant, do. A
sequence that no longer catches its mutant fails here, as does a mutant caught by nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from presence_conformance.harness.mutants.client_presence import (
    CLIENT_MUTANTS,
    AlwaysComparesTimestamps,
    AttachedWithoutPresenceKeeps,
    ClientMutant,
    ComparesIdsAsStrings,
    DetachedEmitsLeaves,
    ForgetsResidualLeaves,
    IgnoresCursor,
    IgnoresNewness,
    KeepsAbsentEntries,
    LeaveDuringSyncDeletes,
    LeaveDuringSyncLeftResidual,
    LeaveForUnknownEmitted,
    NoProtocolMessageDefaults,
    OnlySyncItemsConfirm,
    ReemitsDuplicates,
    ResyncKeepsStaleMembers,
    SerialLessSyncKeepsInFlight,
    SerialLessSyncNotComplete,
    SuspendedClears,
    SynthesizedLeaveKeepsId,
    SynthesizedTieGoesToExisting,
)
from presence_conformance.reference_impl.client_presence import ClientPresence
from test_client_presence import NOW, SEQUENCES, outcome

CAUGHT_BY: dict[type[ClientMutant], tuple[str, ...]] = {
    IgnoresNewness: ("newness-older-serial-discarded", "leave-during-sync-kept-absent"),
    ComparesIdsAsStrings: ("newness-serial-numeric-not-lexicographic",),
    AlwaysComparesTimestamps: (
        "newness-serial-beats-timestamp",
        "item-fields-default-from-protocol-message",
    ),
    SynthesizedTieGoesToExisting: ("server-synthesized-leave-by-timestamp",),
    ForgetsResidualLeaves: (
        "residual-member-leaves-at-sync-end",
        "sync-without-channel-serial-is-whole",
    ),
    KeepsAbsentEntries: ("absent-purged-at-sync-end",),
    ResyncKeepsStaleMembers: (
        "new-sequence-discards-sync-in-flight",
        "attached-with-has-presence-restarts-sync-in-flight",
    ),
    LeaveDuringSyncDeletes: ("leave-during-sync-kept-absent",),
    LeaveDuringSyncLeftResidual: ("leave-during-sync-no-second-leave",),
    SerialLessSyncNotComplete: ("sync-without-channel-serial-is-whole",),
    SerialLessSyncKeepsInFlight: ("sync-without-channel-serial-replaces-sync-in-flight",),
    IgnoresCursor: ("sync-in-flight-not-complete", "sync-in-pages-completes-at-empty-cursor"),
    AttachedWithoutPresenceKeeps: ("attached-without-has-presence-clears-with-leaves",),
    DetachedEmitsLeaves: ("detached-clears-silently", "channel-error-fails-and-clears-silently"),
    SuspendedClears: ("suspended-keeps-map-and-resync-emits-only-changes",),
    OnlySyncItemsConfirm: ("live-presence-confirms-during-sync",),
    NoProtocolMessageDefaults: ("item-fields-default-from-protocol-message",),
    LeaveForUnknownEmitted: ("leave-for-unknown-member-ignored",),
    ReemitsDuplicates: (
        "duplicate-delivery-not-reemitted",
        "suspended-keeps-map-and-resync-emits-only-changes",
    ),
    SynthesizedLeaveKeepsId: ("residual-member-leaves-at-sync-end",),
}

MUTANTS: list[type[ClientMutant]] = list(CLIENT_MUTANTS.values())
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
    assert set(CAUGHT_BY) == set(MUTANTS)


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.__name__ for m in MUTANTS])
def test_mutant_caught_by_its_sequences(mutant: type[ClientMutant]) -> None:
    assert CAUGHT_BY.get(mutant), f"{mutant.__name__} names no sequence"
    assert mutant.breaks, f"{mutant.__name__} names no spec point"
    for name in CAUGHT_BY[mutant]:
        assert deviates(mutant(clock=lambda: NOW), BY_NAME[name]), (
            f"{mutant.__name__} not caught by {name}"
        )


@pytest.mark.parametrize("case", SEQUENCES, ids=[s["name"] for s in SEQUENCES])
def test_oracle_passes_every_sequence(case: dict[str, Any]) -> None:
    assert not deviates(ClientPresence(clock=lambda: NOW), case)


def test_every_sequence_names_a_spec_point() -> None:
    for case in SEQUENCES:
        assert all(isinstance(p, str) and p[:2] in ("RT", "TP") for p in case["points"])

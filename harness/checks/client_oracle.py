"""Checks of a client's presence map against the client-side oracle, after `server:` steps.

For each (client, channel) that server steps targeted (`record.staged`), the frames the server
sent that connection are replayed through `ClientPresence` (`reference_impl/client_presence.py`)
and cut at the observations (`record/staged.py`). After each step the client must have shown
the oracle's events (per member in the oracle's order; across members in any order, RTP2c: a
sync gives no order), `get()` the oracle's members, and `sync_complete()` true once the oracle's
sync has ended. Member data is compared as decoded by a conforming client (RSL6a: the oracle
decodes `json`, `base64`, `utf-8`) under the project's data equality (`data_equal`). Where the spec leaves a choice open the oracle offers both readings
(`ORACLE_OPTIONS`): a client passes a step if one of them matches it.

A mismatch is reported against the `client.*` requirements the server step is tagged with (the
situation it stages), or the scenario's when the step has none; `client.sync-complete` for
`sync_complete()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from presence_conformance.harness.checks.base import CheckContext, check
from presence_conformance.harness.record.records import Seen, jsonable
from presence_conformance.harness.record.staged import (
    ORACLE_OPTIONS,
    Mark,
    StagedRecord,
    same_members,
)
from presence_conformance.harness.results import Violation
from presence_conformance.reference_impl.client_presence import Event
from presence_conformance.reference_impl.types import data_equal

__all__ = ["CLIENT_REQUIREMENTS"]

CLIENT_REQUIREMENTS = (
    "client.older-message-discarded",
    "client.late-message-per-member",
    "client.duplicate-discarded",
    "client.synthesized-leave-by-timestamp",
    "client.sync-items-compared",
    "client.staged-member-stored",
    "client.leave-during-sync-absent",
    "client.new-sync-sequence-discards",
    "client.sync-ends-on-empty-cursor",
    "client.sync-without-channel-serial",
    "client.sync-purges-unseen-members",
    "client.attached-without-presence-clears",
    "client.item-fields-default-from-frame",
    "client.detached-reattach-resyncs",
    "client.channel-error-clears-silently",
    "client.data-decoded",
)


def _event_key(event: Event) -> tuple[Any, ...]:
    m = event.member
    base = (event.action.value, m.client_id, m.connection_id)
    if event.synthesized:
        return base
    return (*base, m.id, m.timestamp)


def _seen_key(seen: Seen, synthesized: bool) -> tuple[Any, ...]:
    base = (seen.action, seen.client_id, seen.connection_id)
    return base if synthesized else (*base, seen.id, seen.timestamp)


def _events_match(expected: Sequence[Event], observed: Sequence[Seen]) -> bool:
    """Per member (clientId, connectionId), the same events in the same order; members may
    interleave in any order."""
    if len(expected) != len(observed):
        return False
    by_member: dict[tuple[Any, Any], list[Event]] = {}
    for event in expected:
        by_member.setdefault((event.member.client_id, event.member.connection_id), []).append(event)
    seen_by: dict[tuple[Any, Any], list[Seen]] = {}
    for seen in observed:
        seen_by.setdefault((seen.client_id, seen.connection_id), []).append(seen)
    if set(by_member) != set(seen_by):
        return False
    for key, events in by_member.items():
        member_seen = seen_by[key]
        if len(member_seen) != len(events):
            return False
        for event, s in zip(events, member_seen, strict=True):
            if _event_key(event) != _seen_key(s, event.synthesized) or not data_equal(
                event.member.data, s.data
            ):
                return False
    return True


def _members(items: Iterable[Any]) -> list[tuple[Any, Any, Any]]:
    return sorted((m.client_id, m.connection_id, jsonable(m.data)) for m in items)


def _describe(events: Sequence[Event]) -> list[dict[str, Any]]:
    return [
        {
            "action": e.action.value,
            "clientId": e.member.client_id,
            "connectionId": e.member.connection_id,
            "data": jsonable(e.member.data),
            **({} if e.synthesized else {"id": e.member.id, "timestamp": e.member.timestamp}),
            **({"synthesized": True} if e.synthesized else {}),
        }
        for e in events
    ]


def _targets(ctx: CheckContext, mark: Mark) -> tuple[str, ...]:
    tags = [r for r in mark.requirements if r in CLIENT_REQUIREMENTS]
    if not tags:
        tags = [r for r in ctx.record.scenario.requirements if r in CLIENT_REQUIREMENTS]
    return tuple(tags)


@check(*CLIENT_REQUIREMENTS)
def client_presence_matches_oracle(ctx: CheckContext) -> Iterable[Violation]:
    """After each server step, the client's events and get() are what the client-side oracle
    computes from the frames the server sent (under one of the readings the spec allows)."""
    for staged in ctx.record.staged.values():
        yield from _judge(ctx, staged)


def _judge(ctx: CheckContext, staged: StagedRecord) -> Iterable[Violation]:
    replays = [staged.replay(options) for options in ORACLE_OPTIONS]
    if replays[0].error is not None:
        return
    previous = 0
    # one reading must fit every step of the case; report against the default reading
    alive = list(range(len(replays)))
    first_bad: dict[int, tuple[Mark, str, Any, Any]] = {}
    for number, mark in enumerate(staged.marks):
        observed = staged.events[previous : mark.events]
        previous = mark.events
        still = []
        for i in alive:
            segment = replays[i].segments[number]
            problem: tuple[str, Any, Any] | None = None
            if not _events_match(segment.events, observed):
                problem = (
                    "events",
                    _describe(segment.events),
                    [s.json for s in observed],
                )
            elif mark.get is not None and not same_members(mark.get, segment.members):
                problem = ("get", _members(segment.members), _members(mark.get))
            if problem is None:
                still.append(i)
            elif i not in first_bad:
                first_bad[i] = (mark, *problem)
        alive = still
        if not alive:
            break
    if alive:  # some reading fits every step
        yield from _sync_complete(ctx, staged, replays[alive[0]].segments)
        return
    mark, what, expected, observed = first_bad.get(0) or next(iter(first_bad.values()))
    for requirement in _targets(ctx, mark):
        yield ctx.violation(
            requirement,
            f"{staged.client} on {staged.channel!r} after {mark.label}: the client's "
            + (
                "events are not those the client-side oracle computes from the frames the "
                "server sent (per member, in order)"
                if what == "events"
                else "get() is not the members the client-side oracle holds"
            ),
            expected=expected,
            observed=observed,
            step=mark.step,
            history_index=mark.history_index,
        )


def _sync_complete(
    ctx: CheckContext, staged: StagedRecord, segments: Sequence[Any]
) -> Iterable[Violation]:
    for mark, segment in zip(staged.marks, segments, strict=True):
        if mark.sync_complete is None or not segment.sync_complete:
            continue
        if mark.sync_complete is not True:
            for requirement in _targets(ctx, mark):
                if requirement in (
                    "client.sync-ends-on-empty-cursor",
                    "client.sync-without-channel-serial",
                    "client.new-sync-sequence-discards",
                ):
                    yield ctx.violation(
                        requirement,
                        f"{staged.client} on {staged.channel!r} after {mark.label}: the sync "
                        "has ended, but sync_complete() is not true",
                        expected=True,
                        observed=mark.sync_complete,
                        step=mark.step,
                        history_index=mark.history_index,
                    )

"""get() checks: the members returned, filtered by clientId and connectionId, with action present,
and a get(waitForSync=false) that returns no member the channel never had."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from presence_conformance.harness.checks.analysis import (
    channel_events,
    other_channel,
    refused_effect,
)
from presence_conformance.harness.checks.base import CheckContext, check, problem_requirements
from presence_conformance.harness.record.records import GetRecord, Seen
from presence_conformance.harness.results import Violation
from presence_conformance.reference_impl.types import Action, PresenceMessage, data_equal


def filter_requirement(rec: GetRecord) -> str | None:
    if rec.client_id_filter is not None and rec.connection_id_filter is not None:
        return "get.filter-both"
    if rec.client_id_filter is not None:
        return "get.filter-client-id"
    if rec.connection_id_filter is not None:
        return "get.filter-connection-id"
    return None


def _member_events(ctx: CheckContext, rec: GetRecord, member_key: str) -> list[PresenceMessage]:
    """The member's events on the channel up to the get's step."""
    step = rec.step
    out = []
    for event in channel_events(ctx, rec.channel):
        origin = ctx.record.origins.get(event.model_id)
        if (
            step is not None
            and origin is not None
            and origin.step is not None
            and origin.step > step
        ):
            continue
        if event.member_key == member_key:
            out.append(event)
    return out


def _missing_requirement(
    ctx: CheckContext, rec: GetRecord, member: PresenceMessage, observed: list[Seen]
) -> str:
    if rec.fresh:
        return "get.wait-for-sync-default" if rec.wait_for_sync is None else "sync.late-joiner-get"
    if member.connection_id == rec.connection_id:
        return "enter.echoed-to-own-connection"
    for event in channel_events(ctx, rec.channel):
        if (
            event.action is Action.LEAVE
            and event.client_id == member.client_id
            and event.connection_id != member.connection_id
        ):
            return "member.independent-leave"
    if any(
        s.client_id == member.client_id and s.connection_id != member.connection_id
        for s in observed
    ):
        return "member.key"
    requirement = filter_requirement(rec)
    if requirement:
        return requirement
    life: list[PresenceMessage] = []
    for event in _member_events(ctx, rec, member.member_key):
        life = [] if event.action is Action.LEAVE else [*life, event]
    first = ctx.record.origins.get(life[0].model_id) if life else None
    if first is not None and first.kind == "update":
        return "update.when-not-present-enters"
    return "enter.adds-member"


def _extra_requirement(ctx: CheckContext, rec: GetRecord, seen: Seen) -> str:
    requirement = filter_requirement(rec)
    if requirement and (
        (rec.client_id_filter is not None and seen.client_id != rec.client_id_filter)
        or (rec.connection_id_filter is not None and seen.connection_id != rec.connection_id_filter)
    ):
        return requirement
    if other_channel(ctx, seen) is not None:
        return "order.channel-isolation"
    events = _member_events(ctx, rec, seen.member_key)
    if events and events[-1].action is Action.LEAVE:
        origin = ctx.record.origins.get(events[-1].model_id)
        kind = origin.kind if origin else "leave"
        return {"drop": "disconnect.leave-synthesized", "close": "disconnect.close-leaves"}.get(
            kind, "leave.removes-member"
        )
    if not rec.expected and requirement is None:
        return "get.empty-channel"
    return requirement or "get.returns-members"


def diagnose(ctx: CheckContext, rec: GetRecord) -> list[tuple[str, str, Seen | None]]:
    """(requirement, message, item) for each way `rec.observed` differs from the model's members,
    data differences excepted (data_round_trip reports those)."""
    observed = rec.observed or []
    out: list[tuple[str, str, Seen | None]] = []
    expected = {m.member_key: m for m in rec.expected}
    counts = Counter(s.member_key for s in observed)
    for key, count in counts.items():
        if count > 1:
            item = next(s for s in observed if s.member_key == key)
            out.append(("get.returns-members", f"member {key} returned {count} times", item))
    for key, member in expected.items():
        if key not in counts:
            out.append(
                (
                    _missing_requirement(ctx, rec, member, observed),
                    f"member {member.client_id!r} (connection {member.connection_id}) is missing",
                    None,
                )
            )
    for seen in observed:
        if seen.member_key in expected or refused_effect(ctx, seen) is not None:
            continue
        out.append(
            (
                _extra_requirement(ctx, rec, seen),
                f"member {seen.client_id!r} (connection {seen.connection_id}) should not be there",
                seen,
            )
        )
    return out


def _describe(rec: GetRecord) -> str:
    filters = [
        f"{k}={v!r}"
        for k, v in (
            ("clientId", rec.client_id_filter),
            ("connectionId", rec.connection_id_filter),
            ("waitForSync", rec.wait_for_sync),
        )
        if v is not None
    ]
    return f"get({', '.join(filters)}) by {rec.client!r} on {rec.channel!r}"


def members_json(members: list[PresenceMessage]) -> list[dict]:
    return [m.to_json() for m in members]


@check(
    "get.returns-members",
    "get.filter-client-id",
    "get.filter-connection-id",
    "get.filter-both",
    "get.empty-channel",
    "get.wait-for-sync-default",
    "sync.late-joiner-get",
    "enter.adds-member",
    "enter.echoed-to-own-connection",
    "update.when-not-present-enters",
    "leave.removes-member",
    "member.key",
    "member.independent-leave",
    "disconnect.leave-synthesized",
    "disconnect.close-leaves",
    "order.channel-isolation",
)
def get_members(ctx: CheckContext) -> Iterator[Violation]:
    """A get() step returns exactly the model's members (per the filters used)."""
    for rec in ctx.record.gets:
        if rec.kind != "step" or rec.observed is None or rec.wait_for_sync is False:
            continue
        for requirement, message, item in diagnose(ctx, rec):
            yield ctx.violation(
                requirement,
                f"{_describe(rec)}: {message}",
                expected=members_json(rec.expected),
                observed=[s.json for s in rec.observed],
                step=rec.step,
                history_index=item.history_index if item else rec.history_index,
            )


@check("get.action-present")
def get_action_present(ctx: CheckContext) -> Iterator[Violation]:
    """Every member a get() returns has action present."""
    for rec in ctx.record.gets:
        for seen in rec.observed or ():
            if seen.action != "present":
                yield ctx.violation(
                    "get.action-present",
                    f"{_describe(rec)}: member {seen.client_id!r} has action "
                    f"{seen.action if seen.action else seen.json.get('action')!r}",
                    expected="present",
                    observed=seen.json,
                    step=rec.step,
                    history_index=seen.history_index,
                )


@check("get.wait-for-sync-false")
def get_without_sync(ctx: CheckContext) -> Iterator[Violation]:
    """get(waitForSync=false) returns a subset of the members the client may know of: those
    present when the call attaches the channel (a member that left before the call and before
    the attach cannot be in it), or, on an attached channel, those the channel has had."""
    for rec in ctx.record.gets:
        if rec.wait_for_sync is not False or rec.observed is None:
            continue
        for seen in rec.observed:
            if not any(
                m.member_key == seen.member_key and data_equal(m.data, seen.data)
                for m in rec.possible
            ):
                yield ctx.violation(
                    "get.wait-for-sync-false",
                    f"{_describe(rec)}: returned {seen.client_id!r} (connection "
                    f"{seen.connection_id}), not a member with that data it could know of"
                    + (" (the call attached the channel)" if rec.fresh else ""),
                    expected=members_json(rec.possible),
                    observed=seen.json,
                    step=rec.step,
                    history_index=seen.history_index,
                )


@check(explicit=True)
def get_expect(ctx: CheckContext) -> Iterator[Violation]:
    """A get step's `expect`: the members written, order free. A member whose leave was
    pending (its connection dropped, the grace not over: RTP2b1) may be returned or not: the
    server decides the grace (the harness is told it), so one still there is not unexpected
    unless the step expects that very member."""
    for rec in ctx.record.gets:
        if rec.expect is None or rec.observed is None or rec.op is None:
            continue
        pending = {m.member_key for m in rec.optional}
        remaining = [
            s
            for s in rec.observed
            if s.member_key not in pending
            or any(s.client_id == c and s.connection_id == k for c, k, _, _ in rec.expect)
        ]
        problems = []
        for client_id, connection_id, has_data, data in rec.expect:
            found = next(
                (
                    s
                    for s in remaining
                    if s.client_id == client_id
                    and s.connection_id == connection_id
                    and (not has_data or data_equal(s.data, data))
                ),
                None,
            )
            if found is None:
                other_data = any(
                    s.client_id == client_id and s.connection_id == connection_id for s in remaining
                )
                problems.append(
                    (
                        "data" if other_data else "count",
                        f"no member {client_id!r}" + (f" with data {data!r}" if has_data else ""),
                    )
                )
            else:
                remaining.remove(found)
        problems.extend(
            ("count", f"unexpected member {s.client_id!r}")
            for s in remaining
            if not any(s.client_id == c and s.connection_id == k for c, k, _, _ in rec.expect)
            and s.member_key not in pending
        )
        tags = ctx.record.step_requirements(rec.op.step)
        by_requirement: dict[str, list[str]] = {}
        for kind, problem in problems:
            for requirement in problem_requirements(tags, kind):
                by_requirement.setdefault(requirement, []).append(problem)
        for requirement, found_problems in by_requirement.items():
            yield ctx.violation(
                requirement,
                f"{rec.op.step.label}: " + "; ".join(found_problems),
                expected=[
                    {"clientId": c, "connectionId": k, **({"data": d} if h else {})}
                    for c, k, h, d in rec.expect
                ],
                observed=[s.json for s in rec.observed],
                step=rec.step,
                history_index=rec.history_index,
            )

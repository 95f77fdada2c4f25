"""Event checks: every listener receives exactly the events the model requires of it, each
member's in order, nothing else; open behaviours are noted, never failed."""

from __future__ import annotations

from collections.abc import Iterator

from presence_conformance.harness.checks.analysis import (
    EMITTED,
    classify_extra,
    classify_missing,
    describe_event,
    listener_alignments,
)
from presence_conformance.harness.checks.base import CheckContext, check, problem_requirements
from presence_conformance.harness.record.matching import Slot, accepted_actions
from presence_conformance.harness.record.records import Seen
from presence_conformance.harness.results import Violation
from presence_conformance.harness.scenario import ACTIONS
from presence_conformance.reference_impl.types import data_equal


@check(
    "enter.event-emitted",
    "update.event-emitted",
    "leave.event-emitted",
    "update.when-not-present-enters",
    "enter.echoed-to-own-connection",
    "sync.present-on-attach",
    "disconnect.leave-synthesized",
    "disconnect.close-leaves",
    "channel.detach-members-leave",
    "subscribe.all-actions",
    "subscribe.single-action",
    "subscribe.action-list",
    "subscribe.multiple-listeners",
    "subscribe.implicit-attach",
    "unsubscribe.action-listener",
    "unsubscribe.action",
    "unsubscribe.others-unaffected",
)
def missing_events(ctx: CheckContext) -> Iterator[Violation]:
    """An event the model requires a listener to receive never arrived."""
    for analysis in listener_alignments(ctx).values():
        rec = analysis.listener
        for slot in analysis.alignment.missing:
            requirement = classify_missing(ctx, rec, slot)
            expected = slot.ref
            yield ctx.violation(
                requirement,
                f"listener {rec.name!r} of {rec.client!r} on {rec.channel!r} never received the "
                f"{slot.event.action.value} of {slot.event.client_id!r} "
                f"(connection {slot.event.connection_id})",
                expected=describe_event(slot.event),
                observed=[s.json for s in rec.received],
                step=expected.step if expected else None,
                history_index=rec.received[-1].history_index if rec.received else None,
            )


@check(
    "order.exactly-once",
    "sync.no-duplicate-present",
    "order.channel-isolation",
    "disconnect.leave-synthesized",
    "leave.when-not-present",
    "unsubscribe.all",
    "unsubscribe.listener",
    "unsubscribe.action-listener",
    "unsubscribe.action",
    "subscribe.single-action",
    "subscribe.action-list",
)
def extra_events(ctx: CheckContext) -> Iterator[Violation]:
    """A listener received an event the model does not account for (a duplicate, an event of
    another channel, one its filter or an unsubscribe excludes, or one nothing caused)."""
    for analysis in listener_alignments(ctx).values():
        rec = analysis.listener
        for seen in analysis.alignment.extras:
            requirement = classify_extra(ctx, analysis, seen)
            if requirement is None:
                continue
            yield ctx.violation(
                requirement,
                f"listener {rec.name!r} of {rec.client!r} on {rec.channel!r} received an "
                f"unexpected {seen.action} of {seen.client_id!r} (connection {seen.connection_id})",
                observed=seen.json,
                step=seen.step,
                history_index=seen.history_index,
            )


@check("order.per-member")
def member_order(ctx: CheckContext) -> Iterator[Violation]:
    """A listener received one member's events out of the order they took effect."""
    for analysis in listener_alignments(ctx).values():
        rec = analysis.listener
        for seen, slot in analysis.alignment.late:
            yield ctx.violation(
                "order.per-member",
                f"listener {rec.name!r} received the {slot.event.action.value} of "
                f"{slot.event.client_id!r} after a later event of the same member",
                expected=describe_event(slot.event),
                observed=seen.json,
                step=seen.step,
                history_index=seen.history_index,
            )


@check(
    "message.client-id", "message.connection-id", "message.action", *sorted(set(EMITTED.values()))
)
def event_fields(ctx: CheckContext) -> Iterator[Violation]:
    """An event arrived with a wrong clientId, connectionId or action (data: data_round_trip)."""
    for analysis in listener_alignments(ctx).values():
        rec = analysis.listener
        for seen, slot, field in analysis.alignment.near:
            if field == "data":
                continue
            if field == "clientId":
                requirement = "message.client-id"
            elif field == "connectionId":
                requirement = "message.connection-id"
            elif seen.action not in ACTIONS:
                requirement = "message.action"
            else:
                kind = slot.origin.kind if slot.origin else slot.event.action.value
                requirement = EMITTED.get(kind, "message.action")
            yield ctx.violation(
                requirement,
                f"listener {rec.name!r} received the {slot.event.action.value} of "
                f"{slot.event.client_id!r} with a wrong {field}",
                expected=describe_event(slot.event),
                observed=seen.json,
                step=seen.step,
                history_index=seen.history_index,
            )


@check(
    "enter.when-present",
    "update.when-not-present-action",
    "leave.data-defaults-to-member-data",
    "unsubscribe.all-actions-listener-with-action",
)
def open_behaviours(ctx: CheckContext) -> Iterator[Violation]:
    """Where the specification leaves a choice, note the implementation's when it differs from
    the reference's (INFO), and a leave without the member's data (SHOULD)."""
    from presence_conformance.harness.checks.analysis import canonical_alignments

    noted: set[tuple[str, str]] = set()
    matches: list[tuple[Seen, Slot, tuple[str, ...]]] = []
    for analysis in listener_alignments(ctx).values():
        matches.extend(analysis.alignment.matched)
        unsubscribed = any(
            form in ("action-listener", "action") and actions
            for _, form, actions in analysis.listener.unsubscriptions
        )
        for seen, slot, _ in analysis.alignment.matched:
            if (
                slot.min == 0
                and unsubscribed
                and len(accepted_actions(slot.event, slot.origin)) == 1
                and (slot.event.id, "rtp7b") not in noted
            ):
                noted.add((slot.event.model_id, "rtp7b"))
                yield ctx.violation(
                    "unsubscribe.all-actions-listener-with-action",
                    f"after unsubscribe(action, listener) on listener {analysis.listener.name!r} "
                    f"subscribed to all actions, it still received {seen.action} events (the "
                    "reference stops them; both are allowed)",
                    observed=seen.json,
                    step=seen.step,
                    history_index=seen.history_index,
                )
    for _, alignment in canonical_alignments(ctx):
        matches.extend(alignment.matched)
    for seen, slot, devs in matches:
        for requirement in devs:
            key = (slot.event.model_id, requirement)  # once per event, however many saw it
            if key in noted:
                continue
            noted.add(key)
            if requirement == "leave.data-defaults-to-member-data":
                message = (
                    f"the leave of {slot.event.client_id!r} without data carried null, "
                    "not the member's data"
                )
            else:
                assert slot.origin is not None  # an action deviation is judged against its origin
                message = (
                    f"the {slot.origin.kind}() of {slot.event.client_id!r} was reported "
                    f"as {seen.action!r}; the reference reports {slot.event.action.value!r}"
                    " (both are allowed)"
                )
            yield ctx.violation(
                requirement,
                message,
                expected=describe_event(slot.event),
                observed=seen.json,
                step=seen.step,
                history_index=seen.history_index,
            )


@check(explicit=True)
def expected_events(ctx: CheckContext) -> Iterator[Violation]:
    """`expect_events`: the listener's events so far, per member in order, are those written."""
    for rec in ctx.record.expectations:
        problems = _compare_events(rec.expected, rec.observed)
        if not problems:
            continue
        tags = ctx.record.step_requirements(rec.step)
        by_requirement: dict[str, list[str]] = {}
        for kind, problem in problems:
            for requirement in problem_requirements(tags, kind):
                by_requirement.setdefault(requirement, []).append(problem)
        for requirement, found in by_requirement.items():
            yield ctx.violation(
                requirement,
                f"{rec.step.label}: listener {rec.listener!r}: " + "; ".join(found),
                expected=[
                    {"action": list(a), "clientId": c, **({"data": d} if has else {})}
                    for a, c, _, has, d in rec.expected
                ],
                observed=[s.json for s in rec.observed],
                step=rec.step.index,
                history_index=rec.history_index,
            )


def _compare_events(expected: list, observed: list[Seen]) -> list[tuple[str, str]]:
    """The differences, each with its kind (count, action, data: `problem_requirements`)."""
    groups: dict[tuple, list] = {}
    for item in expected:
        groups.setdefault((item[1], item[2]), []).append(item)
    problems = []
    used: set[int] = set()
    for (client_id, connections), items in groups.items():
        got = [
            s
            for s in observed
            if s.client_id == client_id and (not connections or s.connection_id in connections)
        ]
        used.update(id(s) for s in got)
        if len(got) != len(items):
            problems.append(
                ("count", f"{len(got)} event(s) of {client_id!r}, expected {len(items)}")
            )
            continue
        for n, (item, seen) in enumerate(zip(items, got, strict=True)):
            actions, _, _, has_data, data = item
            if seen.action not in actions:
                problems.append(
                    (
                        "action",
                        f"event {n + 1} of {client_id!r} is {seen.action!r}, expected "
                        f"{' or '.join(actions)}",
                    )
                )
            elif has_data and not data_equal(seen.data, data):
                problems.append(
                    (
                        "data",
                        f"event {n + 1} of {client_id!r} has data {seen.data!r}, expected {data!r}",
                    )
                )
    extra = [s for s in observed if id(s) not in used]
    if extra:
        problems.append(
            (
                "count",
                f"{len(extra)} event(s) of members not listed: "
                + ", ".join(f"{s.action} {s.client_id}" for s in extra[:5]),
            )
        )
    return problems

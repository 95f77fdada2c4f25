"""Analyses of a case record shared by several checks (computed once per case, cached).

- `listener_alignments`: each listener's received events matched to the model's deliveries;
- `canonical_alignments`: each canonical history read matched to the model's log;
- `refused_effect`: does an observed message show the effect of an operation the model refused?
- `classify_missing` / `classify_extra`: which requirement a missing or an extra event breaks,
  decided from the context (was the event delivered elsewhere? was the listener unsubscribed,
  filtered, on another channel?).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from presence_conformance.harness.checks.base import CheckContext
from presence_conformance.harness.record.matching import (
    Alignment,
    Slot,
    align,
    canonical_alignment,
    deviations,
)
from presence_conformance.harness.record.records import (
    CanonicalRecord,
    EventOrigin,
    ListenerKey,
    ListenerRecord,
    OpRecord,
    Seen,
)
from presence_conformance.reference_impl.types import Action, PresenceMessage, data_equal

EMITTED = {
    "enter": "enter.event-emitted",
    "update": "update.event-emitted",
    "leave": "leave.event-emitted",
    "present": "sync.present-on-attach",
    "drop": "disconnect.leave-synthesized",
    "close": "disconnect.close-leaves",
    "detach": "channel.detach-members-leave",
}
"""The requirement an event of each origin kind is delivered under."""


@dataclass
class ListenerAnalysis:
    listener: ListenerRecord
    slots: list[Slot]
    alignment: Alignment


def listener_alignments(ctx: CheckContext) -> dict[ListenerKey, ListenerAnalysis]:
    def compute() -> dict[ListenerKey, ListenerAnalysis]:
        out = {}
        for key, rec in ctx.record.listeners.items():
            slots = [Slot(e.event, e.origin, e.min_count, e.max_count, e) for e in rec.expected]
            out[key] = ListenerAnalysis(rec, slots, align(slots, rec.received))
        return out

    return ctx.cached("listener_alignments", compute)


def delivered_ids(ctx: CheckContext) -> set[tuple[str, str]]:
    """(model event id, receiving connection id) for every event some listener got, even mangled."""

    def compute() -> set[tuple[str, str]]:
        out = set()
        for analysis in listener_alignments(ctx).values():
            conn = analysis.listener.connection_id
            a = analysis.alignment
            for slot in [m[1] for m in a.matched] + [m[1] for m in a.late] + [n[1] for n in a.near]:
                out.add((slot.event.model_id, conn))
        return out

    return ctx.cached("delivered_ids", compute)


def canonical_alignments(ctx: CheckContext) -> list[tuple[CanonicalRecord, Alignment]]:
    def compute() -> list[tuple[CanonicalRecord, Alignment]]:
        return [
            (rec, canonical_alignment(rec, ctx.record.origins))
            for rec in ctx.record.canonicals
            if rec.observed is not None
        ]

    return ctx.cached("canonical_alignments", compute)


def channel_events(ctx: CheckContext, channel: str) -> list[PresenceMessage]:
    void = ctx.record.void
    return ctx.cached(
        f"events:{channel}",
        lambda: [e for e in ctx.record.model.history_all(channel) if e.id not in void],
    )


def member_channels(ctx: CheckContext) -> dict[str, set[str]]:
    """Member key -> the channels whose model log has an event of that member."""

    def compute() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for channel in ctx.record.scenario.channels:
            for event in channel_events(ctx, channel):
                out.setdefault(event.member_key, set()).add(channel)
        return out

    return ctx.cached("member_channels", compute)


def other_channel(ctx: CheckContext, seen: Seen) -> str | None:
    """The channel `seen` belongs to if it is not its own channel's member, else None."""
    channels = member_channels(ctx).get(seen.member_key, set())
    if seen.channel in channels or not channels:
        return None
    for channel in sorted(channels):
        for event in channel_events(ctx, channel):
            if event.member_key == seen.member_key and data_equal(event.data, seen.data):
                return channel
    return sorted(channels)[0]


def refused_effect(ctx: CheckContext, seen: Seen) -> OpRecord | None:
    """The refused operation whose effect `seen` shows (an event, member or history item that a
    refused enter/update/leave would have produced), if any."""
    for op in ctx.record.ops:
        if (
            op.attempted is None
            or op.channel != seen.channel
            or seen.history_index < (op.invoke_index or 0)
        ):
            continue
        kind, client_id, connection_id, data = op.attempted
        if seen.connection_id != connection_id:
            continue
        if client_id is not None and seen.client_id != client_id:
            continue
        if kind == "leave":
            if seen.action == "leave":
                return op
        elif seen.action in ("enter", "update", "present") and data_equal(seen.data, data):
            return op
    return None


def noop_leave(ctx: CheckContext, seen: Seen) -> OpRecord | None:
    """The leave of a member that was not present (which must emit nothing) `seen` shows."""
    if seen.action != "leave":
        return None
    for op in ctx.record.ops:
        if (
            op.kind == "leave"
            and op.status == "ok"
            and not op.events
            and op.model_error is None
            and op.channel == seen.channel
            and op.connection_id == seen.connection_id
        ):
            return op
    return None


def model_matches(
    ctx: CheckContext, seen: Seen
) -> list[tuple[PresenceMessage, EventOrigin | None]]:
    """Model events of `seen`'s channel that `seen` shows (for a present: the member states)."""
    out = []
    for event in channel_events(ctx, seen.channel):
        origin = ctx.record.origins.get(event.model_id)
        if seen.action == "present":
            if (
                event.action is not Action.LEAVE
                and event.member_key == seen.member_key
                and data_equal(event.data, seen.data)
            ):
                out.append((event, origin))
        elif deviations(seen, event, origin) is not None:
            out.append((event, origin))
    return out


def _listeners_on(ctx: CheckContext, rec: ListenerRecord) -> list[ListenerRecord]:
    return [
        r
        for r in ctx.record.listeners.values()
        if r.connection_id == rec.connection_id and r.channel == rec.channel
    ]


def echoes(ctx: CheckContext, connection_id: str) -> bool:
    """Did any listener on `connection_id` receive an event of one of that connection's own
    members (an echo; a `present` from a sync is not one)?"""
    echoing: set[str] = ctx.cached(
        "echoing_connections",
        lambda: {
            rec.connection_id
            for rec in ctx.record.listeners.values()
            if any(
                s.connection_id == rec.connection_id and s.action != "present" for s in rec.received
            )
        },
    )
    return connection_id in echoing


def classify_missing(ctx: CheckContext, rec: ListenerRecord, slot: Slot) -> str:
    """The requirement broken by `rec` not receiving `slot`'s event."""
    origin = slot.origin
    kind = origin.kind if origin else slot.event.action.value
    if kind in ("present", "drop", "close", "detach"):
        return EMITTED[kind]
    delivered = delivered_ids(ctx)
    event_id = slot.event.id
    # a connection that never hears its own members' events does not echo (the SHOULD); one that
    # does, and misses one, lost an event like any other listener (the MUST it breaks)
    if slot.event.connection_id == rec.connection_id and not echoes(ctx, rec.connection_id):
        return "enter.echoed-to-own-connection"
    got_elsewhere = any(eid == event_id for eid, _ in delivered)
    if not got_elsewhere:
        if kind == "update" and origin is not None and not origin.was_present:
            return "update.when-not-present-enters"
        return EMITTED.get(kind, "order.exactly-once")
    step = slot.ref.step if slot.ref is not None else None

    def before(s: int | None) -> bool:
        return step is None or s is None or s <= step

    forms = [form for s, form, _ in rec.unsubscriptions if before(s)]
    if "action-listener" in forms:
        return "unsubscribe.action-listener"
    if "action" in forms:
        return "unsubscribe.action"
    for other in _listeners_on(ctx, rec):
        if other is not rec and any(
            before(s) and form in ("listener", "action-listener")
            for s, form, _ in other.unsubscriptions
        ):
            return "unsubscribe.others-unaffected"
    if not rec.received and rec.attach_step is not None:
        return "subscribe.implicit-attach"
    filters = [actions for s, actions in rec.subscriptions if before(s)]
    action = slot.event.action.value
    if filters and None not in filters:
        matching = [f for f in filters if f is not None and action in f]
        if matching:
            return "subscribe.single-action" if len(matching[0]) == 1 else "subscribe.action-list"
    if len(_listeners_on(ctx, rec)) > 1:
        return "subscribe.multiple-listeners"
    return "subscribe.all-actions"


def classify_extra(ctx: CheckContext, analysis: ListenerAnalysis, seen: Seen) -> str | None:
    """The requirement broken by an event `seen` that no delivery accounts for; None when the
    event is the effect of a refused operation (the errors check reports those)."""
    rec = analysis.listener
    if refused_effect(ctx, seen) is not None:
        return None
    if noop_leave(ctx, seen) is not None:
        return "leave.when-not-present"
    if other_channel(ctx, seen) is not None:
        return "order.channel-isolation"
    for slot in analysis.slots:
        if deviations(seen, slot.event, slot.origin) is not None:  # a copy too many
            kind = slot.origin.kind if slot.origin else ""
            if kind == "present":
                return "sync.no-duplicate-present"
            if kind == "drop":
                return "disconnect.leave-synthesized"
            return "order.exactly-once"
    matches = model_matches(ctx, seen)
    if matches:
        _, origin = matches[-1]
        step = origin.step if origin else None
        covering = [
            form
            for s, form, actions in rec.unsubscriptions
            if (step is None or s <= step) and (actions is None or seen.action in actions)
        ]
        if covering:
            return f"unsubscribe.{covering[-1]}"
        filters = [actions for s, actions in rec.subscriptions if step is None or s <= step]
        chosen = [f for f in filters if f is not None]
        if filters and len(chosen) == len(filters) and not any(seen.action in f for f in chosen):
            return (
                "subscribe.single-action"
                if all(len(f) == 1 for f in chosen)
                else "subscribe.action-list"
            )
        if seen.action == "present":
            return "sync.no-duplicate-present"
    return "order.exactly-once"


def causal_ops(ctx: CheckContext) -> dict[str, OpRecord]:
    """Model event id -> the enter, update or leave that produced it, for the operations the
    implementation acknowledged (their invoke and completion are in the history)."""

    def compute() -> dict[str, OpRecord]:
        return {
            event.model_id: op
            for op in ctx.record.ops
            if op.kind in ("enter", "update", "leave")
            and op.status == "ok"
            and op.invoke_index is not None
            and op.done_index is not None
            for event in op.events
        }

    return ctx.cached("causal_ops", compute)


def causally_before(ctx: CheckContext, first: str | None, then: str | None) -> bool:
    """True if the operation of model event `first` had completed before the operation of
    model event `then` was issued: whatever their timestamps, `first` is the older event.
    Operations in flight together (a `concurrently` block) are not ordered."""
    if first is None or then is None:
        return False
    ops = causal_ops(ctx)
    a, b = ops.get(first), ops.get(then)
    if a is None or b is None or a is b:
        return False
    assert a.done_index is not None and b.invoke_index is not None  # causal_ops keeps those
    return a.done_index < b.invoke_index


def canonical_events(ctx: CheckContext, rec: CanonicalRecord) -> dict[int, str]:
    """id(item) -> model event id, for the items of a canonical history matched to the model's
    log (in order or late)."""

    def compute() -> dict[int, str]:
        for canonical, alignment in canonical_alignments(ctx):
            if canonical is rec:
                pairs = [(s, slot) for s, slot, _ in alignment.matched] + alignment.late
                return {id(s): slot.event.model_id for s, slot in pairs}
        return {}

    return ctx.cached(f"canonical_events:{id(rec)}", compute)


def describe_event(event: PresenceMessage) -> dict:
    return {
        "action": event.action.value,
        "clientId": event.client_id,
        "connectionId": event.connection_id,
        "data": event.data,
    }


def first_index(items: Iterable[Seen]) -> int | None:
    return min((s.history_index for s in items), default=None)

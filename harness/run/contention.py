"""Operations of one member in flight together: enters and updates of one member racing in a
`concurrently` block.

The server applies operations in flight together in some order, and the specification leaves
which one open: only the results of the calls are defined, not their order (RTN7a acknowledges
each message; nothing orders two calls the caller made together). Enters and updates of one
member differ only in that order: each publishes one event, every listener receives each once,
per member in the order the server applied them (RTP2a, RTP2b2: a presence map keeps the newest),
and the member ends with the data of the last one applied (RTP2d2). An enter applied while the
member is already present may be reported as update, an update while absent as enter (RTP8,
RTP9b: enter.when-present, update.when-not-present-action).

The model applies the block's operations in the block's order, their origins accepting either
action (`OpRecord.contested`). Once the block's deliveries have arrived, `Contention.resolve`
learns the order the implementation applied from what it showed (the order one listener received
the member's events, else the member's data in a get(): the last one applied), tells the model
(`PresenceModel.apply_order`), and makes each event's origin, and who must receive it, exact
for that order (`Deliveries.narrow`). Every other listener, every later get and the history are
then judged against that one serialization: two listeners that disagree, or a final state that
is not the last event delivered, are still violations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from presence_conformance.harness.record.matching import accepted_actions
from presence_conformance.harness.record.records import EventOrigin, OpRecord, Seen
from presence_conformance.harness.run.calls import Calls
from presence_conformance.harness.run.deliveries import Deliveries
from presence_conformance.harness.run.state import CaseState
from presence_conformance.harness.scenario import Step
from presence_conformance.reference_impl.types import Action, PresenceMessage, data_equal

__all__ = ["RACING", "Contention", "contested_steps"]

RACING = frozenset({"enter", "update", "enter_client", "update_client"})
"""Step kinds that may race on one member in a `concurrently` block."""


def _member(step: Step) -> tuple[str | None, str | None, str | None]:
    on_behalf = step.args.get("client_id") if step.kind.endswith("_client") else None
    return (step.client, step.channel, on_behalf)


def contested_steps(steps: Sequence[Step]) -> set[int]:
    """The positions (`Step.sub`) of the steps of a block that race another step on their
    member (the loader allows only enters and updates to)."""
    by_member: dict[tuple[str | None, str | None, str | None], list[Step]] = {}
    for step in steps:
        if step.kind in RACING:
            by_member.setdefault(_member(step), []).append(step)
    return {s.sub or 0 for group in by_member.values() if len(group) > 1 for s in group}


class Contention:
    """Learns the order in which an implementation applied a block's racing operations."""

    def __init__(self, case: CaseState, calls: Calls, deliveries: Deliveries) -> None:
        self.case = case
        self.calls = calls
        self.deliveries = deliveries

    async def resolve(self, block: Step, ops: Sequence[OpRecord]) -> None:
        """After the block's deliveries: for each member raced on, the order its operations
        were applied, told to the model and to the record (see the module docstring)."""
        groups: dict[tuple[str | None, str | None, str | None], list[OpRecord]] = {}
        for op in ops:
            if op.contested and op.status == "ok" and op.model_error is None and op.events:
                groups.setdefault(_member(op.step), []).append(op)
        for group in groups.values():
            if len(group) > 1:
                await self._resolve(block, group)

    async def _resolve(self, block: Step, group: list[OpRecord]) -> None:
        case = self.case
        channel = group[0].channel
        assert channel is not None
        events = [op.events[0] for op in group]
        order = self._order_from_listeners(block, channel, events)
        how = "listener"
        if order is None:
            order = await self._order_from_get(group[0], channel, events)
            how = "get"
        if order is None:
            order, how = list(range(len(events))), "unknown (the block's order)"
        ordered = [events[i] for i in order]
        if order != sorted(order):
            case.model.apply_order(channel, [e.model_id for e in ordered])
        self._exact_origins([group[i] for i in order], ordered)
        case.history.record(
            "info",
            "runner",
            "contention",
            {
                "member": events[0].member_key,
                "channel": channel,
                "applied": [group[i].step.path for i in order],
                "learnt_from": how,
            },
            block.index,
        )

    def _order_from_listeners(
        self, block: Step, channel: str, events: list[PresenceMessage]
    ) -> list[int] | None:
        """The order a listener on the channel received the member's events in the block."""
        key = events[0].member_key
        for rec in self.case.record.listeners.values():
            if rec.channel != channel:
                continue
            got = [s for s in rec.received if s.member_key == key and s.step == block.index]
            # events of earlier steps issued with `wait: false` may arrive during the block:
            # they precede the block's (RTP2a), so the block's are the last ones
            order = _match(got[len(got) - len(events) :], events) if got else None
            if order is not None:
                return order
        return None

    async def _order_from_get(
        self, op: OpRecord, channel: str, events: list[PresenceMessage]
    ) -> list[int] | None:
        """Without a listener: the member's data in get() on its own connection names the last
        operation applied (the others' order leaves no trace but their events). Read until the
        same candidate is read over a settled implementation, or across a quiet window."""
        case = self.case
        state = case.clients[op.client or ""]
        if state.conn is None or not state.connected:
            return None
        key = events[0].member_key
        probe = OpRecord(op.step, op.client, channel, state.connection_id)
        window = max(case.settings.poll_interval * 4, 0.3)
        deadline = case.deadline(case.wait_budget)
        last: tuple[int, float] | None = None
        while case.loop.time() < deadline:
            result = await self.calls.quiet_call(
                probe, state, "get (applied order)", lambda p: p.get(), record=False
            )
            found = None
            if isinstance(result, list | tuple):
                for raw in result:
                    seen = Seen.read(raw, "get", 0, None, channel)
                    if seen.member_key == key:
                        found = _last_index(seen, events)
            now = case.loop.time()
            if found is not None:
                if await case.settled() or (
                    last is not None and last[0] == found and now - last[1] >= window
                ):
                    rest = [i for i in range(len(events)) if i != found]
                    return [*rest, found]
                if last is None or last[0] != found:
                    last = (found, now)
            await asyncio.sleep(case.settings.poll_interval)
        return None

    def _exact_origins(self, ops: list[OpRecord], ordered: list[PresenceMessage]) -> None:
        """Each event's origin as applied in this order: the first found the member as it was
        before the block, the others present; the expected deliveries follow the order."""
        record = self.case.record
        # the model applied them in the block's order: the first in it saw the member as before
        prior = bool(min(ops, key=lambda o: o.step.sub or 0).was_present)
        rank: dict[str, int] = {}
        for position, (op, event) in enumerate(zip(ops, ordered, strict=True)):
            was_present = prior if position == 0 else True
            op.was_present = was_present
            old = record.origins[event.model_id]
            record.origins[event.model_id] = EventOrigin(
                old.kind, old.step, old.channel, was_present, old.data_given
            )
            rank[event.model_id] = position
        for expected in record.expected:
            if expected.event.id in rank:
                expected.origin = record.origins[expected.event.model_id]
        self._exact_deliveries(ordered)
        _reorder(record.expected, rank)
        for rec in record.listeners.values():
            _reorder(rec.expected, rank)

    def _exact_deliveries(self, ordered: list[PresenceMessage]) -> None:
        """Who must receive each event, now that its actions are known: while the order was
        open, a listener filtered on enter or on update may or may not have got an event that
        either action could report (min 0); now it must get one reported only with its action
        (RTP6b), and one that the order leaves reportable either way stays open."""
        case = self.case
        record = case.record
        for event in ordered:
            origin = record.origins[event.model_id]
            counts: dict[tuple[str, str], tuple[int, int]] = {}
            actions = accepted_actions(event, origin)
            for action in actions:
                shown = event.with_action(Action(action))
                per = {
                    (d.connection_id, d.listener): (d.min_count, d.max_count)
                    for d in case.model.deliveries_for(origin.channel, shown)
                }
                for key in per.keys() | counts.keys():
                    low, high = per.get(key, (0, 0))
                    if action == actions[0]:
                        counts[key] = (low, high)
                    else:
                        old_low, old_high = counts.get(key, (0, 0))
                        counts[key] = (min(old_low, low), max(old_high, high))
            for expected in record.expected:
                if expected.event.id == event.id:
                    self.deliveries.narrow(expected, *counts.get(expected.listener, (0, 0)))


def _match(got: list[Seen], events: list[PresenceMessage]) -> list[int] | None:
    """The candidates in the order `got` shows them (matched by data), or None unless each was
    received once."""
    if len(got) != len(events):
        return None
    used: list[int] = []
    for seen in got:
        index = next(
            (
                i
                for i, event in enumerate(events)
                if i not in used and data_equal(seen.data, event.data)
            ),
            None,
        )
        if index is None:
            return None
        used.append(index)
    return used


def _last_index(seen: Seen, events: list[PresenceMessage]) -> int | None:
    """The candidate whose data the member shows (the last of equal ones)."""
    found = None
    for i, event in enumerate(events):
        if data_equal(seen.data, event.data):
            found = i
    return found


def _reorder(items: list, rank: dict[str, int]) -> None:
    """Put the items about the ranked events, in place, in the rank's order (stable)."""
    positions = [i for i, e in enumerate(items) if e.event.id in rank]
    chosen = sorted((items[i] for i in positions), key=lambda e: rank[e.event.id])
    for position, item in zip(positions, chosen, strict=True):
        items[position] = item

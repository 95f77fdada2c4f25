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

A leave racing enters or updates of its member (or another leave) changes which events there
are, not only their order: a leave applied while the member is absent does nothing (RTP10d: no
event), an enter after it adds the member again, an update after it enters it (RTP9b), and the
member ends present or absent. For such a group (`Contention.open`) nothing is expected while
the block runs; afterwards the runner learns the order from a listener on the channel that
hears every action (the member's events in the block: one order's complete sequence, waiting
while another order could still extend it), else from the member's final state in get() on
its own connection; the model takes back the block's events of the member
(`PresenceModel.retract`) and applies the operations again in that order, so each event, its
origin and who must receive it are exactly those of that order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from presence_conformance.harness.record.matching import accepted_actions
from presence_conformance.harness.record.records import (
    EventOrigin,
    ListenerRecord,
    OpRecord,
    Seen,
)
from presence_conformance.harness.run.calls import Calls
from presence_conformance.harness.run.clients import ClientState
from presence_conformance.harness.run.deliveries import Deliveries
from presence_conformance.harness.run.poll import Pauses
from presence_conformance.harness.run.publish import plan_model_publish
from presence_conformance.harness.run.state import CaseState
from presence_conformance.harness.scenario import Step
from presence_conformance.reference_impl.types import (
    Action,
    PresenceMessage,
    data_equal,
    member_key,
)

__all__ = ["RACING", "Contention", "contested_steps"]

RACING = frozenset({"enter", "update", "leave", "enter_client", "update_client", "leave_client"})
"""Step kinds that may race on one member in a `concurrently` block."""

_LEAVES = frozenset({"leave", "leave_client"})

Member = tuple[str | None, str | None, str | None]


@dataclass(frozen=True)
class _Candidate:
    """One order of a group with a leave: what each listener hearing every action receives of
    the member (("leave" or "present", data, the leave's data was given)) and how it ends."""

    order: tuple[int, ...]
    events: tuple[tuple[str, Any, bool], ...]
    final: tuple[bool, Any]  # (present, data)


def _candidates(ops: Sequence[OpRecord], prior: tuple[bool, Any]) -> list[_Candidate]:
    """Every order of `ops` (one member's operations), from the member's state `prior`."""
    out: list[_Candidate] = []
    for order in itertools.permutations(range(len(ops))):
        present, data = prior
        events: list[tuple[str, Any, bool]] = []
        for i in order:
            step = ops[i].step
            given = step.args.get("data")
            if step.kind in _LEAVES:
                if present:
                    events.append(
                        ("leave", given if given is not None else data, given is not None)
                    )
                    present, data = False, None
            else:
                events.append(("present", given, True))
                present, data = True, given
        out.append(_Candidate(order, tuple(events), (present, data)))
    return out


def _shows(got: Sequence[Seen], events: Sequence[tuple[str, Any, bool]]) -> bool:
    """True if `got` (a listener's events of the member) ends with `events`: the kinds in order,
    and the data (a leave without data given may carry null: RTP10a, SHOULD)."""
    if len(got) < len(events):
        return False
    tail = got[len(got) - len(events) :] if events else []
    for seen, (kind, data, given) in zip(tail, events, strict=True):
        if (seen.action == "leave") != (kind == "leave"):
            return False
        if not data_equal(seen.data, data) and (given or seen.data is not None):
            return False
    return True


def _prefix(got: Sequence[Seen], events: Sequence[tuple[str, Any, bool]]) -> bool:
    """True if `got` is a strict prefix of `events`: more of that order may still come."""
    return len(got) < len(events) and _shows(got, events[: len(got)])


def _member(step: Step) -> Member:
    on_behalf = step.args.get("client_id") if step.kind.endswith("_client") else None
    return (step.client, step.channel, on_behalf)


def contested_steps(steps: Sequence[Step]) -> set[int]:
    """The positions (`Step.sub`) of the steps of a block that race another step on their
    member (the loader allows only enters and updates to)."""
    by_member: dict[Member, list[Step]] = {}
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
        self._open: dict[Member, list[OpRecord]] = {}  # groups with a leave, until resolved

    def open(self, ops: Sequence[OpRecord]) -> None:
        """After the block's operations are planned (in the block's order): a group racing a
        leave on one member expects nothing until its order is known (`resolve`)."""
        groups: dict[Member, list[OpRecord]] = {}
        for op in ops:
            if op.contested:
                groups.setdefault(_member(op.step), []).append(op)
        for member, group in groups.items():
            if len(group) > 1 and any(op.step.kind in _LEAVES for op in group):
                if any(op.model_error is not None for op in group):
                    continue  # the model refuses one: nothing races (errors are judged alone)
                self._open[member] = group
                for op in group:
                    self.deliveries.withdraw(op, set())

    async def resolve(self, block: Step, ops: Sequence[OpRecord]) -> None:
        """After the block's deliveries: for each member raced on, the order its operations
        were applied, told to the model and to the record (see the module docstring)."""
        opened, self._open = self._open, {}
        for group in opened.values():
            await self._resolve_with_leave(block, group)
        groups: dict[Member, list[OpRecord]] = {}
        for op in ops:
            if (
                op.contested
                and _member(op.step) not in opened
                and op.status == "ok"
                and op.model_error is None
                and op.events
            ):
                groups.setdefault(_member(op.step), []).append(op)
        for group in groups.values():
            if len(group) > 1:
                await self._resolve(block, group)

    # -- a leave in the race -------------------------------------------------------------------

    async def _resolve_with_leave(self, block: Step, group: list[OpRecord]) -> None:
        case = self.case
        model = case.model
        channel = group[0].channel
        assert channel is not None
        state = case.clients[group[0].client or ""]
        client_id = self._client_id(group[0], state)
        assert client_id is not None  # the model accepted the operations
        key = member_key(state.cid, client_id)
        # a refused operation did nothing (Refusals voided its events and those of its undo,
        # which assumed nothing else happened since): the others raced without it
        applied = [op for op in group if op.status == "ok"]
        mine = {e.model_id for op in group for e in op.events} | case.record.void
        model.retract(
            channel,
            [
                e.model_id
                for e in model.history_all(channel)
                if e.member_key == key and e.model_id in mine
            ],
        )
        for op in group:
            op.events = []
        prior_members = model.get(channel, client_id, state.cid)
        prior = (True, prior_members[0].data) if prior_members else (False, None)
        candidates = _candidates(applied, prior)
        chosen, how = await self._learn(block, channel, state, client_id, candidates)
        if chosen is None:
            chosen, how = candidates[0], "unknown (the block's order)"
        for i in chosen.order:
            applied[i].contested = False
            self._replan(applied[i], state)
        case.history.record(
            "info",
            "runner",
            "contention",
            {
                "member": key,
                "channel": channel,
                "applied": [applied[i].step.path for i in chosen.order],
                "learnt_from": how,
            },
            block.index,
        )
        await self.deliveries.wait(case.wait_budget)

    @staticmethod
    def _client_id(op: OpRecord, state: ClientState) -> str | None:
        if op.step.kind.endswith("_client"):
            return str(op.step.args["client_id"])
        return state.model_client_id

    def _replan(self, op: OpRecord, state: ClientState) -> None:
        """Apply `op` to the model again (its events, origin and deliveries, exact now)."""
        fresh, params = op.fresh_attach, op.params
        step = op.step
        plan_model_publish(
            self.case,
            self.deliveries,
            self.calls.refusals,
            op,
            step.kind.removesuffix("_client"),
            state.cid,
            self._client_id(op, state),
            step.args.get("data"),
            on_behalf=step.kind.endswith("_client"),
        )
        op.fresh_attach, op.params = fresh, params

    def _hearing(self, channel: str, connection_id: str, client_id: str) -> list[ListenerRecord]:
        """The listeners on `channel` that must receive every action of the member once."""
        case = self.case
        out = []
        for rec in case.record.listeners.values():
            if rec.channel != channel:
                continue
            once = True
            for action in (Action.ENTER, Action.UPDATE, Action.LEAVE):
                probe = PresenceMessage(
                    action=action, client_id=client_id, connection_id=connection_id
                )
                per = {
                    (d.connection_id, d.listener): d
                    for d in case.model.deliveries_for(channel, probe)
                }
                d = per.get(rec.key)
                once = once and d is not None and d.min_count == d.max_count == 1
            if once:
                out.append(rec)
        return out

    async def _learn(
        self,
        block: Step,
        channel: str,
        owner: ClientState,
        client_id: str,
        candidates: list[_Candidate],
    ) -> tuple[_Candidate | None, str]:
        """The order the implementation applied: from listeners (see the module docstring),
        else from get() on the member's own connection, else None."""
        case = self.case
        if len({(repr(c.events), repr(c.final)) for c in candidates}) == 1:
            return candidates[0], "any (every order has one outcome)"
        key = member_key(owner.cid, client_id)
        listeners = self._hearing(channel, owner.cid, client_id)
        window = max(case.settings.poll_interval * 4, 0.3)
        deadline = case.deadline(case.wait_budget)
        last: tuple[tuple[int, ...], float] | None = None
        quiet = False  # the implementation was settled before this read: what it shows is final
        pauses = Pauses(case.settings.poll_interval)
        while listeners:
            best: _Candidate | None = None
            open_ended = False
            for rec in listeners:
                got = [s for s in rec.received if s.member_key == key and s.step == block.index]
                shown = [c for c in candidates if _shows(got, c.events)]
                exact = [c for c in shown if len(c.events) == len(got)]
                if not shown:
                    continue
                match = (exact or shown)[0]
                more = any(_prefix(got, c.events) for c in candidates)
                if not more:
                    return match, "listener"
                if best is None:
                    best, open_ended = match, True
            now = case.loop.time()
            if best is not None and open_ended:
                if quiet:
                    return best, "listener (settled)"
                if last is None or last[0] != best.order:
                    last = (best.order, now)
                elif now - last[1] >= window:
                    return best, "listener (settled)"
            if now >= deadline:
                if best is not None:
                    return best, "listener (settled)"
                break
            await pauses.sleep()
            quiet = await case.settled()
        return await self._learn_from_get(block, channel, owner, key, candidates)

    async def _learn_from_get(
        self,
        block: Step,
        channel: str,
        owner: ClientState,
        key: str,
        candidates: list[_Candidate],
    ) -> tuple[_Candidate | None, str]:
        """The member's final state in get() on its own connection (present with which data,
        or absent), read until it is stable: the first order that ends so."""
        case = self.case
        if owner.conn is None or not owner.connected:
            return None, ""
        probe = OpRecord(block, owner.spec.name, channel, owner.connection_id)
        window = max(case.settings.poll_interval * 4, 0.3)
        deadline = case.deadline(case.wait_budget)
        last: tuple[tuple[bool, Any], float] | None = None
        quiet = False  # the implementation was settled before this read: the read is final
        pauses = Pauses(case.settings.poll_interval)
        while case.loop.time() < deadline:
            result = await self.calls.quiet_call(
                probe, owner, "get (applied order)", lambda p: p.get(), record=False
            )
            if isinstance(result, list | tuple):
                final: tuple[bool, Any] = (False, None)
                for raw in result:
                    seen = Seen.read(raw, "get", 0, None, channel)
                    if seen.member_key == key:
                        final = (True, seen.data)
                now = case.loop.time()
                if quiet or (last is not None and last[0] == final and now - last[1] >= window):
                    for c in candidates:
                        if c.final[0] == final[0] and (
                            not final[0] or data_equal(c.final[1], final[1])
                        ):
                            return c, "get"
                    return None, ""
                if last is None or last[0] != final:
                    last = (final, now)
            await pauses.sleep()
            quiet = await case.settled()
        return None, ""

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
        operation applied (the others' order leaves no trace but their events). Read until a
        read follows a settled implementation (it is final), or the same candidate is read
        across a quiet window."""
        case = self.case
        state = case.clients[op.client or ""]
        if state.conn is None or not state.connected:
            return None
        key = events[0].member_key
        probe = OpRecord(op.step, op.client, channel, state.connection_id)
        window = max(case.settings.poll_interval * 4, 0.3)
        deadline = case.deadline(case.wait_budget)
        last: tuple[int, float] | None = None
        quiet = False  # the implementation was settled before this read: the read is final
        pauses = Pauses(case.settings.poll_interval)
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
                if quiet or (last is not None and last[0] == found and now - last[1] >= window):
                    rest = [i for i in range(len(events)) if i != found]
                    return [*rest, found]
                if last is None or last[0] != found:
                    last = (found, now)
            await pauses.sleep()
            quiet = await case.settled()
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

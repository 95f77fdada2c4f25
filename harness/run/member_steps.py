"""Member steps of the case driver: `enter`, `update`, `leave` and `get`, and the end-of-case
convergence read.

The model goes first (its error, its events, who must receive them); then the adapter call. A
`get` on an attached channel is repeated (bounded by the wait budget, and ended early once a read
after a quiesce repeats unchanged) until it returns the model's members.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from presence_conformance.harness.adapter import AdapterPresence, PresenceError
from presence_conformance.harness.record.matching import members_equal
from presence_conformance.harness.record.records import (
    GetRecord,
    OpRecord,
    Seen,
    jsonable,
)
from presence_conformance.harness.run.calls import Call, Calls, Refusals
from presence_conformance.harness.run.clients import ClientState
from presence_conformance.harness.run.deliveries import Deliveries
from presence_conformance.harness.run.poll import poll_until
from presence_conformance.harness.run.publish import plan_model_publish
from presence_conformance.harness.run.state import CaseState, channel_of, ref_value
from presence_conformance.harness.run.stops import items_json
from presence_conformance.harness.scenario import Step
from presence_conformance.reference_impl.types import Action, Data, PresenceMessage

__all__ = ["MemberSteps", "with_shown"]


def with_shown(
    required: list[PresenceMessage],
    optional: Sequence[PresenceMessage],
    observed: list[Seen] | None,
) -> list[PresenceMessage]:
    """The members a read must return: `required`, plus those of `optional` (members whose
    leave is pending) that it did return."""
    keys = {s.member_key for s in observed or ()}
    return required + [m for m in optional if m.member_key in keys]


# the operation in the model and in the adapter, by step kind
_ADAPTER_OPS: dict[str, Callable[[AdapterPresence, Data], Awaitable[None]]] = {
    "enter": lambda presence, data: presence.enter(data),
    "update": lambda presence, data: presence.update(data),
    "leave": lambda presence, data: presence.leave(data),
}


class MemberSteps:
    """The `enter`, `update`, `leave` and `get` steps."""

    def __init__(
        self, case: CaseState, calls: Calls, deliveries: Deliveries, refusals: Refusals
    ) -> None:
        self.case = case
        self.calls = calls
        self.deliveries = deliveries
        self.refusals = refusals

    # -- enter / update / leave ----------------------------------------------------------------

    def plan_publish(self, op: OpRecord, state: ClientState) -> Call:
        """`enter`, `update` or `leave` (the step's kind)."""
        kind, data = op.step.kind, op.step.args.get("data")
        if "data" in op.step.args:
            op.params = {"data": jsonable(data)}
        plan_model_publish(
            self.case,
            self.deliveries,
            self.refusals,
            op,
            kind,
            state.cid,
            state.model_client_id,
            data,
            on_behalf=False,
        )
        operation = _ADAPTER_OPS[kind]
        return self.calls.invoker(op, state, kind, lambda p: operation(p, data))

    # -- get -----------------------------------------------------------------------------------

    def _resolve_client_id(self, value: Any) -> str | None:
        if isinstance(value, dict):
            return ref_value(value, self.case.clients[value["of"]].model_client_id)
        return value

    def _resolve_connection_id(self, value: Any) -> str | None:
        if isinstance(value, dict):
            return ref_value(value, self.case.clients[value["of"]].connection_id)
        return value

    def plan_get(self, op: OpRecord, state: ClientState) -> Call:
        step, model, channel = op.step, self.case.model, channel_of(op.step)
        clients = self.case.clients
        client_id = self._resolve_client_id(step.args.get("client_id"))
        connection_id = self._resolve_connection_id(step.args.get("connection_id"))
        wait = step.args.get("wait_for_sync")
        kwargs: dict[str, Any] = {}
        if client_id is not None:
            kwargs["client_id"] = client_id
        if connection_id is not None:
            kwargs["connection_id"] = connection_id
        if wait is not None:
            kwargs["wait_for_sync"] = wait
        op.params = dict(kwargs)
        cid = state.cid
        attached = model.is_attached(cid, channel)
        rec = GetRecord(
            "step",
            op,
            state.spec.name,
            channel,
            cid,
            client_id,
            connection_id,
            wait,
            fresh=not attached,
        )
        try:
            model.get(channel, client_id, connection_id)
            outcome = model.attach(cid, channel)  # may be refused: no capability (RTP11e)
        except PresenceError as exc:
            op.model_error = exc
            return self.calls.invoker(op, state, "get", lambda p: p.get(**kwargs))
        self.deliveries.expect(outcome, step.index)
        op.fresh_attach = not attached
        members = model.get(channel, client_id, connection_id)
        pending = {m.member_key for m in model.pending_leaves(channel)}
        optional = [m for m in members if m.member_key in pending]
        rec.expected = [m for m in members if m.member_key not in pending]
        rec.optional = optional
        if wait is False:  # only a get(waitForSync=false) is judged by them
            rec.possible = self._possible_members(channel, rec.fresh)
        if "expect" in step.args:
            rec.expect = [
                (
                    clients[m["client"]].model_client_id,
                    clients[m["client"]].connection_id,
                    "data" in m,
                    m.get("data"),
                )
                for m in step.args["expect"]
            ]
        self.case.record.gets.append(rec)
        poll = not rec.fresh and wait is not False

        async def call() -> None:
            await self.read_members(op, state, rec, kwargs, poll, optional)

        return call

    def _possible_members(self, channel: str, fresh: bool) -> list[PresenceMessage]:
        """What a get(waitForSync=false) may return (get.wait-for-sync-false): when the get is
        the call that attaches the channel (the model attached it just now), only members
        present now, with any data they had (a member that left before the call
        and before the attach cannot be known); otherwise any member the channel has had, with
        any data it had (the runner does not record when the client attached)."""
        model = self.case.model
        present = model.get(channel)
        members = {(m.member_key, repr(m.data)): m for m in present}
        live = {m.member_key for m in present}
        for event in model.history_all(channel):
            if event.action is Action.LEAVE:
                continue
            if fresh and event.member_key not in live:
                continue
            members.setdefault((event.member_key, repr(event.data)), event)
        return list(members.values())

    async def read_members(
        self,
        op: OpRecord,
        state: ClientState,
        rec: GetRecord,
        kwargs: dict[str, Any],
        poll: bool,
        optional: Sequence[PresenceMessage] = (),
    ) -> None:
        """get() into `rec`; with `poll`, again (bounded) until it returns the model's members.
        `optional`: members whose leave is pending (a drop with `wait: false`), which the get
        may return or not: those it returned join `rec.expected`."""
        history = self.case.history
        required = list(rec.expected)

        async def attempt() -> bool:
            rec.attempts += 1
            f = "get" if rec.attempts == 1 else "get (again)"
            result = await self.calls.call(
                op, state, f, lambda p: p.get(**kwargs), record=False, params=kwargs
            )
            if op.status != "ok":
                return True
            rec.observed, rec.malformed = self.calls.read_items(
                result, "get", op.index, rec.channel
            )
            rec.history_index = op.done_index = history.record(
                "ok", state.spec.name, f, items_json(rec.observed, rec.malformed), op.index
            )
            rec.expected = with_shown(required, optional, rec.observed)
            return not poll or members_equal(rec.expected, rec.observed)

        case = self.case
        await poll_until(
            attempt,
            case.deadline(case.wait_budget),
            case.settings.poll_interval,
            case.settled,
            lambda: items_json(rec.observed, rec.malformed),
        )
        if op.status != "ok":
            return
        self.calls.keep(rec.observed)

    async def before_attach(self, newcomer: ClientState, channel: str, step: Step) -> None:
        """Before `newcomer` attaches `channel`: wait (bounded) until a connection already
        attached there shows the model's members in its get(). An operation whose call returned
        was accepted by the server, but the protocol does not promise that it is already in the
        presence set the server syncs to a connection attaching next (RTN7a, RTP1, RTP18); once
        another connection has received it, the server has broadcast it. Not judged: the read
        is a probe, noted in the history only. Without such a connection there is nothing to
        wait for (see docs/scenarios.md, "Timing of a new attach")."""
        case, model = self.case, self.case.model
        pending = model.pending_leaves(channel)
        keys = {m.member_key for m in pending}
        expected = [m for m in model.get(channel) if m.member_key not in keys]
        for observer in case.clients.values():
            if (
                observer is newcomer
                or not observer.connected
                or observer.refused is not None
                or observer.conn is None
                or not model.is_attached(observer.cid, channel)
                or not model.receives_presence(observer.cid, channel)  # sees only its own
                # server steps staged what it holds there (and may have left a sync in flight,
                # which its get() would wait for)
                or (observer.spec.name, channel) in case.record.staged
            ):
                continue
            if await self._observer_shows(observer, channel, expected, step, pending):
                return

    async def _observer_shows(
        self,
        observer: ClientState,
        channel: str,
        expected: list[PresenceMessage],
        step: Step,
        pending: list[PresenceMessage],
    ) -> bool:
        """Poll `observer`'s get() until it holds `expected` (bounded); False if it may not
        read the channel (refused), so that another observer is tried."""
        case = self.case
        probe = OpRecord(step, observer.spec.name, channel, observer.connection_id)
        polls = 0
        observed: list[Seen] | None = None

        async def attempt() -> bool:
            nonlocal polls, observed
            polls += 1
            result = await self.calls.quiet_call(
                probe, observer, "get (before an attach)", lambda p: p.get(), record=False
            )
            if probe.status == "fail" or not isinstance(result, list | tuple):
                return True
            observed = [Seen.read(m, "get", 0, None, channel) for m in result]
            return members_equal(with_shown(expected, pending, observed), observed)

        converged = await poll_until(
            attempt,
            case.deadline(case.wait_budget),
            case.settings.poll_interval,
            case.settled,
            lambda: None if observed is None else items_json(observed, None),
        )
        case.history.record(
            "info",
            "runner",
            "settle before attach",
            {
                "channel": channel,
                "observer": observer.spec.name,
                "polls": polls,
                "converged": converged and probe.status != "fail",
            },
            step.index,
        )
        return probe.status != "fail"

    async def converge(self) -> None:
        """At the end of the case: every connected client reads the members of each channel it
        is attached to, until they are the model's (bounded)."""
        case = self.case
        for name, state in case.clients.items():
            if not state.connected or state.refused is not None:
                continue
            for channel in case.scenario.channels:
                if not case.model.is_attached(state.cid, channel):
                    continue
                if (name, channel) in case.record.staged:  # judged by the client oracle
                    continue
                if not case.model.receives_presence(state.cid, channel):
                    # attached without PRESENCE_SUBSCRIBE: its map cannot reflect the channel
                    # (RTP11f2); its gets are judged by channel.get-without-presence-subscribe
                    continue
                op = OpRecord(
                    Step("converge", len(case.scenario.steps), "(end of case)"),
                    name,
                    channel,
                    state.connection_id,
                )
                rec = GetRecord(
                    "converge",
                    None,
                    name,
                    channel,
                    state.cid,
                    expected=case.model.get(channel),
                )
                case.record.gets.append(rec)
                await self.read_members(op, state, rec, {}, poll=True)

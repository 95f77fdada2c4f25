"""Listener steps of the case driver: `subscribe`, `unsubscribe` and `expect_events`.

Each named listener gets one `ListenerRecord` per connection, whose callback (made by
`Deliveries.callback`) records what it receives. A subscribe or unsubscribe the implementation
refuses although the model accepted it puts the model's listener registrations back.
"""

from __future__ import annotations

from presence_conformance.harness.adapter import PresenceError
from presence_conformance.harness.record.records import (
    ExpectEventsRecord,
    ListenerRecord,
    OpRecord,
)
from presence_conformance.harness.run.calls import Call, Calls, Refusals
from presence_conformance.harness.run.clients import ClientState
from presence_conformance.harness.run.deliveries import Deliveries
from presence_conformance.harness.run.state import CaseState, channel_of
from presence_conformance.harness.scenario import Step

__all__ = ["ListenerSteps"]


class ListenerSteps:
    """The `subscribe`, `unsubscribe` and `expect_events` steps."""

    def __init__(
        self, case: CaseState, calls: Calls, deliveries: Deliveries, refusals: Refusals
    ) -> None:
        self.case = case
        self.calls = calls
        self.deliveries = deliveries
        self.refusals = refusals

    def _listener(self, state: ClientState, channel: str, name: str) -> ListenerRecord:
        key = (channel, name)
        rec = state.listeners.get(key)
        if rec is None:
            lkey = (state.cid, name)
            rec = ListenerRecord(lkey, name, state.spec.name, channel, state.cid)
            rec.callback = self.deliveries.callback(rec)
            state.listeners[key] = rec
            self.case.record.listeners[lkey] = rec
        return rec

    def plan_subscribe(self, op: OpRecord, state: ClientState) -> Call:
        step, model, channel = op.step, self.case.model, channel_of(op.step)
        cid = state.cid
        actions = step.args.get("actions")
        name = step.args["listener"]
        op.params = {"listener": name, "actions": actions}
        rec = self._listener(state, channel, name)
        attached = model.is_attached(cid, channel)
        saved = model.listener_state(cid, channel)
        try:
            outcome = model.subscribe(cid, channel, name, actions)
        except PresenceError as exc:
            op.model_error = exc
        else:
            entry = (step.index, tuple(actions) if actions else None)
            rec.subscriptions.append(entry)
            op.fresh_attach = not attached
            if op.fresh_attach:
                rec.attach_step = step.index
            self.deliveries.expect(outcome, step.index, op)

            def undo() -> None:
                model.restore_listener_state(cid, channel, saved)
                rec.subscriptions.remove(entry)

            self.refusals.on_refusal(op, undo)
        callback = rec.callback
        assert callback is not None  # every listener record gets its callback when made
        return self.calls.invoker(
            op,
            state,
            "subscribe",
            lambda p: p.subscribe(callback, list(actions) if actions else None),
        )

    def plan_unsubscribe(self, op: OpRecord, state: ClientState) -> Call:
        step, model, channel = op.step, self.case.model, channel_of(op.step)
        cid = state.cid
        name, actions = step.args.get("listener"), step.args.get("actions")
        op.form = (
            "all"
            if not name and not actions
            else "listener"
            if not actions
            else "action-listener"
            if name
            else "action"
        )
        op.params = {"listener": name, "actions": actions}
        saved = model.listener_state(cid, channel)
        try:
            model.unsubscribe(cid, channel, name, actions)
        except PresenceError as exc:
            op.model_error = exc
        else:
            entry = (step.index, op.form, tuple(actions) if actions else None)
            affected = [
                rec
                for (ch, lname), rec in state.listeners.items()
                if ch == channel and (name is None or lname == name)
            ]
            for rec in affected:
                rec.unsubscriptions.append(entry)

            def undo() -> None:
                model.restore_listener_state(cid, channel, saved)
                for rec in affected:
                    rec.unsubscriptions.remove(entry)

            self.refusals.on_refusal(op, undo)
        callback = self._listener(state, channel, name).callback if name else None
        return self.calls.invoker(
            op,
            state,
            "unsubscribe",
            lambda p: p.unsubscribe(callback, list(actions) if actions else None),
        )

    async def expect_events(self, step: Step) -> None:
        """Wait (bounded) until the listener received as many events as the step lists, then
        record what it received next to what the step expects."""
        case = self.case
        name = step.args["listener"]
        # a listener name belongs to one client and channel (a loader rule); one record per
        # connection that client had
        records = [r for r in case.record.listeners.values() if r.name == name]
        wanted = len(step.args["events"])
        await self.deliveries.wait_until(
            lambda: sum(len(r.received) for r in records) >= wanted, case.wait_budget
        )
        observed = [s for r in records for s in r.received]
        expected = []
        for event in step.args["events"]:
            client = event["client"]
            expected.append(
                (
                    tuple(event["action"]),
                    case.clients[client].model_client_id,
                    frozenset(case.record.client_connections.get(client, [])),
                    "data" in event,
                    event.get("data"),
                )
            )
        index = case.history.record(
            "info",
            "runner",
            "expect_events",
            {"listener": name, "count": len(observed)},
            step.index,
        )
        case.record.expectations.append(ExpectEventsRecord(step, name, expected, observed, index))

"""Steps for members entered on behalf of other clients and for the REST read of the members:
`enter_client`, `update_client`, `leave_client` (RTP14, RTP15) and `rest_get` (RSP3).

As for every operation the model goes first: a publish for another clientId is the model's
enter / update / leave with `client_id` (refused with 40012 when the connection has a clientId of
its own and it differs, RTP15f). `rest_get` needs no attach: it is read again (bounded) until the
page is what the model allows: exactly the filtered members, or `limit` of them (RSP3a1).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from presence_conformance.harness.adapter import AdapterPresence, PresenceError
from presence_conformance.harness.checks.rest import rest_page_ok
from presence_conformance.harness.record.records import (
    OpRecord,
    RestGetRecord,
    jsonable,
)
from presence_conformance.harness.run.calls import Call, Calls, Refusals
from presence_conformance.harness.run.clients import ClientState
from presence_conformance.harness.run.deliveries import Deliveries
from presence_conformance.harness.run.poll import poll_until
from presence_conformance.harness.run.publish import plan_model_publish
from presence_conformance.harness.run.state import CaseState, channel_of, ref_value
from presence_conformance.harness.run.stops import items_json
from presence_conformance.reference_impl.types import Data

__all__ = ["ClientSteps"]

_ADAPTER_OPS: dict[str, Callable[[AdapterPresence, str, Data], Awaitable[None]]] = {
    "enter_client": lambda presence, client_id, data: presence.enter_client(client_id, data),
    "update_client": lambda presence, client_id, data: presence.update_client(client_id, data),
    "leave_client": lambda presence, client_id, data: presence.leave_client(client_id, data),
}


class ClientSteps:
    """The `enter_client`, `update_client`, `leave_client` and `rest_get` steps."""

    def __init__(
        self, case: CaseState, calls: Calls, deliveries: Deliveries, refusals: Refusals
    ) -> None:
        self.case = case
        self.calls = calls
        self.deliveries = deliveries
        self.refusals = refusals

    def plan_publish(self, op: OpRecord, state: ClientState) -> Call:
        """enterClient / updateClient / leaveClient (the step's kind)."""
        kind, data = op.step.kind, op.step.args.get("data")
        client_id: str = op.step.args["client_id"]
        op.params = {"client_id": client_id}
        # RTP15a lets an anonymous client call these; whether its server lets it act for a
        # clientId is the server's (its auth): success or a refusal, both accepted (INFO)
        spec = state.spec  # the model gives a wildcard no clientId either: ask the spec
        own = (
            spec.token_client_id if spec.token_given and spec.client_id is None else spec.client_id
        )
        op.anonymous = own is None
        if "data" in op.step.args:
            op.params["data"] = jsonable(data)
        plan_model_publish(
            self.case,
            self.deliveries,
            self.refusals,
            op,
            kind.removesuffix("_client"),
            state.cid,
            client_id,
            data,
            on_behalf=True,
        )
        operation = _ADAPTER_OPS[kind]
        return self.calls.invoker(op, state, kind, lambda p: operation(p, client_id, data))

    # -- rest_get ------------------------------------------------------------------------------

    def _resolve(self, value: Any, attribute: str) -> str | None:
        if isinstance(value, dict):
            state = self.case.clients[value["of"]]
            return ref_value(
                value,
                state.model_client_id if attribute == "client_id" else state.connection_id,
            )
        return value

    def plan_rest_get(self, op: OpRecord, state: ClientState) -> Call:
        step, model, channel = op.step, self.case.model, channel_of(op.step)
        client_id = self._resolve(step.args.get("client_id"), "client_id")
        connection_id = self._resolve(step.args.get("connection_id"), "connection_id")
        limit = step.args.get("limit")
        kwargs: dict[str, Any] = {}
        if limit is not None:
            kwargs["limit"] = limit
        if client_id is not None:
            kwargs["client_id"] = client_id
        if connection_id is not None:
            kwargs["connection_id"] = connection_id
        op.params = dict(kwargs)
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000
        ):
            op.model_error = PresenceError(40003, f"limit: {limit!r} is not from 1 to 1000")
            return self.calls.invoker(op, state, "rest_get", lambda p: p.rest_get(**kwargs))
        rec = RestGetRecord(
            op, state.spec.name, channel, limit, client_id, connection_id,
            expected=model.get(channel, client_id, connection_id),
        )  # fmt: skip
        self.case.record.rest_gets.append(rec)
        history = self.case.history

        async def attempt() -> bool:
            rec.attempts += 1
            f = "rest_get" if rec.attempts == 1 else "rest_get (again)"
            result = await self.calls.call(
                op, state, f, lambda p: p.rest_get(**kwargs), record=False, params=kwargs
            )
            if op.status != "ok":
                return True
            rec.observed, rec.malformed = self.calls.read_items(result, "get", op.index, channel)
            rec.history_index = op.done_index = history.record(
                "ok", state.spec.name, f, items_json(rec.observed, rec.malformed), op.index
            )
            return rest_page_ok(rec.expected, limit, rec.observed)

        async def call() -> None:
            deadline = self.case.deadline(self.case.op_timeout)
            await poll_until(attempt, deadline, self.case.settings.poll_interval)
            if op.status == "ok":
                self.calls.keep(rec.observed)

        return call

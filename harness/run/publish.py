"""The model's side of one member publish: enter, update or leave, for the connection's own
clientId or on behalf of another (enterClient and friends, RTP15). Shared by the member and
client step families: the model goes first, its events get their origin, the deliveries it
requires are expected, and an undo is kept in case the implementation refuses what the model
accepted."""

from __future__ import annotations

from collections.abc import Callable

from presence_conformance.harness.adapter import PresenceError
from presence_conformance.harness.record.records import EventOrigin, OpRecord
from presence_conformance.harness.run.calls import Refusals
from presence_conformance.harness.run.deliveries import Deliveries
from presence_conformance.harness.run.oracle import open_action_outcome
from presence_conformance.harness.run.state import CaseState, channel_of
from presence_conformance.reference_impl.model import Outcome as ModelOutcome
from presence_conformance.reference_impl.model import PresenceModel
from presence_conformance.reference_impl.types import Data

__all__ = ["plan_model_publish"]

_MODEL_CALLS: dict[str, Callable[..., ModelOutcome]] = {
    "enter": PresenceModel.enter,
    "update": PresenceModel.update,
    "leave": PresenceModel.leave,
}
# enter while present and update while absent: the implementation may report either action
_ALTERNATIVE = {"enter": "update", "update": "enter"}


def plan_model_publish(
    case: CaseState,
    deliveries: Deliveries,
    refusals: Refusals,
    op: OpRecord,
    action: str,
    cid: str,
    client_id: str | None,
    data: Data,
    *,
    on_behalf: bool,
) -> None:
    """Run `action` ("enter", "update" or "leave") of connection `cid` for `client_id` on the
    model and record it in
    `op`: the model's refusal, or its events, their origin, the deliveries they require and the
    undo. `on_behalf`: published for another clientId (RTP15), so the model is told which."""
    model, record, step = case.model, case.record, op.step
    channel = channel_of(step)
    kwargs = {"client_id": client_id} if on_behalf else {}
    prior = model.get(channel, client_id, cid) if client_id is not None else []
    was_present = bool(prior)
    op.was_present = was_present
    attached = model.is_attached(cid, channel)
    try:
        outcome = _MODEL_CALLS[action](model, cid, channel, data, **kwargs)
    except PresenceError as exc:
        op.model_error = exc
        op.attempted = (action, client_id, cid, data)
        # refused after the implicit attach (no presence capability: RTP8d, then RTP8h)
        op.fresh_attach = not attached and model.is_attached(cid, channel)
        return
    op.events = list(outcome.events)
    # contested: either action until contention.py knows the order the server applied
    shown_present = (action == "enter") if op.contested else was_present
    origin = EventOrigin(action, step.index, channel, shown_present, data is not None)
    for event in outcome.events:
        record.origins[event.model_id] = origin
    # a contested op (racing another of its member, contention.py) may come first or later
    alternative = (
        _ALTERNATIVE.get(action) if op.contested or was_present == (action == "enter") else None
    )
    if alternative and outcome.events:
        outcome = open_action_outcome(model, channel, outcome, alternative)
    deliveries.expect(outcome, step.index, op)
    op.fresh_attach = not attached and model.is_attached(cid, channel)

    def undo() -> ModelOutcome | None:
        now = model.get(channel, client_id, cid)
        if not prior:
            return model.leave(cid, channel, **kwargs) if now else None
        if not now:
            return model.enter(cid, channel, prior[0].data, **kwargs)
        return model.update(cid, channel, prior[0].data, **kwargs)

    refusals.on_refusal(op, undo)

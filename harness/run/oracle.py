"""The reference model as the runner uses it, beyond its public API.

- `open_action_outcome`: who may receive an event the implementation may report with either of
  two actions (enter while present, update while absent);
- `listener_state` / `restore_listener_state`: snapshot and restore one connection's listener
  registrations, so that the model can follow an implementation that refused a subscribe or
  unsubscribe the model accepted.

These reach into the model's internals (it has no public query for them); they are kept here, in
one place, so that a change of the model shows up in one module.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from presence_conformance.reference_impl.model import Outcome as ModelOutcome
from presence_conformance.reference_impl.model import PresenceModel
from presence_conformance.reference_impl.types import Action

__all__ = ["listener_state", "open_action_outcome", "restore_listener_state"]


def open_action_outcome(
    model: PresenceModel, channel: str, outcome: ModelOutcome, alternative: str
) -> ModelOutcome:
    """The deliveries of an event the implementation may report with either of two actions
    (enter while present, update while absent): a listener whose filter takes only one of them
    may or may not get it (min 0); one that takes both must get it once."""
    event = outcome.events[-1]
    mine = {(d.connection_id, d.listener): d for d in outcome.deliveries if d.event.id == event.id}
    other: dict[tuple[str, str], Any] = {}
    try:  # the model has no public "who would receive this" query
        alt_event = event.with_action(Action(alternative))
        ch = model._channels[channel]
        for cid in sorted(ch.attached):
            for d in model._deliveries_to(model._connections[cid], channel, alt_event):
                other[(d.connection_id, d.listener)] = dataclasses.replace(d, event=event)
    except (AttributeError, KeyError):
        other = {}
    deliveries = [d for d in outcome.deliveries if d.event.id != event.id]
    for key in sorted(mine.keys() | other.keys()):
        a, b = mine.get(key), other.get(key)
        base = a or b
        deliveries.append(
            dataclasses.replace(
                base,
                min_count=min(a.min_count if a else 0, b.min_count if b else 0),
                max_count=max(a.max_count if a else 0, b.max_count if b else 0),
            )
        )
    return ModelOutcome(events=list(outcome.events), deliveries=deliveries)


def listener_state(model: PresenceModel, connection_id: str, channel: str) -> Any:
    """A copy of the model's listener registrations of one connection on one channel.
    (The model has no public API for this; only the driver's refusal-following uses it.)"""
    conn = model._connections[connection_id]
    return copy.deepcopy(conn.listeners.get(channel, {}))


def restore_listener_state(
    model: PresenceModel, connection_id: str, channel: str, saved: Any
) -> None:
    conn = model._connections[connection_id]
    conn.listeners[channel] = saved
    ch = model._channels.get(channel)
    if ch is not None and hasattr(ch, "listening"):
        if saved:
            ch.listening.add(connection_id)
        else:
            ch.listening.discard(connection_id)

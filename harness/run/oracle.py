"""The reference model's answer where an implementation may report an event in two ways.

`open_action_outcome`: who may receive an event the implementation may report with either of
two actions (enter while present, update while absent). It reads the model through its public
queries only (`PresenceModel.deliveries_for`).
"""

from __future__ import annotations

import dataclasses

from presence_conformance.reference_impl.model import Delivery, PresenceModel
from presence_conformance.reference_impl.model import Outcome as ModelOutcome
from presence_conformance.reference_impl.types import Action

__all__ = ["open_action_outcome"]


def open_action_outcome(
    model: PresenceModel, channel: str, outcome: ModelOutcome, alternative: str
) -> ModelOutcome:
    """The deliveries of an event the implementation may report with either of two actions
    (enter while present, update while absent): a listener whose filter takes only one of them
    may or may not get it (min 0); one that takes both must get it once."""
    event = outcome.events[-1]
    mine = {(d.connection_id, d.listener): d for d in outcome.deliveries if d.event.id == event.id}
    alt_event = event.with_action(Action(alternative))
    other = {
        (d.connection_id, d.listener): dataclasses.replace(d, event=event)
        for d in model.deliveries_for(channel, alt_event)
    }
    deliveries = [d for d in outcome.deliveries if d.event.id != event.id]
    for key in sorted(mine.keys() | other.keys()):
        a, b = mine.get(key), other.get(key)
        base = _either(a, b)
        deliveries.append(
            dataclasses.replace(
                base,
                min_count=min(a.min_count if a else 0, b.min_count if b else 0),
                max_count=max(a.max_count if a else 0, b.max_count if b else 0),
            )
        )
    return ModelOutcome(events=list(outcome.events), deliveries=deliveries)


def _either(a: Delivery | None, b: Delivery | None) -> Delivery:
    if a is not None:
        return a
    assert b is not None  # the key came from one of the two
    return b

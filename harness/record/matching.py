"""Matching what an implementation showed against what the model expected.

An event's identity is (action, clientId, connectionId, data): never the model's ids or
timestamps, which the implementation stamps itself. Where the specification leaves a behaviour
open, every allowed variant matches, and the variant used is reported as a deviation:

- an enter by a member already present may be reported as `update` (enter.when-present, INFO);
- the first event of a member that joined by update() may be `enter`
  (update.when-not-present-action, INFO);
- a leave without data may carry null instead of the member's data
  (leave.data-defaults-to-member-data, SHOULD).

Sequences are matched per member key (`connectionId:clientId`): each member's events must keep
their order; events of different members may interleave in any order.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from presence_conformance.harness.record.records import CanonicalRecord, EventOrigin, Seen
from presence_conformance.reference_impl.types import Action, PresenceMessage, data_equal

ACTION_DEVIATION = {"enter": "enter.when-present", "update": "update.when-not-present-action"}
LEAVE_DATA_DEVIATION = "leave.data-defaults-to-member-data"


def accepted_actions(event: PresenceMessage, origin: EventOrigin | None) -> tuple[str, ...]:
    """The action names an implementation may report for `event`, the reference's first."""
    action = event.action._value_  # `.value`, without the enum descriptor (a hot path)
    if origin is not None:
        if origin.kind == "enter" and origin.was_present and action == "enter":
            return ("enter", "update")
        if origin.kind == "update" and not origin.was_present and action == "update":
            return ("update", "enter")
    return (action,)


def accepted_data(event: PresenceMessage, origin: EventOrigin | None) -> tuple[Any, ...]:
    """The data an implementation may report for `event`, the reference's first."""
    if (
        event.action is Action.LEAVE
        and event.data is not None
        and (origin is None or not origin.data_given)
    ):
        return (event.data, None)
    return (event.data,)


def deviations(
    seen: Seen, event: PresenceMessage, origin: EventOrigin | None
) -> tuple[str, ...] | None:
    """None if `seen` is not `event`; else the requirement IDs of the open variants it used."""
    if seen.client_id != event.client_id or seen.connection_id != event.connection_id:
        return None
    actions = accepted_actions(event, origin)
    if seen.action not in actions:
        return None
    position = None
    for i, data in enumerate(accepted_data(event, origin)):
        if _same_data(seen.data, data):
            position = i
            break
    if position is None:
        return None
    found: tuple[str, ...] = ()
    if seen.action != actions[0] and origin is not None:
        found += (ACTION_DEVIATION[origin.kind],)
    if position:
        found += (LEAVE_DATA_DEVIATION,)
    return found


def _same_data(a: Any, b: Any) -> bool:
    """`data_equal(a, b)`, sooner for two strings or two Nones (what it then compares is `==`)."""
    kind = type(a)
    if kind is type(b) and (kind is str or a is None):
        return a == b
    return data_equal(a, b)


def differing_fields(seen: Seen, event: PresenceMessage, origin: EventOrigin | None) -> list[str]:
    """The identity fields in which `seen` differs from every allowed variant of `event`."""
    out = []
    if seen.client_id != event.client_id:
        out.append("clientId")
    if seen.connection_id != event.connection_id:
        out.append("connectionId")
    if seen.action not in accepted_actions(event, origin):
        out.append("action")
    if not any(_same_data(seen.data, d) for d in accepted_data(event, origin)):
        out.append("data")
    return out


@dataclass(eq=False)
class Slot:
    """One expected item of a sequence: an event that must be seen `min`..`max` times."""

    event: PresenceMessage
    origin: EventOrigin | None
    min: int = 1
    max: int = 1
    ref: Any = None  # the record behind it (an Expected, or None)
    count: int = 0

    @property
    def member_key(self) -> str:
        return self.event.member_key


@dataclass
class Alignment:
    """The result of matching received items to expected slots.

    `matched`: in order, with the deviations used; `late`: matched, but after a later event of the
    same member (out of order); `missing`: slots seen fewer than `min` times (once per missing
    copy); `extras`: items matching no slot; `near`: an extra paired with a missing slot it
    differs from in exactly one field (`clientId`, `connectionId`, `action` or `data`).
    """

    matched: list[tuple[Seen, Slot, tuple[str, ...]]] = field(default_factory=list)
    late: list[tuple[Seen, Slot]] = field(default_factory=list)
    missing: list[Slot] = field(default_factory=list)
    extras: list[Seen] = field(default_factory=list)
    near: list[tuple[Seen, Slot, str]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.late or self.missing or self.extras or self.near)


def _align_member(slots: list[Slot], received: list[Seen], out: Alignment) -> None:
    """Align one member's items, in order. Identical items are ambiguous (a copy, or the next
    identical event; an optional event reported with an alternative action, or the next event
    with that very action; an optional event, or a required one): a few tie-breaking strategies
    are tried and the alignment with the fewest problems (missing, late, extra) is kept, the
    earlier strategy on a tie. The last strategy never lets an item skip a required slot not
    yet seen: an item that is no event of the model (a leave() of an absent member stored in
    history, RTP10d) is then an extra rather than a later event of the member, whose own item
    would then be out of order."""
    start = [slot.count for slot in slots]
    first = Alignment()
    _align_member_once(slots, received, first, *_STRATEGIES[0])
    score = _problems(slots, first)
    if score == 0:  # no problems (so no late items, no extras): no other strategy is tried
        out.matched.extend(first.matched)
        return
    best: tuple[int, Alignment, list[int]] = (score, first, [slot.count for slot in slots])
    for prefer_exact, prefer_required, no_skip in _STRATEGIES[1:]:
        for slot, count in zip(slots, start, strict=True):
            slot.count = count
        trial = Alignment()
        _align_member_once(slots, received, trial, prefer_exact, prefer_required, no_skip)
        score = _problems(slots, trial)
        if score < best[0]:
            best = (score, trial, [slot.count for slot in slots])
        if score == 0:
            break
    _, chosen, counts = best
    for slot, count in zip(slots, counts, strict=True):
        slot.count = count
    out.matched.extend(chosen.matched)
    out.late.extend(chosen.late)
    out.extras.extend(chosen.extras)


_STRATEGIES = (  # (prefer_exact, prefer_required, no_skip), in the order they are tried
    (True, False, False),
    (False, False, False),
    (False, True, False),
    (True, False, True),
)


def _problems(slots: list[Slot], alignment: Alignment) -> int:
    problems = len(alignment.late) + len(alignment.extras)
    for slot in slots:
        if slot.count < slot.min:
            problems += slot.min - slot.count
    return problems


def _align_member_once(
    slots: list[Slot],
    received: list[Seen],
    out: Alignment,
    prefer_exact: bool,
    prefer_required: bool,
    no_skip: bool = False,
) -> None:
    position = 0
    for seen in received:
        found = None
        for j in range(position, len(slots)):
            slot = slots[j]
            if slot.count < slot.max:
                devs = deviations(seen, slot.event, slot.origin)
                if devs is not None:
                    found = (j, devs)
                    break
        if (
            no_skip
            and found is not None
            and any(slots[k].count < slots[k].min for k in range(position, found[0]))
        ):
            out.extras.append(seen)
            continue
        if found is not None:
            current = slots[found[0]]
            # an identical later event, already caused when this item was seen, takes the item
            # instead when the slot found already had an item (a second identical item is the
            # next event rather than a copy, which only a listener registered twice may get);
            # preferring exact matches, when the slot found would take it only as an allowed
            # alternative (an enter for an update) and needs no more items; preferring required
            # slots, when the slot found needs no more items
            taken = current.count >= 1 and not _copy_of_matched(current, seen, out)
            needless = prefer_required and current.count >= current.min
            inexact = prefer_exact and bool(found[1]) and current.count >= current.min
            if taken or needless or inexact:
                for j in range(found[0] + 1, len(slots)):
                    slot = slots[j]
                    if not _caused_by(slot, seen.step):
                        continue
                    devs = deviations(seen, slot.event, slot.origin)
                    if devs is None:
                        continue
                    if (
                        (taken and slot.count == 0 < slot.max)
                        or (needless and slot.count < slot.min)
                        or (inexact and not devs and slot.count == 0 < slot.max)
                    ):
                        found = (j, devs)
                        break
        if found is not None:
            j, devs = found
            slots[j].count += 1
            position = j
            out.matched.append((seen, slots[j], devs))
            continue
        for j in range(position):
            slot = slots[j]
            if slot.count < slot.max and deviations(seen, slot.event, slot.origin) is not None:
                slot.count += 1
                out.late.append((seen, slot))
                break
        else:
            out.extras.append(seen)


def _copy_of_matched(slot: Slot, seen: Seen, out: Alignment) -> bool:
    """Is `seen` a copy of an item already matched to `slot` (the same implementation id)? A
    listener registered twice gets each event twice: the copy belongs to the same slot, not to
    the next identical event."""
    if not isinstance(seen.id, str) or not seen.id:
        return False
    return any(m_slot is slot and m_seen.id == seen.id for m_seen, m_slot, _ in out.matched)


def _caused_by(slot: Slot, step: int | None) -> bool:
    """Had the slot's event been caused by the time of `step` (unknown: assume so)?"""
    caused = getattr(slot.ref, "step", None)
    return caused is None or step is None or caused <= step


def align(slots: Iterable[Slot], received: Iterable[Seen]) -> Alignment:
    """Match `received` to `slots` member by member, then pair leftovers that differ in one field."""
    out = Alignment()
    by_member: dict[str, list[Slot]] = defaultdict(list)
    for slot in slots:
        by_member[slot.event.member_key].append(slot)
    seen_by_member: dict[str, list[Seen]] = defaultdict(list)
    order: list[str] = []
    for seen in received:
        key = seen.member_key
        if key not in seen_by_member:
            order.append(key)
        seen_by_member[key].append(seen)
    for key in order:
        _align_member(by_member.get(key, []), seen_by_member[key], out)
    missing = []
    for member_slots in by_member.values():
        for slot in member_slots:
            if slot.count < slot.min:
                missing.extend([slot] * (slot.min - slot.count))
    extras = sorted(out.extras, key=lambda s: s.history_index)
    out.extras = []
    for seen in extras:
        pair = None
        for prefer_same_member in (True, False):
            for slot in missing:
                if prefer_same_member != (slot.member_key == seen.member_key):
                    continue
                fields = differing_fields(seen, slot.event, slot.origin)
                if len(fields) == 1:
                    pair = (slot, fields[0])
                    break
            if pair:
                break
        if pair is None:
            out.extras.append(seen)
        else:
            missing.remove(pair[0])
            out.near.append((seen, pair[0], pair[1]))
    out.missing = missing
    return out


def members_equal(expected: list[PresenceMessage], observed: list[Seen] | None) -> bool:
    """True if `observed` holds exactly the members of `expected` (member key and data; the
    action is checked separately)."""
    if observed is None or len(observed) != len(expected):
        return False
    by_key = {m.member_key: m for m in expected}
    keys = set()
    for seen in observed:
        key = seen.member_key
        member = by_key.get(key)
        if member is None or key in keys or not _same_data(seen.data, member.data):
            return False
        keys.add(key)
    return True


def event_slots(events: Iterable[PresenceMessage], origins: dict[str, EventOrigin]) -> list[Slot]:
    """One slot per model event (history, where every event appears exactly once)."""
    return [Slot(e, origins.get(e.model_id)) for e in events]


def history_consistent(
    expected: list[PresenceMessage],
    origins: dict[str, EventOrigin],
    observed: list[Seen] | None,
    noop_leaves: Iterable[Any] = (),
) -> bool:
    """True if a canonical history holds every model event exactly once, in member order.

    `noop_leaves`: the connectionId of each leave() of an absent member made so far on the
    channel. Such a leave emits nothing and the model stores nothing, but no spec sentence says
    whether it is stored (history.noop-leave, INFO), so one stored leave item of that connection
    per such call is no inconsistency: reading again would never make it go away.
    """
    if observed is None:
        return False
    return _consistent(
        expected, observed, noop_leaves, lambda: align(event_slots(expected, origins), observed)
    )


def canonical_consistent(
    rec: CanonicalRecord, origins: dict[str, EventOrigin], noop_leaves: Iterable[Any] = ()
) -> bool:
    """`history_consistent` of a canonical read, keeping the alignment it makes on `rec` for the
    checks (`canonical_alignment`)."""
    if rec.observed is None:
        return False
    return _consistent(
        rec.expected, rec.observed, noop_leaves, lambda: canonical_alignment(rec, origins)
    )


def canonical_alignment(rec: CanonicalRecord, origins: dict[str, EventOrigin]) -> Alignment:
    """The canonical read's items matched to the model's events: the alignment made when it was
    read, while it is of the same items and no event's origin changed since (a concurrent
    block's origins are settled later), else made again."""
    assert rec.observed is not None
    now = tuple(origins.get(e.model_id) for e in rec.expected)
    if rec.aligned is not None and rec.aligned[0] is rec.observed and rec.aligned[1] == now:
        return rec.aligned[2]
    alignment = align([Slot(e, o) for e, o in zip(rec.expected, now, strict=True)], rec.observed)
    rec.aligned = (rec.observed, now, alignment)
    return alignment


def _consistent(
    expected: list[PresenceMessage],
    observed: list[Seen],
    noop_leaves: Iterable[Any],
    alignment_of: Callable[[], Alignment],
) -> bool:
    tolerated = Counter(noop_leaves)
    if not len(expected) <= len(observed) <= len(expected) + sum(tolerated.values()):
        return False
    alignment = alignment_of()
    if alignment.late or alignment.missing or alignment.near:
        return False
    for seen in alignment.extras:
        if seen.action != "leave" or tolerated[seen.connection_id] <= 0:
            return False
        tolerated[seen.connection_id] -= 1
    return True


_DATA_KEY_JSON = json.JSONEncoder(sort_keys=True, default=repr)
"""What `json.dumps(data, sort_keys=True, default=repr)` uses, made once rather than per call."""


def data_key(data: Any) -> Any:
    """A hashable key for member data that keeps binary and text apart."""
    if isinstance(data, bytes | bytearray | memoryview):
        return ("b", bytes(data))
    if isinstance(data, str):
        return ("s", data)
    try:
        return ("j", _DATA_KEY_JSON.encode(data))
    except (TypeError, ValueError):
        return ("r", repr(data))


def identity_key(seen: Seen) -> tuple:
    """A hashable identity of an item returned by the implementation."""
    cached = seen.__dict__.get("_identity_key")  # a Seen is not changed once read
    if cached is None:
        cached = (seen.action, repr(seen.client_id), repr(seen.connection_id), data_key(seen.data))
        seen.__dict__["_identity_key"] = cached
    return cached

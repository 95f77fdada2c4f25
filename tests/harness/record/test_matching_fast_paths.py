"""The matching's shortcuts give what the plain code gave: `align` stops at the first tie-breaking
strategy when it leaves no problem, `deviations` compares two strings or two Nones with `==`,
`data_key` encodes with one `JSONEncoder` made once."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from presence_conformance.harness.record import matching
from presence_conformance.harness.record.matching import Alignment, Slot, align, data_key
from presence_conformance.harness.record.records import EventOrigin, Seen
from presence_conformance.reference_impl.types import Action, PresenceMessage, data_equal

_DATA = st.one_of(
    st.none(),
    st.sampled_from(["", "x", "y"]),
    st.sampled_from([b"x", b""]),
    st.sampled_from([{"k": 1}, {"k": 1.0}, {"k": True}, [1], [True], 1, 1.0, True]),
)


def _plain_align_member(slots: list[Slot], received: list[Seen], out: Alignment) -> None:
    """`_align_member` as it was written before its shortcut: every strategy in turn until one
    leaves no problem, the counts of the best one restored."""
    start = [slot.count for slot in slots]
    best: tuple[int, Alignment, list[int]] | None = None
    for prefer_exact, prefer_required, no_skip in matching._STRATEGIES:
        for slot, count in zip(slots, start, strict=True):
            slot.count = count
        trial = Alignment()
        matching._align_member_once(slots, received, trial, prefer_exact, prefer_required, no_skip)
        score = sum(max(0, s.min - s.count) for s in slots) + len(trial.late) + len(trial.extras)
        if best is None or score < best[0]:
            best = (score, trial, [slot.count for slot in slots])
        if score == 0:
            break
    assert best is not None
    _, chosen, counts = best
    for slot, count in zip(slots, counts, strict=True):
        slot.count = count
    out.matched.extend(chosen.matched)
    out.late.extend(chosen.late)
    out.extras.extend(chosen.extras)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[list[tuple], list[dict]]:
    members = st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["c1", "c2"]))
    slots = draw(
        st.lists(
            st.tuples(
                members,
                st.sampled_from(["enter", "update", "leave", "present"]),
                _DATA,
                st.sampled_from(["enter", "update", "leave", "present", "drop"]),
                st.booleans(),
                st.booleans(),
                st.integers(0, 2),
                st.integers(0, 1),
                st.none() | st.integers(0, 3),
            ),
            max_size=6,
        )
    )
    items = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "member": members,
                    "action": st.sampled_from(["enter", "update", "leave", "present"]),
                    "data": _DATA,
                    "id": st.sampled_from(["i1", "i2", None]),
                    "step": st.none() | st.integers(0, 3),
                }
            ),
            max_size=7,
        )
    )
    return slots, items


def _build(case: tuple[list[tuple], list[dict]]) -> tuple[list[Slot], list[Seen]]:
    specs, items = case
    slots = []
    for n, ((client, conn), action, data, kind, present, data_given, low, extra, step) in enumerate(
        specs
    ):
        event = PresenceMessage(Action(action), client, conn, data, n, f"{conn}:{n}:0")
        origin = EventOrigin(kind, step, "room", was_present=present, data_given=data_given)
        slots.append(Slot(event, origin, low, low + extra, SimpleNamespace(step=step)))
    received = []
    for index, item in enumerate(items):
        client, conn = item["member"]
        raw = {"action": item["action"], "clientId": client, "connectionId": conn}
        raw |= {"data": item["data"], "id": item["id"], "timestamp": index}
        received.append(Seen.read(raw, "event", index, item["step"], "room"))
    return slots, received


def _described(slots: list[Slot], received: list[Seen], out: Alignment) -> list[Any]:
    s, r = {id(x): i for i, x in enumerate(slots)}, {id(x): i for i, x in enumerate(received)}
    return [
        [(r[id(a)], s[id(b)], d) for a, b, d in out.matched],
        [(r[id(a)], s[id(b)]) for a, b in out.late],
        [s[id(b)] for b in out.missing],
        [r[id(a)] for a in out.extras],
        [(r[id(a)], s[id(b)], f) for a, b, f in out.near],
        [x.count for x in slots],
    ]


@settings(max_examples=600, deadline=None)
@given(_cases())
def test_align_gives_what_it_gave_without_its_shortcut(case: Any) -> None:
    slots, received = _build(case)
    fast = _described(slots, received, align(slots, received))
    slots, received = _build(case)
    saved = matching._align_member
    matching._align_member = _plain_align_member
    try:
        plain = _described(slots, received, align(slots, received))
    finally:
        matching._align_member = saved
    assert fast == plain


@settings(max_examples=300, deadline=None)
@given(_DATA | st.text(max_size=3), _DATA | st.text(max_size=3))
def test_same_data_is_data_equal(a: Any, b: Any) -> None:
    assert matching._same_data(a, b) is data_equal(a, b)


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(_JSONISH | st.builds(object) | st.binary(max_size=3))
def test_data_key_encodes_as_json_dumps_did(data: Any) -> None:
    if isinstance(data, bytes | str):
        return
    assert data_key(data) == ("j", json.dumps(data, sort_keys=True, default=repr))

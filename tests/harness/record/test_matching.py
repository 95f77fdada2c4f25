"""Matching what an implementation showed to what the model expected (`harness/record/matching`):
the variants the specification leaves open, alignment per member with optional and repeated
slots, identical items, wrong order, near misses, and the set and history comparisons."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from presence_conformance.harness.record.matching import (
    ACTION_DEVIATION,
    LEAVE_DATA_DEVIATION,
    Slot,
    accepted_actions,
    accepted_data,
    align,
    data_key,
    deviations,
    differing_fields,
    event_slots,
    history_consistent,
    identity_key,
    members_equal,
)
from presence_conformance.harness.record.records import EventOrigin, Seen
from presence_conformance.reference_impl.types import Action, PresenceMessage

ENTER_WHILE_PRESENT = EventOrigin("enter", 1, "room", was_present=True)
ENTER_FRESH = EventOrigin("enter", 1, "room", was_present=False)
UPDATE_WHILE_ABSENT = EventOrigin("update", 1, "room", was_present=False)
UPDATE_WHILE_PRESENT = EventOrigin("update", 1, "room", was_present=True)
LEAVE_NO_DATA = EventOrigin("leave", 1, "room", data_given=False)
LEAVE_WITH_DATA = EventOrigin("leave", 1, "room", data_given=True)

_ids = iter(range(1, 10**6))


def event(
    action: str, client: str = "alice", data: Any = None, conn: str = "c1"
) -> PresenceMessage:
    """A model event (ids and timestamps are the model's: matching never looks at them)."""
    n = next(_ids)
    return PresenceMessage(Action(action), client, conn, data, timestamp=n, id=f"{conn}:{n}:0")


def seen(
    action: str,
    client: Any = "alice",
    data: Any = None,
    conn: Any = "c1",
    index: int = 0,
    step: int | None = None,
) -> Seen:
    """An item as an implementation delivered it (its own id and timestamp)."""
    raw = {"action": action, "clientId": client, "connectionId": conn, "data": data}
    raw |= {"id": f"impl-{index}", "timestamp": 10_000 + index}
    return Seen.read(raw, "event", index, step, "room")


def slot(
    ev: PresenceMessage,
    origin: EventOrigin | None = None,
    min: int = 1,
    max: int = 1,
    step: int | None = None,
) -> Slot:
    return Slot(ev, origin, min=min, max=max, ref=SimpleNamespace(step=step))


def stream(*items: Seen) -> list[Seen]:
    """Items in the order received, each with its own history index."""
    for index, item in enumerate(items):
        item.history_index = index
    return list(items)


# -- accepted_actions, accepted_data: the open variants ----------------------------------------


@pytest.mark.parametrize(
    ("action", "origin", "accepted"),
    [
        ("enter", None, ("enter",)),
        ("enter", ENTER_WHILE_PRESENT, ("enter", "update")),
        ("enter", ENTER_FRESH, ("enter",)),
        ("update", UPDATE_WHILE_ABSENT, ("update", "enter")),
        ("update", UPDATE_WHILE_PRESENT, ("update",)),
        # the origin's kind must be the event's action: a leave is never reported otherwise
        ("leave", ENTER_WHILE_PRESENT, ("leave",)),
        ("leave", UPDATE_WHILE_ABSENT, ("leave",)),
        ("present", None, ("present",)),
    ],
)
def test_accepted_actions_reference_first(
    action: str, origin: EventOrigin | None, accepted: tuple[str, ...]
) -> None:
    assert accepted_actions(event(action), origin) == accepted


def test_a_leave_without_data_may_carry_null_instead_of_the_member_data() -> None:
    leave = event("leave", data={"mood": "happy"})
    assert accepted_data(leave, LEAVE_NO_DATA) == ({"mood": "happy"}, None)
    assert accepted_data(leave, None) == ({"mood": "happy"}, None)  # origin unknown: lenient
    assert accepted_data(leave, LEAVE_WITH_DATA) == ({"mood": "happy"},)  # data was given
    assert accepted_data(event("leave"), LEAVE_NO_DATA) == (None,)  # nothing to default to
    assert accepted_data(event("enter", data="x"), ENTER_FRESH) == ("x",)
    assert accepted_data(event("update", data="x"), None) == ("x",)


# -- deviations, differing_fields ----------------------------------------------------------------


def test_exact_item_matches_without_deviations() -> None:
    assert deviations(seen("enter", data="x"), event("enter", data="x"), ENTER_FRESH) == ()


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (seen("enter", client="bob", data="x"), "clientId"),
        (seen("enter", data="x", conn="c2"), "connectionId"),
        (seen("update", data="x"), "action"),
        (seen("enter", data="y"), "data"),
        (seen("enter", data=b"x"), "data"),  # binary is not text
        (seen("enter", data=None), "data"),
    ],
)
def test_an_item_differing_in_one_field_does_not_match(item: Seen, expected: str) -> None:
    ev = event("enter", data="x")
    assert deviations(item, ev, ENTER_FRESH) is None
    assert differing_fields(item, ev, ENTER_FRESH) == [expected]


def test_differing_fields_lists_every_field_in_order() -> None:
    item = seen("leave", client="bob", data="y", conn="c2")
    assert differing_fields(item, event("enter", data="x"), None) == [
        "clientId",
        "connectionId",
        "action",
        "data",
    ]
    assert differing_fields(seen("enter", data="x"), event("enter", data="x"), None) == []


def test_differing_fields_accepts_every_allowed_variant() -> None:
    assert differing_fields(seen("update"), event("enter"), ENTER_WHILE_PRESENT) == []
    assert differing_fields(seen("leave"), event("leave", data="x"), LEAVE_NO_DATA) == []
    assert differing_fields(seen("leave"), event("leave", data="x"), LEAVE_WITH_DATA) == ["data"]


def test_the_variant_used_is_reported_as_a_deviation() -> None:
    assert deviations(seen("update", data="x"), event("enter", data="x"), ENTER_WHILE_PRESENT) == (
        ACTION_DEVIATION["enter"],
    )
    assert deviations(seen("enter"), event("update"), UPDATE_WHILE_ABSENT) == (
        ACTION_DEVIATION["update"],
    )
    assert deviations(seen("leave"), event("leave", data="x"), LEAVE_NO_DATA) == (
        LEAVE_DATA_DEVIATION,
    )
    # the reference's own choice is no deviation
    assert deviations(seen("enter"), event("enter"), ENTER_WHILE_PRESENT) == ()
    assert deviations(seen("update"), event("update"), UPDATE_WHILE_ABSENT) == ()
    assert deviations(seen("leave", data="x"), event("leave", data="x"), LEAVE_NO_DATA) == ()


def test_no_variant_without_the_origin_that_allows_it() -> None:
    assert deviations(seen("update"), event("enter"), None) is None
    assert deviations(seen("update"), event("enter"), ENTER_FRESH) is None
    assert deviations(seen("enter"), event("update"), UPDATE_WHILE_PRESENT) is None
    assert deviations(seen("leave"), event("leave", data="x"), LEAVE_WITH_DATA) is None


def test_data_compares_by_type_as_well_as_value() -> None:
    assert deviations(seen("enter", data=1), event("enter", data=True), None) is None
    assert deviations(seen("enter", data=1), event("enter", data=1.0), None) is None
    assert (
        deviations(
            seen("enter", data={"a": 1, "b": 2}), event("enter", data={"b": 2, "a": 1}), None
        )
        == ()
    )
    assert deviations(seen("enter", data=b"\x00"), event("enter", data=b"\x00"), None) == ()


# -- align: one member ---------------------------------------------------------------------------


def test_in_order_items_are_matched_in_order() -> None:
    slots = [
        slot(event("enter", data="a")),
        slot(event("update", data="b")),
        slot(event("leave", data="b")),
    ]
    items = stream(seen("enter", data="a"), seen("update", data="b"), seen("leave", data="b"))
    out = align(slots, items)
    assert out.clean
    assert [(s, sl, d) for s, sl, d in out.matched] == [
        (items[0], slots[0], ()),
        (items[1], slots[1], ()),
        (items[2], slots[2], ()),
    ]
    assert [sl.count for sl in slots] == [1, 1, 1]


def test_nothing_expected_nothing_received_is_clean() -> None:
    out = align([], [])
    assert out.clean and out.matched == [] and out.missing == []


def test_an_item_seen_before_an_earlier_event_of_the_same_member_is_late() -> None:
    enter, update = slot(event("enter", data="a")), slot(event("update", data="b"))
    items = stream(seen("update", data="b"), seen("enter", data="a"))
    out = align([enter, update], items)
    assert not out.clean
    assert [(s, sl) for s, sl, _ in out.matched] == [(items[0], update)]
    assert out.late == [(items[1], enter)]
    assert out.missing == [] and out.extras == [] and out.near == []


def test_a_missing_required_event_is_listed_once_per_missing_copy() -> None:
    twice = slot(event("enter", data="a"), min=2, max=2)
    out = align([twice], stream(seen("enter", data="a")))
    assert out.missing == [twice]
    out = align([slot(event("enter", data="a"), min=2, max=2)], [])
    assert len(out.missing) == 2 and not out.clean


def test_an_optional_slot_may_be_seen_or_not() -> None:
    ev = event("enter", data="a")
    assert align([slot(ev, min=0)], []).clean
    out = align([slot(ev, min=0)], stream(seen("enter", data="a")))
    assert out.clean and len(out.matched) == 1


def test_copies_up_to_max_match_and_one_more_is_an_extra() -> None:
    ev = event("enter", data="a")
    up_to_two = slot(ev, min=1, max=2)
    out = align([up_to_two], stream(seen("enter", data="a"), seen("enter", data="a")))
    assert out.clean and up_to_two.count == 2
    items = stream(seen("enter", data="a"), seen("enter", data="a"), seen("enter", data="a"))
    out = align([slot(ev, min=1, max=2)], items)
    assert len(out.matched) == 2 and out.extras == [items[2]] and out.missing == []


def test_a_copy_beyond_max_one_is_an_extra() -> None:
    items = stream(seen("enter", data="a"), seen("enter", data="a"))
    out = align([slot(event("enter", data="a"))], items)
    assert [s for s, _, _ in out.matched] == [items[0]]
    assert out.extras == [items[1]] and out.late == [] and not out.clean


def test_identical_events_each_take_one_identical_item() -> None:
    # enter, leave, enter again with the same data: three slots, two of them identical
    first, leave, again = (
        slot(event("enter", data="a"), step=1),
        slot(event("leave", data="a"), step=2),
        slot(event("enter", data="a"), step=3),
    )
    items = stream(
        seen("enter", data="a", step=1),
        seen("leave", data="a", step=2),
        seen("enter", data="a", step=3),
    )
    out = align([first, leave, again], items)
    assert out.clean
    assert [sl for _, sl, _ in out.matched] == [first, leave, again]


def test_a_second_identical_item_is_the_next_event_once_that_event_was_caused() -> None:
    # the first slot could take two copies (a listener that may be registered twice), but a
    # second identical item belongs to the next identical event when that event was caused by then
    def slots() -> list[Slot]:
        return [
            slot(event("update", data="x"), max=2, step=1),
            slot(event("update", data="x"), step=3),
        ]

    caused = slots()
    out = align(caused, stream(seen("update", data="x", step=1), seen("update", data="x", step=3)))
    assert out.clean and [sl.count for sl in caused] == [1, 1]

    not_yet = slots()  # both items were seen before step 3 caused the second event
    out = align(not_yet, stream(seen("update", data="x", step=1), seen("update", data="x", step=1)))
    assert [sl.count for sl in not_yet] == [2, 0]
    assert out.missing == [not_yet[1]] and out.extras == [] and out.late == []


def test_a_second_identical_item_goes_to_the_next_event_even_an_optional_one() -> None:
    # both readings are clean (the second event may be missed, the first may come twice): the
    # next event is preferred to a copy, which only a listener registered twice may get
    first = slot(event("update", data="x"), max=2, step=1)
    maybe = slot(event("update", data="x"), min=0, step=2)
    # two distinct events (distinct implementation ids): a copy would repeat the first one's id
    items = stream(
        seen("update", data="x", index=0, step=2), seen("update", data="x", index=1, step=2)
    )
    out = align([first, maybe], items)
    assert out.clean
    assert [sl for _, sl, _ in out.matched] == [first, maybe]


def test_an_item_of_unknown_step_may_belong_to_any_later_identical_event() -> None:
    first, second = (
        slot(event("update", data="x"), max=2, step=1),
        slot(event("update", data="x"), step=3),
    )
    out = align([first, second], stream(seen("update", data="x"), seen("update", data="x")))
    assert out.clean and (first.count, second.count) == (1, 1)


def test_an_enter_reported_as_update_matches_with_its_deviation() -> None:
    enter_again = slot(event("enter", data="x"), ENTER_WHILE_PRESENT)
    update = slot(event("update", data="x"), UPDATE_WHILE_PRESENT)
    items = stream(seen("update", data="x"), seen("update", data="x"))
    out = align([enter_again, update], items)
    assert out.clean
    assert [(sl, d) for _, sl, d in out.matched] == [
        (enter_again, (ACTION_DEVIATION["enter"],)),
        (update, ()),
    ]


def test_an_optional_variant_does_not_take_the_next_exact_event() -> None:
    # the optional slot would take the update only as an alternative; the required update takes it
    optional = slot(event("enter", data="x"), ENTER_WHILE_PRESENT, min=0)
    update = slot(event("update", data="x"), UPDATE_WHILE_PRESENT)
    item = seen("update", data="x")
    out = align([optional, update], stream(item))
    assert out.clean
    assert out.matched == [(item, update, ())]
    assert (optional.count, update.count) == (0, 1)


def test_no_deviation_is_reported_where_an_exact_reading_exists() -> None:
    # both slots optional, both readings clean: the exact one wins, so no deviation is reported
    optional = slot(event("enter", data="x"), ENTER_WHILE_PRESENT, min=0)
    also_optional = slot(event("update", data="x"), UPDATE_WHILE_PRESENT, min=0)
    item = seen("update", data="x")
    out = align([optional, also_optional], stream(item))
    assert out.clean
    assert out.matched == [(item, also_optional, ())]
    # the same when no reading is clean (a stray item too): on a tie the earlier strategy wins
    optional = slot(event("enter", data="x"), ENTER_WHILE_PRESENT, min=0)
    also_optional = slot(event("update", data="x"), UPDATE_WHILE_PRESENT, min=0)
    item, stray = seen("update", data="x"), seen("leave", data="junk")
    out = align([optional, also_optional], stream(item, stray))
    assert out.matched == [(item, also_optional, ())] and out.extras == [stray]


def test_an_optional_slot_gives_way_to_an_identical_required_one() -> None:
    optional = slot(event("enter", data="x"), min=0)
    required = slot(event("enter", data="x"))
    item = seen("enter", data="x")
    out = align([optional, required], stream(item))
    assert out.clean
    assert out.matched == [(item, required, ())]


def test_alignment_starts_from_the_counts_the_slots_already_have() -> None:
    # slots carried over from an earlier alignment keep their counts
    done = slot(event("enter", data="a"))
    done.count = 1
    item = seen("enter", data="a")
    out = align([done], stream(item))
    assert out.extras == [item] and out.missing == [] and done.count == 1


# -- align: several members ----------------------------------------------------------------------


def test_members_may_interleave_in_any_order() -> None:
    a1, a2 = slot(event("enter", "alice", "a")), slot(event("update", "alice", "a2"))
    b1, b2 = slot(event("enter", "bob", "b")), slot(event("leave", "bob", "b"))
    items = stream(
        seen("enter", "bob", "b"),
        seen("enter", "alice", "a"),
        seen("leave", "bob", "b"),
        seen("update", "alice", "a2"),
    )
    out = align([a1, a2, b1, b2], items)
    assert out.clean
    assert {id(sl) for _, sl, _ in out.matched} == {id(a1), id(a2), id(b1), id(b2)}


def test_the_same_client_on_two_connections_is_two_members() -> None:
    here, there = (
        slot(event("enter", data="a", conn="c1")),
        slot(event("enter", data="a", conn="c2")),
    )
    out = align(
        [here, there],
        stream(seen("enter", data="a", conn="c2"), seen("enter", data="a", conn="c1")),
    )
    assert out.clean
    assert [sl for _, sl, _ in out.matched] == [there, here]


def test_items_of_an_unexpected_member_are_extras_and_its_slots_missing() -> None:
    expected = slot(event("enter", "alice", "a"))
    stranger = seen("enter", "carol", "c", conn="c9")
    out = align([expected], stream(stranger))
    assert out.extras == [stranger] and out.missing == [expected] and out.near == []


def test_a_near_miss_pairs_an_extra_with_the_missing_slot_it_differs_from_in_one_field() -> None:
    expected = slot(event("enter", data="a"))
    wrong_data = seen("enter", data="b")
    out = align([expected], stream(wrong_data))
    assert out.near == [(wrong_data, expected, "data")]
    assert out.missing == [] and out.extras == [] and not out.clean

    expected = slot(event("enter", data="a"))
    wrong_connection = seen("enter", data="a", conn="c2")  # another member key altogether
    out = align([expected], stream(wrong_connection))
    assert out.near == [(wrong_connection, expected, "connectionId")]


def test_two_differing_fields_are_no_near_miss() -> None:
    expected = slot(event("enter", data="a"))
    item = seen("update", data="b")
    out = align([expected], stream(item))
    assert out.near == [] and out.extras == [item] and out.missing == [expected]


def test_a_near_miss_prefers_a_slot_of_the_same_member() -> None:
    other_member = slot(event("update", "bob", "y"))  # differs from the item in clientId only
    same_member = slot(event("update", "alice", "x"))  # differs from the item in data only
    item = seen("update", "alice", "y")
    out = align([other_member, same_member], stream(item))
    assert out.near == [(item, same_member, "data")]
    assert out.missing == [other_member]


def test_extras_are_paired_and_listed_in_the_order_they_were_recorded() -> None:
    x1, x2 = slot(event("enter", "alice", "x")), slot(event("enter", "bob", "x"))
    late_b = seen("enter", "bob", "y")
    early_a = seen("enter", "alice", "y")
    stray = seen("leave", "carol", "z", conn="c9")
    late_b.history_index, early_a.history_index, stray.history_index = 5, 1, 3
    out = align([x1, x2], [late_b, stray, early_a])
    assert [(s, sl) for s, sl, _ in out.near] == [(early_a, x1), (late_b, x2)]
    assert out.extras == [stray]


# -- members_equal -------------------------------------------------------------------------------


def present(client: str, data: Any = None, conn: str = "c1") -> PresenceMessage:
    return event("present", client, data, conn)


def test_members_equal_ignores_order_and_action() -> None:
    expected = [present("alice", "a"), present("bob", "b")]
    observed = [seen("present", "bob", "b"), seen("enter", "alice", "a")]
    assert members_equal(expected, observed)
    assert members_equal([], [])


@pytest.mark.parametrize(
    "observed",
    [
        None,  # the call failed
        [],
        [seen("present", "alice", "a")],  # one short
        [seen("present", "alice", "a"), seen("present", "bob", "other")],  # wrong data
        [seen("present", "alice", "a"), seen("present", "bob", b"b")],  # binary for text
        [seen("present", "alice", "a"), seen("present", "carol", "b")],  # unknown member
        [seen("present", "alice", "a"), seen("present", "alice", "a")],  # a member twice
        [seen("present", "alice", "a"), seen("present", "bob", "b", conn="c2")],  # other conn
        [seen("present", "alice", "a"), seen("present", "bob", "b"), seen("present", "bob", "b")],
    ],
)
def test_members_equal_refuses(observed: list[Seen] | None) -> None:
    assert not members_equal([present("alice", "a"), present("bob", "b")], observed)


# -- event_slots, history_consistent ---------------------------------------------------------------


def test_event_slots_one_exact_slot_per_event_with_its_origin() -> None:
    enter, leave = event("enter", data="a"), event("leave", data="a")
    slots = event_slots([enter, leave], {enter.id: ENTER_FRESH})
    assert [(s.event, s.origin, s.min, s.max, s.count) for s in slots] == [
        (enter, ENTER_FRESH, 1, 1, 0),
        (leave, None, 1, 1, 0),
    ]
    assert event_slots([], {}) == []


def history() -> tuple[list[PresenceMessage], dict[str, EventOrigin]]:
    a1, b1 = event("enter", "alice", "a"), event("enter", "bob", "b")
    a2, b2 = event("update", "alice", "a2"), event("leave", "bob", "b")
    return [a1, b1, a2, b2], {b2.id: LEAVE_NO_DATA}


def test_history_keeps_each_members_order_and_may_interleave_members() -> None:
    expected, origins = history()
    as_logged = [seen(e.action.value, e.client_id, e.data) for e in expected]
    assert history_consistent(expected, origins, stream(*as_logged))
    interleaved = [as_logged[1], as_logged[3], as_logged[0], as_logged[2]]
    assert history_consistent(expected, origins, stream(*interleaved))


def test_history_allows_the_open_variants() -> None:
    expected, origins = history()
    items = [seen(e.action.value, e.client_id, e.data) for e in expected]
    items[3] = seen("leave", "bob", None)  # leave without data: null allowed (origin says so)
    assert history_consistent(expected, origins, stream(*items))
    assert history_consistent(expected, {}, stream(*items))  # origin unknown: lenient
    items[3] = seen("leave", "bob", "other")  # but not any data
    assert not history_consistent(expected, origins, stream(*items))


def test_history_tolerates_one_stored_leave_per_noop_leave_of_that_connection() -> None:
    expected, origins = history()
    items = [seen(e.action.value, e.client_id, e.data) for e in expected]
    stored = seen("leave", "dave", None, conn="c9")  # dave left while absent, on c9
    assert not history_consistent(expected, origins, stream(*items, stored))
    assert history_consistent(expected, origins, stream(stored, *items), noop_leaves=["c9"])
    # one stored leave per such call, of that connection, and only a leave
    twice = seen("leave", "dave", None, conn="c9")
    assert not history_consistent(expected, origins, stream(*items, stored, twice), ["c9"])
    assert history_consistent(expected, origins, stream(*items, stored, twice), ["c9", "c9"])
    assert not history_consistent(expected, origins, stream(*items, stored), noop_leaves=["c8"])
    entered = seen("enter", "dave", None, conn="c9")
    assert not history_consistent(expected, origins, stream(*items, entered), ["c9"])
    # it never stands in for a missing event
    assert not history_consistent(expected, origins, stream(*items[:3], stored), ["c9"])


def test_history_refuses_reordered_missing_doubled_or_changed_events() -> None:
    expected, origins = history()

    def logged(*order: int) -> list[Seen]:
        """Fresh items for the expected events at `order`, in that order."""
        return stream(
            *[
                seen(expected[i].action.value, expected[i].client_id, expected[i].data)
                for i in order
            ]
        )

    assert history_consistent(expected, origins, logged(0, 1, 2, 3))
    assert not history_consistent(expected, origins, None)  # the query failed
    assert not history_consistent(expected, origins, logged(0, 1, 2))
    assert not history_consistent(expected, origins, [*logged(0, 1, 2, 3), seen("enter", "carol")])
    # alice's update before her enter: the same items, the wrong order for that member
    assert not history_consistent(expected, origins, logged(2, 1, 0, 3))
    # alice's enter twice instead of her update: the same length, one missing and one extra
    assert not history_consistent(expected, origins, logged(0, 1, 0, 3))
    changed = logged(0, 1, 2, 3)
    changed[2] = seen("update", "alice", "other", index=2)
    assert not history_consistent(expected, origins, changed)


def test_history_is_judged_on_fresh_slots_each_time() -> None:
    expected, origins = history()
    items = stream(*[seen(e.action.value, e.client_id, e.data) for e in expected])
    assert history_consistent(expected, origins, items)
    assert history_consistent(expected, origins, items)


def test_a_canonical_read_keeps_its_alignment_until_its_items_or_origins_change() -> None:
    from presence_conformance.harness.record.matching import (
        canonical_alignment,
        canonical_consistent,
    )
    from presence_conformance.harness.record.records import CanonicalRecord

    expected, origins = history()
    items = [seen(e.action.value, e.client_id, e.data) for e in expected]
    items[3] = seen("leave", "bob", None)  # null data: allowed only by the leave's origin
    rec = CanonicalRecord(0, "alice", "room", expected, stream(*items))
    assert canonical_consistent(rec, origins)
    kept = canonical_alignment(rec, origins)
    assert canonical_alignment(rec, dict(origins)) is kept  # equal origins: the same alignment
    # the leave's origin changed since the read: aligned again, and judged by the new origin
    stricter = {expected[3].id: LEAVE_WITH_DATA}
    again = canonical_alignment(rec, stricter)
    assert again is not kept
    # judged by the new origin: a leave given data must carry it, so the null item no longer fits
    assert expected[3].id not in {slot.event.id for _, slot, _ in again.matched}
    assert not canonical_consistent(rec, stricter)
    # a new read (other items): aligned again
    rec.observed = stream(*[seen(e.action.value, e.client_id, e.data) for e in expected])
    assert canonical_alignment(rec, origins) is not kept


# -- identity_key, data_key ------------------------------------------------------------------------


def test_identity_key_is_the_identity_not_the_ids_or_times() -> None:
    one = seen("enter", "alice", {"a": 1, "b": [1, 2]}, index=0)
    two = seen("enter", "alice", {"b": [1, 2], "a": 1}, index=7)  # other id, time, key order
    assert identity_key(one) == identity_key(two)
    assert len({identity_key(one), identity_key(two)}) == 1


@pytest.mark.parametrize(
    "other",
    [
        seen("update", "alice", "x"),
        seen("enter", "bob", "x"),
        seen("enter", "alice", "x", conn="c2"),
        seen("enter", "alice", "y"),
        seen("enter", "alice", b"x"),  # binary, not text
        seen("enter", "alice", ["x"]),
    ],
)
def test_identity_key_tells_apart(other: Seen) -> None:
    assert identity_key(seen("enter", "alice", "x")) != identity_key(other)


def test_identity_key_of_malformed_items_is_hashable_and_distinct() -> None:
    none = seen("enter", client=None, conn=None)
    text = seen("enter", client="None", conn="None")  # the text "None" is not a missing id
    number = seen("enter", client=1, conn="c1")
    assert len({identity_key(none), identity_key(text), identity_key(number)}) == 3
    assert identity_key(seen("enter", client=1)) != identity_key(seen("enter", client="1"))


def test_data_key_keeps_binary_text_and_json_apart() -> None:
    assert data_key(b"ab") == data_key(bytearray(b"ab")) == data_key(memoryview(b"ab"))
    assert len({data_key(b"ab"), data_key("ab"), data_key(["ab"]), data_key(None)}) == 4
    assert data_key({"a": 1, "b": 2}) == data_key({"b": 2, "a": 1})
    assert data_key("1") != data_key(1)


def test_data_key_of_data_json_cannot_write() -> None:
    loop: list[Any] = []
    loop.append(loop)
    key = data_key(loop)  # a circular value: its repr, still hashable
    assert key[0] == "r" and hash(key) == hash(data_key(loop))
    assert data_key({1, 2})[0] == "j"  # not JSON, written by its repr inside the JSON


def test_an_item_of_no_event_does_not_take_a_later_slot_of_its_member() -> None:
    """A leave() of an absent member stored in history (RTP10d allows it) before the member
    entered and left: it is an extra, not the member's later leave with null data, which would
    put the enter out of order and the real leave in excess."""
    enter, leave = event("enter", data="hi"), event("leave", data="hi")
    slots = [Slot(enter, ENTER_FRESH), Slot(leave, LEAVE_NO_DATA)]
    items = [seen("leave", index=1), seen("enter", data="hi", index=2)]
    items.append(seen("leave", data="hi", index=3))
    out = align(slots, items)
    assert [s.history_index for s in out.extras] == [1]
    assert not out.late and not out.missing and not out.near
    assert [slot.event for _, slot, _ in out.matched] == [enter, leave]


def test_a_lost_event_still_lets_the_next_one_match() -> None:
    """The strategy that never skips a slot must not turn a lost enter into extras."""
    enter, update = event("enter", data="a"), event("update", data="b")
    out = align(
        [Slot(enter, ENTER_FRESH), Slot(update, UPDATE_WHILE_PRESENT)], [seen("update", data="b")]
    )
    assert out.missing == [out.missing[0]] and out.missing[0].event is enter
    assert not out.extras and not out.late

"""The history query check asks the causal order of whole runs of equal timestamps at once
(`Order.inverted`, `Order.any_before`, the twin bookkeeping of a limit cut): it must answer
exactly what asking every pair, the plain way, answers."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from presence_conformance.harness.checks.base import CheckContext
from presence_conformance.harness.checks.history import Order, _causal_order_kept, matches_range
from presence_conformance.harness.record.matching import identity_key
from presence_conformance.harness.record.records import Seen


def _plain_kept(observed: list[Seen], expected_all: list[Seen], order: Order) -> bool:
    """The order check as first written: every pair of a run, every (dropped, kept) pair."""
    runs: list[list[Seen]] = []
    for seen in observed:
        if runs and runs[-1][0].timestamp == seen.timestamp:
            runs[-1].append(seen)
        else:
            runs.append([seen])
    for run in runs:
        for i, earlier in enumerate(run):
            if any(order(later, earlier) for later in run[i + 1 :]):
                return False
    if runs:
        kept = runs[-1]
        left = [s for s in expected_all if s.timestamp == kept[0].timestamp]
        for seen in kept:
            twin = next((s for s in left if identity_key(s) == identity_key(seen)), None)
            if twin is not None:
                left.remove(twin)
        if any(order(dropped, item) for dropped in left for item in kept):
            return False
    return True


def _plain_groups(items: list[Seen]) -> list[tuple[object, Counter]]:
    out: list[tuple[object, Counter]] = []
    for seen in items:
        if out and out[-1][0] == seen.timestamp:
            out[-1][1][identity_key(seen)] += 1
        else:
            out.append((seen.timestamp, Counter([identity_key(seen)])))
    return out


def _plain_matches_range(
    observed: list[Seen], expected_all: list[Seen], count: int, order: Any
) -> bool:
    if len(observed) != count:
        return False
    if [s.timestamp for s in observed] != [s.timestamp for s in expected_all[:count]]:
        return False
    whole = dict(_plain_groups(expected_all))
    if any(items - whole[stamp] for stamp, items in _plain_groups(observed)):
        return False
    return order is None or _plain_kept(observed, expected_all, order)


def _seen(client: str, connection: str, stamp: int) -> Seen:
    return Seen(
        source="history",
        raw=None,
        history_index=0,
        step=None,
        channel="ch",
        action="enter",
        client_id=client,
        connection_id=connection,
        data=None,
        timestamp=stamp,
        id=None,
        json=None,
    )


@st.composite
def listings(draw: Any) -> tuple[CheckContext, dict, list[Seen], list[Seen]]:
    """A canonical history (few timestamps, few identities: long runs and identical twins), some
    of its items known as events of acknowledged operations (some sharing one operation), and a
    listing of some of its items in any order, plus items the canonical does not have."""
    size = draw(st.integers(2, 14))
    canonical = [
        _seen(draw(st.sampled_from("ab")), draw(st.sampled_from(["c1", "c2"])), stamp)
        for stamp in sorted(draw(st.lists(st.integers(0, 2), min_size=size, max_size=size)))
    ]
    ops: dict[str, Any] = {}
    by_key: dict[tuple, list[str]] = {}
    for n, seen in enumerate(canonical):
        if draw(st.integers(0, 4)) > 0:
            event_id = f"e{n}"
            if ops and draw(st.integers(0, 4)) == 0:  # one operation, two events
                ops[event_id] = ops[draw(st.sampled_from(sorted(ops)))]
            elif draw(st.integers(0, 5)) > 0:  # else an operation not acknowledged
                invoke = draw(st.integers(0, 8))
                done = invoke + draw(st.integers(0, 3))
                ops[event_id] = SimpleNamespace(invoke_index=invoke, done_index=done)
            by_key.setdefault((identity_key(seen), repr(seen.timestamp)), []).append(event_id)
    ctx = CheckContext(None, None)  # type: ignore[arg-type]  # only the cache is used
    ctx.cache["causal_ops"] = ops
    strangers = [_seen("z", "c9", draw(st.integers(0, 2))) for _ in range(draw(st.integers(0, 2)))]
    observed = draw(st.permutations(canonical + strangers))
    observed = observed[: max(0, len(observed) - draw(st.integers(0, 4)))]  # a cut
    if draw(st.booleans()):
        observed.sort(key=lambda s: s.timestamp)  # runs of equal timestamps
    return ctx, by_key, observed, canonical


@settings(max_examples=600, deadline=None)
@given(listings(), st.booleans(), st.booleans(), st.booleans())
def test_the_run_at_once_order_check_equals_asking_every_pair(
    listing: tuple, backwards: bool, member_ties: bool, reverse: bool
) -> None:
    ctx, by_key, observed, canonical = listing
    order = Order(ctx, lambda: by_key, backwards, member_ties)
    if reverse:
        order = order.reversed()
    plain = Order(ctx, lambda: by_key, backwards, member_ties)
    plain_order = (lambda a, b: plain(b, a)) if reverse else plain
    assert _causal_order_kept(observed, canonical, order) == _plain_kept(
        observed,
        canonical,
        plain_order,  # type: ignore[arg-type]
    )


@settings(max_examples=300, deadline=None)
@given(listings(), st.booleans(), st.booleans())
def test_reversed_swaps_the_arguments(listing: tuple, backwards: bool, member_ties: bool) -> None:
    ctx, by_key, observed, _ = listing
    order = Order(ctx, lambda: by_key, backwards, member_ties)
    for a in observed:
        for b in observed:
            assert order.reversed()(a, b) == order(b, a)


@settings(max_examples=600, deadline=None)
@given(listings(), st.booleans(), st.booleans(), st.booleans())
def test_matches_range_equals_the_plain_multiset_check(
    listing: tuple, backwards: bool, member_ties: bool, unsorted: bool
) -> None:
    ctx, by_key, observed, canonical = listing
    if unsorted:  # a canonical history out of timestamp order: groups with one stamp recur
        canonical = canonical[::2] + canonical[1::2]
    order = Order(ctx, lambda: by_key, backwards, member_ties)
    for count in {len(observed), len(observed) + 1}:
        for listing_order in (None, order):
            assert matches_range(observed, canonical, count, listing_order) == (
                _plain_matches_range(observed, canonical, count, listing_order)
            )

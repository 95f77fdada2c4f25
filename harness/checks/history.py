"""History checks.

Implementation timestamps are never compared with the model's clock. Instead the runner reads
the implementation's whole history (forwards, no bounds, every page: the canonical history) and

- `history_contents` checks it against the model's log: every enter, update and leave exactly
  once, each member's in order, no present messages;
- `history_query` checks each history step against the canonical history filtered to the step's
  [start, end] (inclusive), ordered by its direction (default backwards), cut to its limit
  (default 100), following the pages when asked. A limit is a maximum (RSP4b3): a page larger
  than the limit breaks a MUST, a first page shorter than the limit that says more follows is
  reported under `history.full-pages` (SHOULD), both by the range check and by `expect_count`. Events with equal timestamps may come in any
  order among themselves, and a limit that cuts a group of equal timestamps may keep any of them,
  unless the harness knows their order: an event whose operation completed before the other's
  was issued (same channel) is the older one, whatever the timestamps say (`causally_before`).
  Such pairs must keep their order in the canonical history, in every query (both directions,
  across pages) and at a limit cut (the newer is kept before the older in a backwards listing).
  Operations in flight together stay unordered. Two events of one member in the same
  millisecond are the exception: time order says nothing about them, so their causal order is
  `history.per-member-order-same-ms` (SHOULD); across distinct timestamps a member's order, and
  the causal order between different members, stay MUSTs.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator

from presence_conformance.harness.checks.analysis import (
    canonical_alignments,
    canonical_events,
    causal_ops,
    causally_before,
    channel_events,
    describe_event,
    noop_leave,
    other_channel,
    refused_effect,
)
from presence_conformance.harness.checks.base import CheckContext, check, problem_requirements
from presence_conformance.harness.record.matching import Slot, identity_key
from presence_conformance.harness.record.records import (
    CanonicalRecord,
    HistoryQueryRecord,
    OpRecord,
    Seen,
)
from presence_conformance.harness.results import Violation
from presence_conformance.reference_impl.model import DEFAULT_HISTORY_LIMIT

_STAMP = "timestamp"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@check(
    "history.returns-events",
    "history.per-member-order",
    "history.per-member-order-same-ms",
    "history.no-present",
    "history.includes-synthesized-leave",
    "order.channel-isolation",
    "history.noop-leave",
    "message.client-id",
    "message.connection-id",
)
def history_contents(ctx: CheckContext) -> Iterator[Violation]:
    """The canonical history holds every model event exactly once, each member's in order."""
    for rec in ctx.record.canonicals:
        if rec.error is not None:
            yield ctx.violation(
                "history.returns-events",
                f"reading the whole history of {rec.channel!r} failed: {rec.error}",
                step=rec.step,
                history_index=rec.history_index,
            )
    synthesized = ctx.record.synthesized
    for rec, alignment in canonical_alignments(ctx):
        where = f"history of {rec.channel!r} (read by {rec.client!r})"
        for slot in alignment.missing:
            requirement = (
                "history.includes-synthesized-leave"
                if slot.event.id in synthesized
                else "history.returns-events"
            )
            yield ctx.violation(
                requirement,
                f"{where}: the {slot.event.action.value} of {slot.event.client_id!r} is missing",
                expected=describe_event(slot.event),
                step=rec.step,
                history_index=rec.history_index,
            )
        for seen, slot in alignment.late:
            tie = _tie_only(ctx, rec, seen, slot)
            yield ctx.violation(
                "history.per-member-order-same-ms" if tie else "history.per-member-order",
                f"{where}: the {slot.event.action.value} of "
                f"{slot.event.client_id!r} comes after a later event of the same "
                "member" + (" (both in the same millisecond)" if tie else ""),
                expected=describe_event(slot.event),
                observed=seen.json,
                step=rec.step,
                history_index=rec.history_index,
            )
        for seen in alignment.extras:
            if refused_effect(ctx, seen) is not None:
                continue
            if seen.action == "present":
                requirement = "history.no-present"
            elif other_channel(ctx, seen) is not None:
                requirement = "order.channel-isolation"
            elif noop_leave(ctx, seen) is not None:
                # RTP10d: the leave succeeds with no member change and no event; whether it is
                # stored in history is said nowhere (a note, not a violation)
                yield ctx.violation(
                    "history.noop-leave",
                    f"{where}: the leave() of {seen.client_id!r}, who was not present, is in "
                    "history (the reference stores none; both are allowed)",
                    observed=seen.json,
                    step=rec.step,
                    history_index=rec.history_index,
                )
                continue
            else:
                requirement = "history.returns-events"
            yield ctx.violation(
                requirement,
                f"{where}: unexpected {seen.action} of "
                f"{seen.client_id!r} (connection {seen.connection_id})",
                observed=seen.json,
                step=rec.step,
                history_index=rec.history_index,
            )
        for seen, slot, field in alignment.near:
            if field == "data":
                continue
            requirement = {
                "clientId": "message.client-id",
                "connectionId": "message.connection-id",
            }.get(field, "history.returns-events")
            yield ctx.violation(
                requirement,
                f"{where}: the {slot.event.action.value} of "
                f"{slot.event.client_id!r} has a wrong {field}",
                expected=describe_event(slot.event),
                observed=seen.json,
                step=rec.step,
                history_index=rec.history_index,
            )


def _tie_only(ctx: CheckContext, rec: CanonicalRecord, seen: Seen, slot: Slot) -> bool:
    """True if `seen` (matched late to `slot`) comes after later events of its member that all
    share its timestamp: time order says nothing about one millisecond, only the causal order
    the harness knows does (history.per-member-order-same-ms, SHOULD)."""
    if not _is_int(seen.timestamp) or rec.observed is None:
        return False
    events = canonical_events(ctx, rec)
    position = {e.model_id: n for n, e in enumerate(channel_events(ctx, rec.channel))}
    mine = position.get(slot.event.model_id)
    if mine is None:
        return False
    displacing = []
    for item in rec.observed:
        if item is seen:
            break
        event_id = events.get(id(item))
        if (
            item.member_key == seen.member_key
            and event_id is not None
            and position.get(event_id, -1) > mine
        ):
            displacing.append(item)
    return bool(displacing) and all(item.timestamp == seen.timestamp for item in displacing)


@check("history.direction-forwards")
def history_timestamps(ctx: CheckContext) -> Iterator[Violation]:
    """A forwards history (the canonical read) has non-decreasing timestamps, and an event whose
    operation completed before another's was issued comes before it (equal timestamps or not;
    one member's own order is history.per-member-order's business)."""
    for rec in ctx.record.canonicals:
        events = canonical_events(ctx, rec)
        latest: tuple[int, Seen, str] | None = None  # the item issued last so far
        ops = causal_ops(ctx)
        for seen in _events(rec.observed or ()):
            event_id = events.get(id(seen))
            op = ops.get(event_id) if event_id is not None else None
            if op is None:
                continue
            if (
                latest is not None
                and op.done_index is not None
                and op.done_index < latest[0]
                and causally_before(ctx, event_id, latest[2])
                and seen.member_key != latest[1].member_key
            ):
                yield ctx.violation(
                    "history.direction-forwards",
                    f"history of {rec.channel!r} forwards: the {seen.action} of "
                    f"{seen.client_id!r} comes after the {latest[1].action} of "
                    f"{latest[1].client_id!r}, although its operation completed before that "
                    "one was issued",
                    observed=[latest[1].json, seen.json],
                    step=rec.step,
                    history_index=rec.history_index,
                )
                break
            assert op.invoke_index is not None
            if latest is None or op.invoke_index > latest[0]:
                latest = (op.invoke_index, seen, event_id)  # type: ignore[assignment]
        stamps = [s.timestamp for s in _events(rec.observed or ()) if _is_int(s.timestamp)]
        for earlier, later in itertools.pairwise(stamps):
            if later < earlier:
                yield ctx.violation(
                    "history.direction-forwards",
                    f"history of {rec.channel!r} forwards: timestamp {later} follows {earlier}",
                    step=rec.step,
                    history_index=rec.history_index,
                )
                break


def _events(items: Iterable[Seen]) -> list[Seen]:
    """The items that are events: present items are history.no-present's business alone."""
    return [s for s in items if s.action != "present"]


def _expected_range(rec: HistoryQueryRecord) -> list[Seen]:
    canonical = rec.canonical.observed if rec.canonical else None
    items = [
        s
        for s in _events(canonical or ())
        if _is_int(s.timestamp)
        and (rec.start is None or s.timestamp >= rec.start)
        and (rec.end is None or s.timestamp <= rec.end)
    ]
    if rec.direction != "forwards":
        items.reverse()
    return items


def _runs(items: list[Seen]) -> list[list[Seen]]:
    """`items` cut into runs of consecutive items with equal timestamps."""
    runs: list[list[Seen]] = []
    for seen in items:
        if runs and runs[-1][0].timestamp == seen.timestamp:
            runs[-1].append(seen)
        else:
            runs.append([seen])
    return runs


def _multiset(items: list[Seen]) -> dict[tuple, int]:
    """Identity key -> how many of `items` have it."""
    counts: dict[tuple, int] = {}
    for seen in items:
        key = identity_key(seen)
        counts[key] = counts.get(key, 0) + 1
    return counts


class Order:
    """The causal order of a query's listing: `order(a, b)` is True if `a` must come before `b`
    (known from causality). Items are known through the canonical history (the item with the
    same identity and timestamp). Without `member_ties`, two events of one member with the same
    timestamp are left unordered (their causal order is a SHOULD,
    history.per-member-order-same-ms; the order is only ever asked of equal timestamps).

    `inverted` and `any_before` answer for a whole run of items what the pairwise `order` would:
    a run of equal timestamps can be long (a crowd entering in one millisecond), so each first
    rules the question out in one pass where it can and asks every pair only when it cannot.
    `ids_by_key` gives (identity key, repr(timestamp)) -> model event ids of the canonical
    history, built on first use: most listings have no equal timestamps to order."""

    def __init__(
        self,
        ctx: CheckContext,
        ids_by_key: Callable[[], dict[tuple, list[str]]],
        backwards: bool,
        member_ties: bool = True,
        memo: dict[int, OpRecord | None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.ids_by_key = ids_by_key
        self.backwards = backwards
        self.member_ties = member_ties
        self.memo: dict[int, OpRecord | None] = {} if memo is None else memo  # id(item) -> op

    def event_of(self, seen: Seen) -> str | None:
        ids = self.ids_by_key().get((identity_key(seen), repr(seen.timestamp)))
        return ids[0] if ids and len(ids) == 1 else None  # identical twins: order unknown

    def op_of(self, seen: Seen) -> OpRecord | None:
        """The acknowledged operation of `seen`'s event (None: no causal order is known)."""
        key = id(seen)  # a Seen of the record outlives the checks
        if key not in self.memo:
            event_id = self.event_of(seen)
            self.memo[key] = causal_ops(self.ctx).get(event_id) if event_id is not None else None
        return self.memo[key]

    def __call__(self, a: Seen, b: Seen) -> bool:
        if not self.member_ties and a.member_key == b.member_key and a.timestamp == b.timestamp:
            return False
        first, then = (b, a) if self.backwards else (a, b)
        return causally_before(self.ctx, self.event_of(first), self.event_of(then))

    def reversed(self) -> Order:
        """The order of the same items listed the other way round: `reversed()(a, b) == self(b, a)`."""
        return Order(self.ctx, self.ids_by_key, not self.backwards, self.member_ties, self.memo)

    def inverted(self, run: list[Seen]) -> bool:
        """True if some item of `run` must come before an item listed ahead of it."""
        # `self(later, earlier)` needs done(first) < invoke(then) of two known operations, with
        # (first, then) = (later, earlier) forwards, (earlier, later) backwards; no pair can
        # hold unless some item's bound beats the extreme of those listed before it
        suspect = False
        extreme: int | None = None
        for seen in run:
            op = self.op_of(seen)
            if op is None:
                continue
            assert op.invoke_index is not None and op.done_index is not None  # causal_ops
            if self.backwards:  # earlier done < later invoke
                if extreme is not None and extreme < op.invoke_index:
                    suspect = True
                    break
                extreme = op.done_index if extreme is None else min(extreme, op.done_index)
            else:  # later done < earlier invoke
                if extreme is not None and op.done_index < extreme:
                    suspect = True
                    break
                extreme = op.invoke_index if extreme is None else max(extreme, op.invoke_index)
        if not suspect:
            return False
        return any(self(later, earlier) for i, earlier in enumerate(run) for later in run[i + 1 :])

    def any_before(self, items: list[Seen], others: list[Seen]) -> bool:
        """True if some item of `items` must come before some item of `others`."""
        if not items or not others:
            return False
        firsts, thens = (others, items) if self.backwards else (items, others)
        # every pair needs done(first) < invoke(then) (causal_ops keeps both indexes)
        dones = [op.done_index or 0 for op in map(self.op_of, firsts) if op is not None]
        invokes = [op.invoke_index or 0 for op in map(self.op_of, thens) if op is not None]
        if not dones or not invokes or min(dones) >= max(invokes):
            return False
        return any(self(a, b) for a in items for b in others)


def matches_range(
    observed: list[Seen], expected_all: list[Seen], count: int, order: Order | None = None
) -> bool:
    """True if `observed` is the first `count` items of `expected_all`, up to the order of
    equal timestamps (and, in a group the cut splits, which of its items were kept), except
    where `order` knows it: within a group of equal timestamps no item comes before one that
    must precede it, and a cut keeps no item while dropping one that must precede it."""
    if len(observed) != count:
        return False
    expected = expected_all[:count]
    if [s.timestamp for s in observed] != [s.timestamp for s in expected]:
        return False
    whole = {run[0].timestamp: run for run in _runs(expected_all)}  # stamp -> its items
    # every group is complete but the last, which the cut may split: a sub-multiset suffices
    for run in _runs(observed):
        group = _multiset(whole[run[0].timestamp])
        if any(n > group.get(key, 0) for key, n in _multiset(run).items()):
            return False
    return order is None or _causal_order_kept(observed, expected_all, order)


def _causal_order_kept(observed: list[Seen], expected_all: list[Seen], order: Order) -> bool:
    runs = _runs(observed)
    if any(order.inverted(run) for run in runs if len(run) > 1):
        return False
    if runs:  # the cut: what was left of the last group must not precede what was kept
        kept = runs[-1]
        left = [s for s in expected_all if s.timestamp == kept[0].timestamp]
        # each kept item takes away the first item of `left` with its identity (its twin)
        twins: dict[tuple, deque[int]] = {}
        for n, s in enumerate(left):
            twins.setdefault(identity_key(s), deque()).append(n)
        taken: set[int] = set()
        for seen in kept:
            same = twins.get(identity_key(seen))
            if same:
                taken.add(same.popleft())
        left = [s for n, s in enumerate(left) if n not in taken]
        if order.any_before(left, kept):
            return False
    return True


def _order(ctx: CheckContext, rec: HistoryQueryRecord) -> tuple[Order, Order] | None:
    """The causal orders of a query's listing: what a MUST may demand (one member's events with
    equal timestamps left unordered), and the full one (with them: a SHOULD)."""
    if rec.canonical is None or rec.canonical.observed is None:
        return None
    canonical = rec.canonical

    def keys() -> dict[tuple, list[str]]:
        events = canonical_events(ctx, canonical)
        by_key: dict[tuple, list[str]] = {}
        for seen in canonical.observed or ():
            event_id = events.get(id(seen))
            if event_id is not None:
                by_key.setdefault((identity_key(seen), repr(seen.timestamp)), []).append(event_id)
        return by_key

    def ids_by_key() -> dict[tuple, list[str]]:
        return ctx.cached(f"history_event_keys:{id(canonical)}", keys)

    memo: dict[int, OpRecord | None] = ctx.cached(f"history_event_ops:{id(canonical)}", dict)
    backwards = rec.direction != "forwards"
    return (
        Order(ctx, ids_by_key, backwards, member_ties=False, memo=memo),
        Order(ctx, ids_by_key, backwards, memo=memo),
    )


def _limit_requirement(rec: HistoryQueryRecord) -> str:
    if rec.limit is None:
        return "history.limit-default-100"
    if rec.limit == 1000:
        return "history.limit-max-1000"
    return "history.pagination"


def _direction_requirement(rec: HistoryQueryRecord) -> str:
    return (
        "history.direction-forwards"
        if rec.direction == "forwards"
        else "history.direction-default-backwards"
    )


def _diagnose(
    rec: HistoryQueryRecord,
    observed: list[Seen],
    expected_all: list[Seen],
    count: int,
    order: Order | None = None,
) -> str:
    if any(
        _is_int(s.timestamp)
        and (
            (rec.start is not None and s.timestamp < rec.start)
            or (rec.end is not None and s.timestamp > rec.end)
        )
        for s in observed
    ):
        return "history.start-end-inclusive"
    edge = [s for s in expected_all[:count] if s.timestamp in (rec.start, rec.end)]
    got = Counter(identity_key(s) for s in observed)
    if edge and any(got[identity_key(s)] == 0 for s in edge):
        return "history.start-end-inclusive"
    reverse = expected_all[::-1]
    reversed_order = order.reversed() if order is not None else None
    if observed and matches_range(observed, reverse, min(count, len(reverse)), reversed_order):
        return _direction_requirement(rec)
    if len(observed) != count:
        return _limit_requirement(rec)
    got = Counter(identity_key(s) for s in observed)
    if got in (
        Counter(identity_key(s) for s in expected_all[:count]),
        Counter(identity_key(s) for s in reverse[:count]),  # the other end of the range
    ):
        return _direction_requirement(rec)
    return (
        "history.returns-events"
        if rec.start is None and rec.end is None
        else "history.start-end-inclusive"
    )


def _short_first_page(
    rec: HistoryQueryRecord, observed: list[Seen], expected_all: list[Seen], order: Order | None
) -> bool:
    """True if `observed`, the first page, is a shorter prefix of the range than the limit allows
    and says more follows: a limit is a maximum (RSP4b3), so that is no MUST violation."""
    return (
        0 < len(observed) < min(_limit(rec), len(expected_all))
        and bool(rec.has_next)
        and rec.has_next[0]
        and matches_range(observed, expected_all, len(observed), order)
    )


def _limit(rec: HistoryQueryRecord) -> int:
    return rec.limit if rec.limit is not None else DEFAULT_HISTORY_LIMIT


@check(
    "history.direction-default-backwards",
    "history.direction-forwards",
    "history.limit-default-100",
    "history.limit-max-1000",
    "history.start-end-inclusive",
    "history.pagination",
    "history.returns-events",
    "history.full-pages",
    "history.per-member-order-same-ms",
)
def history_query(ctx: CheckContext) -> Iterator[Violation]:
    """A history step returns the canonical history's [start, end] range, in its direction,
    limited, and its pages cover the range exactly once."""
    for rec in ctx.record.queries:
        op = rec.op
        if (
            op.model_error is not None
            or op.status != "ok"
            or rec.canonical is None
            or rec.canonical.observed is None
            or rec.malformed is not None
        ):
            continue
        expected_all = _expected_range(rec)
        orders = _order(ctx, rec)
        # what a MUST may demand; with one member's same-millisecond events: a SHOULD
        order, full_order = orders if orders is not None else (None, None)
        limit = rec.limit if rec.limit is not None else DEFAULT_HISTORY_LIMIT
        label = f"{op.step.label}: history({_params(rec)})"
        pages = [_events(page) for page in rec.pages]
        oversized = [n for n, page in enumerate(rec.pages) if len(page) > limit]
        for n in oversized:
            yield ctx.violation(
                _limit_requirement(rec) if rec.limit is None or n == 0 else "history.pagination",
                f"{label}: page {n + 1} has {len(rec.pages[n])} items, more than the limit {limit}",
                step=op.index,
                history_index=rec.history_index,
            )
        if rec.pages_mode == "all":
            observed = [s for page in pages for s in page]
            count = len(expected_all)
            if not matches_range(observed, expected_all, count, order):
                yield ctx.violation(
                    "history.pagination",
                    f"{label}: following the pages returned {len(observed)} "
                    f"items, not the {count} events of the range in order",
                    expected=[s.json for s in expected_all],
                    observed=[s.json for s in observed],
                    step=op.index,
                    history_index=rec.history_index,
                )
            elif full_order is not None and not _causal_order_kept(
                observed, expected_all, full_order
            ):  # the range matches: only the order of one member's ties is left to ask
                yield _same_ms_violation(ctx, rec, label, observed)
            continue
        observed = pages[0] if pages else []
        count = min(limit, len(expected_all))
        if _short_first_page(rec, observed, expected_all, order):
            yield ctx.violation(
                "history.full-pages",
                f"{label}: the first page holds {len(observed)} items and more follow; "
                f"a full page would hold {count}",
                expected=count,
                observed=len(observed),
                step=op.index,
                history_index=rec.history_index,
            )
            if full_order is not None and not _causal_order_kept(
                observed, expected_all, full_order
            ):
                yield _same_ms_violation(ctx, rec, label, observed)
        elif not matches_range(observed, expected_all, count, order):
            yield ctx.violation(
                _diagnose(rec, observed, expected_all, count, order),
                f"{label}: returned {len(observed)} items, expected the "
                f"{count} {'oldest' if rec.direction == 'forwards' else 'newest'}"
                f" of the {len(expected_all)} events in range",
                expected=[s.json for s in expected_all[:count]],
                observed=[s.json for s in observed],
                step=op.index,
                history_index=rec.history_index,
            )
        elif full_order is not None and not _causal_order_kept(observed, expected_all, full_order):
            yield _same_ms_violation(ctx, rec, label, observed)
        elif len(expected_all) > limit and rec.has_next and not rec.has_next[0]:
            yield ctx.violation(
                "history.pagination",
                f"{label}: {len(expected_all)} events match but has_next() is false after {limit}",
                step=op.index,
                history_index=rec.history_index,
            )


def _same_ms_violation(
    ctx: CheckContext, rec: HistoryQueryRecord, label: str, observed: list[Seen]
) -> Violation:
    return ctx.violation(
        "history.per-member-order-same-ms",
        f"{label}: two events of one member with the same timestamp are listed against the "
        "order their operations took effect",
        observed=[s.json for s in observed],
        step=rec.op.index,
        history_index=rec.history_index,
    )


def _params(rec: HistoryQueryRecord) -> str:
    return ", ".join(
        f"{k}={v!r}"
        for k, v in (
            ("start", rec.start),
            ("end", rec.end),
            ("limit", rec.limit),
            ("direction", rec.direction),
        )
        if v is not None
    )


@check("history.full-pages", explicit=True)
def history_expect_count(ctx: CheckContext) -> Iterator[Violation]:
    """A history step's `expect_count`: the number of items (of every page with `pages: all`)."""
    for rec in ctx.record.queries:
        wanted = rec.op.step.args.get("expect_count")
        if wanted is None or rec.op.status != "ok":
            continue
        got = (
            sum(len(p) for p in rec.pages)
            if rec.pages_mode == "all"
            else len(rec.pages[0] if rec.pages else [])
        )
        if (
            got != wanted
            and rec.pages_mode != "all"
            and got < wanted
            and rec.has_next[:1] == [True]
        ):
            # a shorter first page that says more follows: a limit is a maximum (RSP4b3)
            yield ctx.violation(
                "history.full-pages",
                f"{rec.op.step.label}: {got} items on the first page and more follow; the "
                f"scenario expects a full page of {wanted}",
                expected=wanted,
                observed=got,
                step=rec.op.index,
                history_index=rec.history_index,
            )
        elif got != wanted:
            tags = ctx.record.step_requirements(rec.op.step)
            for requirement in problem_requirements(tags, "count"):
                yield ctx.violation(
                    requirement,
                    f"{rec.op.step.label}: {got} items, the scenario expects {wanted}",
                    expected=wanted,
                    observed=got,
                    step=rec.op.index,
                    history_index=rec.history_index,
                )

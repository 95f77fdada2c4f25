"""REST presence checks (`rest_get`, RestPresence#get, RSP3): the first page holds the model's
members, with action present, filtered by clientId (RSP3a2) and connectionId (RSP3a3), and with
a `limit` below the number of members exactly that many of them (RSP3a1).

A read is repeated by the runner (bounded) until it is what the model allows; the record holds
the last one.
"""

from __future__ import annotations

from collections.abc import Iterator

from presence_conformance.harness.checks.base import CheckContext, check
from presence_conformance.harness.record.matching import members_equal
from presence_conformance.harness.record.records import RestGetRecord, Seen
from presence_conformance.harness.results import Violation
from presence_conformance.reference_impl.types import PresenceMessage, data_equal


def rest_page_ok(
    expected: list[PresenceMessage], limit: int | None, observed: list[Seen] | None
) -> bool:
    """True if a first REST page is what RSP3a allows: the expected members (key and data), or
    with fewer members than expected exactly `limit` (default 100) distinct ones among them."""
    if observed is None:
        return False
    page = 100 if limit is None else limit
    if len(expected) <= page:
        return members_equal(expected, observed)
    if len(observed) != page:
        return False
    by_key = {m.member_key: m for m in expected}
    keys = set()
    for seen in observed:
        member = by_key.get(seen.member_key)
        if member is None or seen.member_key in keys or not data_equal(seen.data, member.data):
            return False
        keys.add(seen.member_key)
    return True


def _requirement(rec: RestGetRecord) -> str:
    if rec.limit is not None and len(rec.expected) > rec.limit:
        return "get.rest-limit"
    if rec.connection_id_filter is not None:
        return "get.rest-filter-connection-id"
    if rec.client_id_filter is not None:
        return "get.rest-filter-client-id"
    return "get.rest-members"


def _members(items: list) -> list[dict]:
    return [
        {"clientId": m.client_id, "connectionId": m.connection_id, "data": m.data} for m in items
    ]


@check(
    "get.rest-members",
    "get.rest-limit",
    "get.rest-filter-client-id",
    "get.rest-filter-connection-id",
)
def rest_get_members(ctx: CheckContext) -> Iterator[Violation]:
    """The REST read returns the model's members (or `limit` of them), with action present."""
    for rec in ctx.record.rest_gets:
        if rec.op.status != "ok":
            continue
        observed = rec.observed
        if observed is None:
            yield ctx.violation(
                "get.rest-members",
                f"{rec.op.step.label}: the REST presence get returned no list",
                observed=rec.malformed,
                step=rec.op.index,
                history_index=rec.history_index,
            )
            continue
        if not rest_page_ok(rec.expected, rec.limit, observed):
            requirement = _requirement(rec)
            if requirement == "get.rest-limit" and not members_equal(rec.expected, observed):
                what = f"{len(observed)} member(s), not {rec.limit} of the {len(rec.expected)}"
            else:
                what = "other members than the channel's"
            yield ctx.violation(
                requirement,
                f"{rec.op.step.label}: the REST presence get returned {what}",
                expected=_members(rec.expected),
                observed=[s.json for s in observed],
                step=rec.op.index,
                history_index=rec.history_index,
            )
        for seen in observed:
            if seen.action != "present":
                yield ctx.violation(
                    "get.rest-members",
                    f"{rec.op.step.label}: member {seen.member_key} has action "
                    f"{seen.action!r}, not present",
                    expected="present",
                    observed=seen.json,
                    step=rec.op.index,
                    history_index=rec.history_index,
                )

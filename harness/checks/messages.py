"""Message checks: every presence message an implementation delivered or returned is valid
against the schema, has well-formed fields, unique event ids of the expected form, data that
round-trips unchanged in type and value, and connections get fresh ids."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

from presence_conformance.harness.checks.analysis import (
    canonical_alignments,
    channel_events,
    listener_alignments,
)
from presence_conformance.harness.checks.base import CheckContext, check
from presence_conformance.harness.record.records import EventOrigin, GetRecord, Seen
from presence_conformance.harness.results import Violation
from presence_conformance.harness.scenario import ACTIONS
from presence_conformance.reference_impl.types import PresenceMessage, data_equal

_IDENTITY_FIELDS = frozenset(("clientId", "connectionId", "id"))
_SHAPES: dict[tuple, list[str]] = {}  # shape key -> schema errors, shared by every case
_MAX_SHAPES = 20_000


def _exact(value: Any) -> tuple:
    """A key for `value` itself: equal only for values of one type that print alike (an error
    message shows the value: True, 1 and 1.0 stay apart, and so do 0.0 and -0.0, and two
    objects with their keys in another order)."""
    if value is None or isinstance(value, bool | int | str):
        return (type(value), value)
    return (type(value), repr(value))


def _data_shape(data: Any) -> tuple:
    """A key for member data equal only for data the schema's `data` definition cannot tell
    apart: any string, array or null is valid as such, an object too unless its only key is
    `$binary` (then that value is validated, and kept); anything else is kept as it is."""
    if data is None or isinstance(data, str | list):
        return (type(data),)
    if isinstance(data, dict):
        if len(data) == 1 and "$binary" in data:
            return ("binary", _exact(data["$binary"]))
        return (dict,)
    return _exact(data)


def _shape_key(instance: Any) -> tuple:
    """A key equal for messages the schema cannot tell apart: valid identity fields (non-empty
    strings), valid timestamps (integers >= 0) and valid data (`_data_shape`) are folded, every
    other value is kept as it is (so an invalid value is validated, and reported, as itself).
    Built field by field: serialising every message to key the cache cost more than the rest of
    the check (tests/harness/checks/test_schema_shapes.py proves the folding exact)."""
    if not isinstance(instance, dict):
        return ("whole", _exact(instance))
    key: list[Any] = []
    for name, value in instance.items():
        key.append(name)
        if name in _IDENTITY_FIELDS and isinstance(value, str) and value:
            key.append("x")
        elif name == "timestamp" and isinstance(value, int) and not isinstance(value, bool):
            key.append(0 if value >= 0 else _exact(value))
        elif name == "data":
            key.append(_data_shape(value))
        else:
            key.append(_exact(value))
    return tuple(key)


def _schema_errors(instance: Any, cache: dict[tuple, list[str]]) -> list[str]:
    key = _shape_key(instance)
    if key not in cache:
        if key not in _SHAPES:
            from presence_conformance import spec

            if len(_SHAPES) >= _MAX_SHAPES:
                _SHAPES.clear()
            _SHAPES[key] = (
                []
                if spec.validator("presence-message").is_valid(instance)
                else spec.validate("presence-message", instance)
            )
        cache[key] = _SHAPES[key]
    return cache[key]


def _where(seen: Seen) -> str:
    if seen.source == "event":
        return f"an event delivered to listener {seen.listener[1] if seen.listener else '?'}"
    return f"a {seen.source}() item on {seen.channel!r}"


@check("message.schema")
def message_schema(ctx: CheckContext) -> Iterator[Violation]:
    """Every presence message is valid against spec/schemas/presence-message.json."""
    cache: dict[tuple, list[str]] = {}
    for seen in ctx.record.seen:
        if not seen.container:
            yield ctx.violation(
                "message.schema",
                f"{_where(seen)} is not a presence message",
                observed=seen.json,
                step=seen.step,
                history_index=seen.history_index,
            )
            continue
        errors = _schema_errors(seen.json, cache)
        if errors:
            yield ctx.violation(
                "message.schema",
                f"{_where(seen)}: " + "; ".join(errors),
                observed=seen.json,
                step=seen.step,
                history_index=seen.history_index,
            )
    for rec in ctx.record.gets:
        if rec.malformed is not None:
            yield ctx.violation(
                "message.schema",
                f"get() by {rec.client!r} returned "
                f"{rec.malformed!r}, not a list of presence messages",
                observed=rec.malformed,
                step=rec.step,
                history_index=rec.history_index,
            )
    for query in ctx.record.queries:
        if query.malformed is not None:
            yield ctx.violation(
                "message.schema",
                f"{query.op.step.label}: the history page's "
                f"items are {query.malformed!r}, not a list",
                observed=query.malformed,
                step=query.op.index,
                history_index=query.history_index,
            )


CLOCK_SKEW_TOLERANCE_MS = 5 * 60 * 1000
"""How far a timestamp may lie outside the case's wall-clock window (ms): the implementation's
clock (a server's, for a networked one) may differ from the harness machine's. TP3g says a
timestamp is "time in milliseconds since epoch", so it lies within the window the case ran in,
give or take this skew; seconds (1000 times too small) or microseconds (1000 times too large)
since the epoch are far outside it."""


def timestamp_window(started: float, now: float | None = None) -> tuple[int, int]:
    """The timestamps (ms since the epoch) a case that started at `started` (s since the epoch)
    and is checked at `now` (default: the current time) may see, the skew tolerance included."""
    end = time.time() if now is None else now
    return (
        int(started * 1000) - CLOCK_SKEW_TOLERANCE_MS,
        int(end * 1000) + CLOCK_SKEW_TOLERANCE_MS,
    )


@check("message.action", "message.timestamp", "message.id")
def message_fields(ctx: CheckContext) -> Iterator[Violation]:
    """Actions are presence actions, timestamps integer milliseconds since the epoch within the
    case's wall-clock window (give or take `CLOCK_SKEW_TOLERANCE_MS`), ids non-empty strings."""
    window = timestamp_window(ctx.record.wall_started)
    for seen in ctx.record.seen:
        if not seen.container:
            continue
        raw_action = seen.json.get("action") if isinstance(seen.json, dict) else None
        if seen.action not in ACTIONS:
            yield ctx.violation(
                "message.action",
                f"{_where(seen)} has action {raw_action!r}",
                observed=seen.json,
                step=seen.step,
                history_index=seen.history_index,
            )
        stamp = seen.timestamp
        if not isinstance(stamp, int) or isinstance(stamp, bool) or stamp < 0:
            yield ctx.violation(
                "message.timestamp",
                f"{_where(seen)} has timestamp {stamp!r}, not integer milliseconds since the epoch",
                observed=seen.json,
                step=seen.step,
                history_index=seen.history_index,
            )
        elif not window[0] <= stamp <= window[1]:
            yield ctx.violation(
                "message.timestamp",
                f"{_where(seen)} has timestamp {stamp!r}, outside the case's wall-clock window "
                f"{window[0]}..{window[1]} (ms since the epoch, with "
                f"{CLOCK_SKEW_TOLERANCE_MS // 60000} min for clock skew): not milliseconds "
                "since the epoch (seconds? microseconds?)",
                expected=f"{window[0]}..{window[1]}",
                observed=seen.json,
                step=seen.step,
                history_index=seen.history_index,
            )
        if seen.source != "get" and seen.action in ("enter", "update", "leave"):
            ok = isinstance(seen.id, str) and seen.id != ""
            if not ok and not (seen.id is None and seen.action == "leave"):
                yield ctx.violation(
                    "message.id",
                    f"{_where(seen)} has id {seen.id!r}, not a non-empty string",
                    observed=seen.json,
                    step=seen.step,
                    history_index=seen.history_index,
                )


def _event_matches(ctx: CheckContext) -> list[tuple[Seen, PresenceMessage, EventOrigin | None]]:
    """Events and history items, each with the model event it was matched to."""

    def compute() -> list[tuple[Seen, PresenceMessage, EventOrigin | None]]:
        out = []
        for analysis in listener_alignments(ctx).values():
            for seen, slot, _ in analysis.alignment.matched:
                out.append((seen, slot.event, slot.origin))
            out.extend((seen, slot.event, slot.origin) for seen, slot in analysis.alignment.late)
        for _, alignment in canonical_alignments(ctx):
            for seen, slot, _ in alignment.matched:
                out.append((seen, slot.event, slot.origin))
        return [(s, e, o) for s, e, o in out if s.action in ("enter", "update", "leave")]

    return ctx.cached("event_matches", compute)


@check("message.id")
def message_ids_unique(ctx: CheckContext) -> Iterator[Violation]:
    """No two distinct events of a channel share an id."""
    owners: dict[tuple[str, str], tuple[str, Seen]] = {}
    for seen, event, _ in _event_matches(ctx):
        if not isinstance(seen.id, str) or not seen.id:
            continue
        key = (seen.channel, seen.id)
        first = owners.setdefault(key, (event.model_id, seen))
        if first[0] != event.id:
            yield ctx.violation(
                "message.id",
                f"two distinct events on {seen.channel!r} share the id {seen.id!r}",
                expected="a unique id per event",
                observed=[first[1].json, seen.json],
                step=seen.step,
                history_index=seen.history_index,
            )


_SERIAL_INDEX = re.compile(r":\d+:\d+")


def published_id(event_id: str, connection_id: str) -> bool:
    """True if `event_id` is `connectionId:msgSerial:index` (RTP2b2) for `connection_id`; one
    pattern for every connection (compiling one per connectionId cost more than the check)."""
    return event_id.startswith(connection_id) and bool(
        _SERIAL_INDEX.fullmatch(event_id, len(connection_id))
    )


@check("message.id-format", "disconnect.synthesized-leave-id")
def message_id_format(ctx: CheckContext) -> Iterator[Violation]:
    """An event a connection published has the id connectionId:msgSerial:index; a leave
    synthesized after a drop has an id that does not start with the connectionId."""
    reported: set[str] = set()
    for seen, event, origin in _event_matches(ctx):
        if (
            not isinstance(seen.id, str)
            or not isinstance(seen.connection_id, str)
            or event.id in reported
        ):
            continue
        kind = origin.kind if origin else ""
        if kind == "drop":
            if seen.id.startswith(seen.connection_id):
                reported.add(event.model_id)
                yield ctx.violation(
                    "disconnect.synthesized-leave-id",
                    f"the leave synthesized for {seen.client_id!r} after its "
                    f"connection dropped has id {seen.id!r}, which starts with "
                    "the connectionId",
                    observed=seen.json,
                    step=seen.step,
                    history_index=seen.history_index,
                )
        elif kind in ("enter", "update", "leave"):
            if not published_id(seen.id, seen.connection_id):
                reported.add(event.model_id)
                yield ctx.violation(
                    "message.id-format",
                    f"the {seen.action} of {seen.client_id!r} has id {seen.id!r}, "
                    "not connectionId:msgSerial:index",
                    expected=f"{seen.connection_id}:<msgSerial>:<index>",
                    observed=seen.id,
                    step=seen.step,
                    history_index=seen.history_index,
                )


def _non_ascii(data: Any) -> bool:
    try:
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    except (TypeError, ValueError):
        return False
    return any(ord(c) > 127 for c in text)


def _earlier_data(ctx: CheckContext, seen: Seen, event: PresenceMessage) -> bool:
    """True if `seen.data` is data the member had before `event` (a stale value)."""
    for earlier in channel_events(ctx, seen.channel):
        if earlier.id == event.id:
            return False
        if earlier.member_key == event.member_key and data_equal(earlier.data, seen.data):
            return True
    return False


def data_requirement(
    ctx: CheckContext, seen: Seen, event: PresenceMessage, origin: EventOrigin | None
) -> str:
    """The requirement broken when `seen` carries other data than `event`."""
    kind = origin.kind if origin else ""
    expected, got = event.data, seen.data
    if kind == "leave" and origin and origin.data_given:
        return "leave.data-given"
    if kind in ("leave", "drop", "close", "detach"):
        return "leave.data-defaults-to-member-data"
    if _earlier_data(ctx, seen, event):
        return {
            "update": "update.event-emitted" if seen.source == "event" else "update.changes-data"
        }.get(kind, "enter.data")
    if isinstance(expected, bytes):
        return "data.binary"
    if expected is None:
        return "update.null-data" if kind == "update" else "data.empty"
    if type(got) is not type(expected) and not (
        isinstance(got, dict) and isinstance(expected, dict)
    ):
        return "message.data"
    if _non_ascii(expected):
        return "data.unicode"
    if isinstance(expected, list):
        return "data.json-array"
    if isinstance(expected, dict):
        return "data.json-object"
    return "data.string"


def _get_pairs(rec: GetRecord) -> Iterator[tuple[Seen, PresenceMessage]]:
    by_key = {m.member_key: m for m in rec.expected}
    for seen in rec.observed or ():
        member = by_key.get(seen.member_key)
        if member is not None and not data_equal(seen.data, member.data):
            yield seen, member


@check(
    "message.data",
    "data.string",
    "data.json-object",
    "data.binary",
    "data.json-array",
    "data.empty",
    "data.unicode",
    "enter.data",
    "update.changes-data",
    "update.event-emitted",
    "update.null-data",
    "leave.data-given",
    "leave.data-defaults-to-member-data",
)
def data_round_trip(ctx: CheckContext) -> Iterator[Violation]:
    """Member data reaches events, get() and history unchanged in type and value."""
    pairs: list[tuple[Seen, PresenceMessage, EventOrigin | None]] = []
    for analysis in listener_alignments(ctx).values():
        pairs.extend(
            (s, slot.event, slot.origin)
            for s, slot, field in analysis.alignment.near
            if field == "data"
        )
    for _, alignment in canonical_alignments(ctx):
        pairs.extend(
            (s, slot.event, slot.origin) for s, slot, field in alignment.near if field == "data"
        )
    for rec in ctx.record.gets:
        if rec.kind == "step" and rec.wait_for_sync is not False:
            for seen, member in _get_pairs(rec):
                origin = ctx.record.origins.get(member.model_id)
                pairs.append((seen, member, origin))
    reported: set[tuple[str, str]] = set()
    for seen, event, origin in pairs:
        requirement = data_requirement(ctx, seen, event, origin)
        key = (event.model_id, seen.source + repr(seen.data))
        if key in reported:
            continue
        reported.add(key)
        yield ctx.violation(
            requirement,
            f"{_where(seen)}: the data of {event.client_id!r} is "
            f"{type(seen.data).__name__} {seen.data!r}, expected "
            f"{type(event.data).__name__} {event.data!r}",
            expected=event.data,
            observed=seen.json,
            step=seen.step,
            history_index=seen.history_index,
        )


@check("disconnect.reconnect-new-member", "message.connection-id")
def connection_ids(ctx: CheckContext) -> Iterator[Violation]:
    """Every connection has its own connectionId, a reconnected client's included."""
    for rec in ctx.record.connects:
        if rec.connection_id is None:
            continue
        if rec.connection_id in rec.earlier_ids:
            yield ctx.violation(
                "disconnect.reconnect-new-member",
                f"client {rec.client!r} reconnected with the connectionId "
                f"{rec.connection_id!r} of its earlier connection",
                observed=rec.connection_id,
                step=rec.step,
                history_index=rec.history_index,
            )
        elif rec.connection_id in rec.other_ids:
            yield ctx.violation(
                "message.connection-id",
                f"client {rec.client!r} got the connectionId "
                f"{rec.connection_id!r} of another client's connection",
                observed=rec.connection_id,
                step=rec.step,
                history_index=rec.history_index,
            )

"""What the runner observed in one case: the facts the checks judge.

The runner drives the adapter and fills a `CaseRecord`; it decides nothing about conformance.
Everything an implementation returned is kept as a `Seen` (read defensively: a malformed value is
recorded as it came, for the checks to report), next to what the reference model expected at that
moment (`Expected` deliveries, the model's `get` and history results).
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from presence_conformance.harness.record.bounds import bounded
from presence_conformance.harness.record.history import History
from presence_conformance.harness.scenario import Scenario, Step
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.model import PresenceModel
from presence_conformance.reference_impl.types import (
    Action,
    PresenceMessage,
    data_equal,
    data_from_json,
    data_to_json,
)

ListenerKey = tuple[str, str]  # (connection id, listener name)

_MISSING = object()


def jsonable(value: Any, depth: int = 0, *, bound: bool = True) -> Any:
    """A JSON-ready copy of `value`: binary as `{"$binary": base64}` (the project's JSON
    convention), enums by value, sets sorted, objects with `to_json()` through it, anything else
    as its repr. The one conversion the record, the checks and the reports use.

    Long values are truncated with a marker (`presence_conformance.harness.record.bounds`)
    unless `bound` is False (the full JSON form the checks validate)."""
    if bound:
        return bounded(jsonable(value, depth, bound=False))
    kind = type(value)
    if kind in _PLAIN:  # the commonest exact types first, as the branches below treat them
        return value
    if kind is dict and depth <= 20:
        return {str(k): jsonable(v, depth + 1, bound=False) for k, v in value.items()}
    if kind is list and depth <= 20:
        return [jsonable(v, depth + 1, bound=False) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return data_to_json(bytes(value))
    if isinstance(value, enum.Enum):
        return jsonable(value.value, depth + 1, bound=False)
    if depth > 20:
        return repr(value)
    if isinstance(value, PresenceMessage):
        return read_message(value)["json"]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1, bound=False) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, depth + 1, bound=False) for v in value]
    if isinstance(value, set | frozenset):
        return [jsonable(v, depth + 1, bound=False) for v in sorted(value, key=repr)]
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return jsonable(to_json(), depth + 1, bound=False)
    return repr(value)


def read_message(raw: Any) -> dict[str, Any]:
    """The fields of a presence message as an implementation returned it, without trusting it.

    Accepts a `PresenceMessage` or a mapping in the JSON form; returns `action`, `client_id`,
    `connection_id`, `data`, `timestamp`, `id` (None when absent or unreadable) and `json`, the
    API JSON form to validate against the schema (fields that were absent are left out).
    """
    # the exact forms the reference and the adapters return take a shorter path to the same
    # result (tests/harness/record/test_read_message_fast_path.py); anything else, the general one
    kind = type(raw)
    if kind is PresenceMessage:
        fields = _read_plain_message(raw)
    elif kind is dict:
        fields = _read_plain_mapping(raw)
    else:
        fields = None
    return _read_message(raw) if fields is None else fields


_PLAIN = frozenset({str, int, type(None)})  # exact types jsonable returns as they are
_ACTION_NAMES = {action: action.value for action in Action}
_MAPPING_FIELDS = (  # (JSON name, the other spelling read_message accepts)
    ("action", None),
    ("clientId", "client_id"),
    ("connectionId", "connection_id"),
    ("data", None),
    ("timestamp", None),
    ("id", None),
)


def _read_plain_message(raw: PresenceMessage) -> dict[str, Any] | None:
    """`_read_message` of a `PresenceMessage` whose fields have the exact types the reference
    gives them (an `Action`; str, int or None elsewhere); None for any other."""
    action, client_id, connection_id = raw.action, raw.client_id, raw.connection_id
    data, timestamp, id_ = raw.data, raw.timestamp, raw.id
    if (
        type(action) is not Action
        or type(client_id) not in _PLAIN
        or type(connection_id) not in _PLAIN
        or type(timestamp) not in _PLAIN
        or type(id_) not in _PLAIN
    ):
        return None
    name = _ACTION_NAMES[action]
    kind = type(data)
    if kind is str or data is None:
        data_json: Any = data
    elif kind is bytes:
        data_json = data_to_json(data)  # a new {"$binary": str}, as jsonable would copy it
    else:
        data_json = jsonable(data_to_json(data), bound=False)
    return {
        "action": name,
        "client_id": client_id,
        "connection_id": connection_id,
        "data": data,
        "timestamp": timestamp,
        "id": id_,
        "json": {
            "action": name,
            "clientId": client_id,
            "connectionId": connection_id,
            "data": data_json,
            "timestamp": timestamp,
            "id": id_,
        },
        "container": True,
    }


def _read_plain_mapping(raw: dict) -> dict[str, Any] | None:
    """`_read_message` of a dict whose fields other than `data` are str, int or None (exact
    types); None for any other."""
    json_form: dict[str, Any] = {}
    data: Any = None
    for key, other in _MAPPING_FIELDS:
        if key in raw:
            value = raw[key]
        elif other is not None and other in raw:
            value = raw[other]
        else:
            continue
        if key == "data":
            data = data_from_json(value)
            value = jsonable(data_to_json(value), bound=False)
        elif type(value) not in _PLAIN:
            return None
        json_form[key] = value
    action = json_form.get("action")
    return {
        "action": action if type(action) is str else None,
        "client_id": json_form.get("clientId"),
        "connection_id": json_form.get("connectionId"),
        "data": data,
        "timestamp": json_form.get("timestamp"),
        "id": json_form.get("id"),
        "json": json_form,
        "container": True,
    }


def _read_message(raw: Any) -> dict[str, Any]:
    """`read_message` for any value (the general path)."""
    if isinstance(raw, PresenceMessage):
        action = raw.action.value if isinstance(raw.action, Action) else raw.action
        values: dict[str, Any] = {
            "action": action,
            "clientId": raw.client_id,
            "connectionId": raw.connection_id,
            "data": raw.data,
            "timestamp": raw.timestamp,
            "id": raw.id,
        }
        data = raw.data
    elif isinstance(raw, Mapping):

        def pick(*names: str) -> Any:
            return next((raw[n] for n in names if n in raw), _MISSING)

        action = pick("action")
        if isinstance(action, Action):
            action = action.value
        values = {
            "action": action,
            "clientId": pick("clientId", "client_id"),
            "connectionId": pick("connectionId", "connection_id"),
            "data": pick("data"),
            "timestamp": pick("timestamp"),
            "id": pick("id"),
        }
        data = data_from_json(values["data"]) if values["data"] is not _MISSING else None
    else:
        return {
            "action": None,
            "client_id": None,
            "connection_id": None,
            "data": None,
            "timestamp": None,
            "id": None,
            "json": jsonable(raw, bound=False),
            "container": False,
        }
    json_form: dict[str, Any] = {}
    for key, value in values.items():
        if value is _MISSING:
            continue
        json_form[key] = jsonable(data_to_json(value) if key == "data" else value, bound=False)

    def get(key: str) -> Any:
        value = values[key]
        return None if value is _MISSING else value

    return {
        "action": get("action") if isinstance(get("action"), str) else None,
        "client_id": get("clientId"),
        "connection_id": get("connectionId"),
        "data": data,
        "timestamp": get("timestamp"),
        "id": get("id"),
        "json": json_form,
        "container": True,
    }


@dataclass(eq=False)
class Seen:
    """One presence message an implementation delivered or returned.

    `source` is `event` (delivered to `listener`), `get` or `history`; `history_index` points at
    the history entry that recorded it, `step` at the scenario step during which it was seen.
    """

    source: str
    raw: Any
    history_index: int
    step: int | None
    channel: str
    action: str | None
    client_id: Any
    connection_id: Any
    data: Any
    timestamp: Any
    id: Any
    json: Any
    container: bool = True
    listener: ListenerKey | None = None

    @classmethod
    def read(
        cls,
        raw: Any,
        source: str,
        history_index: int,
        step: int | None,
        channel: str,
        listener: ListenerKey | None = None,
    ) -> Seen:
        fields = read_message(raw)
        return cls(  # positionally, in the order of the fields (every message seen comes here)
            source,
            raw,
            history_index,
            step,
            channel,
            fields["action"],
            fields["client_id"],
            fields["connection_id"],
            fields["data"],
            fields["timestamp"],
            fields["id"],
            fields["json"],
            fields["container"],
            listener,
        )

    @property
    def member_key(self) -> str:
        return f"{self.connection_id}:{self.client_id}"

    def describe(self) -> Any:
        return self.json


@dataclass(frozen=True)
class EventOrigin:
    """How a model event came about: the step, the operation, and the facts that decide which
    variations an implementation may show (an enter while present may be reported as update...).

    `kind`: enter | update | leave | close | drop | detach | present (a sync delivery on attach).
    """

    kind: str
    step: int | None
    channel: str
    was_present: bool = True
    data_given: bool = False


@dataclass(eq=False)
class Expected:
    """A delivery the model requires (at least `min_count`, at most `max_count` times)."""

    event: PresenceMessage
    origin: EventOrigin
    listener: ListenerKey
    channel: str
    min_count: int
    max_count: int
    step: int | None


@dataclass(eq=False)
class ListenerRecord:
    """A named listener on one connection and channel, and what it received."""

    key: ListenerKey
    name: str
    client: str
    channel: str
    connection_id: str
    callback: Callable[[Any], None] | None = None
    received: list[Seen] = field(default_factory=list)
    expected: list[Expected] = field(default_factory=list)
    subscriptions: list[tuple[int, tuple[str, ...] | None]] = field(default_factory=list)
    unsubscriptions: list[tuple[int, str, tuple[str, ...] | None]] = field(default_factory=list)
    attach_step: int | None = None  # the subscribe step that attached the channel


@dataclass(eq=False)
class LifecycleRecord:
    """A channel-lifecycle fact the model decides (`harness/run/lifecycle_steps.py`): an
    `attach`/`detach` step, a `channel_state` read, a presence operation on a channel whose
    state refuses it (RTP8g, RTP16c), or one queued behind an attach that fails (RTL11).

    `expected` is `ok`, `error` (any code: the sentences name none) or a channel state;
    `observed` is `ok`, `error` or the state read (None: the call did not complete).
    `window` is, for a detach, the history indexes from its invoke to the next attach of the
    channel by that client (None: the end of the case), where its listeners must hear nothing.
    """

    kind: str  # attach | detach | state | refused | queued
    step: int
    label: str
    client: str
    channel: str
    requirement: str
    expected: str
    observed: str | None = None
    code: Any = None
    message: str | None = None
    history_index: int | None = None
    window: tuple[int, int | None] | None = None


@dataclass(eq=False)
class OpRecord:
    """One operation step (or a step of a `concurrently` block) and how it went."""

    step: Step
    client: str | None
    channel: str | None
    connection_id: str | None
    params: dict[str, Any] = field(default_factory=dict)
    model_error: PresenceError | None = None
    attempted: tuple[str, str | None, str | None, Any] | None = None  # a refused op's event
    status: str = "pending"  # ok | fail | timeout | error | skipped
    error_code: Any = None
    error_message: str | None = None
    invoke_index: int | None = None
    done_index: int | None = None
    events: list[PresenceMessage] = field(default_factory=list)
    fresh_attach: bool = False
    was_present: bool | None = None
    form: str | None = None  # unsubscribe: all | listener | action-listener | action
    contested: bool = False  # raced another enter/update of its member in a concurrently block
    anonymous: bool = False  # enterClient & co. on a connection without a clientId (not '*')

    @property
    def index(self) -> int:
        return self.step.index

    @property
    def kind(self) -> str:
        return self.step.kind


@dataclass(eq=False)
class GetRecord:
    """A get(): the model's members at that moment and what the implementation returned.

    `kind`: `step` (a scenario step), `converge` (the end-of-case convergence read).
    `observed` is None when the call failed; `malformed` holds a result that was not a list.
    """

    kind: str
    op: OpRecord | None
    client: str
    channel: str
    connection_id: str
    client_id_filter: str | None = None
    connection_id_filter: str | None = None
    wait_for_sync: bool | None = None
    fresh: bool = False
    expected: list[PresenceMessage] = field(default_factory=list)
    possible: list[PresenceMessage] = field(default_factory=list)
    observed: list[Seen] | None = None
    malformed: Any = None
    attempts: int = 0
    history_index: int | None = None
    expect: list[tuple[str | None, str | None, bool, Any]] | None = None
    # members whose leave the model held pending at the read (a drop's within its grace, or the
    # old connection's after a refused resume): the read may return them or not
    optional: list[PresenceMessage] = field(default_factory=list)

    @property
    def step(self) -> int | None:
        return self.op.index if self.op else None


@dataclass(eq=False)
class CanonicalRecord:
    """The implementation's whole history of a channel (forwards, no bounds, every page), read
    before a history step, against the model's log at that moment."""

    step: int
    client: str
    channel: str
    expected: list[PresenceMessage]
    observed: list[Seen] | None = None
    error: str | None = None
    attempts: int = 0
    history_index: int | None = None
    # (observed, the events' origins, matching.Alignment): the last alignment made of it, which
    # `matching.canonical_alignment` reuses while both are the same
    aligned: tuple[list[Seen], tuple[Any, ...], Any] | None = None


@dataclass(eq=False)
class HistoryQueryRecord:
    """A history step: its resolved parameters and the pages the implementation returned."""

    op: OpRecord
    canonical: CanonicalRecord | None
    start: int | None = None
    end: int | None = None
    limit: Any = None
    direction: Any = None
    pages_mode: Any = 1
    pages: list[list[Seen]] = field(default_factory=list)
    has_next: list[bool] = field(default_factory=list)
    malformed: Any = None
    unresolved: str | None = None
    history_index: int | None = None


@dataclass(eq=False)
class SyncRecord:
    """A syncComplete reading: `wait` after a step attached the channel (polled until true),
    or `step` (a sync_complete step)."""

    kind: str
    step: int | None
    client: str
    channel: str
    trigger: str | None
    expected: bool | None
    observed: Any
    explicit: bool | None = None
    history_index: int | None = None
    step_requirements: tuple[str, ...] = ()


@dataclass(eq=False)
class ConnectRecord:
    """A connection opened (or refused) for a client."""

    client: str
    step: int | None
    connection_id: str | None
    earlier_ids: list[str]
    other_ids: list[str]
    refused: PresenceError | None = None
    history_index: int | None = None


@dataclass(eq=False)
class DropRecord:
    """What an observer saw right after a drop, before the grace period ran out."""

    client: str
    step: int
    channel: str
    member_gone_at_once: bool
    history_index: int | None = None


@dataclass(eq=False)
class CloseRecord:
    """A close whose leaves had not all come within the wait budget (the channels where they
    had not): they may still come when the grace period ends (disconnect.close-leaves-promptly)."""

    client: str
    step: int
    channels: list[str]
    waited: float  # seconds the runner waited for them before noting the close as late
    history_index: int | None = None


@dataclass(eq=False)
class InterruptRecord:
    """An `interrupt` step (a transient disconnect, RTN15): the connectionId before and after."""

    client: str
    step: int
    resume: bool
    old_id: str
    new_id: str | None = None  # None: the client never came back
    reentered: list[tuple[str, str | None]] = field(default_factory=list)  # (channel, clientId)
    history_index: int | None = None


@dataclass(eq=False)
class SuspendWatch:
    """A client's channel across an `interrupt` with `suspend` (RTP5f), seen by a watching
    listener the runner subscribed before the cut.

    `held` are the members the channel's map held when it was suspended, `after` the members
    once the client was back (the model's, less pending leaves), `own` the client's connection
    ids (old and new: its own members leave and are re-entered, judged elsewhere). `events`
    are what the listener received, `back` the history index when the client was back (before:
    suspended; after: the re-attach and its sync), `end` where the watch stopped counting."""

    client: str
    channel: str
    step: int
    label: str
    held: list[PresenceMessage]
    own: set[str] = field(default_factory=set)
    after: list[PresenceMessage] = field(default_factory=list)
    events: list[Seen] = field(default_factory=list)
    back: int | None = None
    end: int | None = None

    def problems(self) -> list[tuple[str, str, Any, Seen | None]]:
        """What breaks RTP5f, as (kind, message, expected, seen): kind `suspended` (a LEAVE
        while suspended: the map was not maintained), `unchanged` (an event for a member present
        before and after with the same message), `missing` (no event for a change meanwhile:
        a member updated or entered shows with its data, one that left with a LEAVE), `left`
        (a LEAVE for a member still present)."""
        far = 1 << 62
        back = far if self.back is None else self.back
        end = far if self.end is None else self.end
        out: list[tuple[str, str, Any, Seen | None]] = []
        for seen in self.events:
            if seen.connection_id in self.own:
                continue
            if seen.history_index < back and seen.action == "leave":
                out.append(
                    (
                        "suspended",
                        f"LEAVE of {seen.client_id!r} while the channel was suspended",
                        None,
                        seen,
                    )
                )
        later = [s for s in self.events if back <= s.history_index < end]
        held = {m.member_key: m for m in self.held if m.connection_id not in self.own}
        after = {m.member_key: m for m in self.after if m.connection_id not in self.own}
        for key in sorted(held.keys() | after.keys()):
            before, now = held.get(key), after.get(key)
            seen_here = [s for s in later if s.member_key == key]
            who = (now or before).client_id  # type: ignore[union-attr]
            if before is not None and now is not None and before.id == now.id:
                for seen in seen_here:
                    out.append(
                        (
                            "unchanged",
                            f"{seen.action} of {who!r}, present before and after the "
                            "suspension with the same message",
                            None,
                            seen,
                        )
                    )
                continue
            if now is not None:
                if not any(
                    s.action in ("enter", "update", "present") and data_equal(s.data, now.data)
                    for s in seen_here
                ):
                    out.append(
                        (
                            "missing",
                            f"no event for {who!r}, "
                            + ("updated" if before is not None else "entered")
                            + " while the channel was suspended",
                            {"client_id": who, "data": jsonable(now.data)},
                            None,
                        )
                    )
                out += [
                    ("left", f"LEAVE of {who!r}, who is still present", None, s)
                    for s in seen_here
                    if s.action == "leave"
                ]
            elif not any(s.action == "leave" for s in seen_here):
                out.append(
                    (
                        "missing",
                        f"no LEAVE for {who!r}, who left while the channel was suspended",
                        {"client_id": who, "action": "leave"},
                        None,
                    )
                )
        return out


@dataclass(eq=False)
class RestGetRecord:
    """A `rest_get` step (RestPresence#get, RSP3): the model's members and the first page read."""

    op: OpRecord
    client: str
    channel: str
    limit: int | None = None
    client_id_filter: str | None = None
    connection_id_filter: str | None = None
    expected: list[PresenceMessage] = field(default_factory=list)
    observed: list[Seen] | None = None
    malformed: Any = None
    attempts: int = 0
    history_index: int | None = None


@dataclass(eq=False)
class ExpectEventsRecord:
    """An `expect_events` step: the events written in the scenario and what the listener had."""

    step: Step
    listener: str
    expected: list[tuple[tuple[str, ...], str | None, frozenset[str], bool, Any]]
    observed: list[Seen]
    history_index: int | None = None


@dataclass(eq=False)
class CaseRecord:
    """Everything the runner recorded for one case; `model` is the reference model's end state."""

    scenario: Scenario
    history: History
    model: PresenceModel
    channels: dict[str, str]  # logical name -> the name used with the implementation
    ops: list[OpRecord] = field(default_factory=list)
    listeners: dict[ListenerKey, ListenerRecord] = field(default_factory=dict)
    expected: list[Expected] = field(default_factory=list)
    origins: dict[str, EventOrigin] = field(default_factory=dict)  # model event id -> origin
    gets: list[GetRecord] = field(default_factory=list)
    canonicals: list[CanonicalRecord] = field(default_factory=list)
    queries: list[HistoryQueryRecord] = field(default_factory=list)
    syncs: list[SyncRecord] = field(default_factory=list)
    connects: list[ConnectRecord] = field(default_factory=list)
    drops: list[DropRecord] = field(default_factory=list)
    closes: list[CloseRecord] = field(default_factory=list)
    interrupts: list[InterruptRecord] = field(default_factory=list)
    rest_gets: list[RestGetRecord] = field(default_factory=list)
    expectations: list[ExpectEventsRecord] = field(default_factory=list)
    lifecycle: list[LifecycleRecord] = field(default_factory=list)
    suspends: list[SuspendWatch] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    synthesized: set[str] = field(default_factory=set)  # model ids of leaves after a drop
    void: set[str] = field(default_factory=set)  # model ids of events the checks must ignore
    client_connections: dict[str, list[str]] = field(default_factory=dict)
    client_ids: dict[str, str | None] = field(default_factory=dict)
    stopped: str | None = None  # why the case stopped early without an adapter error
    # (client, channel) -> StagedRecord (record/staged.py): what `server:` steps staged
    staged: dict[tuple[str, str], Any] = field(default_factory=dict)
    # wall clock (s since the epoch) when the record was made, at the start of the case: the
    # lower bound of every timestamp the case may see (message.timestamp)
    wall_started: float = field(default_factory=time.time)

    def step_requirements(self, step: Step | None) -> tuple[str, ...]:
        """The requirements an explicit expectation of `step` is reported against."""
        if step is not None and step.requirements:
            return step.requirements
        return tuple(self.scenario.requirements)

"""`read_message` takes a shorter path for the exact forms the reference and the adapters return
(a `PresenceMessage` with plain fields, a plain dict in the JSON form); it must give what the
general path gives, field for field and type for type; and `jsonable` what it gave before its
fast paths for exact str, int, None, dict and list."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from presence_conformance.harness.record import records
from presence_conformance.harness.record.bounds import bounded
from presence_conformance.harness.record.records import Seen, jsonable, read_message
from presence_conformance.reference_impl.types import Action, PresenceMessage, data_to_json


def strict(value: Any) -> Any:
    """`value` with the type of every part spelled out: `1 == True` and `1 == 1.0` under `==`,
    and a str subclass equals its str; the fast path must give the very same types."""
    if isinstance(value, dict):
        return ("dict", type(value).__name__, [(strict(k), strict(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [strict(v) for v in value])
    return (type(value).__name__, repr(value))


_TEXT = st.text(max_size=6)
_PLAIN_FIELD = st.none() | _TEXT | st.integers()
_ODD_FIELD = (  # what an implementation may put in a field besides
    st.booleans()
    | st.floats()
    | st.sampled_from(list(Action))
    | st.lists(st.integers(), max_size=2)
)
_FIELD = st.one_of(_PLAIN_FIELD, _PLAIN_FIELD, _PLAIN_FIELD, _PLAIN_FIELD, _ODD_FIELD)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)
_DATA = (
    st.none()
    | _TEXT
    | st.binary(max_size=8)
    | st.builds(bytearray, st.binary(max_size=4))
    | _JSON
    | st.fixed_dictionaries({"$binary": st.sampled_from(["AAEC", "", "QUJD"])})
)
_ACTION = st.sampled_from(list(Action)) | st.sampled_from(["enter", "leave", 2]) | st.none()

_MESSAGES = st.builds(
    PresenceMessage,
    action=_ACTION,
    client_id=_FIELD,
    connection_id=_FIELD,
    data=_DATA,
    timestamp=_FIELD,
    id=_FIELD,
)


@st.composite
def _mappings(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for names, values in (
        (["action"], _ACTION),
        (["clientId", "client_id"], _FIELD),
        (["connectionId", "connection_id"], _FIELD),
        (["data"], _DATA),
        (["timestamp"], _FIELD),
        (["id"], _FIELD),
        (["extra", "encoding"], _FIELD),
    ):
        for name in draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names))):
            out[name] = draw(values)
    return out


class _Text(str):
    """A str subclass (an implementation's own string type)."""


_EDGES = [
    {"clientId": float("nan"), "action": "enter"},
    {"connection_id": float("inf"), "timestamp": 1},
    {"action": Action.LEAVE, "clientId": "a"},
    {"action": 2, "timestamp": True},
    {"clientId": _Text("a"), "id": "x"},
    {"client_id": "a", "clientId": None, "data": {"$binary": "AAEC"}},
    {"data": [1, {"$binary": "AAEC"}], "id": None},
    PresenceMessage(Action.ENTER, "a", "c", b"\x00", float("nan"), "i"),
    PresenceMessage(Action.UPDATE, _Text("a"), "c", None, 1, "i"),
    PresenceMessage(Action.UPDATE, "a", "c", bytearray(b"\x01"), 1, None),
    PresenceMessage("enter", "a", "c", "d", 1, "i"),  # type: ignore[arg-type]
    PresenceMessage(Action.PRESENT, "a", "c", {"k": (1, 2)}, 2**70, "i"),
]


@pytest.mark.parametrize("raw", _EDGES, ids=repr)
def test_edges_give_what_the_general_path_gives(raw: Any) -> None:
    assert strict(read_message(raw)) == strict(records._read_message(raw))


@settings(max_examples=400, deadline=None)
@given(_MESSAGES | _mappings())
def test_the_fast_path_gives_what_the_general_path_gives(raw: Any) -> None:
    assert strict(read_message(raw)) == strict(records._read_message(raw))


@settings(max_examples=200, deadline=None)
@given(_MESSAGES | _mappings())
def test_the_fields_are_fresh_copies_where_the_general_path_copies(raw: Any) -> None:
    fast, general = read_message(raw), records._read_message(raw)
    if isinstance(general["json"], dict) and isinstance(general["json"].get("data"), dict | list):
        assert fast["json"]["data"] is not getattr(raw, "data", None)
        if isinstance(raw, dict):
            assert fast["json"]["data"] is not raw.get("data")


def test_the_forms_the_reference_returns_take_the_fast_path() -> None:
    message = PresenceMessage(Action.ENTER, "alice", "c1", {"k": [1, "x"]}, 1700000000000, "c1:0:0")
    assert records._read_plain_message(message) is not None
    assert records._read_plain_mapping(message.to_json()) is not None
    seen = Seen.read(message, "event", 3, 1, "room")
    assert (
        seen.action == "enter" and seen.json == message.to_json() and seen.data == {"k": [1, "x"]}
    )
    assert records._read_plain_message(PresenceMessage("enter", "a", "c")) is None  # type: ignore[arg-type]


def _plain_jsonable(value: Any, depth: int = 0) -> Any:
    """`jsonable(bound=False)` without its fast paths (as it was written before them)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return data_to_json(bytes(value))
    if isinstance(value, enum.Enum):
        return _plain_jsonable(value.value, depth + 1)
    if depth > 20:
        return repr(value)
    if isinstance(value, PresenceMessage):
        return records._read_message(value)["json"]
    if isinstance(value, Mapping):
        return {str(k): _plain_jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_jsonable(v, depth + 1) for v in value]
    if isinstance(value, set | frozenset):
        return [_plain_jsonable(v, depth + 1) for v in sorted(value, key=repr)]
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return _plain_jsonable(to_json(), depth + 1)
    return repr(value)


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


_ANY = st.recursive(
    _FIELD | _DATA | _MESSAGES | st.frozensets(st.integers(), max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(_TEXT | st.integers(), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(_ANY | st.integers(18, 24).map(_nested))
def test_jsonable_gives_what_it_gave_without_its_fast_paths(value: Any) -> None:
    assert strict(jsonable(value, bound=False)) == strict(_plain_jsonable(value))
    assert strict(jsonable(value)) == strict(bounded(_plain_jsonable(value)))


@pytest.mark.parametrize("raw", [*_EDGES, {"action": "enter"}, "not a message"], ids=repr)
def test_seen_read_puts_each_field_where_it_belongs(raw: Any) -> None:
    seen = Seen.read(raw, "get", 7, 3, "room", ("c1", "L1"))
    named = Seen(source="get", raw=raw, history_index=7, step=3, channel="room",
                 listener=("c1", "L1"), **records._read_message(raw))  # fmt: skip
    for f in dataclasses.fields(Seen):
        assert strict(getattr(seen, f.name)) == strict(getattr(named, f.name)), f.name

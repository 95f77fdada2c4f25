"""The schema check caches its verdicts by a message's shape (`_shape_key`): two messages with
one key must validate alike, to the word of every error, or a message would be reported with
another message's errors (or pass with them)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from presence_conformance.harness.checks.messages import _schema_errors, _shape_key

from presence_conformance import spec

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 5, 10**13]),
    st.sampled_from([0.0, -0.0, 1.0, 1.5, -2.0]),
    st.sampled_from(["", "x", "a", "bob", "c1:0:0", "é", "$binary", "AAAA", "QQ=="]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "$binary"]), inner, max_size=2)
    ),
    max_leaves=6,
)
DATA = st.one_of(
    JSON,
    st.builds(lambda v: {"$binary": v}, JSON),  # binary, well formed or not
    st.builds(lambda v: {"$binary": v, "a": 1}, JSON),
)
FIELDS = {
    "action": st.one_of(st.sampled_from(["enter", "leave", "update", "present", "absent"]), JSON),
    "clientId": JSON,
    "connectionId": JSON,
    "id": JSON,
    "timestamp": JSON,
    "data": DATA,
    "extras": JSON,
    "other": JSON,
}


@st.composite
def messages(draw: Any) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)  # not even an object
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True))
    required = ["action", "clientId", "connectionId", "timestamp", "id"]
    if draw(st.booleans()):
        names = list(dict.fromkeys(required + names))  # mostly complete messages
    return {name: draw(FIELDS[name]) for name in names}


@settings(max_examples=400, deadline=None)
@given(messages(), st.lists(st.sampled_from(sorted(FIELDS)), max_size=8), st.data())
def test_messages_with_one_shape_validate_alike(base: Any, fields: list[str], data: Any) -> None:
    # variants of one message, each with one field changed: a key that folds two values the
    # schema tells apart makes two of them collide
    batch = [base]
    if isinstance(base, dict):
        batch += [{**base, name: data.draw(FIELDS[name])} for name in fields]
    by_key: dict[tuple, tuple[Any, list[str]]] = {}
    for message in batch:
        errors = spec.validate("presence-message", message)
        assert (errors == []) == spec.validator("presence-message").is_valid(message)
        first = by_key.setdefault(_shape_key(message), (message, errors))
        assert first[1] == errors, (first[0], message)


@settings(max_examples=200, deadline=None)
@given(messages())
def test_the_cached_verdict_is_the_validators(message: Any) -> None:
    assert _schema_errors(message, {}) == spec.validate("presence-message", message)


EDGES = [
    *[None, True, False, 0, 1, -1, 5, 10**13, 0.0, -0.0, 1.0, 1.5, -2.0],
    *["", "a", "b", "enter", "leave", "present", "absent", "AAAA", "QQ==", "!", "$binary"],
    *[[], [1], ["a"], {}, {"a": 1}, {"a": 1, "b": 2}, {"b": 2, "a": 1}],
    *[{"$binary": "AAAA"}, {"$binary": "QQ=="}, {"$binary": "!"}, {"$binary": 1}],
    *[{"$binary": None}, {"$binary": "AAAA", "a": 1}],
]
BASES = [
    {"action": "enter", "clientId": "a", "connectionId": "c", "timestamp": 1, "id": "c:0:0"},
    {"action": "leave", "clientId": "a", "connectionId": "c", "timestamp": 1, "id": None},
    {"action": "update", "clientId": "", "data": "x", "timestamp": -1},
    {"action": 3, "connectionId": "c", "id": "", "extras": {}, "other": 1},
]


def test_every_pair_of_edge_values_with_one_shape_validates_alike() -> None:
    for base in BASES:
        for name in FIELDS:
            by_key: dict[tuple, tuple[Any, list[str]]] = {}
            for value in EDGES:
                message = {**base, name: value}
                errors = spec.validate("presence-message", message)
                first = by_key.setdefault(_shape_key(message), (message, errors))
                assert first[1] == errors, (first[0], message)


def test_values_an_error_prints_differently_have_distinct_shapes() -> None:
    base = {"action": "enter", "connectionId": "c", "timestamp": 1, "id": "c:0:0"}
    for values in ([True, 1, 1.0], [0.0, -0.0], [{"a": 1, "b": 2}, {"b": 2, "a": 1}], [[1], ["1"]]):
        shapes = {_shape_key({**base, "clientId": v}) for v in values}
        assert len(shapes) == len(values), values


def test_data_the_schema_cannot_tell_apart_shares_a_shape() -> None:
    """Valid data is folded by kind (each kind validated once); the schema's `data` definition is
    what `_data_shape` assumes, or the folding must be revisited."""
    base = {"action": "enter", "clientId": "a", "connectionId": "c", "timestamp": 1, "id": "c:0:0"}
    kinds = [
        ["", "text", "é" * 300],
        [None],
        [[], [1, {"$binary": 5}], list(range(50))],
        [{}, {"a": 1}, {"$binary": "AAAA", "a": 1}, {"b": {"$binary": 3}}],
    ]
    for kind in kinds:
        assert len({_shape_key({**base, "data": data}) for data in kind}) == 1, kind
    binaries = [{"$binary": "AAAA"}, {"$binary": "QQ=="}, {"$binary": "!"}, {"$binary": 1}]
    assert len({_shape_key({**base, "data": data}) for data in binaries}) == len(binaries)
    data_schema = spec.schema("presence-message")["$defs"]["data"]
    assert {k: v for k, v in data_schema.items() if k != "description"} == {
        "type": ["string", "object", "array", "null"],
        "if": {"type": "object", "required": ["$binary"], "maxProperties": 1},
        "then": {"$ref": "#/$defs/binary"},
    }, json.dumps(data_schema)

"""`bounded` takes a fast path for the exact types a run records most (str, None, bool, float,
small int, dict); it must give what the general walk gives, value for value, budget included."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from presence_conformance.harness.record import bounds
from presence_conformance.harness.record.bounds import MAX_ITEMS, MAX_TEXT, bounded


class _General(bounds._Bounder):
    """Every value through the general walk (the code before the fast path)."""

    def walk(self, value: Any, depth: int) -> Any:
        return self._walk(value, depth)


def _general(value: Any) -> Any:
    return _General().walk(value, 0)


_SCALARS = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.integers()
    | st.integers(min_value=2**255, max_value=2**300)
    | st.text(max_size=3)
    | st.text(min_size=MAX_TEXT - 1, max_size=MAX_TEXT + 2)
    | st.binary(max_size=4)
)
_KEYS = st.text(max_size=3) | st.just("$binary") | st.text(min_size=MAX_TEXT + 1)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_KEYS, inner, max_size=4)
        | st.builds(OrderedDict, st.dictionaries(st.text(max_size=2), inner, max_size=2))
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_the_fast_path_gives_what_the_general_walk_gives(value: Any) -> None:
    assert bounded(value) == _general(value)


def test_edges_of_the_fast_path() -> None:
    edges = [
        {"$binary": "QUJD" * 100},  # a long binary spelling: cut
        {"k": "x" * (MAX_TEXT + 1)},
        {str(i): i for i in range(MAX_ITEMS + 3)},  # more keys than kept
        {str(i): "y" * MAX_TEXT for i in range(150)},  # the character budget runs out
        {1: "a", None: "b"},  # keys that are not strings
        2**300,
        -(2**256),
        {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
        {"a": {"b": {"c": {"d": {}}}}},
    ]
    for value in edges:
        assert bounded(value) == _general(value), value

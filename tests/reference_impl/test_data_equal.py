"""`data_equal`, the equality every check uses on member data: bytes are not strings, and inside
JSON data an int equals a float that is the same IEEE double (a JSON number has no int/float
distinction: ably-js writes the double -4.356800382746733e+16 as -43568003827467330)."""

from __future__ import annotations

import json

import pytest
from presence_conformance.reference_impl.types import data_equal

BIG = -4.356800382746733e16  # integral, beyond 2**53: JavaScript prints it without exponent
AS_JAVASCRIPT_WRITES_IT = json.loads("[-43568003827467330]")[0]


def test_an_integral_double_written_as_an_integer_is_the_same_number() -> None:
    assert isinstance(AS_JAVASCRIPT_WRITES_IT, int) and AS_JAVASCRIPT_WRITES_IT != BIG
    assert data_equal({"n": [BIG]}, {"n": [AS_JAVASCRIPT_WRITES_IT]})
    assert data_equal([AS_JAVASCRIPT_WRITES_IT, {"k": 1.0}], [BIG, {"k": 1}])


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"n": [BIG]}, {"n": [AS_JAVASCRIPT_WRITES_IT + 16]}),  # another double
        ({"n": 1.5}, {"n": 1}),
        ({"n": 10**400}, {"n": 1e308}),  # no double: never equal to a float
        ([1, 2], [1]),
        ({"a": 1}, {"b": 1}),
        ("1", 1),
        (b"x", "x"),
        ([b"x"], ["x"]),
    ],
)
def test_different_data_stays_different(a: object, b: object) -> None:
    assert not data_equal(a, b)
    assert not data_equal(b, a)

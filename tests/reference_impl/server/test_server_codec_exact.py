"""The reference server's JSON decoding (`codec.decode_json`) gives exactly what `json.loads`
gives: orjson reads integers beyond 64 bits as floats, and the server then reads the text again
with the standard library, wherever such a number sits (top level, nested, in the frame's own
fields or in its presence items)."""

from __future__ import annotations

import json

import pytest
from presence_conformance.reference_impl.server.codec import decode_json

TEXTS = [
    '{"action":14,"msgSerial":18446744073709551616}',
    '{"action":14,"msgSerial":-9223372036854775809}',
    '{"presence":[{"action":2,"data":{"n":123456789012345678901234567890}}]}',
    '{"a":[1,[2,{"b":[184467440737095516150]}]]}',
    "123456789012345678901234",
    "[99999999999999999999]",
    '{"a":1.5e300,"b":-2.5E19,"c":1e18}',
    '{"a":9223372036854775807,"b":18446744073709551615}',
    '{"action":14,"channel":"room","msgSerial":5,"presence":[{"action":2,"data":"x"}]}',
]


@pytest.mark.parametrize("text", TEXTS)
def test_json_frames_decode_exactly_as_the_standard_library(text: str) -> None:
    value = decode_json(text)
    expected = json.loads(text)
    assert value == expected
    assert repr(value) == repr(expected)  # an int stays an int, a float a float

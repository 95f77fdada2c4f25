"""`published_id` (the message.id-format check) matches one precompiled pattern after the
connectionId: it must agree with matching the id against the escaped connectionId followed by
`:\\d+:\\d+`, for any connectionId, special characters included."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st
from presence_conformance.harness.checks.messages import published_id

PIECES = st.sampled_from(["c1", ":", "0", "12", "٣", ".", "*", "+", "\\", "(", "a", "", "\n"])
TEXT = st.lists(PIECES, max_size=6).map("".join)


@settings(max_examples=1000, deadline=None)
@given(TEXT, TEXT)
@example("c1:0:0", "c1")
@example("c.:0:0", "c.")
@example("cX:0:0", "c.")
@example("c1:0:0\n", "c1")
@example("c1:٣:0", "c1")
def test_published_id_equals_the_escaped_pattern(event_id: str, connection_id: str) -> None:
    plain = re.fullmatch(re.escape(connection_id) + r":\d+:\d+", event_id) is not None
    assert published_id(event_id, connection_id) == plain

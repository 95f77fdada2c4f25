"""A presence item whose data or clientId holds a lone surrogate (valid JSON text, no UTF-8 form)
is refused with 40013 naming the reason, never an internal error; the connection stays usable."""

from __future__ import annotations

import pytest
from presence_conformance.reference_impl.server import PresenceServer
from presence_conformance.reference_impl.server.testing import RawClient
from support import run_server


@pytest.mark.parametrize(
    "item",
    [
        {"action": 2, "data": "\ud800"},
        {"action": 2, "data": {"nested": ["\udfff"]}},
        {"action": 2, "clientId": "\ud800", "data": "x"},
    ],
    ids=["string-data", "object-data", "client-id"],
)
def test_a_lone_surrogate_is_refused_as_invalid_data(item: dict) -> None:
    async def test(server: PresenceServer) -> None:
        async with await RawClient.open(server, client_id="*") as c:
            await c.attach("room")
            bad = dict(item)
            bad.setdefault("clientId", "alice")
            refused = await c.presence("room", 0, bad)
            assert refused["action"] == 2, refused  # NACK
            assert refused["error"]["code"] == 40013, refused
            assert "Unicode" in refused["error"]["message"], refused
            accepted = await c.presence("room", 1, {"action": 2, "clientId": "bob", "data": "ok"})
            assert accepted["action"] == 1, accepted  # ACK: the connection is usable
        assert server.stats["internal_errors"] == 0

    run_server(test)

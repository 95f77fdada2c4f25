"""The `ack_first` server option: the ACK of a PRESENCE goes out before its events.

Both orders are correct Ably behaviour; the option exists so that the harness can be run against
a server that ACKs first (issue 14: no assumption that an event reached every connection when the
sender's call returned). Without the option the server broadcasts first, as before.
"""

from __future__ import annotations

import asyncio

import pytest
from presence_conformance.harness.adapter import UsageError
from presence_conformance.harness.adapters.ably_wire import AblyWireAdapter
from presence_conformance.reference_impl.server import PresenceServer
from presence_conformance.reference_impl.server.cli import build_parser, config_from_args
from presence_conformance.reference_impl.server.testing import RawClient
from support import run_server

ACK, NACK, PRESENCE = 1, 2, 14


async def first_answer(client: RawClient, serial: int, item: dict) -> list[int]:
    """Send one PRESENCE frame on `room`; the actions of the ACK/NACK and PRESENCE frames that
    follow, in the order they arrived, up to both the reply and the echo."""
    await client.send(
        {"action": PRESENCE, "channel": "room", "msgSerial": serial, "presence": [item]}
    )
    seen: list[int] = []
    while not ({ACK, NACK} & set(seen) and PRESENCE in seen):
        frame = await client.recv()
        if frame.get("action") in (ACK, NACK, PRESENCE):
            seen.append(frame["action"])
    return seen


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize("ack_first", [False, True])
def test_ack_precedes_own_echo_only_with_ack_first(ack_first: bool, fmt: str) -> None:
    async def test(server: PresenceServer) -> None:
        alice = await RawClient.open(server, client_id="alice", params={"format": fmt})
        bob = await RawClient.open(server, client_id="bob")
        await alice.attach("room")
        await bob.attach("room")
        for serial, action in enumerate((2, 4, 3)):  # enter, update, leave
            order = await first_answer(alice, serial, {"action": action, "data": "x"})
            expected = [ACK, PRESENCE] if ack_first else [PRESENCE, ACK]
            assert order == expected, (action, order)
            # the other connection hears the event either way
            frame = await bob.expect(PRESENCE)
            assert frame["presence"][0]["action"] == action
        await alice.close()
        await bob.close()

    run_server(test, ack_first=ack_first)


def test_serve_option_and_adapter_option() -> None:
    parser = build_parser()
    assert config_from_args(parser.parse_args([])).ack_first is False
    assert config_from_args(parser.parse_args(["--ack-first"])).ack_first is True
    assert "--ack-first" in parser.format_help()
    assert AblyWireAdapter({"ack_first": "true"}).ack_first is True
    assert AblyWireAdapter({}).ack_first is False
    with pytest.raises(UsageError, match="ack_first"):
        AblyWireAdapter({"ack_first": "maybe"})
    with pytest.raises(UsageError, match="embedded"):
        AblyWireAdapter({"ack_first": "true", "endpoint": "127.0.0.1:1", "key": "a.b:c"})


def test_ably_wire_adapter_starts_the_server_with_ack_first() -> None:
    async def main() -> None:
        adapter = AblyWireAdapter({"ack_first": "true", "sync_page_size": "2"})
        await adapter.start()
        try:
            assert adapter.server.config.ack_first is True
            assert adapter.server.config.sync_page_size == 2
        finally:
            await adapter.stop()

    asyncio.run(asyncio.wait_for(main(), 20))

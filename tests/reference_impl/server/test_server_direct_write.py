"""The reference server writes a frame straight to the transport when nothing is queued before it
(`presence_conformance.reference_impl.server.transport._write_now`), and through the connection's writer task otherwise.

- a subscriber that reads slowly gets every event, in order, while frames switch between the two
  paths (its transport backs up, frames queue, the queue drains, direct writes resume);
- a subscriber that stops reading is still cut off as a slow consumer (the transport's buffer
  fills, then the queue);
- a client that negotiated permessage-deflate reads the uncompressed direct frames.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import msgpack
import pytest
from presence_conformance.reference_impl.server import PresenceServer
from presence_conformance.reference_impl.server import transport as server_app
from presence_conformance.reference_impl.server.testing import RawClient
from presence_conformance.reference_impl.server.transport import DIRECT_WRITE_LIMIT
from support import run_server
from websockets.asyncio.client import connect


def run(
    test: Callable[[PresenceServer], Awaitable[Any]], timeout: float = 60, **config: Any
) -> Any:
    return run_server(test, timeout, **config)


def test_slow_reader_gets_every_event_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    count, size = 160, 60_000
    paths: collections.Counter[str] = collections.Counter()
    watched: list[str] = []
    write_now = server_app._write_now

    def counting(conn: Any, data: Any, batch: Any = None) -> bool:
        done = write_now(conn, data, batch)
        if conn.id in watched and isinstance(data, bytes):
            paths["direct" if done else "queued"] += 1
        return done

    monkeypatch.setattr(server_app, "_write_now", counting)

    async def test(server: PresenceServer) -> None:
        bob = await RawClient.open(server, client_id="bob")
        await bob.attach("room")
        watched.append(bob.connection_id)
        alice = await RawClient.open(server, client_id="alice")
        await alice.attach("room")
        transport = bob.ws.transport
        # small socket buffers on both ends, so that the server's transport backs up quickly
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        server_side = server.realtime.connections[bob.connection_id].transport
        server_side.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        transport.pause_reading()
        for serial in range(count):
            await alice.send(
                {
                    "action": 14,
                    "channel": "room",
                    "msgSerial": serial,
                    "presence": [
                        {"action": 4 if serial else 2, "data": f"{serial:06d}" * (size // 6)}
                    ],
                }
            )
            if serial % 40 == 39:  # read a little now and then
                transport.resume_reading()
                await asyncio.sleep(0.02)
                transport.pause_reading()
            await asyncio.sleep(0)
        transport.resume_reading()
        await alice.sync_point(timeout=30)
        got = []
        while len(got) < count:
            frame = await bob.expect(14, timeout=30)
            got.append(frame["presence"][0]["data"][:6])
        assert got == [f"{serial:06d}" for serial in range(count)]
        assert paths["direct"] and paths["queued"], paths
        assert bob.connection_id in server.connection_ids()
        await alice.close()
        await bob.close()

    run(test)


def test_a_reader_that_stops_is_cut_off() -> None:
    async def test(server: PresenceServer) -> None:
        # no permessage-deflate: aiohttp compresses big queued frames in a background task,
        # which logs an error when the connection is cut in the middle of one
        query = urlencode({"key": server.default_key, "format": "json", "clientId": "bob"})
        ws = await connect(
            f"{server.url}?{query}", max_size=None, ping_interval=None, compression=None
        )
        bob = RawClient(ws)
        bob.connected = await bob.expect(4)
        await bob.attach("room")
        bob.ws.transport.pause_reading()
        alice = await RawClient.open(server, client_id="alice")
        await alice.attach("room")
        data = "x" * 60_000
        serial = 0
        for serial in range(400):  # 24 MB: more than any socket buffer holds
            await alice.send(
                {
                    "action": 14,
                    "channel": "room",
                    "msgSerial": serial,
                    "presence": [{"action": 4 if serial else 2, "data": data}],
                }
            )
            if bob.connection_id not in server.connection_ids():
                break
            await asyncio.sleep(0)
        await alice.sync_point(timeout=20)
        assert bob.connection_id not in server.connection_ids(), (
            f"not cut off after {serial + 1} frames of 60 kB (DIRECT_WRITE_LIMIT "
            f"{DIRECT_WRITE_LIMIT})"
        )
        assert server.stats["slow_consumers"] == 1
        await alice.close()
        bob.abort()
        await bob.close()

    run(test, max_outbound_queue=5, leave_grace=0.05)


def test_direct_frames_reach_a_client_with_permessage_deflate() -> None:
    async def test(server: PresenceServer) -> None:
        bob = await RawClient.open(server, client_id="bob")  # websockets offers deflate
        assert bob.ws.protocol.extensions, "permessage-deflate was not negotiated"
        await bob.attach("room")
        await bob.presence(
            "room", 0, {"action": 2, "data": json.dumps({"a": "b" * 5000}), "encoding": "json"}
        )
        event = await bob.expect(14)
        assert json.loads(event["presence"][0]["data"]) == {"a": "b" * 5000}
        await bob.sync_point()
        await bob.close()

    run(test)


def test_direct_writes_recognise_any_transport_by_its_methods() -> None:
    """Not `isinstance(asyncio.WriteTransport)`: uvloop's transports do not derive from it."""

    class Plain:  # no asyncio base class
        def write(self, data: bytes) -> None: ...

        def is_closing(self) -> bool:
            return False

        def get_write_buffer_size(self) -> int:
            return 0

        def abort(self) -> None: ...

    class NoBufferSize:
        def write(self, data: bytes) -> None: ...

        def is_closing(self) -> bool:
            return False

        def abort(self) -> None: ...

    assert server_app._is_stream(Plain())
    assert not server_app._is_stream(NoBufferSize())
    assert not server_app._is_stream(None)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_under_uvloop_frames_are_written_directly_and_event_and_ack_together(
    monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """On uvloop the direct-write path is taken (no writer-task wake-up per frame), and the
    presence event a client caused and its ACK reach that client in one write."""
    uvloop = pytest.importorskip("uvloop", reason="uvloop is the [fast] extra")
    paths: collections.Counter[str] = collections.Counter()
    write_now = server_app._write_now

    def counting(conn: Any, data: Any, batch: Any = None) -> bool:
        done = write_now(conn, data, batch)
        paths["direct" if done else "queued"] += 1
        return done

    monkeypatch.setattr(server_app, "_write_now", counting)
    writes: list[tuple[str, list[bytes]]] = []
    real_flush = server_app._Batch.flush

    def flush(self: Any) -> None:
        writes.extend((conn.id, _frames(b"".join(chunks))) for conn, chunks in self.held.items())
        real_flush(self)

    monkeypatch.setattr(server_app._Batch, "flush", flush)

    async def test() -> None:
        server = PresenceServer()
        await server.start()
        try:
            alice = await RawClient.open(server, client_id="alice", params={"format": fmt})
            await alice.attach("room")
            conn = server.realtime.connections[alice.connection_id]
            assert type(conn.transport).__module__.startswith("uvloop")
            paths.clear()
            writes.clear()
            await alice.presence("room", 0, {"action": 2, "data": "x"})
            await alice.expect(14)
            # one write: the event, then the ACK, each a whole frame of the connection's format
            [(written_to, frames)] = writes
            assert written_to == conn.id
            decode = msgpack.unpackb if fmt == "msgpack" else json.loads
            assert [decode(payload)["action"] for payload in frames] == [14, 1]
            await alice.close()
        finally:
            await server.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(test(), 20))
    assert paths == {"direct": 2}, paths  # the event and the ACK, both straight to the socket


def _frames(data: bytes) -> list[bytes]:
    """The payloads of unmasked, final WebSocket frames back to back in `data` (all of it)."""
    payloads = []
    while data:
        assert data[0] in (0x81, 0x82), data[:2]
        size, start = data[1], 2
        if size == 126:
            size, start = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            size, start = int.from_bytes(data[2:10], "big"), 10
        payloads.append(data[start : start + size])
        data = data[start + size :]
    return payloads

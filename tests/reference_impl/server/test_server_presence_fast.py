"""The reference server's fast path for the common PRESENCE frame (`_presence_fast`) against
the general path (`_on_presence`): two servers with the same clock and instance id get the same
frames, one with the fast path and one without it, and every byte each connection is sent must
be the same, and so must the model's members and history at the end.

The frames are drawn (seeded, reproducible) around the well-formed PRESENCE frame: the fast
path's case and every near miss (wrong types, encodings, extras, ids, clientIds of other
identities, several items, channels not attached, oversized data, lone surrogates, binary data
on MessagePack), mixed with ATTACH and DETACH so that the channel states change, on connections
with a clientId, a wildcard clientId, none, a capability without `presence`, and MessagePack.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any
from urllib.parse import urlencode

import msgpack
import pytest
from presence_conformance.reference_impl.server import PresenceServer, ServerConfig
from presence_conformance.reference_impl.server.config import KeySpec
from presence_conformance.reference_impl.server.transport import _Batch
from websockets.asyncio.client import ClientConnection, connect

FRAMES = 3000
CLOCK = 1_700_000_000_000
MAX_MESSAGE_SIZE = 120
# (clientId, key name, format) of each connection
CLIENTS: list[tuple[str | None, str, str]] = [
    ("alice", "app.all", "json"),
    ("*", "app.all", "json"),
    (None, "app.all", "json"),
    ("carol", "app.listen", "json"),
    ("bob", "app.all", "msgpack"),
    ("*", "app.all", "msgpack"),
]
KEYS = {
    "app.all": KeySpec("secret"),
    "app.listen": KeySpec("secret", {"room": ["subscribe"], "other": ["*"]}),
}


class Sink:
    """A transport that keeps what the server writes (the direct-write path needs these)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        pass


MISSING = object()


def _frames(rng: random.Random, conn_ids: list[str]) -> list[tuple[int, Any]]:
    """(connection index, frame) pairs: a well-formed PRESENCE frame, or one with one to three
    fields (of the frame or of its item) changed to a near miss; and some ATTACH / DETACH."""
    out: list[tuple[int, Any]] = []
    serials = [0] * len(CLIENTS)
    for _ in range(FRAMES):
        who = rng.randrange(len(CLIENTS))
        own, _, fmt = CLIENTS[who]
        if rng.random() < 0.05:
            action = rng.choice([10, 12])
            out.append((who, {"action": action, "channel": rng.choice(["room", "other", ""])}))
            continue
        serials[who] += 1
        item: dict[str, Any] = {"action": rng.choice([2, 2, 3, 4])}
        if own == "*":
            item["clientId"] = rng.choice(["alice", "bob", "dave"])
        elif rng.random() < 0.3:
            item["clientId"] = own
        data = rng.choice([MISSING, None, "hi", "", "h\u00e9"])
        if data is not MISSING:
            item["data"] = data
        frame: dict[str, Any] = {
            "action": 14,
            "channel": rng.choice(["room", "room", "other"]),
            "msgSerial": serials[who],
            "presence": [item],
        }
        near: dict[str, list[Any]] = {
            "action": [14.0, True, "14", 15, MISSING],
            "channel": ["nope", "", 5, None, MISSING],
            "msgSerial": [-1, "3", 1.5, None, True, MISSING],
            "presence": [[item, dict(item)], [], item, ["x"], MISSING],
            "item.action": [0, 1, 5, "2", 2.0, True, None, MISSING],
            "item.clientId": ["alice", "bob", "dave", "*", "", 5, None, MISSING],
            "item.data": [
                "x" * (MAX_MESSAGE_SIZE + 1),
                "\ud800" if fmt == "json" else b"\x00\x01",
                {"a": 1},
                [1, 2],
                5,
                True,
                None,
                MISSING,
            ],
            "item.encoding": [None, "", "json", "base64", "utf-8", 5],
            "item.extras": [None, {}, {"a": 1}, 5],
            "item.id": [None, "x", f"{conn_ids[who]}:0:0", f"{conn_ids[who]}:9:0", 5],
        }
        for name in rng.sample(sorted(near), rng.choice([0, 0, 0, 0, 1, 1, 2, 3])):
            target, key = (item, name[5:]) if name.startswith("item.") else (frame, name)
            value = rng.choice(near[name])
            if value is MISSING:
                target.pop(key, None)
            else:
                target[key] = value
            if name == "item.encoding" and value == "json" and rng.random() < 0.7:
                item["data"] = json.dumps({"k": rng.randrange(3)})
        out.append((who, frame))
    return out


async def _server(fast: bool) -> tuple[PresenceServer, list[Any], list[ClientConnection]]:
    server = PresenceServer(
        ServerConfig(
            keys=KEYS,
            heartbeat_interval=0,
            max_idle_interval=0,
            leave_grace=30,
            max_message_size=MAX_MESSAGE_SIZE,
        ),
        clock=lambda: CLOCK,
    )
    server.realtime._instance = "inst"  # the same connection ids and serials on both servers
    if not fast:
        server.realtime._presence_fast = lambda conn, frame: False  # type: ignore[method-assign]
    host, port = await server.start("127.0.0.1", 0)
    sockets, conns = [], []
    for client_id, key, fmt in CLIENTS:
        query = {"key": f"{key}:secret", "format": fmt}
        if client_id is not None:
            query["clientId"] = client_id
        ws = await connect(f"ws://{host}:{port}/?{urlencode(query)}", compression=None)
        await ws.recv()  # CONNECTED
        sockets.append(ws)
        [conn] = [c for c in server.realtime.connections.values() if c not in conns]
        conns.append(conn)
    for conn in conns:
        conn.transport = Sink()
        for channel in ("room", "other"):
            _feed(server, conn, {"action": 10, "channel": channel})
    return server, conns, sockets


def _feed(server: PresenceServer, conn: Any, frame: Any) -> None:
    """As `Transport.handle` hands over one received frame (direct writes batched)."""
    realtime, batch = server.realtime, _Batch()
    realtime.transport._held = batch
    try:
        if conn.format == "msgpack":
            realtime.on_binary(conn, msgpack.packb(frame, use_bin_type=True))
        else:
            realtime.on_text(conn, json.dumps(frame))
    finally:
        realtime.transport._held = None
        batch.flush()


def _state(server: PresenceServer) -> Any:
    model = server.model
    return [
        (name, model.get(name), model.history_all(name), model.pending_leaves(name))
        for name in model.channels()
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_fast_path_sends_what_the_general_path_sends(seed: int) -> None:
    asyncio.run(asyncio.wait_for(_compare(seed), 120))


async def _compare(seed: int) -> None:
    servers = [await _server(fast=True), await _server(fast=False)]
    try:
        ids = [c.id for c in servers[0][1]]
        assert ids == [c.id for c in servers[1][1]]
        frames = _frames(random.Random(seed), ids)
        realtime, taken = servers[0][0].realtime, []
        fast = realtime._presence_fast

        def counting(conn: Any, frame: Any) -> bool:
            taken.append(fast(conn, frame))
            return taken[-1]

        realtime._presence_fast = counting  # type: ignore[method-assign]
        for n, (who, frame) in enumerate(frames):
            channel = frame.get("channel")
            # a channel ERROR detaches the channel (RTN15i): mostly attach it again first
            again = channel in ("room", "other") and channel not in servers[0][1][who].attached
            again = again and n % 5 != 0
            sent = []
            for server, conns, _ in servers:
                if again:
                    _feed(server, conns[who], {"action": 10, "channel": channel})
                _feed(server, conns[who], frame)
                sent.append([bytes(c.transport.data) for c in conns])
                for c in conns:
                    c.transport.data.clear()
            assert sent[0] == sent[1], f"frame {n} from connection {who}: {frame!r}"
        assert _state(servers[0][0]) == _state(servers[1][0])
        # both paths were exercised, and the state changed along the way
        assert FRAMES // 4 < sum(taken) < len(taken) - FRAMES // 4
        assert servers[0][0].stats["broadcasts"] > FRAMES // 5
    finally:
        for server, _, sockets in servers:
            for ws in sockets:
                await ws.close()
            await server.stop()

"""Fuzzing the reference server with malformed frames (Hypothesis), in both wire formats.

JSON connections: at least 5,000 frames (random JSON values, ProtocolMessages with random actions
and wrongly typed fields, truncated JSON, random text, huge strings, deep nesting, binary) go
over a few connections; each generated frame is also sent cut in half. MessagePack connections
(`format=msgpack`) get the same treatment in MessagePack: random values with binary data,
ProtocolMessages, truncated MessagePack, random bytes, strings that are not UTF-8, extension
types, non-string map keys, deep nesting, huge frames, and text frames. Each example is one batch: its
frames are spread over the connections, then a HEARTBEAT round trip on each proves the server
handled them all and is still answering.

Checked: the server never answers with an internal error (50000) and every ERROR / NACK is a
well-formed ProtocolMessage with an Ably code and a message; a bystander's member and a
watcher's view of it never change; at the end a correct client connects, enters, and sees
itself in a SYNC.

Hypothesis cannot run async tests, so the test owns one event loop and runs each batch on it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import struct
import time
import uuid
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from presence_conformance.reference_impl.server import PresenceServer, ServerConfig
from presence_conformance.reference_impl.server.testing import RawClient

from presence_conformance import spec

MIN_FRAMES = 5000
CHANNELS = ["fz0", "fz1", "fz2"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=5,
)

presence_items = st.fixed_dictionaries(
    {},
    optional={
        "action": st.one_of(st.integers(-1, 6), json_values),
        "clientId": st.one_of(st.sampled_from(["fuzzer", "other", "*", ""]), json_values),
        "data": json_values,
        "encoding": st.one_of(
            st.sampled_from(
                [
                    "json",
                    "base64",
                    "utf-8/base64",
                    "json/utf-8/base64",
                    "cipher+aes-128-cbc/base64",
                    "bogus",
                    "",
                ]
            ),
            json_values,
        ),
        "extras": json_values,
        "id": json_values,
    },
)

protocol_messages = st.fixed_dictionaries(
    {"action": st.one_of(st.integers(-3, 25), json_values)},
    optional={
        "channel": st.one_of(st.sampled_from(CHANNELS), json_values),
        "msgSerial": st.one_of(st.integers(-2, 2**40), json_values),
        "presence": st.one_of(
            st.lists(st.one_of(presence_items, json_values), max_size=4), json_values
        ),
        "messages": json_values,
        "id": json_values,
        "flags": json_values,
        "params": json_values,
        "channelSerial": json_values,
    },
)

# attach / presence frames that are close to valid, so the deeper checks get exercised
near_valid = st.one_of(
    st.builds(lambda ch: {"action": 10, "channel": ch}, st.sampled_from(CHANNELS)),
    st.builds(
        lambda ch, serial, items: {
            "action": 14,
            "channel": ch,
            "msgSerial": serial,
            "presence": items,
        },
        st.sampled_from(CHANNELS),
        st.integers(0, 1000),
        st.lists(presence_items, min_size=1, max_size=3),
    ),
    st.builds(lambda ch: {"action": 12, "channel": ch}, st.sampled_from(CHANNELS)),
)

huge = st.one_of(
    st.integers(60_000, 700_000).map(
        lambda n: json.dumps(
            {
                "action": 14,
                "channel": "fz0",
                "msgSerial": 1,
                "presence": [{"action": 2, "data": "x" * n}],
            }
        )
    ),
    st.integers(60_000, 700_000).map(lambda n: json.dumps({"action": 10, "channel": "y" * n})),
    st.integers(500, 50_000).map(lambda n: "[" * n + "]" * n),
    st.integers(100, 5_000).map(
        lambda n: (
            '{"action":14,"channel":"fz1","msgSerial":2,'
            '"presence":[{"action":2,"clientId":"fuzzer","data":' + "[" * n + "]" * n + "}]}"
        )
    ),
    st.binary(max_size=64),
)


def truncate(text: str, cut: int) -> str:
    return text[: cut % max(len(text), 1)]


frames = st.one_of(
    json_values.map(json.dumps),
    protocol_messages.map(json.dumps),
    near_valid.map(json.dumps),
    st.builds(
        truncate, st.one_of(protocol_messages, near_valid).map(json.dumps), st.integers(0, 10**6)
    ),
    st.text(max_size=40),
    huge,
)


# -- MessagePack ------------------------------------------------------------------------------------

mp_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=12),
)
mp_values = st.recursive(
    mp_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.one_of(st.text(max_size=6), st.binary(max_size=3)), children, max_size=3
        ),
    ),
    max_leaves=5,
)
mp_presence_items = st.fixed_dictionaries(
    {},
    optional={
        "action": st.one_of(st.integers(-1, 6), mp_values),
        "clientId": st.one_of(st.sampled_from(["fuzzer", "other", "*", ""]), mp_values),
        "data": mp_values,
        "encoding": st.one_of(
            st.sampled_from(["json", "base64", "utf-8", "json/utf-8", "cipher+aes-128-cbc", ""]),
            mp_values,
        ),
        "extras": mp_values,
    },
)
mp_messages = st.fixed_dictionaries(
    {"action": st.one_of(st.integers(-3, 25), mp_values)},
    optional={
        "channel": st.one_of(st.sampled_from(CHANNELS), mp_values),
        "msgSerial": st.one_of(st.integers(-2, 2**40), mp_values),
        "presence": st.one_of(
            st.lists(st.one_of(mp_presence_items, mp_values), max_size=4), mp_values
        ),
        "messages": mp_values,
        "id": mp_values,
        "flags": mp_values,
        "params": mp_values,
    },
)
mp_near_valid = st.one_of(
    st.builds(lambda ch: {"action": 10, "channel": ch}, st.sampled_from(CHANNELS)),
    st.builds(
        lambda ch, serial, items: {
            "action": 14,
            "channel": ch,
            "msgSerial": serial,
            "presence": items,
        },
        st.sampled_from(CHANNELS),
        st.integers(0, 1000),
        st.lists(mp_presence_items, min_size=1, max_size=3),
    ),
    st.builds(lambda ch: {"action": 12, "channel": ch}, st.sampled_from(CHANNELS)),
)


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def raw_str(payload: bytes) -> bytes:
    """A MessagePack str (fixstr/str8) holding `payload` as it is, valid UTF-8 or not."""
    if len(payload) < 32:
        return bytes([0xA0 | len(payload)]) + payload
    return b"\xd9" + bytes([len(payload)]) + payload


def deep_data(depth: int) -> bytes:
    """A PRESENCE frame whose member data nests `depth` arrays."""
    head = pack({"action": 14, "channel": "fz1", "msgSerial": 2})
    item = b"\x82" + raw_str(b"action") + b"\x02" + raw_str(b"data") + b"\x91" * depth + b"\xc0"
    return b"\x84" + head[1:] + raw_str(b"presence") + b"\x91" + item


mp_odd = st.one_of(
    st.binary(max_size=64),  # random bytes
    # a frame whose channel is not UTF-8
    st.binary(min_size=1, max_size=8).map(
        lambda junk: (
            b"\x82" + raw_str(b"action") + b"\x0a" + raw_str(b"channel") + raw_str(junk + b"\xff")
        )
    ),
    # extension types (the Ably protocol has none), a timestamp among them
    st.builds(
        lambda code, data: (
            b"\x82"
            + raw_str(b"action")
            + b"\x0e"
            + raw_str(b"channel")
            + msgpack.packb(msgpack.ExtType(code, data))
        ),
        st.integers(0, 127),
        st.binary(max_size=6),
    ),
    st.just(b"\x81" + raw_str(b"action") + b"\xd6\xff" + struct.pack(">I", 0)),
    # map keys that are not strings
    st.builds(
        lambda k: pack({k: 10, "channel": "fz0"}),
        st.one_of(st.integers(-(2**63), 2**64 - 1), st.none()),
    ),
    # nesting deeper than any decoder stack, and just below
    st.integers(500, 5_000).map(lambda n: b"\x91" * n + b"\xc0"),
    st.integers(100, 5_000).map(deep_data),
    # huge
    st.integers(60_000, 700_000).map(
        lambda n: pack(
            {
                "action": 14,
                "channel": "fz0",
                "msgSerial": 1,
                "presence": [{"action": 2, "data": b"x" * n}],
            }
        )
    ),
    st.integers(60_000, 700_000).map(lambda n: pack({"action": 10, "channel": "y" * n})),
    # text frames on a MessagePack connection
    st.text(max_size=40),
    protocol_messages.map(json.dumps),
)


def mp_truncate(data: bytes, cut: int) -> bytes:
    return data[: cut % max(len(data), 1)]


mp_frames = st.one_of(
    mp_values.map(pack),
    mp_messages.map(pack),
    mp_near_valid.map(pack),
    st.builds(mp_truncate, st.one_of(mp_messages, mp_near_valid).map(pack), st.integers(0, 10**6)),
    mp_odd,
)


def amplify(batch: list[Any]) -> list[Any]:
    """Each generated frame, then the same frame cut in half (more truncated JSON for free)."""
    out: list[Any] = []
    for frame in batch:
        out.append(frame)
        if isinstance(frame, (str, bytes)) and len(frame) > 2:
            out.append(frame[: len(frame) // 2])
    return out


class Fuzzer:
    """The server, a few fuzzing connections, a bystander and a watcher, on one loop."""

    def __init__(self, fmt: str = "json") -> None:
        self.server = PresenceServer(ServerConfig(leave_grace=0.05, sync_page_size=3))
        self.params = {"format": fmt}
        self.clients: list[RawClient] = []
        self.sent = 0
        self.reconnects = 0
        self.replies: list[dict] = []
        self.calm = f"calm-{uuid.uuid4().hex}"

    async def start(self) -> None:
        await self.server.start()
        for client_id in ("fuzzer", "fuzzer", "*"):
            self.clients.append(
                await RawClient.open(self.server, client_id=client_id, params=self.params)
            )
        self.bystander = await RawClient.open(self.server, client_id="bystander")
        await self.bystander.attach(self.calm)
        ack = await self.bystander.presence(self.calm, 0, {"action": 2, "data": "steady"})
        assert ack["action"] == 1
        self.watcher = await RawClient.open(self.server, client_id="watcher")
        _, syncs = await self.watcher.attach(self.calm)
        assert [p["clientId"] for s in syncs for p in s["presence"]] == ["bystander"]
        self.watcher_seen = len(self.watcher.received)

    async def _client(self, index: int) -> RawClient:
        client = self.clients[index]
        if client.closed.is_set():  # e.g. a generated CLOSE: take a fresh connection
            self._collect(client)
            await client.close()
            client_id = "*" if index == 2 else "fuzzer"
            client = self.clients[index] = await RawClient.open(
                self.server, client_id=client_id, params=self.params
            )
            self.reconnects += 1
        return client

    async def batch(self, batch: list[Any]) -> None:
        for number, frame in enumerate(amplify(batch)):
            client = await self._client(number % len(self.clients))
            try:
                await client.send(frame)
            except Exception:  # the connection was closed under us; the next frame reconnects
                continue
            self.sent += 1
        for index in range(len(self.clients)):
            for _attempt in range(3):
                client = await self._client(index)
                try:
                    await client.sync_point(f"batch-{self.sent}", timeout=20)
                    break
                except EOFError:
                    continue
            else:
                raise AssertionError("the server stopped answering")
            self._collect(client)

    def _collect(self, client: RawClient) -> None:
        self.replies.extend(f for f in client.received if f.get("action") in (2, 9))
        client.received.clear()

    async def final_check(self) -> None:
        for client in self.clients:
            self._collect(client)
        assert self.server.stats["internal_errors"] == 0
        assert not any(c.wrong_type for c in self.clients)
        for frame in self.replies:
            assert not spec.validate("wire-protocol-message", frame), frame
            error = frame["error"]
            assert error["code"] != 50000, frame
            assert isinstance(error["message"], str) and error["message"]
        # nobody else's state changed
        assert [(m.client_id, m.data) for m in self.server.model.get(self.calm)] == [
            ("bystander", "steady")
        ]
        await self.watcher.sync_point()
        later = self.watcher.received[self.watcher_seen :]
        assert [f for f in later if f.get("action") in (14, 16, 9)] == []
        # and a correct client still gets everything right
        fresh = await RawClient.open(self.server, client_id="after-fuzz", params=self.params)
        channel = f"check-{uuid.uuid4().hex}"
        await fresh.attach(channel)
        ack = await fresh.presence(
            channel, 0, {"action": 2, "data": '{"ok": true}', "encoding": "json"}
        )
        assert ack == {"action": 1, "msgSerial": 0, "count": 1}
        echo = await fresh.expect(14)
        assert echo["presence"][0]["id"] == f"{fresh.connection_id}:0:0"
        _, syncs = await fresh.attach(channel)
        members = [p for s in syncs for p in s["presence"]]
        assert [(p["clientId"], p["connectionId"], p["data"]) for p in members] == [
            ("after-fuzz", fresh.connection_id, '{"ok": true}')
        ]
        await fresh.close()

    async def stop(self) -> None:
        for client in [*self.clients, self.bystander, self.watcher]:
            await client.close()
        await self.server.stop()


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_fuzz_malformed_frames_never_hurt_the_server(fmt: str) -> None:
    loop = asyncio.new_event_loop()
    fuzzer = Fuzzer(fmt)
    generated = frames if fmt == "json" else mp_frames
    started = time.monotonic()
    try:
        loop.run_until_complete(fuzzer.start())

        @settings(
            max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(st.lists(generated, min_size=55, max_size=70))
        def fuzz(batch: list[Any]) -> None:
            loop.run_until_complete(fuzzer.batch(batch))

        fuzz()
        rng = random.Random(fuzzer.sent)
        message = {
            "action": 14,
            "channel": "fz0",
            "msgSerial": 3,
            "presence": [{"action": 2, "data": '{"a": 1}', "encoding": "json"}],
        }
        template: str | bytes = json.dumps(message) if fmt == "json" else pack(message)
        while fuzzer.sent < MIN_FRAMES:  # only if Hypothesis generated unusually few: top up
            loop.run_until_complete(
                fuzzer.batch([template[: rng.randrange(len(template))] for _ in range(100)])
            )
        loop.run_until_complete(fuzzer.final_check())
    finally:
        loop.run_until_complete(fuzzer.stop())
        loop.close()
    elapsed = time.monotonic() - started
    print(
        f"fuzz ({fmt}): {fuzzer.sent} frames, {len(fuzzer.replies)} ERROR/NACK replies, "
        f"{fuzzer.reconnects} reconnects, {elapsed:.1f}s"
    )
    assert fuzzer.sent >= MIN_FRAMES
    assert elapsed < 120


# -- the token endpoint, URL identity tricks, oversized PRESENCE (issue 13) ----------------------

capability_texts = st.one_of(
    json_values.map(json.dumps),
    st.dictionaries(
        st.sampled_from(["*", "room", "ns:*", "", "other"]),
        st.lists(st.sampled_from(["presence", "subscribe", "*", "publish", "fly", ""]), max_size=3),
        max_size=3,
    ).map(json.dumps),
    st.text(max_size=20),
)
token_bodies = st.one_of(
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {},
        optional={
            "capability": st.one_of(capability_texts, json_values),
            "clientId": st.one_of(st.sampled_from(["bob", "*", "", "💥"]), json_values),
            "ttl": st.one_of(st.integers(-5, 10**12), json_values),
            "keyName": st.one_of(st.sampled_from(["appid.keyid", "x.y"]), json_values),
            "nonce": json_values,
            "timestamp": json_values,
        },
    ).map(json.dumps),
    st.text(max_size=30),
    st.integers(1, 40).map(lambda n: "[" * n * 1000),
)
url_client_ids = st.one_of(
    st.none(), st.sampled_from(["*", "", "bob", "mallory", "%2A", "b%00b"]), st.text(max_size=8)
)
token_client_ids = st.one_of(st.none(), st.sampled_from(["*", "bob"]))


def test_fuzz_token_endpoint_url_identity_and_oversized_presence() -> None:
    from urllib.parse import urlencode

    import aiohttp

    loop = asyncio.new_event_loop()
    server = PresenceServer(ServerConfig(leave_grace=0.05))
    counts = {"tokens": 0, "identities": 0}

    async def token_request(session: aiohttp.ClientSession, body: str) -> None:
        async with session.post(
            f"{server.rest_url}/keys/appid.keyid/requestToken",
            data=body.encode("utf-8", "surrogatepass"),
            headers={"Authorization": "Basic " + base64.b64encode(b"appid.keyid:secret").decode()},
        ) as resp:
            answer = await resp.json(content_type=None)
        counts["tokens"] += 1
        if resp.status == 200:
            assert isinstance(answer["token"], str) and answer["expires"] > answer["issued"]
            json.loads(answer["capability"])
        else:
            assert 400 <= resp.status < 500, (resp.status, answer)
            assert answer["error"]["code"] != 50000 and answer["error"]["message"]

    async def identity(token_client_id: str | None, url_client_id: str | None) -> None:
        token = server.issue_token(client_id=token_client_id)
        query = {"accessToken": token, "format": "json"}
        if url_client_id is not None:
            query["clientId"] = url_client_id
        c = await RawClient.connect_url(f"{server.url}?{urlencode(query)}", expect_connected=False)
        first = await c.recv()
        counts["identities"] += 1
        if first["action"] == 4:
            granted = first["connectionDetails"].get("clientId")
            if token_client_id == "*":
                assert granted == (url_client_id if url_client_id is not None else "*")
            else:
                assert granted == token_client_id and url_client_id in (None, token_client_id)
        else:
            assert first["action"] == 9 and first["error"]["code"] in (40012, 40000), first
        await c.close()

    async def oversized() -> None:
        async with await RawClient.open(server, client_id="big") as c:
            await c.attach("fzbig")
            await c.presence("fzbig", 0, {"action": 2, "data": "kept"})
            for serial, n in enumerate((600_000, 1_000_000), 1):
                await c.send(
                    {
                        "action": 14,
                        "channel": "fzbig",
                        "msgSerial": serial,
                        "presence": [{"action": 4, "data": "x" * n}],
                    }
                )
                nack = await c.expect(2)
                assert nack["msgSerial"] == serial and nack["error"]["code"] == 40009
            assert [m.data for m in server.model.get("fzbig")] == ["kept"]

    try:
        loop.run_until_complete(server.start())
        session = loop.run_until_complete(_session())

        @settings(
            max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(token_bodies)
        def fuzz_tokens(body: str) -> None:
            loop.run_until_complete(token_request(session, body))

        @settings(
            max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(token_client_ids, url_client_ids)
        def fuzz_identity(token_client_id: str | None, url_client_id: str | None) -> None:
            loop.run_until_complete(identity(token_client_id, url_client_id))

        fuzz_tokens()
        fuzz_identity()
        loop.run_until_complete(oversized())
        loop.run_until_complete(session.close())
        assert server.stats["internal_errors"] == 0
    finally:
        loop.run_until_complete(server.stop())
        loop.close()
    assert counts["tokens"] >= 100 and counts["identities"] >= 100


async def _session() -> Any:
    import aiohttp

    return aiohttp.ClientSession()

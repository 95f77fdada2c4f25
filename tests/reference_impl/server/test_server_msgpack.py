"""The reference server in MessagePack (`format=msgpack`), and between the two formats.

- a MessagePack connection gets every frame as a binary MessagePack frame (CONNECTED first), a
  refused upgrade gets its ERROR in MessagePack too;
- binary member data travels as `bin` to MessagePack connections and as base64 to JSON ones,
  whichever format the member was entered in, in PRESENCE, SYNC and REST alike; other encodings
  keep their steps (`utf-8/base64` from JSON is `bin` + `utf-8` in MessagePack);
- a frame that is not MessagePack, a text frame on a MessagePack connection, and a binary frame
  on a JSON one are refused with 40000 naming the problem; the connection stays usable and the
  frame log records them (`$malformed` bytes, `$text`, `$binary`);
- REST answers in MessagePack when `Accept` asks for `application/x-msgpack`, in JSON otherwise.
"""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import aiohttp
import msgpack
from presence_conformance.reference_impl.server import PresenceServer
from presence_conformance.reference_impl.server.testing import RawClient
from support import run_server
from websockets.asyncio.client import connect

MSGPACK = {"format": "msgpack"}


def test_every_frame_to_a_msgpack_connection_is_binary_msgpack() -> None:
    async def test(server: PresenceServer) -> None:
        client = await RawClient.open(server, client_id="alice", params=MSGPACK)
        assert client.connected is not None and client.connected["action"] == 4
        await client.attach("room")
        ack = await client.presence("room", 0, {"action": 2, "data": b"\x01\x02"})
        assert ack == {"action": 1, "msgSerial": 0, "count": 1}
        event = await client.expect(14)
        assert event["presence"][0]["data"] == b"\x01\x02"
        assert "encoding" not in event["presence"][0]
        await client.sync_point()
        assert client.wrong_type == []
        assert server.frames(client.connection_id)[1]["presence"] == [
            {"action": 2, "data": b"\x01\x02"}
        ]
        await client.close()

    run_server(test)


def test_a_refused_msgpack_upgrade_gets_its_error_in_msgpack() -> None:
    async def test(server: PresenceServer) -> None:
        query = urlencode({"key": "appid.keyid:wrong", "format": "msgpack"})
        async with connect(f"{server.url}?{query}") as ws:
            raw = await ws.recv()
        assert isinstance(raw, bytes)
        frame = msgpack.unpackb(raw)
        assert frame["action"] == 9 and frame["error"]["code"] == 40101

    run_server(test)


def test_binary_data_crosses_formats_in_presence_sync_and_rest() -> None:
    async def test(server: PresenceServer) -> None:
        jay = await RawClient.open(server, client_id="jay")  # JSON
        mo = await RawClient.open(server, client_id="mo", params=MSGPACK)
        await jay.attach("room")
        await mo.attach("room")
        await jay.presence(
            "room",
            0,
            {"action": 2, "data": base64.b64encode(b"\xff").decode(), "encoding": "base64"},
        )
        await mo.presence("room", 0, {"action": 2, "data": b"\x00"})
        await jay.presence(
            "room",
            1,
            {
                "action": 4,
                "data": base64.b64encode("é".encode()).decode(),
                "encoding": "utf-8/base64",
            },
        )
        mo_events = [(await mo.expect(14))["presence"][0] for _ in range(3)]
        jay_events = [(await jay.expect(14))["presence"][0] for _ in range(3)]
        assert [(e["data"], e.get("encoding")) for e in mo_events] == [
            (b"\xff", None),
            (b"\x00", None),
            ("é".encode(), "utf-8"),
        ]
        assert [(e["data"], e.get("encoding")) for e in jay_events] == [
            ("/w==", "base64"),
            ("AA==", "base64"),
            ("w6k=", "utf-8/base64"),
        ]
        # a late joiner in each format
        late_mo = await RawClient.open(server, client_id="late", params=MSGPACK)
        _, syncs = await late_mo.attach("room")
        synced = {p["clientId"]: p for s in syncs for p in s["presence"]}
        assert synced["jay"]["data"] == "é".encode() and synced["jay"]["encoding"] == "utf-8"
        assert synced["mo"]["data"] == b"\x00" and "encoding" not in synced["mo"]
        late_json = await RawClient.open(server, client_id="late2")
        _, syncs = await late_json.attach("room")
        synced = {p["clientId"]: p for s in syncs for p in s["presence"]}
        assert (synced["mo"]["data"], synced["mo"]["encoding"]) == ("AA==", "base64")
        # REST: MessagePack on request, JSON otherwise
        auth = {"Authorization": "Basic " + base64.b64encode(server.default_key.encode()).decode()}
        url = f"{server.rest_url}/channels/room/presence"
        async with aiohttp.ClientSession() as session:
            async with session.get(
                url, headers={**auth, "Accept": "application/x-msgpack"}
            ) as resp:
                assert resp.content_type == "application/x-msgpack"
                packed = msgpack.unpackb(await resp.read())
            async with session.get(url, headers={**auth, "Accept": "application/json"}) as resp:
                assert resp.content_type == "application/json"
                plain = await resp.json()
        assert {m["clientId"]: m["data"] for m in packed} == {"jay": "é".encode(), "mo": b"\x00"}
        assert {m["clientId"]: m["data"] for m in plain} == {"jay": "w6k=", "mo": "AA=="}
        for client in (jay, mo, late_mo, late_json):
            await client.close()

    run_server(test)


def test_frames_of_the_wrong_kind_are_refused_and_recorded() -> None:
    async def test(server: PresenceServer) -> None:
        mo = await RawClient.open(server, client_id="mo", params=MSGPACK)
        await mo.send(b"\xc1")  # never used in MessagePack
        err = await mo.expect(9)
        assert err["error"]["code"] == 40000 and "not valid MessagePack" in err["error"]["message"]
        await mo.send('{"action": 10, "channel": "room"}')  # JSON text on a msgpack connection
        err = await mo.expect(9)
        assert (
            "text frame" in err["error"]["message"] and "format=msgpack" in err["error"]["message"]
        )
        await mo.send(b"\x92\x01")  # cut short
        assert "incomplete" in (await mo.expect(9))["error"]["message"]
        await mo.attach("room")  # still usable
        assert server.frames(mo.connection_id)[:3] == [
            {"$malformed": b"\xc1", "$size": 1},
            {"$text": 33},
            {"$malformed": b"\x92\x01", "$size": 2},
        ]
        jay = await RawClient.open(server, client_id="jay")
        packed = msgpack.packb({"action": 10, "channel": "room"})
        await jay.send(packed)
        err = await jay.expect(9)
        assert (
            "binary frame" in err["error"]["message"]
            and "format=msgpack" in err["error"]["message"]
        )
        assert server.frames(jay.connection_id) == [{"$binary": len(packed)}]
        await mo.close()
        await jay.close()

    run_server(test)

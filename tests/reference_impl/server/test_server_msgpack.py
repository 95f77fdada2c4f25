"""The reference server in MessagePack (`format=msgpack`), and between the two formats.

- a MessagePack connection gets every frame as a binary MessagePack frame (CONNECTED first), a
  refused upgrade gets its ERROR in MessagePack too;
- binary member data travels as `bin` to MessagePack connections and as base64 to JSON ones,
  whichever format the member was entered in, in PRESENCE, SYNC and REST alike; other encodings
  keep their steps (`utf-8/base64` from JSON is `bin` + `utf-8` in MessagePack);
- a frame that is not MessagePack, a text frame on a MessagePack connection, and a binary frame
  on a JSON one are refused with 40000 naming the problem; the connection stays usable and the
  frame log records them (`$malformed` bytes, `$text`, `$binary`);
- REST answers in MessagePack when `Accept` asks for `application/x-msgpack`, in JSON otherwise,
  the token endpoint included (which also reads a MessagePack TokenParams body);
- the hardening's refusals reach a MessagePack connection in MessagePack: the NACK of an
  oversized PRESENCE, the server's heartbeats.
"""

from __future__ import annotations

import base64
import json
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


def test_an_oversized_presence_is_nacked_in_msgpack_and_the_member_stays() -> None:
    async def test(server: PresenceServer) -> None:
        async with await RawClient.open(server, client_id="a", params=MSGPACK) as c:
            await c.attach("room")
            await c.presence("room", 0, {"action": 2, "data": b"here"})
            await c.send(
                {
                    "action": 14,
                    "channel": "room",
                    "msgSerial": 1,
                    "presence": [{"action": 4, "data": b"x" * 5000}],
                }
            )
            nack = await c.expect(2)
            assert nack["msgSerial"] == 1 and nack["error"]["code"] == 40009
            assert [m.data for m in server.model.get("room")] == [b"here"]
            assert (await c.presence("room", 2, {"action": 4, "data": b"still"}))["action"] == 1
            await c.sync_point()
            assert c.wrong_type == []  # every frame, the NACK included, was binary MessagePack

    run_server(test, max_message_size=1000, max_frame_size=2000)


def test_heartbeats_reach_each_connection_in_its_format() -> None:
    async def test(server: PresenceServer) -> None:
        async with (
            await RawClient.open(server, "m", params=MSGPACK, keep_heartbeats=True) as packed,
            await RawClient.open(server, "j", keep_heartbeats=True) as text,
        ):
            assert (await packed.expect(0, timeout=5))["action"] == 0
            assert (await text.expect(0, timeout=5))["action"] == 0
            assert packed.wrong_type == [] and text.wrong_type == []

    run_server(test, max_idle_interval=600)


def test_token_endpoint_answers_msgpack_when_asked_and_reads_a_msgpack_body() -> None:
    async def test(server: PresenceServer) -> None:
        key = server.default_key
        name = key.split(":")[0]
        basic = "Basic " + base64.b64encode(key.encode()).decode()
        url = f"{server.rest_url}/keys/{name}/requestToken"
        cap = json.dumps({"room": ["presence"]})
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": basic, "Accept": "application/x-msgpack"}
            body = json.dumps({"capability": cap, "clientId": "bob"})
            async with session.post(url, data=body, headers=headers) as resp:
                assert resp.status == 200
                assert resp.content_type == "application/x-msgpack"
                details = msgpack.unpackb(await resp.read())
            assert details["clientId"] == "bob" and json.loads(details["capability"]) == json.loads(
                cap
            )
            headers = {"Authorization": basic, "Content-Type": "application/x-msgpack"}
            packed = msgpack.packb({"clientId": "carol"})
            async with session.post(url, data=packed, headers=headers) as resp:
                assert resp.status == 200 and resp.content_type == "application/json"
                details = await resp.json()
            assert details["clientId"] == "carol"
            async with session.post(url, data=b"\xc1", headers=headers) as resp:
                assert resp.status == 400
                error = (await resp.json())["error"]
                assert error["code"] == 40000 and "MessagePack" in error["message"]
        token = details["token"]
        query = urlencode({"accessToken": token, "format": "msgpack"})
        async with await RawClient.connect_url(f"{server.url}?{query}") as c:
            assert (
                c.connected is not None and c.connected["connectionDetails"]["clientId"] == "carol"
            )

    run_server(test)

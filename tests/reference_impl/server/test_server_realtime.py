"""The reference server's realtime WebSocket, frame by frame (raw client, no SDK).

Each test starts a `PresenceServer` in-process on a free port inside `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from presence_conformance.reference_impl.server import KeySpec, PresenceServer, ServerConfig
from presence_conformance.reference_impl.server import transport as server_app
from presence_conformance.reference_impl.server.testing import RawClient
from support import run_server

from presence_conformance import spec

SYNC_ID = re.compile(r"^([\w-]+):(.*)$")  # ably-js realtimepresence.ts setPresence


def assert_valid_frames(frames: list[dict]) -> None:
    for frame in frames:
        problems = spec.validate("wire-protocol-message", frame)
        assert not problems, (frame, problems)


def enter(data: Any = None, **extra: Any) -> dict:
    item = {"action": 2, **extra}
    if data is not None:
        item["data"] = data
    return item


# -- connecting ------------------------------------------------------------------------------------


def test_connected_frame_has_the_verified_shape() -> None:
    async def test(server: PresenceServer) -> None:
        async with await RawClient.open(server, client_id="alice") as alice:
            frame = alice.connected
            assert frame is not None
            assert set(frame) == {"action", "connectionId", "connectionKey", "connectionDetails"}
            details = frame["connectionDetails"]
            assert details["clientId"] == "alice"
            assert details["connectionKey"] == frame["connectionKey"]
            assert frame["connectionKey"].endswith("!" + frame["connectionId"])
            assert details["maxMessageSize"] == 65536
            assert details["maxIdleInterval"] == 15000
            assert details["connectionStateTtl"] == 120000
            assert details["serverId"]
            assert ":" not in frame["connectionId"]
            assert frame["connectionId"] in server.connection_ids()
            assert_valid_frames([frame])
        async with await RawClient.open(server) as anon:
            assert "clientId" not in anon.connected["connectionDetails"]
        async with await RawClient.open(server, client_id="*") as wild:
            assert wild.connected["connectionDetails"]["clientId"] == "*"

    run_server(test)


@pytest.mark.parametrize(
    ("query", "code", "status", "words"),
    [
        ({"key": "nosuch.key:secret"}, 40400, 404, "unknown key"),
        ({"key": "appid.keyid:wrong"}, 40101, 401, "wrong secret"),
        ({"key": "no-colon"}, 40101, 401, "key"),
        ({}, 40101, 401, "no credentials"),
        ({"key": "appid.keyid:secret", "format": "xml"}, 40000, 400, "msgpack"),
        ({"accessToken": "nope"}, 40101, 401, "accessToken"),
        ({"access_token": "nope"}, 40101, 401, "access_token"),
    ],
)
def test_connect_refused_with_error_then_close(
    query: dict, code: int, status: int, words: str
) -> None:
    async def test(server: PresenceServer) -> None:
        client = await RawClient.connect_url(
            f"{server.url}?{urlencode(query)}", expect_connected=False
        )
        frame = await client.recv()
        assert frame["action"] == 9 and "channel" not in frame
        assert frame["error"]["code"] == code and frame["error"]["statusCode"] == status
        assert words in frame["error"]["message"]
        await asyncio.wait_for(client.closed.wait(), 5)
        assert server.connection_ids() == []
        await client.close()

    run_server(test)


def test_tokens_on_both_query_spellings_and_token_client_id() -> None:
    async def test(server: PresenceServer) -> None:
        token = server.issue_token(client_id="tina")
        for param in ("accessToken", "access_token"):  # ably-python / ably-js spellings
            c = await RawClient.connect_url(f"{server.url}?{urlencode({param: token})}")
            assert c.connected["connectionDetails"]["clientId"] == "tina"
            await c.close()
        bad = await RawClient.connect_url(
            f"{server.url}?{urlencode({'accessToken': token, 'clientId': 'other'})}",
            expect_connected=False,
        )
        assert (await bad.recv())["error"]["code"] == 40012
        await bad.close()

    run_server(test)


def test_resume_of_an_unknown_key_gets_a_new_connection_with_an_error() -> None:
    async def test(server: PresenceServer) -> None:
        async with await RawClient.open(server, client_id="a", params={"resume": "k!x"}) as c:
            assert c.connected["error"]["code"] == 80008
            assert c.connection_id != "x"
        async with await RawClient.open(server, client_id="a", params={"recover": "k!x"}) as c:
            assert c.connected["error"]["code"] == 80008

    run_server(test)


async def _lose(server: PresenceServer, client: RawClient) -> None:
    client.abort()
    for _ in range(200):
        if client.connection_id in server.realtime.dropped:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server never noticed the lost transport")


def test_resume_keeps_the_connection_its_members_and_the_missed_frames() -> None:
    """RTN15c6: same connectionId, no error, the frames sent meanwhile, RESUMED on re-attach;
    nobody hears a leave."""

    async def test(server: PresenceServer) -> None:
        alice = await RawClient.open(server, client_id="alice")
        bob = await RawClient.open(server, client_id="bob")
        await alice.attach("room")
        assert (await alice.presence("room", 0, enter("a")))["action"] == 1
        await alice.expect(14, channel="room")  # her own enter
        await bob.attach("room")
        key = alice.connected["connectionKey"]
        await _lose(server, alice)
        await bob.presence("room", 0, enter("b"))
        back = await RawClient.open(server, client_id="alice", params={"resume": key})
        assert back.connection_id == alice.connection_id
        assert "error" not in back.connected
        missed = await back.expect(14, channel="room")
        assert [(m["clientId"], m["action"]) for m in missed["presence"]] == [("bob", 2)]
        attached, syncs = await back.attach("room")
        assert attached["flags"] & 4  # RESUMED
        members = {m["clientId"] for sync in syncs for m in sync["presence"]}
        assert members == {"alice", "bob"}
        # the automatic re-entry (RTP17g: the member's own id) changes nothing, nobody hears it
        own_id = f"{alice.connection_id}:0:0"
        ack = await back.presence("room", 1, {**enter("a"), "clientId": "alice", "id": own_id})
        assert ack["action"] == 1
        frames = await bob.no_frame(0.3 + 0.2)
        assert not [f for f in frames if f.get("action") == 14]  # no leave, no new enter
        await back.close()
        await bob.close()

    run_server(test, leave_grace=0.3)


def test_refused_resume_gives_a_new_connection_and_the_old_members_leave() -> None:
    """RTN15c7: `refuse_resume`, an expired connection and a full backlog are refused."""

    async def test(server: PresenceServer) -> None:
        alice = await RawClient.open(server, client_id="alice")
        bob = await RawClient.open(server, client_id="bob")
        await alice.attach("room")
        await alice.presence("room", 0, enter("a"))
        await bob.attach("room")
        server.refuse_resume(alice.connection_id)
        key = alice.connected["connectionKey"]
        await _lose(server, alice)
        back = await RawClient.open(server, client_id="alice", params={"resume": key})
        assert back.connection_id != alice.connection_id
        assert back.connected["error"]["code"] == 80008
        leave = await bob.expect(14, channel="room", timeout=3)
        assert [(m["clientId"], m["action"]) for m in leave["presence"]] == [("alice", 3)]
        # expired: the grace is over, the key is no longer known
        key = back.connected["connectionKey"]
        await _lose(server, back)
        server.expire_now(back.connection_id)
        again = await RawClient.open(server, client_id="alice", params={"resume": key})
        assert again.connection_id != back.connection_id
        assert again.connected["error"]["code"] == 80008
        await again.close()
        await bob.close()

    run_server(test, leave_grace=0.2)


def test_a_resume_with_too_many_missed_frames_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from presence_conformance.reference_impl.server import realtime

    monkeypatch.setattr(realtime, "RESUME_BACKLOG", 2)

    async def test(server: PresenceServer) -> None:
        alice = await RawClient.open(server, client_id="alice")
        bob = await RawClient.open(server, client_id="bob")
        await alice.attach("room")
        await bob.attach("room")
        key = alice.connected["connectionKey"]
        await _lose(server, alice)
        for serial in range(3):
            await bob.presence("room", serial, enter(f"b{serial}"))
        back = await RawClient.open(server, client_id="alice", params={"resume": key})
        assert back.connection_id != alice.connection_id
        assert back.connected["error"]["code"] == 80008
        await back.close()
        await bob.close()

    run_server(test, leave_grace=5)


# -- heartbeats --------------------------------------------------------------------------------------


def test_heartbeat_echoes_id_and_server_sends_keepalives() -> None:
    async def test(server: PresenceServer) -> None:
        async with await RawClient.open(server, keep_heartbeats=True) as c:
            await c.send({"action": 0, "id": "pVw7RAZ5"})
            assert await c.expect(0, id="pVw7RAZ5") == {"action": 0, "id": "pVw7RAZ5"}
            keepalive = await c.expect(0, 2.0)
            assert keepalive == {"action": 0}

    run_server(test, heartbeat_interval=0.2)


def test_default_heartbeat_interval_is_below_max_idle_interval() -> None:
    config = ServerConfig()
    assert 0 < config.effective_heartbeat_interval * 1000 < config.max_idle_interval


# -- attach and SYNC ----------------------------------------------------------------------------------


def test_attach_empty_channel_has_no_presence_flag_and_no_sync() -> None:
    async def test(server: PresenceServer) -> None:
        async with await RawClient.open(server, client_id="a") as c:
            await c.send({"action": 10, "channel": "room1", "params": None})
            attached = await c.recv()
            assert attached["action"] == 11 and attached["channel"] == "room1"
            assert attached["flags"] == 983040
            assert isinstance(attached["channelSerial"], str)
            await c.sync_point()
            assert all(f["action"] != 16 for f in c.received)
            assert_valid_frames(c.received)

    run_server(test)


def test_attach_with_members_pages_the_sync() -> None:
    async def test(server: PresenceServer) -> None:
        members = []
        for i in range(5):
            m = await RawClient.open(server, client_id=f"u{i}")
            await m.attach("multi")
            ack = await m.presence("multi", 0, enter(f"d-u{i}"))
            assert ack == {"action": 1, "msgSerial": 0, "count": 1}
            members.append(m)
        late = await RawClient.open(server, client_id="late")
        attached, syncs = await late.attach("multi")
        assert attached["flags"] == 983041
        assert len(syncs) == 3
        cursors = [SYNC_ID.match(s["channelSerial"]) for s in syncs]
        assert all(cursors)
        assert len({m.group(1) for m in cursors}) == 1  # one sync id
        assert [m.group(2) == "" for m in cursors] == [False, False, True]
        items = [p for s in syncs for p in s["presence"]]
        assert [len(s["presence"]) for s in syncs] == [2, 2, 1]
        assert sorted(p["clientId"] for p in items) == [f"u{i}" for i in range(5)]
        for p in items:
            assert p["action"] == 1
            assert p["id"] == f"{p['connectionId']}:0:0"
            assert p["data"] == f"d-{p['clientId']}"
            assert isinstance(p["timestamp"], int)
        assert_valid_frames(late.received)
        # the same attach again gives a fresh sync id
        _, again = await late.attach("multi")
        assert SYNC_ID.match(again[0]["channelSerial"]).group(1) != cursors[0].group(1)
        for m in [*members, late]:
            await m.close()

    run_server(test, sync_page_size=2)


def test_attach_without_any_capability_on_the_channel_is_a_channel_error() -> None:
    async def test(server: PresenceServer) -> None:
        key = server.add_key("app.narrow", "s3", {"allowed:*": ["subscribe"]})
        async with await RawClient.open(server, client_id="a", key=key) as c:
            await c.send({"action": 10, "channel": "secret"})
            err = await c.recv()
            assert err["action"] == 9 and err["channel"] == "secret"
            assert err["error"]["code"] == 40160
            attached, _ = await c.attach("allowed:x")
            # TR3s/TR3t, RTL4m: a subscribe-only key is granted SUBSCRIBE and
            # PRESENCE_SUBSCRIBE, not PRESENCE or PUBLISH
            assert attached["flags"] == (1 << 18) | (1 << 19)

    run_server(test)


# -- presence -----------------------------------------------------------------------------------------


def test_enter_acks_and_broadcasts_to_everyone_with_ids_from_msg_serial() -> None:
    async def test(server: PresenceServer) -> None:
        alice = await RawClient.open(server, client_id="alice")
        bob = await RawClient.open(server, client_id="bob")
        await alice.attach("room")
        await bob.attach("room")
        await alice.send(
            {"action": 15, "channel": "room", "msgSerial": 0, "messages": [{"data": "x"}]}
        )
        assert await alice.expect(1) == {"action": 1, "msgSerial": 0, "count": 1}
        ack = await alice.presence("room", 1, enter('{"mood": "happy"}', encoding="json"))
        assert ack == {"action": 1, "msgSerial": 1, "count": 1}
        for client in (alice, bob):
            frame = await client.expect(14)
            cid = alice.connection_id
            assert frame["id"] == f"{cid}:1" and frame["connectionId"] == cid
            assert frame["channel"] == "room"
            [item] = frame["presence"]
            assert item["id"] == f"{cid}:1:0"
            assert item["action"] == 2 and item["clientId"] == "alice"
            assert item["connectionId"] == cid
            assert item["data"] == '{"mood": "happy"}' and item["encoding"] == "json"
            assert abs(item["timestamp"] - server.now()) < 60_000  # milliseconds
            assert_valid_frames([frame])
        member = server.model.get("room")[0]
        assert member.data == {"mood": "happy"}  # decoded for the model
        await alice.close()
        await bob.close()

    run_server(test)


def test_update_and_leave_carry_data_and_binary_round_trips() -> None:
    async def test(server: PresenceServer) -> None:
        alice = await RawClient.open(server, client_id="alice")
        bob = await RawClient.open(server, client_id="bob")
        await alice.attach("room")
        await bob.attach("room")
        blob = base64.b64encode(b"\x00\x01\xfe").decode()
        assert (await alice.presence("room", 0, enter(blob, encoding="base64")))["action"] == 1
        assert (await alice.presence("room", 1, {"action": 4, "data": "new"}))["action"] == 1
        assert (await alice.presence("room", 2, {"action": 4, "data": blob, "encoding": "base64"}))[
            "action"
        ] == 1
        assert (await alice.presence("room", 3, {"action": 3}))["action"] == 1
        # RTP10d: leaving when not present is ACKed and emits nothing
        assert (await alice.presence("room", 4, {"action": 3}))["action"] == 1
        events = [(await bob.expect(14))["presence"][0] for _ in range(4)]
        assert [e["action"] for e in events] == [2, 4, 4, 3]
        assert [e["id"] for e in events] == [f"{alice.connection_id}:{n}:0" for n in range(4)]
        assert events[0]["data"] == blob and events[0]["encoding"] == "base64"
        assert events[1]["data"] == "new" and "encoding" not in events[1]
        assert events[3]["data"] == blob and events[3]["encoding"] == "base64"  # RTP10a
        assert await bob.no_frame(0.1, 14) == []
        assert server.model.get("room") == []
        history = server.model.history_all("room")
        assert history[0].data == b"\x00\x01\xfe"
        await alice.close()
        await bob.close()

    run_server(test)


def test_wildcard_connection_enters_several_clients_in_one_frame() -> None:
    async def test(server: PresenceServer) -> None:
        wild = await RawClient.open(server, client_id="*")
        await wild.attach("room")
        ack = await wild.presence("room", 0, enter("a", clientId="c1"), enter("b", clientId="c2"))
        assert ack["action"] == 1
        frame = await wild.expect(14)
        cid = wild.connection_id
        assert [p["id"] for p in frame["presence"]] == [f"{cid}:0:0", f"{cid}:0:1"]
        assert [p["clientId"] for p in frame["presence"]] == ["c1", "c2"]
        nack = await wild.presence("room", 1, enter("no client id"))
        assert nack["action"] == 2 and nack["error"]["code"] == 40012
        assert "wildcard" in nack["error"]["message"]
        await wild.close()

    run_server(test)


@pytest.mark.parametrize(
    "case",
    [
        "capability",
        "client_id_mismatch",
        "too_large",
        "not_attached",
        "anonymous",
        "anonymous_with_client_id",
        "present_action",
        "bad_json_data",
        "bad_base64",
        "no_items",
        "too_large_total",
    ],
)
def test_presence_nacks(case: str) -> None:
    async def test(server: PresenceServer) -> None:
        key = server.add_key("app.nopresence", "s", {"*": ["subscribe", "history"]})
        observer = await RawClient.open(server, client_id="observer")
        await observer.attach("room")
        client_id: str | None = "alice"
        use_key = None
        items: list[dict] = [enter("x")]
        channel = "room"
        expected = None
        if case == "capability":
            use_key, expected = key, (40160, 401, "presence capability")
        elif case == "client_id_mismatch":
            items, expected = [enter("x", clientId="mallory")], (40012, 400, "mallory")
        elif case == "too_large":
            items, expected = [enter("x" * 65537)], (40009, 400, "65536")
        elif case == "too_large_total":
            items = [enter("x" * 40000), enter("y" * 40000)]
            expected = (40009, 400, "exceeds")
        elif case == "not_attached":
            channel, expected = "elsewhere", (90001, 400, "'elsewhere'")
        elif case == "anonymous":
            client_id, expected = None, (91000, 400, "clientId")
        elif case == "anonymous_with_client_id":
            client_id, items = None, [enter("x", clientId="bob")]
            expected = (40012, 400, "anonymous")
        elif case == "present_action":
            items, expected = [{"action": 1}], (40000, 400, "presence[0].action")
        elif case == "bad_json_data":
            items, expected = [enter("{nope", encoding="json")], (40013, 400, "not valid JSON")
        elif case == "bad_base64":
            items, expected = [enter("!!!", encoding="base64")], (40013, 400, "base64")
        elif case == "no_items":
            items, expected = [], (40000, 400, "presence")
        client = await RawClient.open(server, client_id=client_id, key=use_key)
        await client.attach("room")
        nack = await client.presence(channel, 7, *items)
        assert nack["action"] == 2 and nack["msgSerial"] == 7 and nack["count"] == 1
        code, status, words = expected
        assert nack["error"]["code"] == code, nack
        assert nack["error"]["statusCode"] == status
        assert words in nack["error"]["message"]
        assert_valid_frames([nack])
        # nothing changed, and the connection still works
        assert server.model.get("room") == []
        assert await observer.no_frame(0.05, 14) == []
        await client.sync_point()
        await client.close()
        await observer.close()

    run_server(test)


# -- detach, close, disconnect ----------------------------------------------------------------------


def test_detach_replies_detached_and_the_members_leave() -> None:
    async def test(server: PresenceServer) -> None:
        alice = await RawClient.open(server, client_id="alice")
        bob = await RawClient.open(server, client_id="bob")
        await alice.attach("room")
        await bob.attach("room")
        await alice.presence("room", 0, enter("d"))
        await bob.expect(14)
        await alice.send({"action": 12, "channel": "room"})
        assert await alice.expect(13) == {"action": 13, "channel": "room"}
        leave = (await bob.expect(14))["presence"][0]
        assert leave["action"] == 3 and leave["clientId"] == "alice" and leave["data"] == "d"
        assert not leave["id"].startswith(alice.connection_id)  # RTP2b1
        # detached: no more broadcasts, and PRESENCE is refused
        await bob.presence("room", 0, enter())
        assert await alice.no_frame(0.1, 14) == []
        nack = await alice.presence("room", 1, enter())
        assert nack["error"]["code"] == 90001
        await alice.close()
        await bob.close()

    run_server(test)


def test_close_sends_closed_and_members_leave_at_once() -> None:
    async def test(server: PresenceServer) -> None:
        alice = await RawClient.open(server, client_id="alice")
        bob = await RawClient.open(server, client_id="bob")
        for ch in ("r1", "r2"):
            await alice.attach(ch)
            await bob.attach(ch)
        await alice.presence("r1", 0, enter("one"))
        await alice.presence("r2", 1, enter("two"))
        await bob.expect(14, channel="r1")
        await bob.expect(14, channel="r2")
        await alice.send({"action": 7})
        assert await alice.expect(8) == {"action": 8}
        await asyncio.wait_for(alice.closed.wait(), 5)
        leaves = {}
        for _ in range(2):
            frame = await bob.expect(14, 1.0)
            [item] = frame["presence"]
            leaves[frame["channel"]] = item
        assert {ch: (i["action"], i["data"]) for ch, i in leaves.items()} == {
            "r1": (3, "one"),
            "r2": (3, "two"),
        }
        assert server.model.get("r1") == [] and server.model.get("r2") == []
        assert alice.connection_id not in server.connection_ids()
        await bob.close()

    run_server(test, leave_grace=30.0)


def test_abrupt_disconnect_synthesizes_one_leave_per_member_after_the_grace() -> None:
    async def test(server: PresenceServer) -> None:
        wild = await RawClient.open(server, client_id="*")
        bob = await RawClient.open(server, client_id="bob")
        await wild.attach("room")
        await bob.attach("room")
        await wild.presence("room", 0, enter("a", clientId="m1"), enter("b", clientId="m2"))
        await bob.expect(14)
        loop = asyncio.get_running_loop()
        cut = loop.time()
        wild.abort()
        assert await bob.no_frame(0.1, 14) == []  # members stay during the grace
        assert len(server.model.get("room")) == 2
        frames = [await bob.expect(14, 3.0)]
        frames += await bob.no_frame(0.3, 14)
        assert loop.time() - cut >= 0.2
        items = [p for f in frames for p in f["presence"]]
        assert sorted((p["clientId"], p["action"], p["data"]) for p in items) == [
            ("m1", 3, "a"),
            ("m2", 3, "b"),
        ]
        for p in items:
            assert p["connectionId"] == wild.connection_id
            assert not p["id"].startswith(wild.connection_id)  # RTP2b1: synthesized
        assert server.model.get("room") == []
        await bob.close()

    run_server(test, leave_grace=0.2)


def test_many_connections_dropped_at_once_give_exactly_one_leave_per_member() -> None:
    async def test(server: PresenceServer) -> None:
        watcher = await RawClient.open(server, client_id="watcher")
        await watcher.attach("crowd")
        clients = []
        for i in range(20):
            c = await RawClient.open(server, client_id=f"p{i}")
            await c.attach("crowd")
            assert (await c.presence("crowd", 0, enter(str(i))))["action"] == 1
            clients.append(c)
        for _ in range(20):
            await watcher.expect(14)
        for c in clients:
            c.abort()
        leaves: list[dict] = []
        deadline = asyncio.get_running_loop().time() + 5
        while len(leaves) < 20 and asyncio.get_running_loop().time() < deadline:
            frame = await watcher.expect(14, 5)
            leaves.extend(frame["presence"])
        leaves += [p for f in await watcher.no_frame(0.4, 14) for p in f["presence"]]
        assert sorted(p["clientId"] for p in leaves) == sorted(f"p{i}" for i in range(20))
        assert all(p["action"] == 3 for p in leaves)
        assert len({p["id"] for p in leaves}) == 20
        assert server.model.get("crowd") == []
        await watcher.close()

    run_server(test, leave_grace=0.2)


def test_server_drop_and_expire_now_for_fault_injection() -> None:
    async def test(server: PresenceServer) -> None:
        alice = await RawClient.open(server, client_id="alice")
        bob = await RawClient.open(server, client_id="bob")
        await alice.attach("room")
        await bob.attach("room")
        await alice.presence("room", 0, enter())
        await bob.expect(14)
        await server.drop(alice.connection_id)
        await asyncio.wait_for(alice.closed.wait(), 5)
        for _ in range(50):
            if alice.connection_id not in server.connection_ids():
                break
            await asyncio.sleep(0.02)
        server.expire_now(alice.connection_id)
        leave = await bob.expect(14, 1.0)
        assert leave["presence"][0]["action"] == 3
        await bob.close()

    run_server(test, leave_grace=60.0)


# -- bad frames ---------------------------------------------------------------------------------------


BAD_FRAMES: list[tuple[Any, int, str, str | None]] = [
    ("{not json", 40000, "not valid JSON", None),
    ("[1, 2]", 40000, "expected a JSON object", None),
    ({"channel": "room"}, 40000, "action: missing", "room"),
    ({"action": "14"}, 40000, "action: expected an integer", None),
    ({"action": 99, "channel": "room"}, 40000, "unknown action 99", "room"),
    ({"action": 11, "channel": "room"}, 40000, "ATTACHED", "room"),
    ({"action": 10}, 40000, "channel: missing", None),
    ({"action": 10, "channel": 5}, 40010, "channel: expected a string", None),
    ({"action": 10, "channel": "room", "params": [1]}, 40000, "params", "room"),
    (
        {"action": 14, "channel": "room", "presence": [{"action": 2}]},
        40000,
        "msgSerial: missing",
        "room",
    ),
    (
        {"action": 14, "channel": "room", "msgSerial": "0", "presence": []},
        40000,
        "msgSerial",
        "room",
    ),
    ({"action": 0, "id": 5}, 40000, "id: expected a string", None),
    ({"action": 17}, 40000, "AUTH", None),
]


@pytest.mark.parametrize(("frame", "code", "words", "channel"), BAD_FRAMES)
def test_bad_frames_get_an_error_naming_the_problem(
    frame: Any, code: int, words: str, channel: str | None
) -> None:
    async def test(server: PresenceServer) -> None:
        alice = await RawClient.open(server, client_id="alice")
        bob = await RawClient.open(server, client_id="bob")
        await bob.attach("room")
        await bob.presence("room", 0, enter("bob-data"))
        await bob.expect(14)
        await alice.send(frame)
        err = await alice.recv()
        assert err["action"] == 9, err
        assert err["error"]["code"] == code
        assert words in err["error"]["message"]
        assert err.get("channel") == channel
        assert_valid_frames([err])
        # the connection and everybody else are unaffected
        await alice.sync_point()
        _, syncs = await alice.attach("room")
        assert [p["clientId"] for s in syncs for p in s["presence"]] == ["bob"]
        assert await bob.no_frame(0.05, 14) == []
        assert [m.client_id for m in server.model.get("room")] == ["bob"]
        await alice.close()
        await bob.close()

    run_server(test)


def test_binary_and_oversized_frames_are_refused_and_the_connection_survives() -> None:
    async def test(server: PresenceServer) -> None:
        async with await RawClient.open(server, client_id="a") as c:
            await c.send(b"\x81\xa6action\x0e")
            err = await c.recv()
            assert err["error"]["code"] == 40000 and "msgpack" in err["error"]["message"]
            await c.send(json.dumps({"action": 10, "channel": "big", "pad": "x" * 600_000}))
            err = await c.recv()
            assert err["action"] == 9 and err["error"]["code"] == 40009
            assert "maxFrameSize" in err["error"]["message"] and err["channel"] == "big"
            await c.sync_point()
            frames = server.frames(c.connection_id)
            assert frames[0] == {"$binary": 9}
            assert frames[1]["$size"] > 600_000 and "pad" not in frames[1]

    run_server(test)


def test_frames_are_recorded_per_connection_and_bounded() -> None:
    async def test(server: PresenceServer) -> None:
        a = await RawClient.open(server, client_id="a")
        b = await RawClient.open(server, client_id="b")
        await a.attach("room")
        await a.presence("room", 0, enter("x"))
        await a.send("garbage")
        await a.sync_point()
        frames = server.frames(a.connection_id)
        assert frames[0] == {"action": 10, "channel": "room"}
        assert frames[1] == {
            "action": 14,
            "channel": "room",
            "msgSerial": 0,
            "presence": [{"action": 2, "data": "x"}],
        }
        assert frames[2]["$malformed"] == "garbage"
        assert server.frames(b.connection_id) == []
        assert server.frames("nope") == []
        for i in range(30):
            await a.send({"action": 0, "id": str(i)})
        await a.sync_point("last")
        frames = server.frames(a.connection_id)
        assert len(frames) == 10 and frames[-1] == {"action": 0, "id": "last"}
        await a.close()
        await b.close()

    run_server(test, frame_log_size=10)


def test_each_broadcast_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = server_app.encode

    def counting(obj: Any, fmt: str) -> bytes:
        calls.append((obj["action"], fmt))
        return real(obj, fmt)

    async def test(server: PresenceServer) -> None:
        clients = [await RawClient.open(server, client_id=f"c{i}") for i in range(6)]
        for c in clients:
            await c.attach("room")
        calls.clear()
        await clients[0].presence("room", 0, enter("hi"))
        for c in clients:
            await c.expect(14)
        # one broadcast for six subscribers, then the ACK
        assert calls == [(14, "json"), (1, "json")]
        for c in clients:
            await c.close()

    monkeypatch.setattr(server_app, "encode", counting)
    run_server(test)


def test_a_broadcast_is_encoded_once_per_format(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = server_app.encode

    def counting(obj: Any, fmt: str) -> bytes:
        calls.append((obj["action"], fmt))
        return real(obj, fmt)

    async def test(server: PresenceServer) -> None:
        clients = [
            await RawClient.open(
                server, client_id=f"c{i}", params={"format": "msgpack" if i % 2 else "json"}
            )
            for i in range(6)
        ]
        for c in clients:
            await c.attach("room")
        calls.clear()
        await clients[1].presence("room", 0, enter(b"\x00\xff"))
        events = [await c.expect(14) for c in clients]
        assert sorted(calls) == [(1, "msgpack"), (14, "json"), (14, "msgpack")]
        for i, event in enumerate(events):
            item = event["presence"][0]
            if i % 2:  # MessagePack: raw bytes, no encoding
                assert item["data"] == b"\x00\xff" and "encoding" not in item
            else:  # JSON: base64
                assert (item["data"], item["encoding"]) == ("AP8=", "base64")
            assert not clients[i].wrong_type
        for c in clients:
            await c.close()

    monkeypatch.setattr(server_app, "encode", counting)
    run_server(test)


def test_slow_consumer_is_cut_off_without_hurting_others() -> None:
    async def test(server: PresenceServer) -> None:
        bob = await RawClient.open(server, client_id="bob")
        await bob.attach("room")
        conn = server.realtime.connections[bob.connection_id]  # white-box: block its writer
        conn.writer.cancel()
        alice = await RawClient.open(server, client_id="alice")
        await alice.attach("room")
        for serial in range(8):
            await alice.presence("room", serial, {"action": 4, "data": str(serial)})
        await alice.sync_point()
        assert bob.connection_id not in server.connection_ids()
        assert [m.client_id for m in server.model.get("room")] == ["alice"]
        await alice.close()
        await bob.close()

    run_server(test, max_outbound_queue=5, leave_grace=0.05)


def test_keyspec_capability_per_key() -> None:
    config = ServerConfig(keys={"a.b": KeySpec("s", {"room": ["presence"]})})

    async def test(server: PresenceServer) -> None:
        c = await RawClient.open(server, client_id="x", key="a.b:s")
        await c.attach("room")
        assert (await c.presence("room", 0, enter()))["action"] == 1
        await c.send({"action": 10, "channel": "other"})
        assert (await c.expect(9))["error"]["code"] == 40160
        await c.close()

    async def main() -> None:
        server = PresenceServer(config)
        await server.start()
        try:
            await test(server)
        finally:
            await server.stop()

    asyncio.run(main())

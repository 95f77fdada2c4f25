"""The scriptable reference server (`reference_impl/server/control.py`) and its HTTP endpoint
(`control_http.py`, `serve --control`): each command's frames, as a client receives them, its
refusals, the sent-frame log, and the endpoint refusing requests without the token."""

from __future__ import annotations

import aiohttp
import pytest
from presence_conformance.reference_impl.protocol import HAS_PRESENCE, ProtocolAction
from presence_conformance.reference_impl.server import PresenceServer, ServerConfig
from presence_conformance.reference_impl.server.cli import serve_main
from presence_conformance.reference_impl.server.control import CommandError, ServerControl
from presence_conformance.reference_impl.server.control_http import add_control_routes
from presence_conformance.reference_impl.server.testing import RawClient
from support import run_adapter, run_server

TOKEN = "t0ken-of-at-least-16"


async def _setup(server: PresenceServer) -> tuple[ServerControl, RawClient, RawClient, str]:
    control = ServerControl(server.realtime, server.now)
    bob = await RawClient.open(server, "bob")
    await bob.attach("room")
    ack = await bob.presence("room", 0, {"action": 2, "data": "b"})
    assert ack["action"] == ProtocolAction.ACK
    alice = await RawClient.open(server, "alice")
    await alice.attach("room")
    return control, alice, bob, alice.connection_id


def test_sync_in_pages_with_presence_between_and_the_sent_log() -> None:
    async def body(server: PresenceServer) -> None:
        control, alice, bob, cid = await _setup(server)
        frames = control.run(
            {
                "do": "sync",
                "connection": cid,
                "channel": "room",
                "pages": 2,
                "add": [{"client_id": "ghost", "connection_id": "g", "serial": 1}],
                "between": [[{"client_id": "carol", "connection_id": "c", "action": "enter"}]],
            }
        )
        assert [f["action"] for f in frames] == [16, 14, 16]
        first, live, last = frames
        sync_id, _, cursor = first["channelSerial"].partition(":")
        assert cursor and last["channelSerial"] == f"{sync_id}:"
        assert [i["clientId"] for i in first["presence"] + last["presence"]] == ["bob", "ghost"]
        assert {i["action"] for i in first["presence"] + last["presence"]} == {1}  # PRESENT
        assert last["presence"][0]["id"] == "g:1:0"
        assert live["presence"][0]["id"].startswith("c:") and live["connectionId"] == "c"
        received = [await alice.expect(a) for a in (16, 14, 16)]
        assert [f["channelSerial"] for f in (received[0], received[2])] == [
            first["channelSerial"],
            last["channelSerial"],
        ]
        sent = control.sent_frames(cid, "room")
        assert sent[0]["action"] == ProtocolAction.ATTACHED and sent[-3:] == frames
        assert len(control.log) == 1
        await alice.close()
        await bob.close()

    run_server(body)


def test_sync_left_in_flight_and_without_channel_serial() -> None:
    async def body(server: PresenceServer) -> None:
        control, alice, bob, cid = await _setup(server)
        (open_sync,) = control.run(
            {"do": "sync", "connection": cid, "channel": "room", "complete": False}
        )
        assert not open_sync["channelSerial"].endswith(":")
        (whole,) = control.run(
            {
                "do": "sync",
                "connection": cid,
                "channel": "room",
                "channel_serial": False,
                "omit": ["bob"],
            }
        )
        assert "channelSerial" not in whole and whole["presence"] == []
        with pytest.raises(CommandError, match="channel_serial"):
            control.run(
                {
                    "do": "sync",
                    "connection": cid,
                    "channel": "room",
                    "channel_serial": False,
                    "pages": 2,
                }
            )
        await alice.close()
        await bob.close()

    run_server(body)


def test_attached_presence_omissions_duplicates_and_errors() -> None:
    async def body(server: PresenceServer) -> None:
        control, alice, bob, cid = await _setup(server)
        (attached,) = control.run({"do": "attached", "connection": cid, "channel": "room"})
        assert attached["action"] == ProtocolAction.ATTACHED
        assert not attached["flags"] & HAS_PRESENCE
        frames = control.run(
            {
                "do": "presence",
                "connection": cid,
                "channel": "room",
                "frames": [
                    [
                        {"client_id": "x", "connection_id": "cx", "omit": ["id", "timestamp"]},
                        {"client_id": "y", "connection_id": "cx", "omit": ["connectionId"]},
                        {
                            "client_id": "z",
                            "connection_id": "cx",
                            "action": "leave",
                            "synthesized": True,
                            "timestamp": -500,
                        },
                    ]
                ],
                "repeat": 2,
            }
        )
        assert len(frames) == 2 and frames[0] is frames[1]
        x, y, z = frames[0]["presence"]
        assert "id" not in x and "timestamp" not in x and x["connectionId"] == "cx"
        assert "connectionId" not in y and y["id"].startswith("cx:")
        assert not z["id"].startswith("cx") and z["timestamp"] == frames[0]["timestamp"] - 500
        assert {"id", "connectionId", "timestamp"} <= set(frames[0])
        (detached,) = control.run({"do": "detached", "connection": cid, "channel": "room"})
        assert detached["action"] == ProtocolAction.DETACHED and detached["error"]["code"]
        (error,) = control.run({"do": "error", "connection": cid, "channel": "room"})
        assert error["action"] == ProtocolAction.ERROR and error["channel"] == "room"
        with pytest.raises(CommandError, match="not attached"):  # the ERROR detached it
            control.run({"do": "attached", "connection": cid, "channel": "room"})
        await alice.close()
        await bob.close()

    run_server(body)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ({"do": "explode"}, "unknown command"),
        ({"do": "sync", "connection": "nope", "channel": "room"}, "not open"),
        ({"do": "presence", "channel": "room", "frames": [[{"action": "absent"}]]}, "absent"),
        ({"do": "presence", "channel": "room", "frames": [[{"action": "enter"}]]}, "client_id"),
        (
            {
                "do": "presence",
                "channel": "room",
                "frames": [[{"client_id": "a", "omit": ["data"]}]],
            },
            "omit",
        ),
        (
            {"do": "presence", "channel": "room", "frames": [[{"client_id": "a", "x": 1}]]},
            "unknown fields",
        ),
        ({"do": "presence", "channel": "room", "frames": []}, "at least one"),
        ({"do": "sync", "channel": "lobby"}, "not attached"),
        ({"do": "sync", "channel": "room", "pages": 0}, "pages"),
    ],
)
def test_commands_that_cannot_run_are_refused(command: dict, message: str) -> None:
    async def body(server: PresenceServer) -> None:
        control, alice, bob, cid = await _setup(server)
        command.setdefault("connection", cid)
        with pytest.raises(CommandError, match=message):
            control.run(command)
        assert control.log == []
        await alice.close()
        await bob.close()

    run_server(body)


def _controlled() -> tuple[PresenceServer, ServerControl]:
    """A server with its HTTP control endpoint (bearer TOKEN), not started."""
    server = PresenceServer(ServerConfig(leave_grace=0.1))
    control = ServerControl(server.realtime, server.now)
    server.route_hooks.append(lambda app: add_control_routes(app, control, TOKEN))
    return server, control


def test_http_control_refuses_requests_without_the_token() -> None:
    server, control = _controlled()

    async def body(server: PresenceServer) -> None:
        alice = await RawClient.open(server, "alice")
        await alice.attach("room")
        command = {"do": "attached", "connection": alice.connection_id, "channel": "room"}
        base = server.rest_url.rstrip("/")
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                for path, body_ in (("/control/command", command), ("/control/sent", command)):
                    async with session.post(base + path, json=body_, headers=headers) as r:
                        assert r.status == 401, (path, headers)
            assert control.log == []  # nothing ran
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with session.post(base + "/control/command", json=command, headers=auth) as r:
                assert r.status == 200
                assert (await r.json())["frames"][0]["action"] == ProtocolAction.ATTACHED
            bad = {**command, "do": "explode"}
            async with session.post(base + "/control/command", json=bad, headers=auth) as r:
                assert r.status == 400 and "unknown command" in (await r.json())["error"]
            sent = {"connection": alice.connection_id, "channel": "room"}
            async with session.post(base + "/control/sent", json=sent, headers=auth) as r:
                frames = (await r.json())["frames"]
                assert [f["action"] for f in frames] == [11, 11]
        await alice.expect(ProtocolAction.ATTACHED)
        await alice.close()

    run_adapter(server, body)


def test_control_token_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="16"):
        add_control_routes(aiohttp.web.Application(), None, "short")  # type: ignore[arg-type]


def test_serve_control_needs_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("PRESENCE_CONFORMANCE_CONTROL_TOKEN", raising=False)
    assert serve_main(["--control"]) == 2
    assert "PRESENCE_CONFORMANCE_CONTROL_TOKEN" in capsys.readouterr().err
    assert serve_main(["--control", "short"]) == 2
    assert "16 characters" in capsys.readouterr().err


def test_http_control_runs_connected_and_carries_binary_data_both_ways() -> None:
    """`connected` (no channel) over the HTTP endpoint: the client receives a CONNECTED with its
    own connectionId and the short connectionStateTtl; a bad `details` is a 400. Binary item data
    goes in a command as `{"$bytes": ...}` and reaches the client as base64 (a JSON client)."""
    server, _ = _controlled()

    async def body(server: PresenceServer) -> None:
        alice = await RawClient.open(server, "alice")
        await alice.attach("room")
        cid = alice.connection_id
        base = server.rest_url.rstrip("/")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as session:
            command = {"do": "connected", "connection": cid, "details": {"connectionStateTtl": 900}}
            async with session.post(base + "/control/command", json=command, headers=auth) as r:
                assert r.status == 200
                (frame,) = (await r.json())["frames"]
            assert frame["action"] == ProtocolAction.CONNECTED
            assert frame["connectionId"] == cid
            assert frame["connectionDetails"]["connectionStateTtl"] == 900
            received = await alice.expect(ProtocolAction.CONNECTED)
            assert received["connectionDetails"]["connectionStateTtl"] == 900
            bad = {**command, "details": {"connectionStateTtl": 0}}
            async with session.post(base + "/control/command", json=bad, headers=auth) as r:
                assert r.status == 400 and "connectionStateTtl" in (await r.json())["error"]
            item = {"client_id": "ghost", "data": {"$bytes": "AP8="}}
            presence = {"do": "presence", "connection": cid, "channel": "room", "frames": [[item]]}
            async with session.post(base + "/control/command", json=presence, headers=auth) as r:
                assert r.status == 200
                (sent,) = (await r.json())["frames"]
            assert sent["presence"][0]["data"] == {"$bytes": "AP8="}
            got = await alice.expect(ProtocolAction.PRESENCE)
            assert got["presence"][0]["data"] == "AP8="
            assert got["presence"][0]["encoding"] == "base64"
        await alice.close()

    run_adapter(server, body)

"""The reference server's REST presence endpoints: members, history, pagination, auth, errors."""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote

import aiohttp
import pytest
from presence_conformance.reference_impl.server import PresenceServer
from presence_conformance.reference_impl.server.testing import RawClient
from support import run_server

from presence_conformance import spec

BASIC = "Basic " + base64.b64encode(b"appid.keyid:secret").decode()
# ably-js paginatedresource.ts: parseRelLinks, then getRelParams
LINK = re.compile(r'^\s*<(.+)>;\s*rel="(\w+)"$')
REL_PARAMS = re.compile(r"^\./(\w+)\?(.*)$")


def run(
    test: Callable[[PresenceServer, aiohttp.ClientSession], Awaitable[Any]], **config: Any
) -> Any:
    """Run `test(server, http)` against a fresh reference server, with an HTTP client session."""

    async def with_http(server: PresenceServer) -> Any:
        async with aiohttp.ClientSession() as http:
            return await test(server, http)

    return run_server(with_http, **config)


def links(response: aiohttp.ClientResponse) -> dict[str, tuple[str, dict[str, str]]]:
    """Parse the Link header exactly as ably-js does: rel -> (resource name, params)."""
    out = {}
    for part in response.headers.get("Link", "").split(","):
        match = LINK.match(part)
        assert match, f"Link part {part!r} does not match ably-js' pattern"
        rel_params = REL_PARAMS.match(match.group(1))
        assert rel_params, f"Link target {match.group(1)!r} does not match ^./NAME?QUERY$"
        out[match.group(2)] = (rel_params.group(1), dict(parse_qsl(rel_params.group(2))))
    return out


async def get(
    http: aiohttp.ClientSession,
    server: PresenceServer,
    path: str,
    params: dict | None = None,
    auth: str | None = BASIC,
) -> aiohttp.ClientResponse:
    headers = {"Authorization": auth} if auth else {}
    response = await http.get(server.rest_url + path, params=params, headers=headers)
    await response.read()
    return response


async def populate(server: PresenceServer, channel: str, count: int) -> list[RawClient]:
    clients = []
    for i in range(count):
        c = await RawClient.open(server, client_id=f"u{i}")
        await c.attach(channel)
        assert (await c.presence(channel, 0, {"action": 2, "data": f"d{i}"}))["action"] == 1
        clients.append(c)
    return clients


def test_time() -> None:
    async def test(server: PresenceServer, http: aiohttp.ClientSession) -> None:
        response = await get(http, server, "/time", auth=None)
        assert response.status == 200
        [now] = await response.json()
        assert isinstance(now, int) and abs(now - server.now()) < 5000

    run(test)


def test_presence_get_pages_follow_the_link_header() -> None:
    async def test(server: PresenceServer, http: aiohttp.ClientSession) -> None:
        clients = await populate(server, "room", 5)
        seen: list[dict] = []
        params: dict[str, str] | None = {"limit": "2"}
        pages = 0
        while params is not None:
            response = await get(http, server, "/channels/room/presence", params)
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("application/json")
            body = await response.json()
            seen.extend(body)
            pages += 1
            rels = links(response)
            assert {"first", "current"} <= set(rels)
            if "next" in rels:
                name, params = rels["next"]
                assert name == "presence"
            else:
                params = None
        assert pages == 3
        assert sorted(m["clientId"] for m in seen) == [f"u{i}" for i in range(5)]
        for m in seen:
            assert m["action"] == 1 and m["id"].endswith(":0:0")
            assert not spec.validate("wire-presence-message", m)
        by_client = await (
            await get(http, server, "/channels/room/presence", {"clientId": "u3"})
        ).json()
        assert [m["clientId"] for m in by_client] == ["u3"]
        conn = clients[1].connection_id
        by_conn = await (
            await get(http, server, "/channels/room/presence", {"connectionId": conn})
        ).json()
        assert [m["connectionId"] for m in by_conn] == [conn]
        assert await (await get(http, server, "/channels/empty/presence")).json() == []
        for c in clients:
            await c.close()

    run(test)


def test_history_pagination_both_directions_and_time_bounds() -> None:
    async def test(server: PresenceServer, http: aiohttp.ClientSession) -> None:
        c = await RawClient.open(server, client_id="alice")
        await c.attach("h")
        for serial in range(7):
            await c.presence("h", serial, {"action": 4, "data": str(serial)})
        for direction, expected in (
            ("forwards", [str(i) for i in range(7)]),
            ("backwards", [str(i) for i in reversed(range(7))]),
        ):
            params: dict[str, str] | None = {"limit": "3", "direction": direction}
            got: list[str] = []
            page_sizes = []
            while params is not None:
                response = await get(http, server, "/channels/h/presence/history", params)
                assert response.status == 200, await response.text()
                body = await response.json()
                got += [m["data"] for m in body]
                page_sizes.append(len(body))
                rels = links(response)
                assert rels["first"][1] == {"limit": "3", "direction": direction}
                if "next" in rels:
                    assert rels["next"][0] == "history"
                    params = rels["next"][1]
                    assert params["direction"] == direction and "cursor" in params
                else:
                    params = None
            assert got == expected
            assert page_sizes == [3, 3, 1]
        # the Link header itself, literally
        response = await get(
            http, server, "/channels/h/presence/history", {"limit": "3", "direction": "forwards"}
        )
        assert re.search(
            r'<\./history\?limit=3&direction=forwards&cursor=[^>,]+>; rel="next"',
            response.headers["Link"],
        )
        events = server.model.history_all("h")
        start, end = events[2].timestamp, events[4].timestamp
        bounded = await (
            await get(
                http,
                server,
                "/channels/h/presence/history",
                {"start": str(start), "end": str(end), "direction": "forwards"},
            )
        ).json()
        assert all(start <= m["timestamp"] <= end for m in bounded)
        assert {m["data"] for m in bounded} >= {"2", "3", "4"}
        default = await (await get(http, server, "/channels/h/presence/history")).json()
        assert [m["data"] for m in default] == [str(i) for i in reversed(range(7))]
        await c.close()

    run(test)


def test_rest_echoes_data_and_encoding_as_sent() -> None:
    async def test(server: PresenceServer, http: aiohttp.ClientSession) -> None:
        c = await RawClient.open(server, client_id="alice")
        await c.attach("enc")
        blob = base64.b64encode(b"\x00\xff").decode()
        await c.presence("enc", 0, {"action": 2, "data": '{"a": [1, 2]}', "encoding": "json"})
        await c.presence(
            "enc",
            1,
            {"action": 4, "data": blob, "encoding": "base64", "extras": {"headers": {"k": "v"}}},
        )
        [member] = await (await get(http, server, "/channels/enc/presence")).json()
        assert member["data"] == blob and member["encoding"] == "base64"
        assert member["extras"] == {"headers": {"k": "v"}}
        history = await (
            await get(http, server, "/channels/enc/presence/history", {"direction": "forwards"})
        ).json()
        assert [(m["action"], m["data"], m.get("encoding")) for m in history] == [
            (2, '{"a": [1, 2]}', "json"),
            (4, blob, "base64"),
        ]
        await c.close()

    run(test)


@pytest.mark.parametrize("name", ["a/b:c d?é", "{room}", "x{y}/z"])
def test_channel_names_are_percent_decoded(name: str) -> None:
    async def test(server: PresenceServer, http: aiohttp.ClientSession) -> None:
        clients = await populate(server, name, 1)
        body = await (await get(http, server, f"/channels/{quote(name, safe='')}/presence")).json()
        assert [m["clientId"] for m in body] == ["u0"]
        await clients[0].close()

    run(test)


@pytest.mark.parametrize(
    ("auth", "status", "code"),
    [
        (None, 401, 40101),
        ("Basic " + base64.b64encode(b"appid.keyid:wrong").decode(), 401, 40101),
        ("Basic " + base64.b64encode(b"other.key:secret").decode(), 404, 40400),
        ("Basic !!!", 401, 40101),
        ("Bearer " + base64.b64encode(b"unknown-token").decode(), 401, 40101),
        ("Digest abc", 401, 40101),
    ],
)
def test_rest_auth_errors(auth: str | None, status: int, code: int) -> None:
    async def test(server: PresenceServer, http: aiohttp.ClientSession) -> None:
        for path in ("/channels/x/presence", "/channels/x/presence/history"):
            response = await get(http, server, path, auth=auth)
            assert response.status == status
            body = await response.json()
            assert body["error"]["code"] == code and body["error"]["statusCode"] == status
            assert body["error"]["message"]
            assert not spec.validate("error-info", body["error"])

    run(test)


def test_rest_token_and_query_key_auth_and_capabilities() -> None:
    async def test(server: PresenceServer, http: aiohttp.ClientSession) -> None:
        token = server.issue_token()
        bearer = "Bearer " + base64.b64encode(token.encode()).decode()
        assert (await get(http, server, "/channels/x/presence/history", auth=bearer)).status == 200
        assert (
            await get(
                http, server, "/channels/x/presence", {"key": "appid.keyid:secret"}, auth=None
            )
        ).status == 200
        key = server.add_key("app.reader", "s", {"*": ["subscribe"]})
        basic = "Basic " + base64.b64encode(key.encode()).decode()
        assert (await get(http, server, "/channels/x/presence", auth=basic)).status == 200
        response = await get(http, server, "/channels/x/presence/history", auth=basic)
        assert response.status == 401
        assert (await response.json())["error"]["code"] == 40160

    run(test)


@pytest.mark.parametrize(
    ("path", "params", "argument"),
    [
        ("history", {"limit": "0"}, "limit"),
        ("history", {"limit": "1001"}, "limit"),
        ("history", {"limit": "ten"}, "limit"),
        ("history", {"start": "5", "end": "4"}, "start"),
        ("history", {"start": "-1"}, "start"),
        ("history", {"direction": "sideways"}, "direction"),
        ("history", {"cursor": "zzz"}, "cursor"),
        ("presence", {"limit": "0"}, "limit"),
        ("presence", {"limit": "1001"}, "limit"),
    ],
)
def test_rest_bad_params_are_40003_naming_the_parameter(
    path: str, params: dict, argument: str
) -> None:
    async def test(server: PresenceServer, http: aiohttp.ClientSession) -> None:
        url = "/channels/x/presence" + ("/history" if path == "history" else "")
        response = await get(http, server, url, params)
        assert response.status == 400
        error = (await response.json())["error"]
        assert error["code"] == 40003 and error["statusCode"] == 400
        assert error["message"].startswith(f"{argument}:")

    run(test)


def test_unknown_routes_and_methods_are_json_errors() -> None:
    async def test(server: PresenceServer, http: aiohttp.ClientSession) -> None:
        response = await get(http, server, "/nothing/here")
        assert response.status == 404
        assert (await response.json())["error"]["code"] == 40400
        response = await http.post(server.rest_url + "/channels/x/presence")
        assert response.status == 405
        assert (await response.json())["error"]["statusCode"] == 405
        response = await get(http, server, "/")  # the WebSocket endpoint without an upgrade
        assert response.status == 400
        assert "WebSocket" in (await response.json())["error"]["message"]

    run(test)

"""Capabilities and identity on the reference server: attach and delivery need subscribe or
presence, ATTACHED carries the granted modes, a token's clientId cannot be replaced from the URL,
and the token endpoint (`POST /keys/{keyName}/requestToken`). The mutants at the end put each
hole back and show that the scenarios (run by ably-wire against a server it did not start) catch
it (the identity holes: test_server_identity.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from presence_conformance.harness.adapters.ably_wire import AblyWireAdapter
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.settings import RunSettings
from presence_conformance.harness.scenario import load_scenario
from presence_conformance.reference_impl.server import PresenceServer, auth, realtime
from presence_conformance.reference_impl.server.config import capability_any
from presence_conformance.reference_impl.server.testing import RawClient
from support import run_case, run_server

ROOT = Path(__file__).resolve().parents[3]
PRESENCE, PUBLISH, SUBSCRIBE, PRESENCE_SUBSCRIBE = 1 << 16, 1 << 17, 1 << 18, 1 << 19


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(key.encode()).decode()}


async def _token(
    server: PresenceServer, body: Any, key: str | None = None, name: str | None = None
) -> tuple[int, Any]:
    key = key or server.default_key
    name = name or key.split(":")[0]
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.rest_url}/keys/{name}/requestToken", data=data, headers=_basic(key)
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


# -- the token endpoint ------------------------------------------------------------------------


def test_token_endpoint_issues_token_details_that_connect() -> None:
    async def test(server: PresenceServer) -> None:
        cap = {"room": ["presence", "subscribe"]}
        status, details = await _token(
            server, {"capability": json.dumps(cap), "clientId": "bob", "ttl": 60000}
        )
        assert status == 200, details
        assert details["clientId"] == "bob" and json.loads(details["capability"]) == cap
        assert details["expires"] - details["issued"] == 60000
        assert details["keyName"] == "appid.keyid" and isinstance(details["token"], str)
        url = f"{server.url}?accessToken={details['token']}&format=json"
        async with await RawClient.connect_url(url) as c:
            assert c.connected["connectionDetails"]["clientId"] == "bob"
            attached, _ = await c.attach("room")
            assert attached["flags"] == PRESENCE | SUBSCRIBE | PRESENCE_SUBSCRIBE
            await c.send({"action": 10, "channel": "other"})
            assert (await c.recv())["error"]["code"] == 40160
        # without TokenParams the token has the key's capability and no clientId (TK2b, TK2c)
        status, details = await _token(server, b"")
        assert status == 200 and "clientId" not in details
        assert json.loads(details["capability"]) == {"*": ["*"]}

    run_server(test)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, 40000),
        ([1, 2], 400, 40000),
        ({"capability": {"room": ["presence"]}}, 400, 40003),  # not JSON stringified (TK2b)
        ({"capability": "[]"}, 400, 40003),
        ({"capability": '{"room": ["fly"]}'}, 400, 40003),
        ({"capability": "[" * 5000}, 400, 40003),
        ({"clientId": ""}, 400, 40012),
        ({"clientId": 7}, 400, 40012),
        ({"ttl": -1}, 400, 40003),
        ({"ttl": "60"}, 400, 40003),
        ({"keyName": "other.key"}, 400, 40000),
        (b"x" * 20000, 400, 40009),
    ],
)
def test_token_endpoint_refuses_bad_bodies(body: Any, status: int, code: int) -> None:
    async def test(server: PresenceServer) -> None:
        got, answer = await _token(server, body)
        assert (got, answer["error"]["code"]) == (status, code), answer

    run_server(test)


def test_token_endpoint_never_widens_the_key_and_needs_that_key() -> None:
    async def test(server: PresenceServer) -> None:
        narrow = server.add_key("app.narrow", "s3", {"room": ["subscribe"]})
        status, answer = await _token(server, {"capability": '{"room":["presence"]}'}, narrow)
        assert (status, answer["error"]["code"]) == (401, 40160)
        status, answer = await _token(server, {"capability": '{"*":["subscribe"]}'}, narrow)
        assert (status, answer["error"]["code"]) == (401, 40160)
        status, answer = await _token(server, {"capability": '{"room":["subscribe"]}'}, narrow)
        assert status == 200, answer
        # a key may mint only for itself; a token or no credentials are refused
        status, answer = await _token(server, {}, narrow, name="appid.keyid")
        assert (status, answer["error"]["code"]) == (401, 40101)
        status, answer = await _token(server, {}, "appid.keyid:wrong")
        assert status == 401
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{server.rest_url}/keys/appid.keyid/requestToken", data="{}") as resp,
        ):
            assert resp.status == 401

    run_server(test)


def test_an_expired_token_is_refused() -> None:
    async def test(server: PresenceServer) -> None:
        status, details = await _token(server, {"ttl": 1})
        assert status == 200
        await asyncio.sleep(0.05)
        url = f"{server.url}?accessToken={details['token']}&format=json"
        c = await RawClient.connect_url(url, expect_connected=False)
        err = await c.recv()
        assert err["action"] == 9 and err["error"]["code"] == 40142
        await c.close()

    run_server(test)


# -- identity: the token's clientId, not the URL's ---------------------------------------------


@pytest.mark.parametrize(
    ("token_client_id", "url_client_id", "granted"),
    [
        (None, "mallory", None),  # TK2c: prohibited from assuming a clientId
        (None, "*", None),
        ("bob", "mallory", None),  # RSA15a: must match
        ("bob", "bob", "bob"),
        ("bob", None, "bob"),
        (None, None, ""),  # anonymous, as issued
        ("*", "carol", "carol"),  # RSA15b: a wildcard token may be narrowed
        ("*", None, "*"),
    ],
)
def test_a_token_clientid_cannot_be_replaced_from_the_url(
    token_client_id: str | None, url_client_id: str | None, granted: str | None
) -> None:
    async def test(server: PresenceServer) -> None:
        token = server.issue_token(client_id=token_client_id)
        url = f"{server.url}?accessToken={token}&format=json"
        if url_client_id is not None:
            url += f"&clientId={url_client_id}"
        c = await RawClient.connect_url(url, expect_connected=False)
        first = await c.recv()
        if granted is None:
            assert first["action"] == 9 and first["error"]["code"] == 40012, first
        else:
            assert first["action"] == 4, first
            assert first["connectionDetails"].get("clientId", "") == granted
        await c.close()

    run_server(test)


# -- attach and delivery need subscribe or presence --------------------------------------------


def test_publish_or_history_alone_cannot_attach_nor_see_members() -> None:
    async def test(server: PresenceServer) -> None:
        async with await RawClient.open(server, client_id="alice") as alice:
            await alice.attach("room")
            await alice.presence("room", 0, {"action": 2, "data": "secret"})
            for i, ops in enumerate((["publish"], ["history"], ["publish", "history"])):
                key = server.add_key(f"app.k{i}", "s", {"room": ops})
                async with await RawClient.open(server, client_id=f"x{i}", key=key) as c:
                    await c.send({"action": 10, "channel": "room"})
                    err = await c.recv()
                    assert err["action"] == 9 and err["error"]["code"] == 40160
                    await alice.presence("room", i + 1, {"action": 4, "data": f"v{i}"})
                    assert [f for f in await c.no_frame(0.1) if f["action"] in (14, 16)] == []

    run_server(test)


def test_presence_only_attaches_without_sync_and_hears_only_its_own_members() -> None:
    async def test(server: PresenceServer) -> None:
        key = server.add_key("app.p", "s", {"room": ["presence"]})
        async with (
            await RawClient.open(server, client_id="alice") as alice,
            await RawClient.open(server, client_id="eve", key=key) as eve,
        ):
            await alice.attach("room")
            await alice.presence("room", 0, {"action": 2, "data": "a"})
            attached, sync = await eve.attach("room")
            assert attached["flags"] == PRESENCE and not sync  # no HAS_PRESENCE, no SYNC
            await eve.presence("room", 0, {"action": 2, "data": "e"})
            await alice.presence("room", 1, {"action": 4, "data": "b"})
            await eve.sync_point()
            heard = [f for f in eve.received if f["action"] == 14]
            assert [p["clientId"] for f in heard for p in f["presence"]] == ["eve"]

    run_server(test)


# -- mutants: each hole put back is caught -----------------------------------------------------


def _old_require_attach(capability: Any, key_name: str, channel: str) -> None:
    if not capability_any(capability, channel):
        raise auth.FrameError(40160, "nothing on the channel", channel=channel)


def _attach_without_capability(server: PresenceServer) -> None:
    """The server's own model attaches whatever the capability (the oracle's is not touched)."""
    model = server.model
    attach = model.attach

    def unchecked(connection_id: str, channel: str) -> Any:
        conn = model._connections[connection_id]
        held, conn.capability = conn.capability, None
        try:
            return attach(connection_id, channel)
        finally:
            conn.capability = held

    model.attach = unchecked  # type: ignore[method-assign]


async def _scenario_outcome(server: PresenceServer, name: str) -> Outcome:
    adapter = AblyWireAdapter(
        {
            "endpoint": f"{server.host}:{server.port}",
            "key": server.default_key,
            "leave_grace": "0.3",
        }
    )
    case = load_scenario(ROOT / "scenarios" / "error" / name, ROOT / "scenarios")
    result = await run_case(case, adapter, RunSettings(op_timeout=3.0, quiet_period=0.1))
    return result.outcome


@pytest.mark.parametrize("name", ["no-subscribe-no-members.yaml", "presence-only-hears-own.yaml"])
def test_the_scenarios_pass_on_the_reference_and_catch_a_leaking_server(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def honest(server: PresenceServer) -> None:
        assert await _scenario_outcome(server, name) is Outcome.PASS

    run_server(honest, leave_grace=0.3)
    # the hole of issue 13: any capability attaches, and every attachment hears everything
    monkeypatch.setattr(realtime, "require_attach", _old_require_attach)
    monkeypatch.setattr(realtime, "granted_modes", lambda capability, channel: 0xF0000)

    async def leaking(server: PresenceServer) -> None:
        _attach_without_capability(server)
        outcome = await _scenario_outcome(server, name)
        assert outcome in (Outcome.FAIL, Outcome.NON_STRICT), outcome

    run_server(leaking, leave_grace=0.3)

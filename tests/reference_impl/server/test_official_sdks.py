"""The official Ably SDKs, unmodified, against the reference server.

- ably-python 3.1.4 (the project's dev extra), in-process: realtime with the options of
  docs/protocol.md §1.1; REST through a separate `AblyRest` with a token,
  because ably-python refuses Basic auth over plain http (docs/protocol.md §1.2).
- ably-js 2.x under node: the packaged `sdk_smoke.mjs` (harness/adapters/ably_js_node/) against
  an in-process server on a free port. Skipped only when `node` or the node folder's
  `node_modules` is missing (CI installs both).

Each runs in both wire formats: MessagePack (`use_binary_protocol` / `useBinaryProtocol` true,
the SDKs' default: `format=msgpack`, binary frames, REST `Accept: application/x-msgpack`) and
JSON.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from presence_conformance.harness.adapters.ably_js import default_node_dir
from presence_conformance.reference_impl.server import PresenceServer
from presence_conformance.reference_impl.server.testing import RawClient
from support import run_server, until

NODE_DIR = default_node_dir()
KEY = "appid.keyid:secret"


def run(
    test: Callable[[PresenceServer], Awaitable[Any]], timeout: float = 60, **config: Any
) -> Any:
    return run_server(test, timeout, **config)


# -- ably-python ---------------------------------------------------------------------------------


BINARY = pytest.mark.parametrize("binary", [True, False], ids=["msgpack", "json"])


def realtime(server: PresenceServer, binary: bool = False, **options: Any) -> Any:
    from ably import AblyRealtime

    options.setdefault("key", KEY)
    return AblyRealtime(
        endpoint=f"127.0.0.1:{server.port}",
        tls=False,
        use_binary_protocol=binary,
        fallback_hosts=[],
        **options,
    )


def connection_id(client: Any) -> str:
    return client.connection.connection_manager.connection_id


@BINARY
def test_ably_python_realtime_presence(binary: bool) -> None:
    pytest.importorskip("ably", reason="ably-python is in the dev extra: pip install -e '.[dev]'")
    from ably.util.exceptions import AblyException

    async def test(server: PresenceServer) -> None:
        alice = realtime(server, binary, client_id="alice")
        bob = realtime(server, binary, client_id="bob")
        try:
            await alice.connection.once_async("connected")
            assert alice.connection.connection_details.client_id == "alice"
            channel = alice.channels.get("room")
            await channel.attach()
            await channel.presence.enter({"mood": "happy"})
            own = await channel.presence.get()
            alice_id = connection_id(alice)
            wanted = "msgpack" if binary else "json"
            assert server.realtime.connections[alice_id].format == wanted
            assert [(m.client_id, m.data, m.id) for m in own] == [
                ("alice", {"mood": "happy"}, f"{alice_id}:0:0")
            ]

            # four more members from a raw wildcard connection: bob's SYNC has 3 pages of 2
            wild = await RawClient.open(server, client_id="*")
            await wild.attach("room")
            ack = await wild.presence(
                "room", 0, *[{"action": 2, "clientId": f"u{i}", "data": f"d{i}"} for i in range(4)]
            )
            assert ack["action"] == 1

            events: list[tuple] = []
            bob_channel = bob.channels.get("room")
            await bob_channel.presence.subscribe(
                lambda m: events.append((m.action, m.client_id, m.data, m.id))
            )
            members = await bob_channel.presence.get()
            assert sorted(m.client_id for m in members) == ["alice", "u0", "u1", "u2", "u3"]
            assert bob_channel.presence.sync_complete

            await channel.presence.update("new-data")
            await channel.presence.leave()
            await until(lambda: any(e[0] == 3 for e in events))
            assert [e for e in events if e[1] == "alice"] == [
                (1, "alice", {"mood": "happy"}, f"{alice_id}:0:0"),  # PRESENT from the SYNC
                (4, "alice", "new-data", f"{alice_id}:1:0"),
                (3, "alice", "new-data", f"{alice_id}:2:0"),
            ]

            assert await alice.connection.ping() >= 0

            # NACK -> exception with the code (RTP8h)
            nocap = server.add_key("app.nocap", "s", {"*": ["subscribe"]})
            denied = realtime(server, binary, key=nocap, client_id="carol")
            try:
                with pytest.raises(AblyException) as info:
                    await denied.channels.get("room").presence.enter("x")
                assert info.value.code == 40160 and info.value.status_code == 401
            finally:
                await denied.close()

            # the server recorded alice's frames for wire checks
            sent = [f for f in server.frames(alice_id) if f.get("action") == 14]
            assert [f["msgSerial"] for f in sent] == [0, 1, 2]
            assert [f["presence"][0]["action"] for f in sent] == [2, 4, 3]
            await wild.close()
        finally:
            await alice.close()
            await bob.close()

    run(test, sync_page_size=2)


@BINARY
def test_ably_python_abrupt_disconnect_synthesized_leave_and_reentry(binary: bool) -> None:
    pytest.importorskip("ably", reason="ably-python is in the dev extra")

    async def test(server: PresenceServer) -> None:
        alice = realtime(server, binary, client_id="alice")
        bob = realtime(server, binary, client_id="bob")
        try:
            await alice.channels.get("room").presence.enter("a")
            events: list[tuple] = []
            bob_channel = bob.channels.get("room")
            await bob_channel.presence.subscribe(
                lambda m: events.append((m.action, m.client_id, m.connection_id, m.id))
            )
            await bob_channel.presence.get()
            old = connection_id(alice)
            server.refuse_resume(old)
            await server.drop(old)
            # the resume is refused (RTN15c7): the SDK is on a new connection and re-enters by
            # itself (RTP17i); the old
            # connection's member leaves after the grace, with a synthesized id (RTP2b1)
            await until(lambda: any(e[0] == 3 for e in events), 10)
            leaves = [e for e in events if e[0] == 3]
            assert len(leaves) == 1 and leaves[0][2] == old
            assert not leaves[0][3].startswith(old)
            new = connection_id(alice)
            assert new != old
            assert (2, "alice", new, f"{new}:0:0") in events
            members = await bob_channel.presence.get()
            assert [(m.client_id, m.connection_id) for m in members] == [("alice", new)]
        finally:
            await alice.close()
            await bob.close()

    run(test, leave_grace=0.3)


def test_ably_python_resumes_after_a_transport_drop() -> None:
    pytest.importorskip("ably", reason="ably-python is in the dev extra")

    async def test(server: PresenceServer) -> None:
        alice = realtime(server, client_id="alice")
        bob = realtime(server, client_id="bob")
        try:
            alice_channel = alice.channels.get("room")
            seen: list[tuple] = []
            await alice_channel.presence.subscribe(lambda m: seen.append((m.action, m.client_id)))
            await alice_channel.presence.enter("a")
            bob_events: list[tuple] = []
            bob_channel = bob.channels.get("room")
            await bob_channel.presence.subscribe(
                lambda m: bob_events.append((m.action, m.client_id))
            )
            await bob_channel.presence.get()
            old = connection_id(alice)
            await server.drop(old)
            await bob_channel.presence.enter("b")  # while alice is away
            # RTN15c6: alice resumes, same connectionId, and gets bob's enter from the backlog
            await until(lambda: (2, "bob") in seen, 10)
            assert connection_id(alice) == old
            members = await bob_channel.presence.get()
            assert sorted((m.client_id, m.connection_id) for m in members) == sorted(
                [("alice", old), ("bob", connection_id(bob))]
            )
            assert not [e for e in bob_events if e[0] == 3]  # alice never left
        finally:
            await alice.close()
            await bob.close()

    run(test, leave_grace=2.0)


@BINARY
def test_ably_python_rest_presence_and_history_with_a_token(binary: bool) -> None:
    pytest.importorskip("ably", reason="ably-python is in the dev extra")
    from ably import AblyRest
    from ably.util.exceptions import AblyException

    async def test(server: PresenceServer) -> None:
        client = await RawClient.open(server, client_id="alice")
        await client.attach("hist")
        await client.presence("hist", 0, {"action": 2, "data": '{"a": 1}', "encoding": "json"})
        for serial in range(1, 5):
            await client.presence("hist", serial, {"action": 4, "data": f"v{serial}"})
        rest = AblyRest(
            token=server.issue_token(),
            endpoint="127.0.0.1",
            port=server.port,
            tls=False,
            use_binary_protocol=binary,
        )
        try:
            presence = rest.channels.get("hist").presence
            members = await presence.get()
            assert [(m.client_id, m.data) for m in members.items] == [("alice", "v4")]
            page = await presence.history(limit=2, direction="forwards")
            seen = [(m.action, m.data) for m in page.items]
            pages = 1
            while page.has_next():
                page = await page.next()
                seen += [(m.action, m.data) for m in page.items]
                pages += 1
            assert pages == 3
            assert seen == [(2, {"a": 1}), (4, "v1"), (4, "v2"), (4, "v3"), (4, "v4")]
        finally:
            await rest.close()
        # documented limitation (docs/protocol.md §1.2): ably-python refuses Basic auth over http
        basic = AblyRest(
            key=KEY, endpoint="127.0.0.1", port=server.port, tls=False, use_binary_protocol=binary
        )
        try:
            with pytest.raises(AblyException) as info:
                await basic.channels.get("hist").presence.history()
            assert info.value.code == 40103
        finally:
            await basic.close()
        await client.close()

    run(test)


# -- ably-js -------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["msgpack", "json"])
def test_ably_js_smoke(protocol: str) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (NODE_DIR / "node_modules" / "ably").is_dir():
        pytest.skip(f"{NODE_DIR / 'node_modules'} is missing: run npm ci in {NODE_DIR}")

    async def test(server: PresenceServer) -> dict:
        nocap = server.add_key("app.nocap", "s", {"*": ["subscribe", "history"]})
        wildcard = server.issue_token(client_id="*")
        proc = await asyncio.create_subprocess_exec(
            node,
            str(NODE_DIR / "sdk_smoke.mjs"),
            "--port",
            str(server.port),
            "--nocap-key",
            nocap,
            "--wildcard-token",
            wildcard,
            "--protocol",
            protocol,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(NODE_DIR),
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        lines = out.decode().strip().splitlines()
        assert lines, f"no output; stderr: {err.decode()[-2000:]}"
        result = json.loads(lines[-1])
        assert proc.returncode == 0 and result["errors"] is None, (result, err.decode()[-2000:])
        # every connection of the SDK spoke the format asked for
        assert server.stats[f"connections.{protocol}"] == server.stats["connections"] > 0
        return result

    result = run(test, timeout=90, sync_page_size=2, leave_grace=0.3)
    carol = result["connected"]["id"]
    assert result["connected"]["clientId"] == "carol"
    assert result["modes"] == ["presence", "publish", "subscribe", "presence_subscribe"]
    expected_member = {
        "action": "present",
        "clientId": "carol",
        "connectionId": carol,
        "id": f"{carol}:0:0",
        "data": {"mood": "ok"},
    }
    assert result["ownMembers"] == [expected_member]
    assert result["syncMembers"] == [expected_member]
    assert result["syncComplete"] is True
    assert [(e["action"], e["id"]) for e in result["events"][:3]] == [
        ("present", f"{carol}:0:0"),
        ("update", f"{carol}:1:0"),
        ("leave", f"{carol}:2:0"),
    ]
    assert result["events"][2]["data"] == "new-data"
    assert result["wildcardClientId"] == "*"
    late = result["lateMembers"]  # five members over three SYNC pages of two
    assert [m["clientId"] for m in late] == [f"u{i}" for i in range(5)]
    assert all(m["action"] == "present" for m in late)
    eve = late[0]["connectionId"]
    leaves = result["closeLeaves"]
    assert sorted(m["clientId"] for m in leaves) == [f"u{i}" for i in range(5)]
    assert all(m["connectionId"] == eve and not m["id"].startswith(eve) for m in leaves)
    assert isinstance(result["ping"], (int, float))
    history = [m for page in result["historyPages"] for m in page]
    assert all(len(page) <= 2 for page in result["historyPages"])
    assert len(result["historyPages"]) >= 3  # the Link header was followed
    assert [(m["action"], m["clientId"]) for m in history[:3]] == [
        ("enter", "carol"),
        ("update", "carol"),
        ("leave", "carol"),
    ]
    assert history[0]["data"] == {"mood": "ok"}
    assert len(history) == 3 + 5 + 5
    assert result["nack"] == {"code": 40160, "statusCode": 401}
    assert result["detachedState"] == "detached"

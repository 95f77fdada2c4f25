"""End-to-end tests of the `ably-wire` adapter against the embedded reference server.

Each test starts the adapter (which starts the reference server in-process on a free port),
drives it through the adapter contract, and stops it. The connect-timeout tests use servers
that accept and then say nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from presence_conformance.harness.ably_client import OperationTimeout, RealtimeConnection
from presence_conformance.harness.adapter import Feature
from presence_conformance.harness.adapters.ably_wire import AblyWireAdapter
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.types import Action, PresenceMessage
from support import packaged_suite, run_adapter, until
from websockets.asyncio.server import serve

Body = Callable[[AblyWireAdapter], Awaitable[Any]]


def run(body: Body, limit: float = 30.0, **options: str) -> Any:
    """Start an adapter with `options`, run `body(adapter)` (bounded), stop the adapter."""
    return run_adapter(AblyWireAdapter(options), body, limit)


def brief(events: list[PresenceMessage]) -> list[tuple[str, str, Any]]:
    return [(e.action.value, e.client_id, e.data) for e in events]


def test_enter_update_leave_seen_by_another_client():
    async def body(adapter: AblyWireAdapter) -> None:
        alice = await adapter.connect("alice")
        bob = await adapter.connect("bob")
        assert alice.id and bob.id and alice.id != bob.id
        seen: list[PresenceMessage] = []
        await bob.channel("room").presence.subscribe(seen.append)
        presence = alice.channel("room").presence
        await presence.enter({"mood": "happy"})
        await until(lambda: len(seen) == 1, what="enter")
        await presence.update("text")
        await until(lambda: len(seen) == 2, what="update")
        await presence.leave()
        await until(lambda: len(seen) == 3, what="leave")
        assert brief(seen) == [
            ("enter", "alice", {"mood": "happy"}),
            ("update", "alice", "text"),
            ("leave", "alice", "text"),
        ]
        assert all(e.connection_id == alice.id and e.id.startswith(f"{alice.id}:") for e in seen)
        assert [int(e.id.split(":")[-2]) for e in seen] == [0, 1, 2]  # msgSerial per connection
        assert await bob.channel("room").presence.get() == []
        # RTP8c: the client's own ENTER carried no clientId
        frames = adapter.wire_frames(alice.id)
        enters = [f for f in frames if f.get("action") == 14]
        assert len(enters) == 3 and all("clientId" not in p for f in enters for p in f["presence"])

    run(body)


def test_quiesce_returns_once_events_are_delivered():
    async def body(adapter: AblyWireAdapter) -> None:
        alice = await adapter.connect("alice")
        bob = await adapter.connect("bob")
        seen: list[PresenceMessage] = []
        await bob.channel("room").presence.subscribe(seen.append)
        for i in range(20):
            await alice.channel("room").presence.update(str(i))
        assert await adapter.quiesce() is True
        assert [e.data for e in seen] == [str(i) for i in range(20)]
        external = AblyWireAdapter({"endpoint": adapter.endpoint, "key": adapter.key})
        assert await external.quiesce() is False

    run(body)


def test_own_events_and_get_on_the_same_connection():
    async def body(adapter: AblyWireAdapter) -> None:
        alice = await adapter.connect("alice")
        presence = alice.channel("room").presence
        mine: list[PresenceMessage] = []
        await presence.subscribe(mine.append, ["enter"])
        await presence.enter(b"\x00\x01binary")
        await until(lambda: len(mine) == 1, what="own enter")
        [member] = await presence.get()
        assert (member.action, member.client_id, member.data) == (
            Action.PRESENT,
            "alice",
            b"\x00\x01binary",
        )
        assert await presence.sync_complete()
        assert alice.channel("room") is alice.channel("room")

    run(body)


def test_late_joiner_gets_members_by_multi_page_sync():
    async def body(adapter: AblyWireAdapter) -> None:
        conns = [await adapter.connect(f"u{i}") for i in range(5)]
        for i, conn in enumerate(conns):
            await conn.channel("room").presence.enter({"n": i})
        late = await adapter.connect("late")
        seen: list[PresenceMessage] = []
        await late.channel("room").presence.subscribe(seen.append)
        assert await late.channel("room").presence.sync_complete()
        assert sorted(brief(seen)) == [("present", f"u{i}", {"n": i}) for i in range(5)]
        members = await late.channel("room").presence.get()
        assert sorted(m.client_id for m in members) == [f"u{i}" for i in range(5)]
        syncs = [f for _, d, f in late.realtime.frames if d == "in" and f.get("action") == 16]
        assert len(syncs) >= 3, syncs  # sync_page_size=2: at least three pages
        assert syncs[-1]["channelSerial"].endswith(":")

    run(body, sync_page_size="2")


def test_get_filters_and_argument_validation():
    async def body(adapter: AblyWireAdapter) -> None:
        a1 = await adapter.connect("alice")
        a2 = await adapter.connect("alice")
        b = await adapter.connect("bob")
        for conn in (a1, a2, b):
            await conn.channel("room").presence.enter(conn.id)
        presence = b.channel("room").presence
        assert len(await presence.get()) == 3
        assert sorted(m.connection_id for m in await presence.get(client_id="alice")) == sorted(
            [a1.id, a2.id]
        )
        assert [m.client_id for m in await presence.get(connection_id=a2.id)] == ["alice"]
        assert [m.data for m in await presence.get("alice", a1.id)] == [a1.id]
        assert await presence.get(client_id="nobody") == []
        assert len(await presence.get(wait_for_sync=False)) == 3
        with pytest.raises(PresenceError) as info:
            await presence.get(client_id=42)  # type: ignore[arg-type]
        assert info.value.code == 40003

    run(body)


def test_history_with_pagination_both_directions():
    async def body(adapter: AblyWireAdapter) -> None:
        alice = await adapter.connect("alice")
        presence = alice.channel("hist").presence
        await presence.enter("one")
        await presence.update("two")
        await presence.update({"three": 3})
        await presence.leave()
        page = await presence.history(limit=2, direction="forwards")
        forwards = list(page.items)
        pages = 1
        while page.has_next():
            nxt = await page.next()
            assert nxt is not None
            page = nxt
            forwards += page.items
            pages += 1
        assert pages == 2 and await page.next() is None
        assert [(e.action.value, e.data) for e in forwards] == [
            ("enter", "one"),
            ("update", "two"),
            ("update", {"three": 3}),
            ("leave", {"three": 3}),
        ]
        backwards = (await presence.history(limit=3)).items  # default direction: backwards
        assert [e.id for e in backwards] == [e.id for e in forwards[::-1][:3]]
        t0, t1 = forwards[0].timestamp, forwards[-1].timestamp
        assert len((await presence.history(start=t0, end=t1)).items) == 4
        for bad in (
            {"limit": 0},
            {"limit": 1001},
            {"direction": "sideways"},
            {"start": t1 + 1, "end": t0},
        ):
            with pytest.raises(PresenceError) as info:
                await presence.history(**bad)
            assert info.value.code == 40003, bad

    run(body)


def test_history_pages_on_a_channel_name_that_needs_escaping():
    async def body(adapter: AblyWireAdapter) -> None:
        alice = await adapter.connect("alice")
        presence = alice.channel("a/b:c d é?#&=%2F").presence
        for i in range(5):
            await presence.update(str(i))
        page = await presence.history(limit=2, direction="forwards")
        data = [e.data for e in page.items]
        while page.has_next():
            nxt = await page.next()
            assert nxt is not None
            page = nxt
            data += [e.data for e in page.items]
        assert data == ["0", "1", "2", "3", "4"]

    run(body)


def test_drop_gives_a_synthesized_leave_after_the_grace():
    async def body(adapter: AblyWireAdapter) -> float:
        alice = await adapter.connect("alice")
        bob = await adapter.connect("bob")
        seen: list[PresenceMessage] = []
        await bob.channel("room").presence.subscribe(seen.append)
        await alice.channel("room").presence.enter("x")
        await until(lambda: len(seen) == 1, what="enter")
        dropped = time.monotonic()
        await alice.drop()
        await until(lambda: len(seen) == 2, timeout=5, what="synthesized leave")
        waited = time.monotonic() - dropped
        leave = seen[1]
        assert (leave.action, leave.client_id, leave.connection_id, leave.data) == (
            Action.LEAVE,
            "alice",
            alice.id,
            "x",
        )
        assert not leave.id.startswith(alice.id)  # synthesized (RTP2b1)
        assert await bob.channel("room").presence.get() == []
        with pytest.raises(PresenceError):
            await alice.channel("room").presence.enter("again")
        return waited

    waited = run(body, leave_grace="0.3")
    assert 0.25 <= waited < 2.0, waited


def test_close_makes_members_leave_at_once():
    async def body(adapter: AblyWireAdapter) -> None:
        alice = await adapter.connect("alice")
        bob = await adapter.connect("bob")
        seen: list[PresenceMessage] = []
        await bob.channel("room").presence.subscribe(seen.append)
        await alice.channel("room").presence.enter()
        await until(lambda: len(seen) == 1, what="enter")
        await alice.close()
        await until(lambda: len(seen) == 2, timeout=1.0, what="leave on close")
        assert seen[1].action is Action.LEAVE
        with pytest.raises(PresenceError) as info:
            await alice.channel("room").presence.enter()
        assert info.value.code == 80017
        await alice.close()  # idempotent

    run(body, leave_grace="30")


def test_nack_raises_presence_error_with_the_code():
    async def body(adapter: AblyWireAdapter) -> None:
        reader = await adapter.connect("reader", capability={"room": ["subscribe"]})
        with pytest.raises(PresenceError) as info:
            await reader.channel("room").presence.enter("x")
        assert info.value.code == 40160
        assert info.value.status_code == 401
        # the connection stays usable after a NACK
        assert await reader.channel("room").presence.get() == []
        # a channel the key grants nothing on: ERROR on the channel (attach refused)
        with pytest.raises(PresenceError) as info:
            await reader.channel("elsewhere").presence.subscribe(print)
        assert info.value.code == 40160
        assert reader.channel("elsewhere").realtime.state == "failed"

    run(body)


def test_server_nacks_what_the_client_would_refuse_itself():
    """Frames a conforming client never sends, sent raw: the server's own NACKs."""

    async def body(adapter: AblyWireAdapter) -> None:
        alice = (await adapter.connect("alice")).realtime
        await alice.channel("room").attach()
        anonymous = (await adapter.connect(None)).realtime
        await anonymous.channel("room").attach()
        cases = [
            (anonymous, {"action": 2}, (91000, 40012)),
            (alice, {"action": 2, "data": 12}, (40013,)),
            (alice, {"action": 2, "data": "x" * 70000}, (40009,)),
            (alice, {"action": 2, "clientId": "mallory"}, (40012,)),
            (alice, {"action": 1}, (40000,)),
        ]
        for conn, item, codes in cases:
            with pytest.raises(PresenceError) as info:
                await conn.send_acked({"action": 14, "channel": "room", "presence": [item]}, "room")
            assert info.value.code in codes, (item, info.value)
        # NACKs consumed msgSerials 0..4 in order; the next enter is ACKed with serial 4 (alice)
        await alice.channel("room").presence.enter("ok")
        entered = [f for f in adapter.wire_frames(alice.id) if f.get("action") == 14]
        assert [f["msgSerial"] for f in entered] == [0, 1, 2, 3, 4]

    run(body)


def test_client_side_refusals_send_nothing():
    async def body(adapter: AblyWireAdapter) -> None:
        alice = await adapter.connect("alice")
        anonymous = await adapter.connect(None)
        cases = [
            (anonymous, None, 91000),  # RTP8j
            (alice, 12, 40013),
            (alice, {"nan": float("nan")}, 40013),
            (alice, "x" * 70000, 40009),  # TO3l8: maxMessageSize from CONNECTED
        ]
        for conn, data, code in cases:
            with pytest.raises(PresenceError) as info:
                await conn.channel("room").presence.enter(data)
            assert info.value.code == code, (data, info.value)
            assert not [f for f in adapter.wire_frames(conn.id) if f.get("action") in (10, 14)]
        presence = alice.channel("room").presence
        with pytest.raises(PresenceError) as info:
            await presence.subscribe(print, ["bogus"])
        assert info.value.code == 40003
        with pytest.raises(PresenceError) as info:
            await presence.subscribe("not callable")  # type: ignore[arg-type]
        assert info.value.code == 40003
        with pytest.raises(PresenceError) as info:
            await presence.get(wait_for_sync="yes")  # type: ignore[arg-type]
        assert info.value.code == 40003

    run(body)


def test_every_call_after_close_or_drop_raises_80017():
    async def body(adapter: AblyWireAdapter) -> None:
        for ending in ("close", "drop"):
            conn = await adapter.connect("alice")
            presence = conn.channel("room").presence
            await presence.enter()
            page = await presence.history()
            await getattr(conn, ending)()
            calls = [
                presence.enter(),
                presence.update(),
                presence.leave(),
                presence.get(),
                presence.get(wait_for_sync=False),
                presence.subscribe(print),
                presence.unsubscribe(),
                presence.history(),
                page.next(),
            ]
            for call in calls:
                with pytest.raises(PresenceError) as info:
                    await call
                assert info.value.code == 80017, (ending, info.value)

    run(body)


def test_bad_key_fails_the_connection_with_a_code():
    async def body(adapter: AblyWireAdapter) -> None:
        with pytest.raises(PresenceError) as info:
            await RealtimeConnection.connect(
                adapter.endpoint, "appid.keyid:wrong", "alice", timeout=2
            )
        assert 40100 <= info.value.code < 40500

    run(body)


def test_external_endpoint_mode():
    async def body(embedded: AblyWireAdapter) -> None:
        external = AblyWireAdapter(
            {"endpoint": embedded.endpoint, "key": embedded.key, "leave_grace": "0.3"}
        )
        assert not external.supports(Feature.WIRE_FRAMES)
        await external.start()
        try:
            alice = await external.connect("alice")
            await alice.channel("room").presence.enter("x")
            bob = await embedded.connect("bob")
            assert [m.client_id for m in await bob.channel("room").presence.get()] == ["alice"]
        finally:
            await external.stop()

    run(body)


def test_external_mode_mints_capability_limited_tokens_through_the_token_endpoint():
    async def body(embedded: AblyWireAdapter) -> None:
        external = AblyWireAdapter({"endpoint": embedded.endpoint, "key": embedded.key})
        assert external.supports(Feature.CAPABILITIES)
        await external.start()
        try:
            reader = await external.connect("carol", {"room": ["subscribe", "history"]})
            assert reader.realtime.token and "key=" not in reader.realtime.url
            with pytest.raises(PresenceError) as info:
                await reader.channel("room").presence.enter("x")
            assert info.value.code == 40160
            pat = await external.connect("pat", {"room": ["publish"]})
            with pytest.raises(PresenceError) as info:
                await pat.channel("room").presence.subscribe(lambda m: None)
            assert info.value.code == 40160
            history = await reader.channel("room").presence.history()  # REST with the token
            assert history.items == []
        finally:
            await external.stop()

    run(body)


def test_a_server_without_a_token_endpoint_makes_capability_cases_unsupported():
    async def main() -> str:
        async def not_found(request: web.Request) -> web.Response:
            return web.json_response(
                {"error": {"code": 40400, "statusCode": 404, "message": "no such route"}},
                status=404,
            )

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", not_found)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        adapter = AblyWireAdapter({"endpoint": f"127.0.0.1:{port}", "key": "a.b:c"})
        await adapter.start()
        try:
            with pytest.raises(NotImplementedError) as info:
                await adapter.connect("alice", {"room": ["subscribe"]})
            with pytest.raises(NotImplementedError):  # remembered: asked once
                await adapter.connect("bob", {"room": ["presence"]})
            return str(info.value)
        finally:
            await adapter.stop()
            await runner.cleanup()

    assert "no token endpoint" in asyncio.run(main())


# -- servers that never answer ---------------------------------------------------------------------


def test_connect_to_a_silent_tcp_server_times_out_within_the_bound():
    async def main() -> tuple[float, str]:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        started = time.monotonic()
        try:
            with pytest.raises(OperationTimeout) as info:
                await RealtimeConnection.connect(f"127.0.0.1:{port}", "a.b:c", "alice", timeout=0.5)
        finally:
            server.close()
        return time.monotonic() - started, str(info.value)

    elapsed, message = asyncio.run(main())
    assert 0.45 <= elapsed < 1.5, elapsed
    assert "127.0.0.1" in message and "0.5" in message


def test_connect_to_a_websocket_server_without_connected_times_out():
    async def main() -> tuple[float, str]:
        async def handler(ws: Any) -> None:
            await ws.wait_closed()  # accepts the upgrade, then says nothing

        async with serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            started = time.monotonic()
            with pytest.raises(OperationTimeout) as info:
                await RealtimeConnection.connect(f"127.0.0.1:{port}", "a.b:c", "alice", timeout=0.5)
            elapsed = time.monotonic() - started
            server.close()
        return elapsed, str(info.value)

    elapsed, message = asyncio.run(main())
    assert 0.45 <= elapsed < 1.5, elapsed
    assert "CONNECTED" in message


def test_an_operation_without_ack_times_out():
    async def main() -> str:
        async def handler(ws: Any) -> None:
            await ws.send(
                '{"action":4,"connectionId":"c1","connectionDetails":'
                '{"connectionKey":"k","maxIdleInterval":0}}'
            )
            async for raw in ws:
                if '"action":10' in raw:
                    await ws.send('{"action":11,"channel":"room","flags":983040}')

        async with serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            conn = await RealtimeConnection.connect(
                f"127.0.0.1:{port}", "a.b:c", "alice", timeout=0.3
            )
            with pytest.raises(OperationTimeout) as info:
                await conn.channel("room").presence.enter("x")
            await conn.drop()
            server.close()
        return str(info.value)

    assert "ACK" in asyncio.run(main())


@pytest.mark.parametrize("protocol", ["json", "msgpack"])
def test_packaged_scenarios_pass_against_the_reference_server(protocol: str):
    """The shipped scenario suite, through the runner, against ably-wire + reference server,
    in both wire formats."""
    from presence_conformance.harness.run.runner import RunSettings, run_scenarios

    scenarios = packaged_suite()
    assert scenarios

    async def body(adapter: AblyWireAdapter) -> Any:
        return await run_scenarios(scenarios, adapter, RunSettings())

    result = run(body, limit=600, protocol=protocol)
    bad = [
        (c.case_id, c.outcome.value, c.error, [str(v) for v in c.violations][:3])
        for c in result.cases
        if c.outcome.value not in ("pass", "unsupported")
    ]
    assert not bad, bad


# -- MessagePack (protocol=msgpack) ------------------------------------------------------------------


def test_msgpack_binary_data_travels_as_bin_and_rest_answers_msgpack():
    """With protocol=msgpack the client sends MessagePack binary frames (binary data as `bin`,
    no encoding: RSL4c1), reads MessagePack frames, and REST history comes back as MessagePack."""

    async def body(adapter: AblyWireAdapter) -> Any:
        alice = await adapter.connect("alice")
        bob = await adapter.connect("bob")
        seen: list[PresenceMessage] = []
        await bob.channel("room").presence.subscribe(seen.append)
        await alice.channel("room").presence.enter(b"\x00\xff")
        await alice.channel("room").presence.update({"a": [1]})
        await until(lambda: len(seen) == 2)
        frames = adapter.wire_frames(alice.id)
        items = [f["presence"][0] for f in frames if f.get("action") == 14]
        page = await alice.channel("room").presence.history(direction="forwards")
        return brief(seen), items, [m.data for m in page.items], alice

    seen, items, history, alice = run(body, protocol="msgpack")
    assert seen == [("enter", "alice", b"\x00\xff"), ("update", "alice", {"a": [1]})]
    assert items == [
        {"action": 2, "data": b"\x00\xff"},
        {"action": 4, "data": '{"a":[1]}', "encoding": "json"},
    ]
    assert history == [b"\x00\xff", {"a": [1]}]
    assert alice.realtime.binary and not alice.realtime.violations
    assert alice.rest._headers["Accept"] == "application/x-msgpack"


def test_protocol_option_is_checked():
    from presence_conformance.harness.adapter import UsageError

    with pytest.raises(UsageError, match="protocol='xml'"):
        AblyWireAdapter({"protocol": "xml"})
    assert AblyWireAdapter({}).protocol == "json"
    assert AblyWireAdapter({"protocol": "msgpack"}).protocol == "msgpack"


def test_a_text_frame_to_a_msgpack_client_is_a_violation():
    async def main() -> list[str]:
        import msgpack

        async def handler(ws: Any) -> None:
            await ws.send(
                msgpack.packb({"action": 4, "connectionId": "c1", "connectionDetails": {}})
            )
            await ws.send('{"action":0}')  # text on a MessagePack connection
            await ws.send(b"\xc1")  # not MessagePack
            await asyncio.sleep(0.5)

        async with serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            conn = await RealtimeConnection.connect(
                f"127.0.0.1:{port}", "a.b:c", "alice", timeout=2, wire_format="msgpack"
            )
            assert "format=msgpack" in conn.url
            await until(lambda: len(conn.violations) == 2)
            await conn.drop()
            server.close()
        return conn.violations

    violations = asyncio.run(main())
    assert "text frame on a format=msgpack connection" in violations[0]
    assert "undecodable frame" in violations[1]


# -- scripted servers: protocol corners the reference server does not produce ---------------------

CONNECTED = (
    '{"action":4,"connectionId":"c1","connectionDetails":'
    '{"connectionKey":"k!c1","maxIdleInterval":0}}'
)


async def scripted(
    handler: Callable[[Any, dict], Awaitable[None]],
    body: Callable[[RealtimeConnection], Awaitable[Any]],
) -> Any:
    """Serve one connection: CONNECTED, ATTACH -> ATTACHED, every other frame to `handler`."""
    import json

    async def serve_one(ws: Any) -> None:
        await ws.send(CONNECTED)
        async for raw in ws:
            frame = json.loads(raw)
            if frame["action"] == 10:
                await ws.send(
                    json.dumps({"action": 11, "channel": frame["channel"], "flags": 983040})
                )
            else:
                await handler(ws, frame)

    async with serve(serve_one, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        conn = await RealtimeConnection.connect(f"127.0.0.1:{port}", "a.b:c", "alice", timeout=2)
        try:
            return await body(conn)
        finally:
            await conn.drop()
            server.close()


def test_ack_and_nack_settle_count_ranges():
    import json

    received: list[int] = []

    async def handler(ws: Any, frame: dict) -> None:
        if frame["action"] == 14:
            received.append(frame["msgSerial"])
            if len(received) == 3:  # answer all three at once: ACK 0..1, NACK 2
                await ws.send(json.dumps({"action": 1, "msgSerial": 0, "count": 2}))
                await ws.send(
                    json.dumps(
                        {
                            "action": 2,
                            "msgSerial": 2,
                            "count": 1,
                            "error": {"code": 40160, "statusCode": 401, "message": "no"},
                        }
                    )
                )

    async def body(conn: RealtimeConnection) -> list:
        presence = conn.channel("room").presence
        await conn.channel("room").attach()
        return await asyncio.gather(
            presence.enter("a"), presence.update("b"), presence.update("c"), return_exceptions=True
        )

    results = asyncio.run(scripted(handler, body))
    assert received == [0, 1, 2]
    assert results[:2] == [None, None]
    assert isinstance(results[2], PresenceError) and results[2].code == 40160


def test_connection_error_fails_pending_operations_and_the_connection():
    import json

    async def handler(ws: Any, frame: dict) -> None:
        if frame["action"] == 14:
            await ws.send(
                json.dumps(
                    {
                        "action": 9,
                        "error": {"code": 80019, "statusCode": 401, "message": "key revoked"},
                    }
                )
            )

    async def body(conn: RealtimeConnection) -> tuple[int, int, str]:
        presence = conn.channel("room").presence
        with pytest.raises(PresenceError) as pending:
            await presence.enter("a")
        with pytest.raises(PresenceError) as later:
            await presence.get()
        return pending.value.code, later.value.code, conn.state

    assert asyncio.run(scripted(handler, body)) == (80019, 80019, "failed")


def test_channel_error_fails_the_channel_only():
    import json

    async def handler(ws: Any, frame: dict) -> None:
        if frame["action"] == 14 and frame["channel"] == "bad":
            await ws.send(
                json.dumps(
                    {
                        "action": 9,
                        "channel": "bad",
                        "error": {"code": 90010, "statusCode": 400, "message": "channel broken"},
                    }
                )
            )
        elif frame["action"] == 14:
            await ws.send(json.dumps({"action": 1, "msgSerial": frame["msgSerial"], "count": 1}))

    async def body(conn: RealtimeConnection) -> tuple[int, str, str]:
        with pytest.raises(PresenceError) as info:
            await conn.channel("bad").presence.enter("a")
        await conn.channel("good").presence.enter("b")  # the connection still works
        return info.value.code, conn.channel("bad").state, conn.state

    assert asyncio.run(scripted(handler, body)) == (90010, "failed", "connected")


def test_detach_clears_presence_and_refuses_enter():
    async def body(adapter: AblyWireAdapter) -> None:
        alice = await adapter.connect("alice")
        bob = await adapter.connect("bob")
        await alice.channel("room").presence.enter("a")
        channel = bob.realtime.channel("room")
        assert [m.client_id for m in await channel.presence.get()] == ["alice"]
        await channel.detach()
        assert channel.state == "detached" and channel.presence.members == []
        with pytest.raises(PresenceError) as info:
            await channel.presence.enter("b")  # RTP8g
        assert info.value.code == 90001
        await channel.attach()  # attaching again brings the members back by SYNC
        assert [m.client_id for m in await channel.presence.get()] == ["alice"]

    run(body)


def test_interrupt_resumes_or_not_against_another_server() -> None:
    """With `endpoint` (no embedded server to ask), a refused resume is provoked with a
    connectionKey the server cannot know; a resumed one keeps the connectionId (RTN15c6)."""
    from presence_conformance.reference_impl.server import PresenceServer, ServerConfig

    async def main() -> None:
        server = PresenceServer(ServerConfig(leave_grace=2.0))
        host, port = await server.start("127.0.0.1", 0)
        adapter = AblyWireAdapter(
            {"endpoint": f"{host}:{port}", "key": server.default_key, "leave_grace": "2"}
        )
        await adapter.start()
        try:
            alice, bob = await adapter.connect("alice"), await adapter.connect("bob")
            await alice.channel("room").presence.enter("a")
            seen: list[PresenceMessage] = []
            await bob.channel("room").presence.subscribe(seen.append)
            old = alice.id
            await alice.interrupt(0.05, resume=True)
            await alice.channel("room").presence.update("a2")  # queued (RTP16)
            await alice.reconnected()
            assert alice.id == old
            await alice.interrupt(0.05, resume=False)
            await alice.reconnected()
            assert alice.id != old
            await until(lambda: len(seen) >= 3, 5)
            assert [(e.action.value, e.connection_id) for e in seen[:3]] == [
                ("present", old),
                ("update", old),
                ("enter", alice.id),  # RTP17i re-entry on the new connection
            ]
        finally:
            await adapter.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), 20))

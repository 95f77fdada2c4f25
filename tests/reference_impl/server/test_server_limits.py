"""Bounded state and the smaller hardening points of the reference server: channels freed,
members found through an index, frame logs bounded in bytes, history retention, handshake and
idle timeouts, a connection cap, rate-limited logs, the Origin check, an oversized PRESENCE
NACKed, REST channel names checked as realtime checks them, unknown actions not echoed."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest
from presence_conformance.harness.run import clock
from presence_conformance.reference_impl.model import PresenceModel
from presence_conformance.reference_impl.server import PresenceServer
from presence_conformance.reference_impl.server.config import (
    FD_RESERVE,
    ConfigError,
    ServerConfig,
    open_file_limit,
)
from presence_conformance.reference_impl.server.inspection import FrameLog
from presence_conformance.reference_impl.server.limits import RateLimitFilter
from presence_conformance.reference_impl.server.testing import RawClient
from support import run_server, until

# -- channels freed, the member index ------------------------------------------------------------


def test_channels_without_members_attachments_or_history_are_freed() -> None:
    async def test(server: PresenceServer) -> None:
        async with await RawClient.open(server, client_id="a") as c:
            for i in range(50):
                await c.attach(f"ch{i}")
            assert len(server.model.channels()) == 50
            await c.send({"action": 12, "channel": "ch0"})
            await c.expect(13)
            assert len(server.model.channels()) == 49
        await until(lambda: server.model.channels() == [], what="channels freed on CLOSE")
        # the transport went without CLOSE: the connection stays resumable for the grace
        # (RTN15), then it is forgotten too
        await until(lambda: server.model._connections == {}, what="connection forgotten")

    run_server(test, leave_grace=0.1)


def test_history_keeps_a_channel_until_the_retention_lets_it_go() -> None:
    async def test(server: PresenceServer) -> None:
        async with await RawClient.open(server, client_id="a") as c:
            await c.attach("room")
            await c.presence("room", 0, {"action": 2})
        await until(lambda: server.model.get("room") == [], what="the grace is over")
        assert server.model.channels() == ["room"]  # enter + synthesized leave retained
        assert len(server.model.history_all("room")) == 2
        await until(lambda: server.model.channels() == [], what="the sweep frees it")

    run_server(test, history_max_age=0.6, sweep_interval=0.05, leave_grace=0.05)


def test_a_connection_s_members_are_found_through_its_index() -> None:
    model = PresenceModel(lambda: 1)
    busy = model.open_connection("busy")
    for i in range(1000):
        model.attach(busy, f"c{i}")
    owner = model.open_connection("owner")
    model.enter(owner, "c3")
    model.enter(owner, "c700")
    assert model._connections[owner].member_channels == {"c3", "c700"}
    outcome = model.close_connection(owner)
    assert [e.client_id for e in outcome.events] == ["owner", "owner"]
    assert model._connections[owner].member_channels == set()


# -- history retention ---------------------------------------------------------------------------


def test_history_retention_by_count_keeps_cursors_valid() -> None:
    model = PresenceModel(lambda: 1, history_max_count=3)
    c = model.open_connection("a")
    for i in range(5):
        model.update(c, "room", str(i))
    assert [e.data for e in model.history_all("room")] == ["2", "3", "4"]
    page = model.history("room", direction="forwards", limit=2)
    assert [e.data for e in page.items] == ["2", "3"]
    for i in range(5, 8):
        model.update(c, "room", str(i))  # the cursor's events are gone: resume at the oldest kept
    assert page.next_cursor is not None
    rest = model.history("room", direction="forwards", limit=2, cursor=page.next_cursor)
    assert [e.data for e in rest.items] == ["5", "6"]


def test_history_retention_by_age_and_rest_agrees() -> None:
    async def test(server: PresenceServer) -> None:
        async with await RawClient.open(server, client_id="a") as c:
            await c.attach("room")
            await c.presence("room", 0, {"action": 2, "data": "old"})
            await asyncio.sleep(0.3)
            await c.presence("room", 1, {"action": 4, "data": "new"})
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"{server.rest_url}/channels/room/presence/history",
                    params={"key": server.default_key},
                ) as resp,
            ):
                items = await resp.json()
            assert [i["data"] for i in items] == ["new"]
            assert [e.data for e in server.model.history_all("room")] == ["new"]

    run_server(test, history_max_age=0.2)


# -- frame log in bytes --------------------------------------------------------------------------


def test_frame_log_is_bounded_in_bytes_per_connection_and_in_all() -> None:
    log = FrameLog(
        per_connection=2000, connections=100, bytes_per_connection=10_000, total_bytes=25_000
    )
    for cid in ("a", "b", "c", "d"):
        log.open(cid)
        for _ in range(100):
            log.record(cid, {"action": 14, "data": "x" * 1000}, 1000)
    assert log.total <= 25_000
    assert 1 <= len(log.frames("d")) <= 5
    assert log.frames("a") == []  # the oldest connection's log went first


# -- timeouts and the connection cap -------------------------------------------------------------


def test_a_silent_tcp_connection_is_cut_after_the_handshake_timeout() -> None:
    async def test(server: PresenceServer) -> None:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 3.0) == b""
        assert server.stats["handshake_timeouts"] == 1
        writer.close()

    run_server(test, handshake_timeout=0.2)


def test_a_client_that_stops_reading_is_lost_and_its_members_leave() -> None:
    async def test(server: PresenceServer) -> None:
        async with (
            await RawClient.open(server, client_id="watcher") as watcher,
            aiohttp.ClientSession() as session,
        ):
            await watcher.attach("room")
            url = f"{server.url}?key={server.default_key}&clientId=stuck&format=json"
            ws = await session.ws_connect(url, autoping=False)  # answers no ping: a stopped reader
            await ws.receive_json()  # CONNECTED
            await ws.send_json({"action": 10, "channel": "room"})
            await ws.send_json(
                {"action": 14, "channel": "room", "msgSerial": 0, "presence": [{"action": 2}]}
            )
            entered = await watcher.expect(14)
            assert entered["presence"][0]["clientId"] == "stuck"
            left = await watcher.expect(14, timeout=5.0)
            assert left["presence"][0]["action"] == 3 and left["presence"][0]["clientId"] == "stuck"
            await ws.close()

    run_server(test, max_idle_interval=300, heartbeat_interval=0.1, leave_grace=0.1)


def test_connections_beyond_the_cap_are_refused_clearly() -> None:
    async def test(server: PresenceServer) -> None:
        async with (
            await RawClient.open(server, client_id="a"),
            await RawClient.open(server, client_id="b"),
        ):
            c = await RawClient.open(server, client_id="c", expect_connected=False)
            err = await c.recv()
            assert err["action"] == 9 and err["error"]["code"] == 42910
            assert "connection limit" in err["error"]["message"]
            await c.close()
        async with await RawClient.open(server, client_id="d"):  # room again once they closed
            pass

    run_server(test, max_connections=2)


# -- the TCP socket cap ----------------------------------------------------------------------------


async def _idle_sockets(server: PresenceServer, n: int, source: str | None = None) -> list[Any]:
    """`n` TCP sockets that never send a byte (a slowloris), from `source` if given."""
    local = (source, 0) if source else None
    return [
        (await asyncio.open_connection(server.host, server.port, local_addr=local))[1]
        for _ in range(n)
    ]


async def _refused_request(server: PresenceServer, source: str | None = None) -> bytes:
    """One HTTP request on a fresh socket; everything the server answered before closing
    (b"" when it closed the socket without an answer)."""
    local = (source, 0) if source else None
    try:
        reader, writer = await asyncio.open_connection(server.host, server.port, local_addr=local)
        writer.write(b"GET /channels/room/presence HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
        return answer
    except (ConnectionResetError, BrokenPipeError):
        return b""


def _assert_refused(answers: list[bytes]) -> None:
    for answer in answers:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 503 "), answer[:80]
    answered = [a for a in answers if a]
    assert answered, "no over-cap socket got an answer"
    body = json.loads(answered[0].partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] == 42910 and body["error"]["statusCode"] == 503
    assert "socket limit" in body["error"]["message"]


def _run_on(loop: str, test: Any, **config: Any) -> None:
    """`run_server` on asyncio's loop or on uvloop (whose transports are not asyncio's)."""
    if loop == "asyncio":
        run_server(test, **config)
        return
    uvloop = pytest.importorskip("uvloop", reason="uvloop is the [fast] extra")
    server = PresenceServer(ServerConfig(**config))

    async def main() -> None:
        await server.start()
        try:
            await asyncio.wait_for(test(server), 30.0)
        finally:
            await server.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_sockets_over_the_cap_are_refused_at_once_while_a_client_is_served(loop: str) -> None:
    async def test(server: PresenceServer) -> None:
        async with await RawClient.open(server, client_id="legit") as legit:
            await legit.attach("room")
            idle = await _idle_sockets(server, 39)  # the cap is full: 40 with legit's
            await until(lambda: server.sockets.open == 40, what="40 sockets held")
            loop = asyncio.get_running_loop()
            started, starved = loop.time(), clock.starved()
            flood = asyncio.gather(*(_refused_request(server) for _ in range(300)))
            ack = await legit.presence("room", 0, {"action": 2, "data": "still served"})
            assert ack["action"] == 1  # ACK: served while the flood is refused
            answers = await flood
            # refused at once, not after a timeout (the time this thread, which runs the server
            # and the flood, waited for a CPU on a busy machine not counted)
            assert loop.time() - started - (clock.starved() - starved) < 4.0
            _assert_refused(answers)
            assert server.stats["sockets_refused"] >= 300
            assert server.sockets.open == 40  # nothing over the cap was held
            await until(lambda: server.sockets.refusing == 0, what="refusals done")
            # closed sockets free their slots: new clients are served again
            for writer in idle[:5]:
                writer.close()
            await until(lambda: server.sockets.open == 35, what="slots freed")
            async with await RawClient.open(server, client_id="late") as late:
                await late.attach("room")
                async with aiohttp.ClientSession() as session:
                    url = f"{server.rest_url}/channels/room/presence"
                    headers = {"Authorization": "Basic " + _basic(server.default_key)}
                    async with session.get(url, headers=headers) as response:
                        assert response.status == 200
                        assert [m["clientId"] for m in await response.json()] == ["legit"]
            for writer in idle[5:]:
                writer.close()
        await until(lambda: server.sockets.open == 0, what="every slot freed")
        assert server.sockets.by_ip == {}

    _run_on(loop, test, max_sockets=40, handshake_timeout=30.0)


def _basic(key: str) -> str:
    import base64

    return base64.b64encode(key.encode()).decode()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_a_websocket_upgrade_over_the_cap_gets_an_error_frame(fmt: str, loop: str) -> None:
    async def test(server: PresenceServer) -> None:
        idle = await _idle_sockets(server, 1)
        await until(lambda: server.sockets.open == 1, what="the cap is full")
        c = await RawClient.open(
            server, client_id="late", params={"format": fmt}, expect_connected=False
        )
        err = await c.recv()
        assert c.msgpack == (fmt == "msgpack")
        assert err["action"] == 9 and err["error"]["code"] == 42910, err
        assert err["error"]["statusCode"] == 503
        await asyncio.wait_for(c.closed.wait(), 3.0)
        assert c.ws.close_code == 1013  # try again later
        await c.close()
        idle[0].close()

    _run_on(loop, test, max_sockets=1, handshake_timeout=30.0)


def test_the_per_address_cap_refuses_one_address_and_serves_another() -> None:
    async def test(server: PresenceServer) -> None:
        held = await _idle_sockets(server, 10, source="127.0.0.2")
        await until(lambda: server.sockets.by_ip.get("127.0.0.2") == 10, what="10 held")
        answers = await asyncio.gather(
            *(_refused_request(server, source="127.0.0.2") for _ in range(200))
        )
        _assert_refused(answers)
        assert server.sockets.by_ip == {"127.0.0.2": 10}
        async with await RawClient.open(server, client_id="legit") as legit:  # from 127.0.0.1
            await legit.attach("room")
            ack = await legit.presence("room", 0, {"action": 2})
            assert ack["action"] == 1
        for writer in held:
            writer.close()
        await until(lambda: server.sockets.by_ip == {}, what="the address's slots freed")

    run_server(test, max_sockets_per_ip=10, handshake_timeout=30.0)


def test_the_socket_cap_defaults_to_fit_the_open_file_limit() -> None:
    assert ServerConfig().effective_max_sockets == min(11000, open_file_limit() - FD_RESERVE)
    assert ServerConfig(max_connections=5).effective_max_sockets == min(
        1005, open_file_limit() - FD_RESERVE
    )
    assert ServerConfig(max_sockets=7).effective_max_sockets == 7
    for bad in ({"max_sockets": 0}, {"max_sockets_per_ip": -1}, {"max_sockets": "9"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ServerConfig(**bad)  # type: ignore[arg-type]


def test_log_lines_of_one_kind_are_rate_limited() -> None:
    limiter = RateLimitFilter(rate=3, period=60.0)

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("srv", logging.WARNING, __file__, 1, msg, None, None)

    passed = [limiter.filter(record("connection %s: slow")) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert limiter.filter(record("another kind"))
    limiter.period = 0.0
    again = record("connection %s: slow")
    assert limiter.filter(again) and "7 similar lines suppressed" in str(again.msg)


# -- Origin, oversized PRESENCE, REST channel names, unknown actions -------------------------------


@pytest.mark.parametrize(
    ("origin", "allowed", "ok"),
    [
        (None, (), True),  # SDKs send no Origin
        ("http://evil.example", (), False),
        ("http://app.example", ("http://app.example",), True),
        ("http://evil.example", ("*",), True),
        ("same-host", (), True),
    ],
)
def test_websocket_upgrades_check_the_origin(
    origin: str | None, allowed: tuple[str, ...], ok: bool
) -> None:
    async def test(server: PresenceServer) -> None:
        headers = {}
        if origin is not None:
            headers["Origin"] = (
                f"http://{server.host}:{server.port}" if origin == "same-host" else origin
            )
        url = f"{server.url}?key={server.default_key}&format=json"
        async with aiohttp.ClientSession() as session:
            if ok:
                ws = await session.ws_connect(url, headers=headers)
                assert (await ws.receive_json())["action"] == 4
                await ws.close()
            else:
                with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                    await session.ws_connect(url, headers=headers)
                assert info.value.status == 403

    run_server(test, allowed_origins=allowed)


def test_an_oversized_presence_frame_is_nacked_and_the_member_stays() -> None:
    async def test(server: PresenceServer) -> None:
        async with await RawClient.open(server, client_id="a") as c:
            await c.attach("room")
            await c.presence("room", 0, {"action": 2, "data": "here"})
            await c.send(
                {
                    "action": 14,
                    "channel": "room",
                    "msgSerial": 1,
                    "presence": [{"action": 4, "data": "x" * 5000}],
                }
            )
            nack = await c.expect(2)
            assert nack["msgSerial"] == 1 and nack["error"]["code"] == 40009
            assert [m.data for m in server.model.get("room")] == ["here"]
            assert (await c.presence("room", 2, {"action": 4, "data": "still"}))["action"] == 1

    run_server(test, max_message_size=1000, max_frame_size=2000)


def test_rest_refuses_the_channel_names_realtime_refuses() -> None:
    async def test(server: PresenceServer) -> None:
        async with aiohttp.ClientSession() as session:
            for path in ("presence", "presence/history"):
                url = f"{server.rest_url}/channels/{'c' * 1025}/{path}"
                async with session.get(url, params={"key": server.default_key}) as resp:
                    body: Any = await resp.json()
                    assert resp.status == 400 and body["error"]["code"] == 40010
        async with await RawClient.open(server) as c:
            await c.send({"action": 10, "channel": "c" * 1025})
            assert (await c.recv())["error"]["code"] == 40010

    run_server(test)


def test_an_unknown_action_is_not_echoed_in_full() -> None:
    async def test(server: PresenceServer) -> None:
        async with await RawClient.open(server) as c:
            await c.send('{"action": ' + "9" * 4000 + "}")
            err = await c.recv()
            assert err["error"]["code"] == 40000 and len(err["error"]["message"]) < 300

    run_server(test)

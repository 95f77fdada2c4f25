"""The conforming variants of the reference server (`reference_impl/server/variants.py`): each
does what it says on the wire, the default server is unchanged, and the packaged suite passes
under `ably-wire` with every variant on at once (fixed seed): no false alarm on a server that
behaves in any of these allowed ways.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import aiohttp
import pytest
from presence_conformance.harness.adapter import UsageError
from presence_conformance.harness.adapters.ably_wire import AblyWireAdapter
from presence_conformance.harness.adapters.registry import resolve_adapter
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.session import ConformanceSession, load_suite, select_scenarios
from presence_conformance.reference_impl.protocol import HAS_PRESENCE, ProtocolAction
from presence_conformance.reference_impl.server import PresenceServer
from presence_conformance.reference_impl.server.cli import build_parser, config_from_args
from presence_conformance.reference_impl.server.config import (
    SERVER_VARIANTS,
    ConfigError,
    ServerConfig,
    parse_variants,
)
from presence_conformance.reference_impl.server.realtime import RealtimeProtocol
from presence_conformance.reference_impl.server.testing import RawClient
from presence_conformance.reference_impl.server.variants import (
    VARIANTS,
    JitterTransport,
    VariantProtocol,
)
from support import run_server

ACK, PRESENCE, SYNC = ProtocolAction.ACK, ProtocolAction.PRESENCE, ProtocolAction.SYNC


def test_the_default_server_has_no_variant() -> None:
    server = PresenceServer(ServerConfig())
    assert type(server.realtime) is RealtimeProtocol
    assert type(server.realtime.transport) is not JitterTransport
    assert set(VARIANTS) == SERVER_VARIANTS
    with pytest.raises(ConfigError, match="unknown"):
        ServerConfig(variants=frozenset({"bogus"}))
    assert parse_variants("all") == SERVER_VARIANTS
    assert parse_variants("jitter, resync") == {"jitter", "resync"}


def test_serve_option_and_adapter_option() -> None:
    parser = build_parser()
    config = config_from_args(
        parser.parse_args(["--variant", "jitter,resync", "--variant", "ack-batch"])
    )
    assert config.variants == {"jitter", "resync", "ack-batch"}
    assert config_from_args(parser.parse_args([])).variants == frozenset()
    assert AblyWireAdapter({"server_variants": "all"}).server_variants == SERVER_VARIANTS
    sdk = resolve_adapter("ably-python", {"server_variants": "jitter", "variant_seed": "4"})
    assert (sdk.server_variants, sdk.variant_seed) == ({"jitter"}, 4)
    with pytest.raises(UsageError, match="unknown"):
        AblyWireAdapter({"server_variants": "nope"})
    with pytest.raises(UsageError, match="embedded"):
        AblyWireAdapter({"endpoint": "127.0.0.1:1", "key": "a.b:c", "server_variants": "jitter"})


def members(n: int) -> list[dict[str, Any]]:
    return [{"action": 2, "clientId": f"m{i}", "data": f"d{i}"} for i in range(n)]


async def wildcard_with_members(server: PresenceServer, n: int) -> RawClient:
    owner = await RawClient.open(server, client_id="*")
    await owner.attach("room")
    for serial, item in enumerate(members(n)):
        assert (await owner.presence("room", serial, item))["action"] == ACK
    return owner


def test_sync_variants_keep_the_member_list_and_its_cursor_rules() -> None:
    """sync-shuffle, sync-pages, id-shapes: the same members, in pages of other sizes and other
    orders, cursors `<id>:<opaque>` ending with an empty one (RTP18a/b)."""

    async def test(server: PresenceServer) -> None:
        owner = await wildcard_with_members(server, 12)
        orders, sizes = set(), set()
        for _ in range(4):
            reader = await RawClient.open(server, client_id="reader")
            attached, syncs = await reader.attach("room")
            assert attached["flags"] & HAS_PRESENCE
            ids = {s["channelSerial"].split(":", 1)[0] for s in syncs}
            assert len(ids) == 1
            assert all(s["channelSerial"].split(":", 1)[1] for s in syncs[:-1])
            assert syncs[-1]["channelSerial"].endswith(":")
            names = [p["clientId"] for s in syncs for p in s["presence"]]
            assert sorted(names) == sorted(f"m{i}" for i in range(12))
            orders.add(tuple(names))
            sizes.add(tuple(len(s["presence"]) for s in syncs))
            await reader.close()
        assert len(orders) > 1 and len(sizes) > 1
        await owner.close()

    run_server(
        test,
        sync_page_size=5,
        variants=frozenset({"sync-shuffle", "sync-pages", "id-shapes"}),
        variant_seed=7,
    )


def test_sync_empty_and_sync_without_cursor() -> None:
    """sync-empty: HAS_PRESENCE and one empty SYNC on an empty channel (RTP1); sync-no-cursor:
    a one-page sync, sometimes without channelSerial (RTP18c)."""

    async def test(server: PresenceServer) -> None:
        reader = await RawClient.open(server, client_id="reader")
        attached, syncs = await reader.attach("empty")
        assert attached["flags"] & HAS_PRESENCE
        assert len(syncs) == 1 and syncs[0]["presence"] == []
        owner = await wildcard_with_members(server, 2)
        without = 0
        for _ in range(8):
            other = await RawClient.open(server, client_id="other")
            _, syncs = await other.attach("room")
            assert len(syncs) == 1 and len(syncs[0]["presence"]) == 2
            without += "channelSerial" not in syncs[0]
            await other.close()
        assert 0 < without < 8
        await owner.close()
        await reader.close()

    run_server(test, variants=frozenset({"sync-empty", "sync-no-cursor"}), variant_seed=3)


def test_resync_sends_the_whole_member_list_again() -> None:
    async def test(server: PresenceServer) -> None:
        reader = await RawClient.open(server, client_id="reader")
        await reader.attach("room")
        owner = await RawClient.open(server, client_id="*")
        await owner.attach("room")
        syncs: list[dict] = []
        for serial, item in enumerate(members(20)):
            await owner.presence("room", serial, item)
            syncs += await reader.no_frame(0.02, SYNC)
            if syncs:
                break
        assert syncs, "no server-initiated SYNC after 20 enters"
        await owner.close()
        await reader.close()

    run_server(test, variants=frozenset({"resync"}), variant_seed=1)


def test_split_presence_sends_one_frame_per_event() -> None:
    """The leaves of a closing connection's two members: two PRESENCE frames, one each."""

    async def test(server: PresenceServer) -> None:
        reader = await RawClient.open(server, client_id="reader")
        await reader.attach("room")
        owner = await wildcard_with_members(server, 2)
        await reader.no_frame(0.05)
        await owner.send({"action": ProtocolAction.CLOSE})
        leaves = [await reader.expect(PRESENCE), await reader.expect(PRESENCE)]
        assert [len(f["presence"]) for f in leaves] == [1, 1]
        assert {f["presence"][0]["clientId"] for f in leaves} == {"m0", "m1"}
        await reader.close()

    run_server(test, variants=frozenset({"split-presence"}))


def test_ack_batch_acknowledges_pipelined_presence_at_once() -> None:
    async def test(server: PresenceServer) -> None:
        client = await RawClient.open(server, client_id="*")
        await client.attach("room")
        for serial, item in enumerate(members(3)):
            await client.send(
                {"action": PRESENCE, "channel": "room", "msgSerial": serial, "presence": [item]}
            )
        acks = [f for f in await client.no_frame(0.2) if f["action"] == ACK]
        assert acks == [{"action": ACK, "msgSerial": 0, "count": 3}]
        await client.close()

    run_server(test, variants=frozenset({"ack-batch"}))


def test_jitter_keeps_each_connections_order() -> None:
    async def test(server: PresenceServer) -> None:
        assert isinstance(server.realtime, VariantProtocol)
        assert isinstance(server.realtime.transport, JitterTransport)
        readers = [await RawClient.open(server, client_id=f"r{i}") for i in range(3)]
        for reader in readers:
            await reader.attach("room")
        owner = await RawClient.open(server, client_id="alice")
        await owner.attach("room")
        for serial in range(15):
            await owner.send(
                {
                    "action": PRESENCE,
                    "channel": "room",
                    "msgSerial": serial,
                    "presence": [{"action": 4, "data": str(serial)}],
                }
            )
        for reader in readers:
            got = [await reader.expect(PRESENCE) for _ in range(15)]
            assert [f["presence"][0]["data"] for f in got] == [str(i) for i in range(15)]
        for client in (*readers, owner):
            await client.close()

    run_server(test, variants=frozenset({"jitter"}), variant_seed=5)


def test_clock_skew_and_short_history_pages() -> None:
    async def test(server: PresenceServer) -> None:
        assert abs(server.now() - (time.time() * 1000 - 90_000)) < 5000
        owner = await wildcard_with_members(server, 30)
        auth = "Basic " + base64.b64encode(server.default_key.encode()).decode()
        async with aiohttp.ClientSession(headers={"Authorization": auth}) as session:
            url = f"{server.rest_url}/channels/room/presence/history?limit=10"
            seen, pages = 0, []
            while url:
                async with session.get(url) as response:
                    body = await response.json()
                    pages.append(len(body))
                    seen += len(body)
                    nxt = response.links.get("next")
                    url = str(response.url.join(nxt["url"])) if nxt else ""
        assert seen == 30 and max(pages) <= 10 and min(pages[:-1]) < 10, pages
        await owner.close()

    run_server(test, variants=frozenset({"clock-skew", "history-pages"}), variant_seed=2)


def test_the_packaged_suite_passes_with_every_variant_on() -> None:
    """Every packaged scenario under ably-wire against a server with all variants on (seed 11):
    no failure; `history.full-pages` (SHOULD: a short page is allowed, RSP4b3) is the only
    non-strict requirement, and only from `history-pages`."""
    options = {"server_variants": "all", "variant_seed": "11", "leave_grace": "0.5"}
    adapter = resolve_adapter("ably-wire", options)
    session = ConformanceSession(adapter, "ably-wire", options)
    suite = load_suite()
    try:
        run = session.run_all(suite)
    finally:
        session.stop()
    assert not run.partial, run.partial_reason
    bad = {
        c.case_id: (c.outcome.value, sorted({v.requirement for v in c.violations}), c.error)
        for c in run.cases
        if c.outcome is not Outcome.PASS
        and not (
            c.outcome is Outcome.NON_STRICT
            and {v.requirement for v in c.violations} == {"history.full-pages"}
        )
    }
    assert not bad, bad
    assert len(run.cases) > 150


def test_variants_leave_the_wire_alone_without_them() -> None:
    """A sanity check of the default server beside the variants: an empty channel's ATTACHED
    has no HAS_PRESENCE and no SYNC follows (RTP1)."""

    async def test(server: PresenceServer) -> None:
        reader = await RawClient.open(server, client_id="reader")
        attached, syncs = await reader.attach("empty")
        assert not attached["flags"] & HAS_PRESENCE and syncs == []
        assert await reader.no_frame(0.05, SYNC) == []
        await reader.close()

    asyncio.run(asyncio.sleep(0))
    run_server(test)


@pytest.mark.parametrize(
    ("pattern", "options"),
    [
        # a get's explicit `expect` called the old member of a refused resume unexpected while
        # its leave was pending (any grace longer than the interrupt)
        ("disconnect/reenter-after-failed-resume", {"leave_grace": "0.5"}),
        ("disconnect/reenter-after-failed-resume", {"leave_grace": "1.0"}),
        # a drop's leave was watched on one connection; the next to subscribe had it in flight
        (
            "disconnect/refused-resume-within-grace",
            {"leave_grace": "0.5", "server_variants": "all", "variant_seed": "2"},
        ),
        # the staged-frame watch began with a frame sent but not yet received
        ("client/detached-reenters-own-member", {"server_variants": "jitter", "variant_seed": "2"}),
        # a server-initiated sync between the caught-up read and the observation
        (
            "client/new-sequence-discards-in-flight",
            {"server_variants": "all", "variant_seed": "16"},
        ),
        ("client/sync-without-channel-serial", {"server_variants": "all", "variant_seed": "11"}),
    ],
)
def test_the_false_alarms_the_variants_found_stay_fixed(
    pattern: str, options: dict[str, str]
) -> None:
    """The cases (and seeds) where the variants found a false alarm pass. The first two failed
    every time before their fix; the others depend on timing as well as on the seed (they failed
    in some bench runs, not in every run), so only `bench/server_variants.py` over many seeds
    shows their fix."""
    adapter = resolve_adapter("ably-wire", options)
    session = ConformanceSession(adapter, "ably-wire", options)
    try:
        run = session.run_all(select_scenarios(load_suite(), [pattern]))
    finally:
        session.stop()
    assert [c.outcome for c in run.cases] == [Outcome.PASS], [
        (c.case_id, c.outcome.value, [v.message for v in c.violations]) for c in run.cases
    ]

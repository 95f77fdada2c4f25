"""The `ably-js` adapter: ably-js 2.x under node, through the packaged ably_bridge.mjs and the
bridge.

Skipped locally when node or the node folder's node_modules is missing; in CI (`CI=true`) a
missing node toolchain FAILS these tests instead, since `.ci/run` installs both (`npm ci` in
harness/adapters/ably_js_node/).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from presence_conformance.harness.adapter import Feature, UsageError
from presence_conformance.harness.adapters.ably_js import AblyJsAdapter, default_node_dir
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.harness.session import ConformanceSession, select_scenarios
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.types import Action, PresenceMessage
from support import packaged_suite, run_adapter, until

NODE_DIR = default_node_dir()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "ably" / "package.json").is_file():
        return f"{NODE_DIR / 'node_modules'} is missing: run npm ci in {NODE_DIR}"
    return None


@pytest.fixture
def node_toolchain() -> None:
    """Skip without node or the node folder's node_modules; fail instead in CI."""
    missing = _missing()
    if missing is None:
        return
    if IN_CI:
        pytest.fail(f"{missing} (CI=true: .ci/run installs node and runs npm ci in {NODE_DIR})")
    pytest.skip(missing)


def run(body: Callable[[AblyJsAdapter], Any], limit: float = 40.0, **options: str) -> Any:
    return run_adapter(AblyJsAdapter(options), body, limit)


def test_contract_through_ably_js(node_toolchain: None) -> None:
    async def body(adapter: AblyJsAdapter) -> None:
        assert adapter.sdk.startswith("ably-js 2.")
        assert {
            Feature.HISTORY,
            Feature.SUBSCRIBE_ACTION_LIST,
            Feature.UNSUBSCRIBE_BY_ACTION,
            Feature.WIRE_FRAMES,
        } <= adapter.features
        alice = await adapter.connect("alice")
        bob = await adapter.connect("bob")
        seen: list[PresenceMessage] = []
        joins: list[PresenceMessage] = []
        room = bob.channel("room").presence
        await room.subscribe(seen.append)
        await room.subscribe(joins.append, ["enter", "leave"])
        presence = alice.channel("room").presence
        await presence.enter({"mood": "happy"})
        await presence.update(b"\x00\xff")
        assert await adapter.quiesce()
        assert [(m.action, m.data) for m in seen] == [
            (Action.ENTER, {"mood": "happy"}),
            (Action.UPDATE, b"\x00\xff"),
        ]
        assert [m.action for m in joins] == [Action.ENTER]
        members = await room.get(client_id="alice")
        assert [(m.action, m.connection_id, m.id) for m in members] == [
            (Action.PRESENT, alice.id, f"{alice.id}:1:0")
        ]
        assert await room.get(wait_for_sync=False, connection_id="nobody") == []
        assert await room.sync_complete() is True
        await room.unsubscribe(None, ["leave"])  # the action-only form (ably-js has it)
        await presence.leave()
        await until(lambda: len(seen) == 3)
        assert len(joins) == 1
        # presence.history is REST in ably-js: pages followed with next()
        page = await room.history(limit=2, direction="forwards")
        items = list(page.items)
        while page.has_next():
            page = await page.next()
            items += page.items
        assert [m.action for m in items] == [Action.ENTER, Action.UPDATE, Action.LEAVE]
        # ably-js leaves its own clientId out of its PRESENCE frames (RTP8c)
        frames = [f for f in adapter.wire_frames(alice.id) if f.get("action") == 14]
        assert frames and not any("clientId" in p for f in frames for p in f["presence"])
        with pytest.raises(PresenceError) as info:
            await (
                (await adapter.connect("r", {"*": ["subscribe"]}))
                .channel("room")
                .presence.enter("x")
            )
        assert info.value.code == 40160
        wildcard = await adapter.connect("*")
        assert wildcard.client_id == "*"
        # bob's REST history left a keep-alive HTTP connection in his relay: his close waits for
        # the realtime connection only, well within the runner's close timeout
        child = adapter._child
        started = time.monotonic()
        await bob.close()
        assert time.monotonic() - started < 1.0
        assert adapter._child is child and child.alive

    run(body)


def test_drop_without_reconnection_and_close(node_toolchain: None) -> None:
    async def body(adapter: AblyJsAdapter) -> None:
        alice = await adapter.connect("alice")
        carol = await adapter.connect("carol")
        bob = await adapter.connect("bob")
        seen: list[PresenceMessage] = []
        await bob.channel("room").presence.subscribe(seen.append)
        await alice.channel("room").presence.enter("a")
        await carol.channel("room").presence.enter("c")
        await until(lambda: len(seen) == 2)
        server = adapter.embedded.server
        started = time.monotonic()
        await alice.drop()
        await until(lambda: len(seen) == 3)
        leave = seen[2]
        assert (leave.action, leave.connection_id) == (Action.LEAVE, alice.id)
        assert not leave.id.startswith(f"{alice.id}:")  # synthesized after the grace
        assert time.monotonic() - started >= adapter.leave_grace * 0.9
        assert not any(f.get("action") == 7 for f in server.frames(alice.id))  # no CLOSE
        await carol.close()
        # a graceful close: the server got ably-js's CLOSE (the relay is not torn down before
        # it is through) and carol leaves at once, not after the grace
        assert any(f.get("action") == 7 for f in server.frames(carol.id))
        await until(lambda: len(seen) == 4)
        await asyncio.sleep(0.3)
        assert len(seen) == 4  # nobody came back: neither SDK client reconnected
        assert [m.client_id for m in await bob.channel("room").presence.get()] == []

    run(body)


CASES = [
    "enter/adds-member",
    "subscribe/action-list",
    "disconnect/leave-synthesized",
    "history/start-end-inclusive",
]


def test_a_few_scenarios_through_node(node_toolchain: None) -> None:
    scenarios = select_scenarios(packaged_suite(), CASES)
    session = ConformanceSession(AblyJsAdapter({}), "ably-js", settings=RunSettings())
    try:
        result = session.run_all(scenarios)
    finally:
        session.stop()
    bad = [
        (c.case_id, c.outcome.value, c.error, [v.requirement for v in c.violations])
        for c in result.cases
        if c.outcome not in (Outcome.PASS, Outcome.NON_STRICT)
    ]
    assert not bad


def test_usage_errors_without_the_node_toolchain(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        AblyJsAdapter({"node_dir": str(tmp_path)})
    (tmp_path / "ably_bridge.mjs").write_text("")
    with pytest.raises(UsageError, match="run npm ci in"):
        AblyJsAdapter({"node_dir": str(tmp_path)})
    (tmp_path / "node_modules" / "ably").mkdir(parents=True)
    (tmp_path / "node_modules" / "ably" / "package.json").write_text("{}")
    with pytest.raises(UsageError, match="node is not installed"):
        AblyJsAdapter({"node_dir": str(tmp_path), "node": str(tmp_path / "no-node")})
    with pytest.raises(UsageError, match="unknown option"):
        AblyJsAdapter({"command": "x"})


def test_node_folder_the_user_chooses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node files ship in the package; `python -m ...ably_js DIR` copies them where the user
    runs `npm ci`, and `node_dir` or $PRESENCE_CONFORMANCE_NODE_DIR points the adapter there."""
    from presence_conformance.harness.adapters import ably_js

    packaged = ably_js.packaged_node_dir()
    assert sorted(p.name for p in packaged.iterdir() if p.name != "node_modules") == sorted(
        ably_js.NODE_FILES
    )
    dest = tmp_path / "chosen"
    assert ably_js.main([str(dest)]) == 0
    for name in ably_js.NODE_FILES:
        assert (dest / name).read_bytes() == (packaged / name).read_bytes()
    with pytest.raises(UsageError, match=f"run npm ci in {dest}"):
        AblyJsAdapter({"node_dir": str(dest)})
    monkeypatch.setenv(ably_js.NODE_DIR_ENV, str(dest))
    assert ably_js.default_node_dir() == dest
    with pytest.raises(UsageError, match=f"run npm ci in {dest}"):
        AblyJsAdapter({})
    # a copy from another version of the package is refused, with what to run
    (dest / "node_modules" / "ably").mkdir(parents=True)
    (dest / "node_modules" / "ably" / "package.json").write_text("{}")
    (dest / ably_js.SCRIPT).write_text("// an older bridge\n")
    with pytest.raises(UsageError, match="not this version's bridge; copy the node files again"):
        AblyJsAdapter({"node": shutil.which("python3") or "python3"})

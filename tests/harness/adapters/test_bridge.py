"""The `bridge` adapter: a Python child serving the reference service over the protocol passes
scenarios, and children that hang, crash or write garbage give `timeout`/`error` outcomes that
name the step, have their process group killed, and leave the run going.

The child is `tests/harness/adapters/bridge_child.py`; its `--fault KIND:OP` makes it misbehave on one operation
and `--once PATH` only the first time (the child started after the kill behaves).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from presence_conformance.harness.adapter import Feature, UsageError
from presence_conformance.harness.adapters.bridge import (
    BridgeAdapter,
    BridgeError,
    message_from_json,
    validate_message,
    validate_result,
)
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.harness.session import ConformanceSession, select_scenarios
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.types import Action
from support import ROOT, packaged_suite, run_adapter, until

CHILD = Path(__file__).resolve().parent / "bridge_child.py"
DOCS = ROOT / "docs" / "bridge.md"
GOOD_CASES = [
    "enter/adds-member",
    "subscribe/action-list",
    "history/start-end-inclusive",
    "disconnect/leave-synthesized",
]


def command(*faults: str, once: Path | None = None, grandchild: bool = False) -> str:
    words = [sys.executable, str(CHILD)]
    for fault in faults:
        words += ["--fault", fault]
    if once is not None:
        words += ["--once", str(once)]
    if grandchild:
        words.append("--grandchild")
    return shlex.join(words)


def adapter(
    *faults: str, once: Path | None = None, grandchild: bool = False, **options: str
) -> BridgeAdapter:
    return BridgeAdapter({"command": command(*faults, once=once, grandchild=grandchild), **options})


def run_cases(bridge: BridgeAdapter, cases: list[str], op_timeout: float = 5.0) -> Any:
    scenarios = select_scenarios(packaged_suite(), cases)
    assert [s.case_id for s in scenarios] == sorted(cases), "a scenario these tests use is gone"
    order = {case: i for i, case in enumerate(cases)}
    scenarios.sort(key=lambda s: order[s.case_id])
    session = ConformanceSession(bridge, "bridge", settings=RunSettings(op_timeout=op_timeout))
    try:
        return session.run_all(scenarios)
    finally:
        session.stop()


# -- a well-behaved child -------------------------------------------------------------------------


def test_scenarios_pass_through_the_bridge() -> None:
    result = run_cases(adapter(), GOOD_CASES)
    outcomes = {c.case_id: c.outcome for c in result.cases}
    assert outcomes == dict.fromkeys(GOOD_CASES, Outcome.PASS), [
        (c.case_id, c.outcome.value, c.error, [v.message for v in c.violations])
        for c in result.cases
    ]


def test_hello_negotiates_features_and_the_contract_round_trips() -> None:
    async def body(bridge: BridgeAdapter) -> None:
        assert bridge.sdk == "reference-service (tests/harness/adapters/bridge_child.py)"
        assert Feature.HISTORY in bridge.features and Feature.WIRE_FRAMES in bridge.features
        assert "quiesce" in bridge.child_ops
        alice = await bridge.connect("alice")
        bob = await bridge.connect("bob")
        seen: list[Any] = []
        await bob.channel("room").presence.subscribe(seen.append, ["enter", "update"])
        presence = alice.channel("room").presence
        await presence.enter(b"\x00\xff")
        await presence.update({"n": [1, 2]})
        assert await bridge.quiesce()
        assert [(m.action, m.client_id, m.data) for m in seen] == [
            (Action.ENTER, "alice", b"\x00\xff"),
            (Action.UPDATE, "alice", {"n": [1, 2]}),
        ]
        members = await bob.channel("room").presence.get(client_id="alice")
        assert [(m.action, m.connection_id) for m in members] == [(Action.PRESENT, alice.id)]
        assert await bob.channel("room").presence.sync_complete() is True
        page = await bob.channel("room").presence.history(limit=1, direction="forwards")
        assert [m.data for m in page.items] == [b"\x00\xff"] and page.has_next()
        second = await page.next()
        assert second is not None and [m.data for m in second.items] == [{"n": [1, 2]}]
        await bob.channel("room").presence.unsubscribe(seen.append, ["update"])
        await bob.channel("room").presence.unsubscribe()
        with pytest.raises(PresenceError) as info:  # the child's refusal keeps its code
            await bob.channel("room").presence.history(limit=1001)
        assert info.value.code == 40003
        await alice.drop()
        await bob.close()

    run_adapter(adapter(), body)


def test_external_endpoint_drops_capabilities_and_wire_frames() -> None:
    async def body(bridge: BridgeAdapter) -> None:
        assert Feature.CAPABILITIES not in bridge.features
        assert Feature.WIRE_FRAMES not in bridge.features
        assert not await bridge.quiesce()  # no ordering promise from another server

    run_adapter(adapter(endpoint="127.0.0.1:9", key="a.b:c"), body)


# -- faults ---------------------------------------------------------------------------------------


def _case(result: Any, case_id: str) -> Any:
    return next(c for c in result.cases if c.case_id == case_id)


def test_a_child_that_never_answers_times_out_naming_the_step_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    result = run_cases(
        adapter("hang:enter", once=tmp_path / "once"),
        ["enter/adds-member", "subscribe/action-list"],
        op_timeout=1.0,
    )
    first, second = result.cases
    assert first.outcome is Outcome.TIMEOUT
    assert "steps[1]" in first.error and "enter" in first.error, first.error
    assert second.outcome is Outcome.PASS, (second.error, second.violations)
    assert time.monotonic() - started < 20


def test_a_child_that_crashes_is_an_error_with_exit_code_and_stderr(tmp_path: Path) -> None:
    result = run_cases(
        adapter("crash:enter", once=tmp_path / "once"),
        ["enter/adds-member", "subscribe/action-list"],
    )
    first, second = result.cases
    assert first.outcome is Outcome.ERROR
    assert "steps[1]" in first.error and "enter" in first.error, first.error
    assert "exited with code 3" in first.error
    assert "bridge_child: crashing on enter as asked" in first.error
    assert second.outcome is Outcome.PASS, (second.error, second.violations)


def test_a_child_that_writes_garbage_is_an_error_naming_the_line(tmp_path: Path) -> None:
    result = run_cases(
        adapter("garbage:get", once=tmp_path / "once"),
        ["get/filter-client-id", "enter/adds-member"],
    )
    first, second = result.cases
    assert first.outcome is Outcome.ERROR
    assert "get" in first.error and "'this is not json (get)'" in first.error, first.error
    assert re.search(r"steps\[\d+\]", first.error)
    assert second.outcome is Outcome.PASS, (second.error, second.violations)


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("badresult:enter", "not of the bridge's form"),
        ("unknown-id:enter", "answered a request it was not asked"),
    ],
)
def test_protocol_violations_are_errors_and_kill_the_child(fault: str, words: str) -> None:
    async def body(bridge: BridgeAdapter) -> None:
        alice = await bridge.connect("alice")
        with pytest.raises(BridgeError, match=words):
            await alice.channel("room").presence.enter("x")
        with pytest.raises(BridgeError, match="bridge child is gone"):
            await alice.channel("room").presence.get()
        carol = await bridge.connect("carol")  # a new child
        assert carol.id

    run_adapter(adapter(fault, once=None), body)


def test_a_hung_childs_whole_process_group_is_killed() -> None:
    async def body(bridge: BridgeAdapter) -> None:
        child = bridge._child
        assert child is not None
        await until(lambda: any("grandchild pid" in line for line in child.stderr), 2.0, "its pid")
        pid = int(next(line for line in child.stderr if "grandchild pid" in line).split()[-1])
        alice = await bridge.connect("alice")
        with pytest.raises(TimeoutError, match="did not answer enter"):
            await alice.channel("room").presence.enter("x")
        await until(lambda: not _alive(pid), 2.0, "the grandchild to be killed")

    run_adapter(adapter("freeze:enter", grandchild=True, timeout="1"), body)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_child_that_fails_hello_makes_start_fail_clearly() -> None:
    bridge = adapter("crash:hello")
    with pytest.raises(BridgeError, match=r"failed to start.*exited with code 3"):
        asyncio.run(bridge.start())


def test_a_command_that_does_not_exist() -> None:
    bridge = BridgeAdapter({"command": "/nonexistent/bridge-child --x"})
    with pytest.raises(BridgeError, match="cannot start"):
        asyncio.run(bridge.start())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "option command is required"),
        ({"command": "node 'unterminated"}, "command="),
        ({"command": "x", "cwd": "/nonexistent/dir"}, "is not a directory"),
        ({"command": "x", "endpoint": "127.0.0.1:80"}, "needs key"),
        ({"command": "x", "timeout": "0"}, "must be >="),
        ({"command": "x", "bogus": "1"}, "unknown option"),
    ],
)
def test_usage_errors(options: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        BridgeAdapter(options)


# -- the protocol's schema and its documentation --------------------------------------------------


def test_message_from_json_keeps_what_it_was_given() -> None:
    message = message_from_json(
        {
            "action": "enter",
            "clientId": "a",
            "connectionId": "c",
            "data": {"$binary": "AAE="},
            "timestamp": 5,
            "id": "c:0:0",
        }
    )
    assert (message.action, message.data, message.id) == (Action.ENTER, b"\x00\x01", "c:0:0")
    odd = message_from_json({"action": "bogus"})
    assert odd.action == "bogus" and odd.client_id is None and odd.id is None


def _doc_lines() -> list[tuple[str, dict]]:
    lines = []
    fence = None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
            continue
        match = re.match(r"^(->|<-)\s+(\{.*\})\s*$", line)
        if fence == "jsonl" and match:
            lines.append((match.group(1), json.loads(match.group(2))))
    return lines


def test_every_example_in_the_docs_is_valid_bridge_protocol() -> None:
    lines = _doc_lines()
    assert len(lines) > 20
    ops: dict[int, str] = {}
    for direction, obj in lines:
        problem = validate_message(obj, outgoing=direction == "->")
        assert problem is None, (obj, problem)
        if direction == "->":
            ops[obj["id"]] = obj["op"]
        elif "id" in obj and obj["ok"]:
            assert validate_result(ops[obj["id"]], obj["result"]) is None, obj


def test_the_docs_show_every_operation_and_the_event() -> None:
    lines = _doc_lines()
    from presence_conformance import spec

    documented = {obj["op"] for d, obj in lines if d == "->"}
    schema_ops = set(spec.schema("bridge")["$defs"]["request"]["properties"]["op"]["enum"])
    assert documented == schema_ops
    assert any("event" in obj for d, obj in lines if d == "<-")
    assert any(obj.get("ok") is False for d, obj in lines if d == "<-")


def test_any_data_reaches_the_child_so_the_sdk_can_refuse_it() -> None:
    for data in ("x", {"$binary": "AA=="}, [1], {"a": 1}, None, 5, True):
        line = {"id": 1, "op": "enter", "connection": "c1", "channel": "r", "data": data}
        assert validate_message(line, outgoing=True) is None


@pytest.mark.parametrize(
    "line",
    [
        {"id": 0, "op": "hello"},
        {"id": 1, "op": "enter", "connection": "c1"},
        {"id": 1, "op": "teleport"},
        {"id": 1, "op": "subscribe", "connection": "c1", "channel": "r", "subscription": "s1"},
    ],
)
def test_bad_requests_are_refused_by_the_schema(line: dict) -> None:
    assert validate_message(line, outgoing=True) is not None


@pytest.mark.parametrize(
    "line",
    [
        {"id": 1, "ok": True},
        {"id": 1, "ok": False},
        {"id": 1, "ok": False, "error": {"code": 40003}},
        {"event": "presence", "subscription": "s1"},
        {"event": "presence", "subscription": "s1", "message": "enter"},
    ],
)
def test_bad_responses_and_events_are_refused_by_the_schema(line: dict) -> None:
    assert validate_message(line, outgoing=False) is not None

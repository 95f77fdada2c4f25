"""The runner: scenarios pass against the reference; a hanging adapter times out, a crashing one
is an error, a malformed one fails message.schema; the run goes on; results are written."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from presence_conformance.harness.adapter import ALL_FEATURES, Feature
from presence_conformance.harness.adapters.reference import (
    ReferenceAdapter,
    ReferenceConnection,
    ReferencePresence,
)
from presence_conformance.harness.results import CaseResult, Outcome, RunResult
from presence_conformance.harness.run.runner import RunSettings, run_scenario, run_scenarios
from presence_conformance.harness.run.state import CaseState
from presence_conformance.harness.session import load_suite, select_scenarios
from support import make_scenario, op, run_case

from presence_conformance import spec

FAST = RunSettings(op_timeout=0.3, quiet_period=0.02)


scenario = partial(make_scenario, channels=("room", "other"), case_id="runner/x")


async def run(case: Any, adapter: Any = None, settings: RunSettings = FAST) -> CaseResult:
    return await run_case(case, adapter or ReferenceAdapter({"leave_grace": "0.02"}), settings)


def assert_pass(result: CaseResult) -> None:
    assert result.outcome is Outcome.PASS, (result.error, [v.to_json() for v in result.violations])
    assert result.violations == [] and result.infos == []


EVERYTHING = scenario(
    [
        op("subscribe", "bob", listener="all"),
        op("subscribe", "bob", listener="joins", actions=["enter", "leave"]),
        op("subscribe", "bob", listener="updates", actions="update"),
        op("enter", "alice", data={"mood": "happy"}, id="e1"),
        op("update", "alice", data="typing"),
        op("update", "alice"),
        op(
            "get",
            "bob",
            client_id="alice",
            connection_id={"of": "alice"},
            expect=[{"client": "alice", "data": None}],
        ),
        op("enter", "alice", data="again"),
        op("leave", "alice", data="bye", id="left"),
        op("leave", "alice"),
        op("update", "alice", data=[1, "two", {"3": None}]),
        op("enter", "bob", "other", data=b"\x00\x01\xfe"),
        op("enter", "carol", data="😀 ünïcode"),
        op("enter", "anon", expect_error=[91000]),
        op("enter", "reader", expect_error=40160),
        op("enter", "wild", expect_error=[91000, 40012]),
        op("enter", "alice", "other", data=42),
        op("history", "bob", start={"at": "e1"}, end={"at": "left"}, direction="forwards"),
        op("history", "bob", limit=2, pages="all"),
        op("history", "bob", limit=0),
        op("history", "bob", direction="sideways"),
        op("subscribe", "bob", listener="bad", actions="sideways", expect_error=[40003]),
        op("unsubscribe", "bob", listener="joins", actions=["leave"]),
        op("unsubscribe", "bob", actions="update"),
        op("unsubscribe", "bob", listener="all", actions="present"),
        op("get", "carol", wait_for_sync=False),
        op("sync_complete", "carol", "other"),
        op("sync_complete", "bob", expect=True),
        {
            "concurrently": [
                op("leave", "alice"),
                op("update", "carol", data="c2"),
                op("get", "bob", "other"),
            ]
        },
        {"drop": {"client": "carol"}},
        op("get", "bob", expect=[]),
        {"close": {"client": "bob"}},
        {"connect": {"client": "late"}},
        op("get", "late", "other"),
        {"connect": {"client": "carol"}},
        op("enter", "carol", data="back"),
        op("unsubscribe", "alice"),
        {
            "expect_events": {
                "listener": "updates",
                "events": [
                    {"action": "update", "client": "alice", "data": "typing"},
                    {"action": "update", "client": "alice", "data": None},
                    {
                        "action": ["update", "enter"],
                        "client": "alice",
                        "data": [1, "two", {"3": None}],
                    },
                ],
            }
        },
    ],
    clients={
        "alice": {},
        "bob": {},
        "carol": {},
        "anon": {"client_id": None},
        "reader": {"capability": {"*": ["subscribe"]}},
        "wild": {"client_id": "*"},
        "late": {"connect": "later"},
    },
)


def test_everything_passes_against_the_reference() -> None:
    result = asyncio.run(run(EVERYTHING))
    assert_pass(result)
    assert result.history and result.duration > 0
    assert {e["type"] for e in result.history} >= {"invoke", "ok", "fail", "event"}


EDGES = {
    "subscribed twice": [
        op("subscribe", "bob", listener="L"),
        op("subscribe", "bob", listener="L"),
        op("enter", "alice"),
        op("leave", "alice"),
    ],
    "subscribed to all and to enter": [
        op("subscribe", "bob", listener="L"),
        op("subscribe", "bob", listener="L", actions="enter"),
        op("enter", "alice"),
        op("update", "alice"),
    ],
    "unsubscribe(action, all-actions listener)": [
        op("subscribe", "bob", listener="L"),
        op("unsubscribe", "bob", listener="L", actions="update"),
        op("enter", "alice"),
        op("update", "alice", data="x"),
        op("leave", "alice"),
    ],
    "unsubscribe(action)": [
        op("subscribe", "bob", listener="L", actions=["enter", "update"]),
        op("subscribe", "bob", listener="M", actions="update"),
        op("unsubscribe", "bob", actions="update"),
        op("enter", "alice"),
        op("update", "alice", data="x"),
    ],
    "update while absent": [
        op("subscribe", "bob", listener="L"),
        op("subscribe", "bob", listener="E", actions="enter"),
        op("update", "alice", data="x"),
        op("get", "bob"),
    ],
    "enter while present, filtered": [
        op("subscribe", "bob", listener="U", actions="update"),
        op("subscribe", "bob", listener="E", actions="enter"),
        op("enter", "alice"),
        op("enter", "alice", data="y"),
    ],
    "leave while absent": [
        op("subscribe", "bob", listener="L"),
        op("leave", "alice"),
        op("get", "bob"),
    ],
    "present filter": [
        op("enter", "alice", data="a"),
        op("subscribe", "bob", listener="P", actions="present"),
        op("subscribe", "carol", listener="Q", actions=["enter"]),
    ],
    "close, observer without listener": [
        op("enter", "alice"),
        op("get", "bob"),
        {"close": {"client": "alice"}},
        op("get", "bob", expect=[]),
    ],
    "close, then a fresh get": [
        op("enter", "alice"),
        {"close": {"client": "alice"}},
        op("get", "bob", expect=[]),
    ],
    "history pages of one": [
        *(op("update", "alice", data=str(i)) for i in range(5)),
        op("history", "bob", limit=1, pages="all", expect_count=5),
        op("history", "bob", limit=2, direction="forwards"),
    ],
    "history of nothing": [op("history", "bob"), op("history", "bob", start=0, end=1)],
    "own echo": [op("subscribe", "alice", listener="L"), op("enter", "alice"), op("get", "alice")],
    "one clientId, two connections": [
        op("enter", "alice", data="1"),
        op("enter", "alice2", data="2"),
        op("leave", "alice"),
        op("get", "bob", client_id="alice"),
    ],
    "unsubscribe all": [
        op("subscribe", "bob", listener="L"),
        op("subscribe", "bob", listener="M"),
        op("unsubscribe", "bob"),
        op("enter", "alice"),
    ],
    "unsubscribe one of two": [
        op("subscribe", "bob", listener="L"),
        op("subscribe", "bob", listener="M"),
        op("unsubscribe", "bob", listener="L"),
        op("enter", "alice"),
    ],
    "drop on two channels": [
        op("subscribe", "bob", listener="L"),
        op("enter", "alice"),
        op("enter", "alice", "other"),
        op("get", "carol", "other"),
        {"drop": {"client": "alice"}},
        op("get", "carol", "other", expect=[]),
    ],
    "reconnect": [
        op("enter", "alice"),
        {"drop": {"client": "alice"}},
        {"connect": {"client": "alice"}},
        op("subscribe", "alice", listener="L"),
        op("enter", "bob"),
    ],
    "wildcard clientId": [
        op("enter", "wild", expect_error=91000),
        op("subscribe", "wild", listener="W"),
        op("get", "wild"),
        op("history", "wild"),
    ],
    "subscribe-only capability": [
        op("subscribe", "reader", listener="R"),
        op("enter", "alice"),
        op("enter", "reader", expect_error=40160),
        op("get", "reader"),
    ],
    "syncComplete before attach": [
        op("sync_complete", "bob"),
        op("get", "bob"),
        op("sync_complete", "bob", expect=True),
    ],
    "get without waiting for sync": [
        op("enter", "alice"),
        op("get", "bob", wait_for_sync=False),
        op("get", "bob", wait_for_sync=False),
    ],
    "size limit": [
        op("subscribe", "bob", listener="L"),
        op("enter", "alice", data={"$repeat": "x", "times": 60000}),
        op("update", "alice", data={"$repeat": "y", "times": 70000}, expect_error=40009),
    ],
    "numbers and booleans refused": [
        op("enter", "alice", data=42),
        op("enter", "alice", data=True),
        op("enter", "alice", data=1.5),
    ],
    "concurrent reads": [
        op("enter", "alice"),
        {"concurrently": [op("get", "bob"), op("get", "carol"), op("history", "alice")]},
    ],
    "concurrent subscribes": [
        {
            "concurrently": [
                op("subscribe", "bob", listener="L"),
                op("subscribe", "carol", listener="M"),
                op("enter", "alice", "other"),
            ]
        },
        op("enter", "alice"),
    ],
}
EDGE_CLIENTS = {
    "alice": {},
    "bob": {},
    "carol": {},
    "alice2": {"client_id": "alice"},
    "wild": {"client_id": "*"},
    "reader": {"capability": {"*": ["subscribe"]}},
}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_no_false_alarms_on_edge_cases(name: str) -> None:
    result = asyncio.run(run(scenario(EDGES[name], clients=EDGE_CLIENTS)))
    assert_pass(result)


def test_drop_without_listener_waits_by_get() -> None:
    case = scenario(
        [
            op("enter", "alice"),
            op("get", "bob"),
            {"drop": {"client": "alice"}},
            op("get", "bob", expect=[]),
        ]
    )
    result = asyncio.run(run(case, ReferenceAdapter({"leave_grace": "0.05"})))
    assert_pass(result)
    assert any(e["f"] == "get (watch drop)" for e in result.history)


def test_drop_nobody_attached_waits_the_grace() -> None:
    case = scenario(
        [op("enter", "alice"), {"drop": {"client": "alice"}}, op("get", "bob", expect=[])]
    )
    started = time.monotonic()
    result = asyncio.run(run(case, ReferenceAdapter({"leave_grace": "0.05"})))
    assert_pass(result)
    assert time.monotonic() - started >= 0.05


def test_channels_are_unique_per_case() -> None:
    async def main() -> set[str]:
        adapter = ReferenceAdapter()
        await adapter.start()
        case = scenario([op("enter", "alice")])
        for _ in range(2):
            assert_pass(await run_scenario(case, adapter, FAST))
        names = set(adapter.service.model.channels())
        await adapter.stop()
        return names

    names = asyncio.run(main())
    assert len(names) == 2 and all(n.endswith("-room") for n in names)


# -- adapters that misbehave -----------------------------------------------------------------------


def adapter_with(presence: type[ReferencePresence]) -> ReferenceAdapter:
    conn_cls = type("Conn", (ReferenceConnection,), {"presence_class": presence})
    cls = type("Broken", (ReferenceAdapter,), {"connection_class": conn_cls})
    return cls()


class HangsOnGet(ReferencePresence):
    """get(clientId) never answers."""

    async def get(self, client_id: Any = None, *args: Any, **kwargs: Any) -> Any:
        if client_id is not None:
            await asyncio.Event().wait()
        return await super().get(client_id, *args, **kwargs)


class RaisesOnUpdate(ReferencePresence):
    async def update(self, data: Any = None) -> None:
        raise RuntimeError("the SDK crashed")


class MalformedGet(ReferencePresence):
    async def get(self, *args: Any, **kwargs: Any) -> Any:
        members = await super().get(*args, **kwargs)
        return [
            {
                "action": "present",
                "clientId": m.client_id,
                "connectionId": m.connection_id,
                "data": m.data,
                "timestamp": "yesterday",
            }
            for m in members
        ]


class CountingConnection(ReferenceConnection):
    closed: list[str] = []

    async def close(self) -> None:
        CountingConnection.closed.append(self.id)
        await super().close()


CASE = scenario(
    [
        op("enter", "alice", data="x"),
        op("update", "alice", data="y"),
        op("get", "bob", client_id="alice"),
    ],
    case_id="runner/steps",
)


def test_hanging_adapter_times_out_naming_the_step() -> None:
    adapter = adapter_with(HangsOnGet)
    started = time.monotonic()
    result = asyncio.run(run(CASE, adapter))
    assert result.outcome is Outcome.TIMEOUT
    assert result.error.startswith("steps[2] (get bob room): get did not complete within 0.3s")
    assert result.history[-1]["type"] in ("timeout", "ok", "info", "invoke")
    assert any(e["type"] == "timeout" for e in result.history)
    assert time.monotonic() - started < 3


def test_run_goes_on_after_a_timeout() -> None:
    other = scenario([op("enter", "alice")], case_id="runner/other")
    seen: list[str] = []

    async def main() -> RunResult:
        adapter = adapter_with(HangsOnGet)
        await adapter.start()
        try:
            return await run_scenarios(
                [CASE, other], adapter, FAST, on_result=lambda c: seen.append(c.case_id)
            )
        finally:
            await adapter.stop()

    run_result = asyncio.run(main())
    assert [c.outcome for c in run_result.cases] == [Outcome.TIMEOUT, Outcome.PASS]
    assert seen == ["runner/steps", "runner/other"]


def test_crashing_adapter_is_an_error() -> None:
    result = asyncio.run(run(CASE, adapter_with(RaisesOnUpdate)))
    assert result.outcome is Outcome.ERROR
    assert "steps[1] (update alice room)" in result.error and "RuntimeError" in result.error
    assert result.history


def test_malformed_values_fail_message_schema() -> None:
    result = asyncio.run(run(CASE, adapter_with(MalformedGet)))
    assert result.outcome is Outcome.FAIL
    requirements = {v.requirement for v in result.violations}
    assert "message.schema" in requirements and "message.timestamp" in requirements
    schema = next(v for v in result.violations if v.requirement == "message.schema")
    assert "timestamp" in schema.message and schema.history_index is not None


def test_connections_closed_even_after_an_error() -> None:
    CountingConnection.closed = []
    conn_cls = type("Conn", (CountingConnection,), {"presence_class": RaisesOnUpdate})
    adapter = type("Broken", (ReferenceAdapter,), {"connection_class": conn_cls})()
    result = asyncio.run(run(CASE, adapter))
    assert result.outcome is Outcome.ERROR
    assert len(CountingConnection.closed) == 2


def test_unsupported_feature() -> None:
    adapter = type(
        "NoHistory", (ReferenceAdapter,), {"features": ALL_FEATURES - {Feature.HISTORY}}
    )()
    result = asyncio.run(run(scenario([op("history", "bob")]), adapter))
    assert result.outcome is Outcome.UNSUPPORTED
    assert "history" in result.error and result.history == []


def test_scenario_expecting_an_error_the_model_does_not_raise() -> None:
    result = asyncio.run(run(scenario([op("enter", "alice", expect_error=40160)])))
    assert result.outcome is Outcome.ERROR
    assert "the reference model accepts" in result.error


def test_results_written_and_valid(tmp_path: Path) -> None:
    async def main() -> RunResult:
        adapter = ReferenceAdapter({"leave_grace": "0.02"})
        await adapter.start()
        try:
            return await run_scenarios([EVERYTHING, CASE], adapter, FAST)
        finally:
            await adapter.stop()

    run_result = asyncio.run(main())
    path = tmp_path / "results.json"
    path.write_text(json.dumps(run_result.to_json()), encoding="utf-8")
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert spec.validate("results", loaded) == []
    again = RunResult.from_json(loaded)
    assert [c.case_id for c in again.cases] == ["runner/x", "runner/steps"]
    assert again.cases[0].history == run_result.cases[0].history


def test_twenty_steps_are_fast() -> None:
    steps = [
        op("subscribe", "bob", listener="L"),
        op("subscribe", "carol", listener="M", actions=["enter", "leave"]),
    ]
    for n in range(6):
        steps += [
            op("enter", "alice", data={"n": n}),
            op("update", "alice", data=str(n)),
            op("leave", "alice"),
        ]
    steps += [op("get", "bob"), op("get", "carol")]
    case = scenario(steps, clients={"alice": {}, "bob": {}, "carol": {}})

    async def main() -> float:
        adapter = ReferenceAdapter()
        await adapter.start()
        timings = []
        for _ in range(10):
            started = time.perf_counter()
            result = await run_scenario(case, adapter)
            timings.append(time.perf_counter() - started)
            assert_pass(result)
        await adapter.stop()
        return sorted(timings)[len(timings) // 2]

    median = asyncio.run(main())
    print(f"20-step scenario against the reference: median {median * 1000:.1f} ms")
    assert median < 0.25  # ~10 ms on an idle machine; generous for loaded CI runners


def test_a_finished_case_leaves_no_cyclic_garbage() -> None:
    """`CaseDriver.release` breaks the cycles of a case: reference counting frees it at once,
    not the cyclic garbage collector (which, case after case, found and freed every one)."""
    scenarios = select_scenarios(
        load_suite(), ["history/*", "error/*", "subscribe/*", "disconnect/*", "client/*"]
    )

    async def main() -> list[CaseResult]:
        adapter = ReferenceAdapter({"leave_grace": "0.02"})
        await adapter.start()
        try:
            return [await run_scenario(s, adapter, FAST) for s in scenarios]
        finally:
            await adapter.stop()

    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        results = asyncio.run(main())
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, CaseState)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert len(results) > 50
    assert not {r.outcome for r in results} & {Outcome.ERROR, Outcome.TIMEOUT}
    assert left == [], f"{len(left)} of {len(results)} cases were left to the cyclic collector"

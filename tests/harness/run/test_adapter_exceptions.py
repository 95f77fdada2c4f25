"""Every exception an adapter raises (BaseException included: SystemExit, KeyboardInterrupt,
GeneratorExit, a CancelledError of its own) from an operation, connect, close, drop, quiesce or a
history page becomes that case's `error` with a message naming it; a cancellation of the run
itself still propagates."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from presence_conformance.harness.adapters.reference import (
    ReferenceAdapter,
    ReferenceConnection,
    ReferencePresence,
)
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.runner import RunSettings, run_scenario
from presence_conformance.harness.scenario import scenario_from_dict

FAST = RunSettings(op_timeout=0.5, quiet_period=0.02)

RAISED = [
    SystemExit(0),
    SystemExit(3),
    KeyboardInterrupt(),
    GeneratorExit(),
    asyncio.CancelledError(),
    RuntimeError("plain"),
]


def _scenario(steps: list[dict]) -> Any:
    return scenario_from_dict(
        {
            "requirements": ["enter.adds-member"],
            "clients": {"alice": {}, "bob": {}},
            "channels": ["room"],
            "steps": steps,
        },
        case_id="exceptions/x",
    )


ENTER = _scenario(
    [
        {"subscribe": {"client": "bob", "channel": "room", "listener": "all"}},
        {"enter": {"client": "alice", "channel": "room", "data": "hi"}},
        {"get": {"client": "bob", "channel": "room"}},
    ]
)
CLOSE = _scenario(
    [{"enter": {"client": "alice", "channel": "room"}}, {"close": {"client": "alice"}}]
)
DROP = _scenario([{"enter": {"client": "alice", "channel": "room"}}, {"drop": {"client": "alice"}}])
HISTORY = _scenario(
    [
        {"enter": {"client": "alice", "channel": "room"}},
        {"history": {"client": "bob", "channel": "room"}},
    ]
)


def _adapter(where: str, exc: BaseException) -> ReferenceAdapter:
    """A reference adapter that raises `exc` from `where`."""

    class Presence(ReferencePresence):
        async def enter(self, data: Any = None) -> None:
            if where == "enter":
                raise exc
            await super().enter(data)

        async def history(self, *args: Any, **kwargs: Any) -> Any:
            page = await super().history(*args, **kwargs)
            if where == "has_next":
                page.has_next = _raiser(exc)  # type: ignore[method-assign]
            return page

    class Connection(ReferenceConnection):
        presence_class = Presence

        async def close(self) -> None:
            if where == "close":
                raise exc
            await super().close()

        async def drop(self) -> None:
            if where == "drop":
                raise exc
            await super().drop()

    class Adapter(ReferenceAdapter):
        connection_class = Connection

        async def connect(self, client_id: Any, capability: Any = None) -> Any:
            if where == "connect":
                raise exc
            return await super().connect(client_id, capability)

        async def quiesce(self) -> bool:
            if where == "quiesce":
                raise exc
            return await super().quiesce()

    return Adapter({"leave_grace": "0.02"})


def _raiser(exc: BaseException) -> Any:
    def has_next() -> bool:
        raise exc

    return has_next


async def _run(scenario: Any, adapter: ReferenceAdapter) -> Any:
    await adapter.start()
    try:
        return await run_scenario(scenario, adapter, FAST)
    finally:
        await adapter.stop()


@pytest.mark.parametrize("exc", RAISED, ids=lambda e: f"{type(e).__name__}{e.args}")
@pytest.mark.parametrize(
    ("where", "scenario"),
    [
        ("enter", ENTER),
        ("connect", ENTER),
        ("close", CLOSE),
        ("drop", DROP),
        ("quiesce", ENTER),
        ("has_next", HISTORY),
    ],
    ids=["enter", "connect", "close", "drop", "quiesce", "has_next"],
)
def test_an_adapter_exception_is_the_case_error(
    where: str, scenario: Any, exc: BaseException
) -> None:
    result = asyncio.run(_run(scenario, _adapter(where, exc)))
    if where == "quiesce" and isinstance(exc, Exception):
        # an Exception from quiesce() means "cannot tell": the quiet period is watched instead
        assert result.outcome is Outcome.PASS, result.error
        return
    assert result.outcome is Outcome.ERROR, (result.outcome, result.error)
    assert type(exc).__name__ in (result.error or ""), result.error
    assert "internal error" not in (result.error or "")


def test_the_run_goes_on_after_an_adapter_system_exit() -> None:
    async def main() -> list[Outcome]:
        adapter = _adapter("enter", SystemExit(0))
        await adapter.start()
        try:
            first = await run_scenario(ENTER, adapter, FAST)
            second = await run_scenario(CLOSE, adapter, FAST)
        finally:
            await adapter.stop()
        return [first.outcome, second.outcome]

    # the second case enters too: an error again, but it ran
    assert asyncio.run(main()) == [Outcome.ERROR, Outcome.ERROR]


def test_an_exception_in_a_concurrently_block_is_the_case_error() -> None:
    scenario = _scenario(
        [
            {
                "concurrently": [
                    {"enter": {"client": "alice", "channel": "room"}},
                    {"enter": {"client": "bob", "channel": "room"}},
                ]
            }
        ]
    )
    result = asyncio.run(_run(scenario, _adapter("enter", KeyboardInterrupt())))
    assert result.outcome is Outcome.ERROR and "KeyboardInterrupt" in (result.error or "")


def test_a_cancellation_of_the_run_still_propagates() -> None:
    """The task running the case is cancelled from outside while an adapter call is pending:
    the CancelledError reaches the caller, it is not turned into the case's error."""

    class Hanging(ReferencePresence):
        async def enter(self, data: Any = None) -> None:
            await asyncio.sleep(30)

    class Connection(ReferenceConnection):
        presence_class = Hanging

    class Adapter(ReferenceAdapter):
        connection_class = Connection

    async def main() -> None:
        adapter = Adapter({"leave_grace": "0.02"})
        await adapter.start()
        try:
            task = asyncio.ensure_future(run_scenario(ENTER, adapter, RunSettings(op_timeout=20)))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await adapter.stop()

    asyncio.run(main())

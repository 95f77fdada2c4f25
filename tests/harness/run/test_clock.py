"""The run's time limits do not count the time the harness's thread waited for a CPU
(`presence_conformance.harness.run.clock`), and still run out for a slow implementation."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import pytest
from presence_conformance.harness.adapters.reference import ReferenceAdapter, ReferenceConnection
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run import clock
from presence_conformance.harness.run.poll import poll_until
from presence_conformance.harness.run.runner import RunSettings, run_scenario
from presence_conformance.harness.scenario import scenario_from_dict


class FakeStarvation:
    """`clock.starved` that reports `per_read` more seconds of starvation at each read, up to
    `total`."""

    def __init__(self, per_read: float, total: float) -> None:
        self.per_read, self.total, self.value = per_read, total, 0.0

    def __call__(self, fresh: bool = True) -> float:
        value = self.value
        self.value = min(self.total, self.value + self.per_read)
        return value


def test_starved_is_this_threads_run_queue_wait() -> None:
    first = clock.starved()
    assert first >= 0.0
    if sys.platform.startswith("linux"):
        assert first > 0.0  # a thread that ran has waited for a CPU at least once
    assert clock.starved() >= first
    assert clock.starved(fresh=False) >= first  # a recent reading, or a new one


def test_a_reading_is_reused_for_50_ms_only_when_not_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    real_open = open

    def counting_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    clock.starved()
    clock.starved(fresh=False)
    assert len(reads) == 1 or not sys.platform.startswith("linux")
    clock.starved()
    assert len(reads) == 2 or not sys.platform.startswith("linux")
    time.sleep(0.06)
    clock.starved(fresh=False)
    assert len(reads) == 3 or not sys.platform.startswith("linux")


def test_a_deadline_is_lengthened_by_the_starvation_since_it_was_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clock, "starved", FakeStarvation(0.2, 0.2))

    async def main() -> None:
        deadline = clock.Deadline(0.05)
        await asyncio.sleep(0.06)
        assert deadline.remaining() > 0.1  # 0.2 s starved: not passed
        await asyncio.sleep(0.25)
        assert deadline.passed()  # starvation no longer grows: the limit holds

    asyncio.run(main())


@pytest.mark.parametrize("starvation", [0.0, 0.3])
def test_timeout_waits_out_the_starvation_only(
    monkeypatch: pytest.MonkeyPatch, starvation: float
) -> None:
    monkeypatch.setattr(clock, "starved", FakeStarvation(starvation, starvation))

    async def main() -> bool:
        try:
            async with clock.timeout(0.1):
                await asyncio.sleep(0.25)
        except TimeoutError:
            return False
        return True

    began = time.monotonic()
    assert asyncio.run(main()) is (starvation > 0)
    assert time.monotonic() - began < 1.0


def test_timeout_expiry_leaves_the_task_uncancelled_and_an_outside_cancel_propagates() -> None:
    async def expires() -> int:
        with pytest.raises(TimeoutError):
            async with clock.timeout(0.01):
                await asyncio.sleep(1)
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # the task can wait again: the cancellation was taken back
        return task.cancelling()

    async def cancelled_from_outside() -> None:
        async def body() -> None:
            async with clock.timeout(5):
                await asyncio.sleep(1)

        task = asyncio.ensure_future(body())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def within_time() -> str:
        async with clock.timeout(1):
            await asyncio.sleep(0)
        return "done"

    assert asyncio.run(expires()) == 0
    asyncio.run(cancelled_from_outside())
    assert asyncio.run(within_time()) == "done"


def test_timeouts_in_force_together_each_expire_at_their_own_deadline() -> None:
    """One watchdog per loop serves every timeout: a later, shorter one still expires on time,
    and one that ended early leaves nothing behind for the next."""

    async def guarded(seconds: float, work: float) -> str:
        try:
            async with clock.timeout(seconds):
                await asyncio.sleep(work)
        except TimeoutError:
            return "timeout"
        return "done"

    async def main() -> tuple[list[str], float, str, str]:
        loop = asyncio.get_running_loop()
        began = loop.time()
        long = asyncio.ensure_future(guarded(1.0, 0.15))
        await asyncio.sleep(0)  # the long one is in force first
        short = await guarded(0.05, 0.5)
        short_took = loop.time() - began
        assert await guarded(0.02, 0) == "done"  # ends before its deadline
        after = await guarded(0.2, 0.06)  # outlives the first one's deadline: no timeout
        return [short, await long], short_took, after, await guarded(0.03, 0.2)

    outcomes, short_took, after, last = asyncio.run(main())
    assert outcomes == ["timeout", "done"]
    assert short_took < 0.4
    assert after == "done"
    assert last == "timeout"


def test_poll_until_gives_up_after_its_deadline_plus_starvation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clock, "starved", FakeStarvation(0.15, 0.15))

    async def main() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()

        async def never() -> bool:
            return False

        assert not await poll_until(never, began + 0.05, 0.01)
        return loop.time() - began

    assert 0.2 <= asyncio.run(main()) < 1.0


SCENARIO = scenario_from_dict(
    {
        "description": "Alice enters; Bob hears it.",
        "requirements": ["enter.adds-member"],
        "clients": {"alice": {"client_id": "alice"}, "bob": {"client_id": "bob"}},
        "channels": ["room"],
        "steps": [
            {"subscribe": {"client": "bob", "channel": "room", "listener": "L"}},
            {"enter": {"client": "alice", "channel": "room", "data": "a"}},
        ],
    }
)


class StallsOnEnter(ReferenceAdapter):
    """The reference, whose event loop does not run for `stall` seconds during each enter (as
    when the process waits for a CPU; `time.sleep` stands in for it)."""

    stall = 0.6

    class Connection(ReferenceConnection):
        def channel(self, name: str) -> Any:
            channel = super().channel(name)
            enter = channel.presence.enter

            async def stalled_enter(data: Any = None) -> Any:
                time.sleep(StallsOnEnter.stall)
                await asyncio.sleep(0.01)  # the loop's timers run now: the op's deadline has passed
                return await enter(data)

            channel.presence.enter = stalled_enter
            return channel

    connection_class = Connection


@pytest.mark.parametrize("starved", [True, False])
def test_a_stall_counted_as_starvation_is_no_timeout(
    monkeypatch: pytest.MonkeyPatch, starved: bool
) -> None:
    """With the stall reported as time waiting for a CPU, the case passes under a 0.3 s
    operation timeout; the same stall not reported (a slow implementation) is a timeout."""
    stalls = FakeStarvation(StallsOnEnter.stall if starved else 0.0, 10.0)
    monkeypatch.setattr(clock, "starved", stalls)

    async def main() -> Any:
        adapter = StallsOnEnter()
        await adapter.start()
        try:
            return await run_scenario(SCENARIO, adapter, RunSettings(op_timeout=0.3))
        finally:
            await adapter.stop()

    case = asyncio.run(main())
    if starved:
        assert case.outcome is Outcome.PASS, case.error
    else:
        assert case.outcome is Outcome.TIMEOUT, case.error

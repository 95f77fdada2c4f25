"""`Deliveries`: the events each listener must receive, as the model says, and the wait for them.

The steps hand the model's outcomes to `expect`; the listener callbacks made by `callback`
record each event and count it; `wait` waits (bounded) until every listener has what the model
requires of it, and notes in the history what never came.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from presence_conformance.harness.record.records import (
    EventOrigin,
    Expected,
    ListenerKey,
    ListenerRecord,
    OpRecord,
    Seen,
)
from presence_conformance.harness.run.clock import Deadline
from presence_conformance.harness.run.state import CaseState
from presence_conformance.reference_impl.model import Outcome as ModelOutcome
from presence_conformance.reference_impl.types import Action

__all__ = ["Deliveries"]


class Deliveries:
    """Expected deliveries of one case, counted per (listener, member)."""

    def __init__(self, case: CaseState) -> None:
        self.case = case
        self.wakeup = asyncio.Event()
        self.required: Counter[tuple[ListenerKey, str]] = Counter()
        self.got: Counter[tuple[ListenerKey, str]] = Counter()
        self.waived: Counter[tuple[ListenerKey, str]] = Counter()
        self.unsatisfied: set[tuple[ListenerKey, str]] = set()
        self.received_total = 0  # events received by every listener of the case
        self._by_op: dict[int, list[Expected]] = {}  # id(op) -> deliveries it added

    def expect(self, outcome: ModelOutcome, step: int | None, op: OpRecord | None = None) -> None:
        """Record the deliveries of a model outcome as expected (of `op`, when given)."""
        record = self.case.record
        added = self._by_op.setdefault(id(op), []) if op is not None else []
        for delivery in outcome.deliveries:
            event = delivery.event
            if event.action is Action.PRESENT:
                origin = EventOrigin("present", step, delivery.channel)
            else:
                origin = record.origins.get(event.model_id) or EventOrigin(
                    event.action.value, step, delivery.channel
                )
            key = (delivery.connection_id, delivery.listener)
            expected = Expected(
                event, origin, key, delivery.channel, delivery.min_count, delivery.max_count, step
            )
            record.expected.append(expected)
            added.append(expected)
            listener = record.listeners.get(key)
            if listener is not None:
                listener.expected.append(expected)
            if delivery.min_count:
                pair = (key, event.member_key)
                self.required[pair] += delivery.min_count
                if self.got[pair] + self.waived[pair] < self.required[pair]:
                    self.unsatisfied.add(pair)

    def withdraw(self, op: OpRecord, void: set[str]) -> None:
        """Forget the deliveries `op` added and those of the `void` events: the implementation
        refused the operation, so no check expects them anywhere."""
        record = self.case.record
        dropped = self._by_op.pop(id(op), [])
        dropped_ids = {id(e) for e in dropped}
        dropped += [e for e in record.expected if e.event.id in void and id(e) not in dropped_ids]
        if not dropped:
            return
        gone = {id(e) for e in dropped}
        record.expected = [e for e in record.expected if id(e) not in gone]
        for rec in record.listeners.values():
            rec.expected = [e for e in rec.expected if id(e) not in gone]
        for expected in dropped:
            if expected.min_count:
                pair = (expected.listener, expected.event.member_key)
                self.required[pair] -= expected.min_count
                if self.got[pair] + self.waived[pair] >= self.required[pair]:
                    self.unsatisfied.discard(pair)

    def narrow(self, expected: Expected, min_count: int, max_count: int) -> None:
        """Change what one expected delivery requires, once the runner knows more (the order
        in which racing operations took effect): the waits follow its new `min_count`."""
        pair = (expected.listener, expected.event.member_key)
        self.required[pair] += min_count - expected.min_count
        expected.min_count, expected.max_count = min_count, max_count
        if self.got[pair] + self.waived[pair] < self.required[pair]:
            self.unsatisfied.add(pair)
        else:
            self.unsatisfied.discard(pair)

    def callback(self, rec: ListenerRecord) -> Callable[[Any], None]:
        """The callable given to the adapter for listener `rec`: records and counts each event
        (brought back to the case's loop when the adapter calls it from another thread)."""
        case = self.case
        process = f"{rec.client}/{rec.name}"

        def listener(message: Any) -> None:
            if threading.get_ident() != case.thread:
                # through the record, not this closure's own name: no cycle (CaseDriver.release)
                if rec.callback is not None:
                    case.loop.call_soon_threadsafe(rec.callback, message)
                return
            if not case.recording:
                return
            index = len(case.history)
            seen = Seen.read(message, "event", index, case.current_step, rec.channel, rec.key)
            case.history.record("event", process, "event", seen.json, case.current_step)
            rec.received.append(seen)
            case.record.seen.append(seen)
            pair = (rec.key, seen.member_key)
            self.received_total += 1
            self.got[pair] += 1
            if pair in self.unsatisfied and (
                self.got[pair] + self.waived[pair] >= self.required[pair]
            ):
                self.unsatisfied.discard(pair)
            self.wakeup.set()

        return listener

    async def wait_until(
        self, done: Callable[[], bool], timeout: float, settle: bool = True
    ) -> bool:
        """Wait until `done()` (re-checked after each event received), at most `timeout`.

        With `settle` (and `RunSettings.settle`, and an adapter that can `quiesce()`), give up as
        soon as two quiesced checks in a row found `done()` false with no event received between
        them: everything the implementation produced has been delivered, and nothing more comes
        (not for events that a timer produces later, such as a drop's leaves: `settle=False`)."""
        if done():
            return True
        case = self.case
        deadline = Deadline(timeout, case.loop)  # time starved of a CPU not counted
        settling = settle and case.settings.settle and case.can_quiesce is not False
        quiet_mark: int | None = None  # events received when the last quiesced check failed
        while True:
            self.wakeup.clear()
            if done():
                return True
            remaining = deadline.remaining()
            if remaining <= 0:
                return done()
            slice_ = min(remaining, case.settings.poll_interval) if settling else remaining
            try:
                async with asyncio.timeout(slice_):
                    await self.wakeup.wait()
                continue
            except TimeoutError:
                if done():
                    return True
            if not settling:
                continue
            mark = self.received_total
            if not await case.settled():
                settling = case.can_quiesce is not False  # else a timer is due: later
                quiet_mark = None
                continue
            if done():
                return True
            if quiet_mark == mark == self.received_total:
                return False
            quiet_mark = mark if mark == self.received_total else None

    async def wait(self, timeout: float, settle: bool = True) -> None:
        """Wait until every listener has received what the model requires of it; after
        `timeout` (or once the implementation is settled: `wait_until`), waive what is missing
        and note it in the history."""
        if not self.unsatisfied:
            return
        if await self.wait_until(lambda: not self.unsatisfied, timeout, settle):
            return
        missing = []
        for pair in sorted(self.unsatisfied):
            short = self.required[pair] - self.got[pair] - self.waived[pair]
            self.waived[pair] += short
            missing.append({"listener": list(pair[0]), "member": pair[1], "missing": short})
        self.unsatisfied.clear()
        self.case.history.record(
            "info",
            "runner",
            "wait",
            {"gave_up_after": timeout, "missing": missing},
            self.case.current_step,
        )

"""Time limits that do not count the time the harness itself was starved of a CPU.

The run's waits are bounded in the event loop's clock: an operation under `op_timeout`, the
events a listener must receive under `wait_timeout`, a read converging (`poll_until`). On a
busy machine the harness's own thread can wait for a CPU for a second and more (measured at
half the wall time of a busy thread with 8 processes on 2 cores), and an implementation in the
same process, or one whose answer sits in a socket buffer, cannot be heard during that time:
counted against the implementation it became a false timeout or a missing event. So when a
limit is reached, the time this thread spent runnable but waiting for a CPU since the limit was
set (Linux: `/proc/thread-self/schedstat`, its second field) is added to it and the wait goes
on; an implementation that is merely slow still runs out of time, as before. Where that figure
cannot be read (not Linux), the limits are the plain clock's.

This only ever lengthens upper bounds, checked once they are reached; it is not a clock the
model's timing rules (a leave grace, a pending leave due) are judged by.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from types import TracebackType

__all__ = ["Deadline", "starved", "timeout"]

_SCHEDSTAT = "/proc/thread-self/schedstat"
_REUSE = 0.05  # seconds a reading may be reused as the starting point of a limit
_readable = True
_last = threading.local()  # this thread's last reading: (monotonic time, seconds starved)


def starved(fresh: bool = True) -> float:
    """Seconds the calling thread has spent runnable but waiting for a CPU (0.0 if unknown).

    `fresh=False` may return this thread's reading of up to 50 ms ago: a limit's starting
    point then counts at most that much earlier starvation (a reading costs ~20 us, and a run
    sets a limit for every call and wait)."""
    global _readable
    if not _readable:
        return 0.0
    now = time.monotonic()
    if not fresh:
        last = getattr(_last, "reading", None)
        if last is not None and now - last[0] < _REUSE:
            return float(last[1])
    try:
        with open(_SCHEDSTAT, "rb") as handle:
            value = int(handle.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        _readable = False
        return 0.0
    _last.reading = (now, value)
    return value


class Deadline:
    """`seconds` from now on the running loop's clock, lengthened by the time the loop's thread
    waits for a CPU meanwhile (read when the deadline is reached, on the loop's thread)."""

    def __init__(self, seconds: float, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.when = self.loop.time() + seconds
        self._starved = starved(fresh=False)

    def remaining(self) -> float:
        """Seconds left (<= 0: the deadline has passed, starvation included)."""
        left = self.when - self.loop.time()
        if left <= 0:
            now = starved()
            if now > self._starved:
                self.when += now - self._starved
                self._starved = now
                left = self.when - self.loop.time()
        return left

    def passed(self) -> bool:
        return self.remaining() <= 0


class _Watchdog:
    """The one timer of an event loop for every `timeout` in force on it, armed at the
    earliest of their deadlines. A timer handle per call, cancelled a moment later, cost more
    than many of the calls it guarded: cancelled handles stay in the loop's heap until their
    time comes, and every push and pop compares handles in Python.

    It holds neither the loop nor its timer (the loop's weak key must not be kept alive by
    its value): a timer that an earlier one superseded finds `at` moved and does nothing."""

    __slots__ = ("active", "at")

    def __init__(self) -> None:
        self.active: set[timeout] = set()
        self.at = math.inf  # when the timer that counts fires (inf: none pending)

    def add(self, entry: timeout) -> None:
        self.active.add(entry)
        when = entry._deadline.when
        if when < self.at:
            self._arm(entry._deadline.loop, when)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self.at = when
        loop.call_at(when, self._fire, loop, when)

    def _fire(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if when != self.at:
            return  # superseded by a timer armed for an earlier deadline
        self.at = math.inf
        for entry in [e for e in self.active if e._deadline.remaining() <= 0]:
            self.active.discard(entry)
            entry._expire()
        if self.active:  # a timeout that ended before its deadline has left the set
            self._arm(loop, min(e._deadline.when for e in self.active))


_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = (
    weakref.WeakKeyDictionary()
)


class timeout:
    """`async with timeout(seconds):` like `asyncio.timeout`, with a `Deadline` (TimeoutError
    once it has passed, starvation of this thread not counted).

    Every adapter call runs under one, so it does what `asyncio.Timeout` does without an inner
    timeout object or a timer of its own (the loop's `_Watchdog` watches it): when the deadline
    has passed it cancels the task, and on the way out turns that cancellation (and only that
    one) into `TimeoutError`."""

    __slots__ = ("_cancelling", "_deadline", "_expired", "_task", "_watchdog", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._expired = False

    async def __aenter__(self) -> timeout:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("timeout should be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._deadline = Deadline(self.seconds, loop)
        watchdog = _watchdogs.get(loop)
        if watchdog is None:
            watchdog = _watchdogs[loop] = _Watchdog()
        self._watchdog = watchdog
        watchdog.add(self)
        return self

    def _expire(self) -> None:
        """The deadline has passed (starvation included): cancel the task."""
        self._expired = True
        self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._watchdog.active.discard(self)
        if self._expired:
            self._expired = False
            # as asyncio.Timeout: a cancellation asked for by anyone else still propagates
            if (
                self._task.uncancel() <= self._cancelling
                and exc_type is not None
                and issubclass(exc_type, asyncio.CancelledError)
            ):
                raise TimeoutError from exc
        return None

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
import threading
import time
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


class timeout:
    """`async with timeout(seconds):` like `asyncio.timeout`, with a `Deadline` (TimeoutError
    once it has passed, starvation of this thread not counted).

    Every adapter call runs under one, so it does what `asyncio.Timeout` does with one timer
    handle and no inner timeout object: when the deadline has passed it cancels the task, and
    on the way out turns that cancellation (and only that one) into `TimeoutError`."""

    __slots__ = ("_cancelling", "_deadline", "_expired", "_handle", "_task", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._handle: asyncio.TimerHandle | None = None
        self._expired = False

    async def __aenter__(self) -> timeout:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("timeout should be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._deadline = deadline = Deadline(self.seconds, loop)
        self._handle = loop.call_at(deadline.when, self._check)
        return self

    def _check(self) -> None:
        deadline = self._deadline
        if deadline.remaining() > 0:
            self._handle = deadline.loop.call_at(deadline.when, self._check)
        else:
            self._handle = None
            self._expired = True
            self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
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

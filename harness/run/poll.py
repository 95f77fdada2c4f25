"""`poll_until`: the one back-off loop of the driver (a `get` converging, `sync_complete()`
after an attach, the canonical history, a dropped member leaving)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from presence_conformance.harness.run.clock import Deadline

__all__ = ["FIRST_PAUSE", "Pauses", "poll_until"]

FIRST_PAUSE = 0.0005  # the second pause; the first is 0 (a yield), then pauses double

_NOTHING = object()


async def poll_until(
    attempt: Callable[[], Awaitable[bool]],
    deadline: float,
    max_pause: float,
    settle: Callable[[], Awaitable[bool]] | None = None,
    read: Callable[[], object] | None = None,
) -> bool:
    """Await `attempt()` until it returns True or the event loop's clock reaches `deadline`
    (checked after each attempt: there is always at least one; the time this thread waited for
    a CPU meanwhile is added to it, `presence_conformance.harness.run.clock`). Between attempts
    the pause starts at 0 and doubles up to `max_pause`. Returns the last attempt's answer.

    With `settle` (True once the implementation is quiet: the adapter's `quiesce()`) and `read`
    (what the last attempt read, comparable with ==), each pause begins with a `settle()`, and two
    attempts in a row that each followed a successful settle and read the same end the wait
    early: nothing in flight can change the answer any more."""
    loop = asyncio.get_running_loop()
    limit = Deadline(deadline - loop.time(), loop)
    pause = 0.0
    after_quiet = False  # the last attempt followed a successful settle()
    quiet_read: object = _NOTHING
    while True:
        if await attempt():
            return True
        if after_quiet and read is not None:
            current = read()
            if current == quiet_read:
                return False
            quiet_read = current
        if limit.passed():
            return False
        if settle is not None and read is not None:
            after_quiet = await settle()
        await asyncio.sleep(pause)
        pause = min(max(pause * 2, FIRST_PAUSE), max_pause)


class Pauses:
    """The pauses of a polling loop written out by hand, as `poll_until` pauses: 0 first (a
    yield), then doubling from `FIRST_PAUSE` up to `most`."""

    def __init__(self, most: float) -> None:
        self._next = 0.0
        self._most = most

    async def sleep(self) -> None:
        await asyncio.sleep(self._next)
        self._next = min(max(self._next * 2, FIRST_PAUSE), self._most)

"""`poll_until`: the one back-off loop of the driver (a `get` converging, `sync_complete()`
after an attach, the canonical history, a dropped member leaving)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["FIRST_PAUSE", "poll_until"]

FIRST_PAUSE = 0.0005  # the second pause; the first is 0 (a yield), then pauses double


async def poll_until(
    attempt: Callable[[], Awaitable[bool]], deadline: float, max_pause: float
) -> bool:
    """Await `attempt()` until it returns True or the event loop's clock reaches `deadline`
    (checked after each attempt: there is always at least one). Between attempts the pause
    starts at 0 and doubles up to `max_pause`. Returns the last attempt's answer."""
    loop = asyncio.get_running_loop()
    pause = 0.0
    while True:
        if await attempt():
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(pause)
        pause = min(max(pause * 2, FIRST_PAUSE), max_pause)

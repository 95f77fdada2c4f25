"""Limits that keep the reference server's resources bounded whatever its clients do.

- `HandshakeGuard`: a TCP connection that has not sent one complete HTTP request within
  `ServerConfig.handshake_timeout` seconds is cut (a slowloris on HTTP or on the WebSocket
  upgrade holds nothing for long); idle keep-alive connections are aiohttp's
  `keepalive_timeout`.
- `GuardedSite`: the TCP site that creates its connections through the guard.
- `RateLimitFilter` / `install_log_limits`: at most `log_rate` lines of one kind (logger and
  message template) per `log_rate_period` seconds; the rest are counted and the count is
  appended to the next line of that kind that is logged.

Connections that stop reading are cut by the WebSocket ping of `transport.py` (the idle
interval), and the number of realtime connections by `ServerConfig.max_connections`
(`realtime.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

LIMITED_LOGGERS = (
    "presence_conformance.reference_impl.server",
    "presence_conformance.reference_impl.server.app",
    "presence_conformance.reference_impl.server.realtime",
    "presence_conformance.reference_impl.server.transport",
    "presence_conformance.reference_impl.server.rest",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.websocket",
    "asyncio",
)


class HandshakeGuard:
    """Wraps the runner's protocol factory: each new connection must complete its first
    HTTP request within `timeout` seconds or be aborted. `middleware` (first in the app) ends
    the wait when a request arrives, so a served connection is not held by its timer."""

    def __init__(self, timeout: float, stats: Counter[str]) -> None:
        self.runner: web.AppRunner | None = None  # set once the runner is set up
        self._timeout = timeout
        self._stats = stats
        self._timers: dict[int, asyncio.TimerHandle] = {}

    def __call__(self) -> Any:
        assert self.runner is not None and self.runner.server is not None
        server = self.runner.server
        protocol = server()
        key = id(protocol)
        self._timers[key] = asyncio.get_running_loop().call_later(
            self._timeout, self._check, key, protocol
        )
        return protocol

    def served(self, protocol: Any) -> None:
        """A request arrived on `protocol`'s connection: stop waiting for it."""
        timer = self._timers.pop(id(protocol), None)
        if timer is not None:
            timer.cancel()  # drops the timer's reference to the protocol

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every request ends its connection's handshake wait."""
        self.served(request.protocol)
        return await handler(request)

    def _check(self, key: int, protocol: Any) -> None:
        self._timers.pop(key, None)
        transport = getattr(protocol, "transport", None)
        if getattr(protocol, "_request_count", 1) == 0 and transport is not None:
            if not transport.is_closing():
                self._stats["handshake_timeouts"] += 1
                transport.abort()

    def cancel_all(self) -> None:
        """Stop every timer (the server stops)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


class GuardedSite(web.TCPSite):
    """A TCP site whose connections are created through a `HandshakeGuard`."""

    def __init__(self, runner: web.AppRunner, guard: HandshakeGuard, host: str, port: int):
        super().__init__(runner, host, port)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard, self._host, self._port, backlog=self._backlog, reuse_address=True
        )


class RateLimitFilter(logging.Filter):
    """At most `rate` records of one (logger, template) per `period` seconds."""

    def __init__(self, rate: int, period: float) -> None:
        super().__init__()
        self.rate = rate
        self.period = period
        self._window: dict[tuple[str, str], tuple[float, int, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        start, count, suppressed = self._window.get(key, (now, 0, 0))
        if now - start >= self.period:
            start, count = now, 0
        if count >= self.rate:
            self._window[key] = (start, count, suppressed + 1)
            return False
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} similar lines suppressed)"
        if len(self._window) > 1000:  # templates are few; never let the table grow
            self._window.clear()
        self._window[key] = (start, count + 1, 0)
        return True


def install_log_limits(rate: int, period: float) -> None:
    """Put one `RateLimitFilter` on each of the server's loggers (replacing an earlier one)."""
    for name in LIMITED_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RateLimitFilter)]:
            logger.removeFilter(old)
        logger.addFilter(RateLimitFilter(rate, period))

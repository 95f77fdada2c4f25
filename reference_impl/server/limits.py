"""Limits that keep the reference server's resources bounded whatever its clients do.

- `HandshakeGuard`: a TCP connection that has not sent one complete HTTP request within
  `ServerConfig.handshake_timeout` seconds is cut (a slowloris on HTTP or on the WebSocket
  upgrade holds nothing for long); idle keep-alive connections are aiohttp's
  `keepalive_timeout`.
- `SocketCap`: at most `ServerConfig.effective_max_sockets` TCP sockets open at once (HTTP,
  WebSocket or silent), and at most `max_sockets_per_ip` from one address when set. A socket
  over either cap never reaches aiohttp: `_Refusal` reads its request head (at most
  `REFUSAL_HEAD_BYTES`, for at most `REFUSAL_TIMEOUT` s) and answers a WebSocket upgrade with
  the upgrade, one ERROR frame (`SOCKET_LIMIT`, statusCode 503, in the format the URL asked for)
  and a close (1013, try again later), anything else with an HTTP 503 and an Ably error body.
  At most `REFUSALS_AT_ONCE` sockets are being answered; more are closed as soon as they are
  accepted, so a flood costs no memory that grows with it.
- `GuardedSite`: the TCP site that creates its connections through the cap and the guard.
- `RateLimitFilter` / `install_log_limits`: at most `log_rate` lines of one kind (logger and
  message template) per `log_rate_period` seconds; the rest are counted and the count is
  appended to the next line of that kind that is logged.

Connections that stop reading are cut by the WebSocket ping of `transport.py` (the idle
interval), and the number of realtime connections by `ServerConfig.max_connections`
(`realtime.py`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from aiohttp import web
from presence_conformance.reference_impl.protocol import ProtocolAction
from presence_conformance.reference_impl.server.codec import encode, encode_json
from presence_conformance.reference_impl.server.wire import error_info

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


SOCKET_LIMIT = 42910  # the code of the realtime connection cap too (Ably: rate limit exceeded)
REFUSALS_AT_ONCE = 64  # over-cap sockets answered at once; more are closed when accepted
REFUSAL_HEAD_BYTES = 8192  # bytes of request head read from an over-cap socket
REFUSAL_TIMEOUT = 1.0  # s an over-cap socket may take to send its request head
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455


class SocketCap:
    """Counts the server's open TCP sockets, in all and per peer address, and hands each new
    one either to the server (`admitted`) or to a `_Refusal`."""

    def __init__(self, limit: int, per_ip: int | None, stats: Counter[str]) -> None:
        self.limit = limit
        self.per_ip = per_ip
        self.open = 0  # sockets handed to the server and not yet closed
        self.refusing = 0  # over-cap sockets being answered
        self.by_ip: dict[str, int] = {}  # peer address -> its open sockets (only those > 0)
        self._stats = stats

    def factory(self, serve: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for `loop.create_server`: `serve()` makes the server's protocol
        for an admitted socket."""
        return lambda: _Admission(self, serve)

    def refusal(self, ip: str | None) -> str | None:
        """Why a new socket from `ip` is over a cap (None: it is admitted and counted)."""
        if self.open >= self.limit:
            return f"socket limit: {self.limit} connections are open; try again later"
        if self.per_ip is not None and ip is not None and self.by_ip.get(ip, 0) >= self.per_ip:
            return f"socket limit: {self.per_ip} connections are open from one address"
        self.open += 1
        if ip is not None:
            self.by_ip[ip] = self.by_ip.get(ip, 0) + 1
        return None

    def release(self, ip: str | None) -> None:
        """An admitted socket closed."""
        self.open -= 1
        if ip is not None:
            left = self.by_ip.get(ip, 1) - 1
            if left > 0:
                self.by_ip[ip] = left
            else:
                self.by_ip.pop(ip, None)


def _peer_ip(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


class _Admission(asyncio.Protocol):
    """Decides, when a socket is accepted, whether the server serves it; then forwards every
    callback to the protocol that has it (the server's, or a `_Refusal`)."""

    __slots__ = ("_admitted", "_cap", "_inner", "_ip", "_serve")

    def __init__(self, cap: SocketCap, serve: Callable[[], Any]) -> None:
        self._cap = cap
        self._serve = serve
        self._inner: Any = None
        self._ip: str | None = None
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._ip = _peer_ip(transport)
        reason = self._cap.refusal(self._ip)
        if reason is None:
            self._admitted = True
            self._inner = self._serve()
        else:
            self._inner = _Refusal(self._cap, reason)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self._cap.release(self._ip)
        if self._inner is not None:
            self._inner.connection_lost(exc)


class _Refusal(asyncio.Protocol):
    """An over-cap socket: read its request head, answer the refusal, close."""

    def __init__(self, cap: SocketCap, reason: str) -> None:
        self._cap = cap
        self._reason = reason
        self._head = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # any asyncio-compatible transport (uvloop's are not asyncio.Transport subclasses)
        transport = cast(asyncio.Transport, transport)
        stats = self._cap._stats
        stats["sockets_refused"] += 1
        if self._cap.refusing >= REFUSALS_AT_ONCE:
            stats["sockets_closed_unanswered"] += 1
            transport.abort()
            return
        self._cap.refusing += 1
        self._counted = True
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_TIMEOUT, transport.abort)

    def data_received(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._head += data[: REFUSAL_HEAD_BYTES + 4 - len(self._head)]
        end = self._head.find(b"\r\n\r\n")
        if end < 0 and len(self._head) < REFUSAL_HEAD_BYTES:
            return
        self._transport.write(self._answer(bytes(self._head[: max(end, 0)])))
        self._transport.close()  # after the answer is written

    def eof_received(self) -> bool:
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._counted:
            self._counted = False
            self._cap.refusing -= 1
        self._transport = None

    def _answer(self, head: bytes) -> bytes:
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        info = error_info(SOCKET_LIMIT, self._reason, 503)
        key = headers.get("sec-websocket-key")
        if headers.get("upgrade", "").lower() == "websocket" and key:
            parts = lines[0].split(" ")
            query = parse_qs(urlsplit(parts[1]).query) if len(parts) > 1 else {}
            fmt = "msgpack" if query.get("format") == ["msgpack"] else "json"
            accept = base64.b64encode(hashlib.sha1(key.encode("latin-1") + _WS_GUID).digest())
            frame = encode({"action": ProtocolAction.ERROR, "error": info}, fmt)
            return (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept
                + b"\r\n\r\n"
                + _ws_frame(0x1 if fmt == "json" else 0x2, frame)
                + _ws_frame(0x8, (1013).to_bytes(2, "big") + b"try again later")
            )
        body = encode_json({"error": info})
        return (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"X-Ably-ErrorCode: %d\r\nRetry-After: 1\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % (SOCKET_LIMIT, len(body))
        ) + body


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final WebSocket frame (server to client)."""
    n = len(payload)
    if n < 126:
        length = bytes([n])
    elif n < 1 << 16:
        length = bytes([126]) + n.to_bytes(2, "big")
    else:
        length = bytes([127]) + n.to_bytes(8, "big")
    return bytes([0x80 | opcode]) + length + payload


class GuardedSite(web.TCPSite):
    """A TCP site whose sockets are admitted by a `SocketCap` and created through a
    `HandshakeGuard`."""

    def __init__(
        self,
        runner: web.AppRunner,
        guard: HandshakeGuard,
        host: str,
        port: int,
        cap: SocketCap | None = None,
    ):
        super().__init__(runner, host, port)
        self._guard = guard
        self._cap = cap

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        factory = self._guard if self._cap is None else self._cap.factory(self._guard)
        self._server = await loop.create_server(
            factory, self._host, self._port, backlog=self._backlog, reuse_address=True
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

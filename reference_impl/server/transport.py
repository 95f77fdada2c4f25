"""The transport of the reference server: the WebSocket of each realtime connection (aiohttp).

- `Transport.handle` is the `/` route: it upgrades the request, has the frame handler (the
  state machine in `realtime.py`) check the credentials and open the connection, hands it every
  frame received (text frames to `on_text`, binary ones to `on_binary`), and tells it when the
  transport is gone. A refused upgrade gets one ERROR frame, in the format it asked for, and a
  close.
- Frames out, in the connection's wire format (`codec.py`: JSON text frames, or MessagePack
  binary frames for `format=msgpack`): `send` encodes a frame, `broadcast` encodes one frame once
  per format for many connections, `enqueue` queues encoded bytes. Each connection has a writer
  task that drains its queue; a frame is written straight to the socket instead when nothing
  waits before it (`_write_now`, the direct-write path). A client that lets
  `max_outbound_queue` frames pile up is cut off as a slow consumer: its transport is aborted
  and the handler loses it.
- While one received frame is handled, direct writes are held and each connection's share goes
  out in one `write` when the handling ends, or as soon as the handler says its replies are
  complete (`flush_held`) (`_Batch`): the presence event a client caused and the ACK that follows
  it reach that client in one write (one segment, one wake-up). A broadcast frames its payload
  once for all its recipients.
- The direct-write path works on any asyncio-compatible transport (the stock loop's, uvloop's):
  it needs `write`, `is_closing` and `get_write_buffer_size`, not a class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeGuard

from aiohttp import WSMsgType, web
from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.protocol import ProtocolAction
from presence_conformance.reference_impl.server.auth import ConnectGrant
from presence_conformance.reference_impl.server.codec import encode
from presence_conformance.reference_impl.server.config import ServerConfig
from presence_conformance.reference_impl.server.connection import Connection
from presence_conformance.reference_impl.server.rest import error_response
from presence_conformance.reference_impl.server.wire import INTERNAL_ERROR, FrameError, short

log = logging.getLogger(__name__)

DIRECT_WRITE_LIMIT = 65536  # bytes already buffered in the transport before frames are queued


class FrameHandler(Protocol):
    """What the transport needs from the realtime protocol above it."""

    def authenticate(self, query: Mapping[str, str]) -> ConnectGrant:
        """Check an upgrade's credentials; raise `FrameError` to refuse the connection."""
        ...

    def open(self, ws: web.WebSocketResponse, grant: ConnectGrant) -> Connection:
        """Open an accepted connection (CONNECTED is sent from here)."""
        ...

    def on_text(self, conn: Connection, text: str) -> None:
        """One text frame received."""
        ...

    def on_binary(self, conn: Connection, data: bytes) -> None:
        """One binary frame received."""
        ...

    def transport_closed(self, conn: Connection) -> None:
        """The WebSocket is gone (closed by either side, or lost)."""
        ...

    def lose(self, conn: Connection) -> None:
        """The transport cut the connection off (slow consumer); it was open until now."""
        ...


class Transport:
    """The WebSockets of one server: accepting them, reading frames, writing frames."""

    def __init__(self, config: ServerConfig, stats: Counter[str], handler: FrameHandler) -> None:
        self.config = config
        self.stats = stats
        self.handler = handler
        self._held: _Batch | None = None  # direct writes held while a frame is handled

    # -- reading ---------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The `/` route: one realtime connection, from upgrade to close."""
        idle = self.config.max_idle_interval / 1000.0
        ws = web.WebSocketResponse(
            max_msg_size=max(4 * self.config.max_frame_size, 4 << 20),
            timeout=2.0,
            # A WebSocket ping every idle interval: a client that stops reading never answers
            # (its pong comes from its reader), so the connection is lost after the interval
            # plus half of it, and its members leave after the grace.
            heartbeat=idle if idle > 0 else None,
        )
        if not ws.can_prepare(request).ok:
            return error_response(
                errors.BAD_REQUEST, "expected a WebSocket upgrade on / (REST is under /channels)"
            )
        refusal = origin_refusal(request, self.config.allowed_origins)
        if refusal is not None:
            self.stats["origin_refused"] += 1
            return error_response(errors.BAD_REQUEST, refusal, 403)
        await ws.prepare(request)
        asked = "msgpack" if request.query.get("format") == "msgpack" else "json"
        try:
            grant = self.handler.authenticate(request.query)
        except FrameError as exc:
            self.stats["auth_refused"] += 1
            try:
                await _send_one(
                    ws, asked, {"action": ProtocolAction.ERROR, "error": exc.error_info()}
                )
            finally:
                await close_ws(ws, 1000)
            return ws
        try:
            conn = self.handler.open(ws, grant)
        except Exception as exc:  # pragma: no cover - nothing in open is expected to fail
            log.exception("opening a connection failed")
            with contextlib.suppress(Exception):
                await _send_one(
                    ws,
                    asked,
                    {
                        "action": ProtocolAction.ERROR,
                        "error": {
                            "code": INTERNAL_ERROR,
                            "statusCode": 500,
                            "message": f"internal error opening the connection ({type(exc).__name__})",
                        },
                    },
                )
            await close_ws(ws, 1011)
            return ws
        conn.transport = request.transport
        try:
            batch = _Batch()
            async for msg in ws:
                self._held = batch
                try:
                    if msg.type == WSMsgType.TEXT:
                        self.handler.on_text(conn, msg.data)
                    elif msg.type == WSMsgType.BINARY:
                        self.handler.on_binary(conn, msg.data)
                    else:  # ERROR (e.g. beyond the hard size limit): the transport is gone
                        break
                finally:
                    self._held = None
                    batch.flush()
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - aiohttp transport failures
            log.exception("connection %s: transport failure", conn.id)
        finally:
            self.handler.transport_closed(conn)
            release_heartbeat(ws)
        return ws

    # -- writing ---------------------------------------------------------------------------------

    def flush_held(self) -> None:
        """Write the direct writes held so far for the frame being handled, now rather than
        when its handling ends (its replies are complete: what remains is bookkeeping). Frames
        sent after this are held again, behind these."""
        held = self._held
        if held is not None:
            held.flush()

    def start_writer(self, conn: Connection) -> None:
        """Start the task that writes `conn`'s queued frames."""
        conn.writer = asyncio.create_task(self._writer(conn))

    async def _writer(self, conn: Connection) -> None:
        ws = conn.ws
        opcode = WSMsgType.BINARY if conn.format == "msgpack" else WSMsgType.TEXT
        try:
            while True:
                item = await conn.queue.get()
                if item is None:  # close_after_flush
                    await close_ws(ws, 1000)
                    return
                conn.sending = True
                try:
                    await ws.send_frame(item, opcode)
                finally:
                    conn.sending = False
        except asyncio.CancelledError:
            raise
        except Exception:  # the peer went away; the reader notices and cleans up
            return

    def enqueue(self, conn: Connection, data: bytes | None) -> None:
        """Send `data`, a frame encoded in `conn`'s format, to `conn` after everything sent
        before it (None: close the WebSocket once everything before it is out)."""
        state = conn.state
        if state == "closed" or state == "dropped":
            return
        queue = conn.queue
        queued = queue.qsize()
        if queued >= self.config.max_outbound_queue:
            log.warning(
                "connection %s: %d frames queued, cutting off a slow client",
                conn.id,
                queued,
            )
            self.stats["slow_consumers"] += 1
            if conn.writer is not None:
                conn.writer.cancel()
            if _is_stream(conn.transport):
                conn.transport.abort()
            if conn.state == "open":
                self.handler.lose(conn)
            return
        if queued or not _write_now(conn, data, self._held):
            queue.put_nowait(data)

    def close_after_flush(self, conn: Connection) -> None:
        """Close `conn`'s WebSocket once the frames queued so far are out."""
        self.enqueue(conn, None)

    def send(self, conn: Connection, frame: dict[str, Any]) -> None:
        """Encode `frame` in `conn`'s format and send it to `conn`."""
        self.enqueue(conn, encode(frame, conn.format))

    def broadcast(self, conns: Iterable[Connection], frame: dict[str, Any]) -> None:
        """Encode `frame` once per format; queue the same bytes for every connection of `conns`
        that speaks it."""
        encoded: dict[str, bytes] = {}
        for conn in conns:
            data = encoded.get(conn.format)
            if data is None:
                data = encoded[conn.format] = encode(frame, conn.format)
            self.enqueue(conn, data)

    async def drop(self, conn: Connection) -> None:
        """Cut `conn`'s transport as a network failure would (no CLOSE, no WebSocket close)."""
        transport = conn.transport
        if _is_stream(transport) and not transport.is_closing():
            transport.abort()
        else:
            await close_ws(conn.ws, 1006)


def release_heartbeat(ws: web.WebSocketResponse) -> None:
    """Stop the WebSocket ping timer of a finished connection at once. aiohttp re-arms it from
    data received just before the close, and the armed timer keeps the whole WebSocket (with
    its compression buffers, ~35 KB) alive for up to an idle interval: with many short
    connections that was most of the server's memory. Private aiohttp attributes, guarded."""
    if hasattr(ws, "_heartbeat"):
        ws._heartbeat = None  # _reset_heartbeat returns early from now on
    cancel = getattr(ws, "_cancel_heartbeat", None)
    if callable(cancel):
        cancel()


def origin_refusal(request: web.Request, allowed: tuple[str, ...]) -> str | None:
    """Why a WebSocket upgrade's `Origin` is refused, or None: no Origin (SDKs and servers
    send none), the server's own host, and the configured `allowed` Origins ("*": any) pass;
    a browser page of another site does not (cross-site WebSocket hijacking)."""
    origin = request.headers.get("Origin")
    if origin is None or "*" in allowed or origin in allowed:
        return None
    _, _, rest = origin.partition("://")
    if rest and rest.split("/", 1)[0].lower() == request.host.lower():
        return None
    return (
        f"Origin {short(origin)} is not allowed to open a realtime connection here "
        "(serve --allow-origin adds one)"
    )


async def close_ws(ws: web.WebSocketResponse, code: int) -> None:
    """Close a WebSocket with `code`, bounded in time; failures are ignored (the peer is gone)."""
    try:
        await asyncio.wait_for(ws.close(code=code), 2.0)
    except Exception:
        pass


class _Stream(Protocol):
    """What the direct-write path needs of a transport (asyncio's own, uvloop's, ...)."""

    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...

    def abort(self) -> None: ...


def _is_stream(transport: Any) -> TypeGuard[_Stream]:
    """Duck typing, not `isinstance(asyncio.WriteTransport)`: uvloop's transports implement the
    interface without deriving from asyncio's classes. Answered once per transport class."""
    kind = type(transport)
    known = _STREAM_TYPES.get(kind)
    if known is None:
        known = _STREAM_TYPES[kind] = transport is not None and all(
            callable(getattr(transport, name, None))
            for name in ("write", "is_closing", "get_write_buffer_size", "abort")
        )
    return known


_STREAM_TYPES: dict[type, bool] = {}


class _Batch:
    """Direct writes held while one received frame is handled: per connection, its frames in
    order (each with its header), written in one `write` by `flush`."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: dict[Connection, list[bytes]] = {}

    def add(self, conn: Connection, transport: _Stream, framed: bytes) -> bool:
        """Hold one frame for `conn`, unless the transport's buffer and the frames held for
        `conn` already exceed DIRECT_WRITE_LIMIT (then False: the writer's path)."""
        chunks = self.held.get(conn)
        if chunks is None:
            if transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT:
                return False
            self.held[conn] = [framed]
            return True
        if transport.get_write_buffer_size() + sum(map(len, chunks)) > DIRECT_WRITE_LIMIT:
            return False
        chunks.append(framed)
        return True

    def flush(self) -> None:
        held = self.held
        if not held:
            return
        for conn, chunks in held.items():
            transport = conn.transport
            if not _is_stream(transport) or transport.is_closing():
                continue  # the connection went away meanwhile: nothing to deliver to
            transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        held.clear()


def _write_now(conn: Connection, data: bytes | None, batch: _Batch | None = None) -> bool:
    """Write a frame straight to the transport (or into `batch`, written when the current frame
    is handled) when nothing is waiting to go out before it (the queue is empty and the writer is
    idle) and the transport is not backed up; return False to leave it to the writer task.

    This saves a wake-up of the connection's writer task per frame, which is most of the cost of
    a fan-out (each event goes to every subscriber) and a step on the way of every ACK. The frame
    is a plain RFC 6455 server frame (FIN, text or binary by the connection's format, unmasked;
    RSV1 clear, so it is valid with or without permessage-deflate). Anything unusual takes the
    writer's path, which awaits drain.
    """
    if data is None or conn.sending or conn.state != "open":
        return False
    writer = conn.writer
    if writer is None or writer.done() or conn.queue.qsize() or conn.ws.closed:
        return False
    transport = conn.transport
    if not _is_stream(transport) or transport.is_closing():
        return False
    framed = _frame(data, conn.format == "msgpack")
    if batch is not None:
        return batch.add(conn, transport, framed)
    if transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT:
        return False
    transport.write(framed)
    return True


class _Framing:
    """The last payload framed, with its frame: a broadcast hands the same payload object to
    every subscriber of a format, which is framed once."""

    __slots__ = ("binary", "framed", "payload")

    def __init__(self) -> None:
        self.payload: bytes | None = None
        self.binary = False
        self.framed = b""


_LAST = _Framing()


def _frame(data: bytes, binary: bool) -> bytes:
    """`data` as one unmasked, final RFC 6455 frame (binary or text), header included."""
    last = _LAST
    if data is last.payload and binary is last.binary:
        return last.framed
    size = len(data)
    first = 0x82 if binary else 0x81
    if size < 126:
        framed = bytes((first, size)) + data
    elif size < 65536:
        framed = bytes((first, 126)) + size.to_bytes(2, "big") + data
    else:
        framed = bytes((first, 127)) + size.to_bytes(8, "big") + data
    last.payload, last.binary, last.framed = data, binary, framed
    return framed


async def _send_one(ws: web.WebSocketResponse, fmt: str, frame: dict[str, Any]) -> None:
    """One frame on a WebSocket that has no connection (yet), in format `fmt`."""
    if fmt == "msgpack":
        await ws.send_bytes(encode(frame, fmt))
    else:
        await ws.send_frame(encode(frame, fmt), WSMsgType.TEXT)

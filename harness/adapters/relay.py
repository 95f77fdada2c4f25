"""A TCP relay between one SDK client and the server: how `drop()` cuts a connection abruptly.

An official SDK is a black box that reconnects by itself: cut its socket and it is back within
milliseconds on a new connection, re-entering its members (RTP17i), which is not what `drop()`
means (the member must leave after the server's grace period). So each SDK client connects
through its own `TcpRelay` (a listening socket on 127.0.0.1 that forwards every byte, both ways,
to the server), and `cut()`:

1. resets every upstream socket (SO_LINGER 0: the server sees a TCP reset, no WebSocket close
   frame, no Ably CLOSE: a network failure);
2. stops listening, so nothing can reconnect through the relay;
3. keeps the client's side open but forwards nothing more: the SDK notices nothing until it is
   closed, and the first bytes it sends after the cut (its CLOSE) close its side.

The adapter then closes the SDK client: it goes to CLOSED without ever reconnecting, and the
server synthesizes the member's leave after its grace period. No SDK internals are touched.

`interrupt(seconds)` is the transient disconnect (RTN15): every connection is reset on both
sides (the server sees a network failure, the SDK loses its transport at once and reconnects by
itself), and a connection accepted in the next `seconds` is held: it is forwarded upstream only
when they have passed, so the SDK's immediate reconnection attempt (RTN15a) waits instead of
failing (a failed attempt would put it to sleep for its `disconnectedRetryTimeout`).
`accepted` counts the connections accepted so far, so that the adapter can tell a reconnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field

__all__ = ["TcpRelay"]

_CHUNK = 1 << 16


@dataclass(eq=False)
class _Pair:
    down: asyncio.StreamWriter
    up: asyncio.StreamWriter | None = None
    cut: bool = False
    tasks: list[asyncio.Task] = field(default_factory=list)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0) and without flushing anything still buffered."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpRelay:
    """Forwards the TCP connections accepted on `127.0.0.1:<port>` to `host:port`."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self.is_cut = False
        self.accepted = 0
        self._held_until = 0.0  # loop time before which accepted connections wait

    @property
    def endpoint(self) -> str:
        """`127.0.0.1:PORT`, where the SDK connects."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> str:
        """Listen on a free port; return the endpoint."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.endpoint

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            writer.transport.abort()
            return
        self.accepted += 1
        pair = _Pair(writer)
        self._pairs.add(pair)
        wait = self._held_until - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._pairs.discard(pair)
            _reset(writer)
            return
        if self.is_cut:  # cut while connecting upstream
            self._pairs.discard(pair)
            _reset(up_writer)
            writer.transport.abort()
            return
        pair.up = up_writer
        pair.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, pair, upstream=True)),
            asyncio.create_task(self._pump(up_reader, writer, pair, upstream=False)),
        ]

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: _Pair,
        upstream: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if pair.cut:
                    if upstream:  # the client speaks after the cut (its CLOSE): hang up on it
                        pair.down.transport.abort()
                        self._pairs.discard(pair)
                    return
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            return
        if pair.cut:
            return
        # one side closed normally: close the other one, keep nothing
        with contextlib.suppress(Exception):
            writer.close()
        if not upstream or reader.at_eof():
            self._pairs.discard(pair)

    def cut(self) -> None:
        """Reset every upstream connection and stop accepting new ones (see the module doc)."""
        self.is_cut = True
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            pair.cut = True
            if pair.up is not None:
                _reset(pair.up)
            for task in pair.tasks[1:]:  # server -> client: nothing more is forwarded
                task.cancel()

    def interrupt(self, seconds: float) -> None:
        """Reset every connection on both sides; hold new ones for `seconds` (module doc)."""
        self._held_until = asyncio.get_running_loop().time() + seconds
        for pair in list(self._pairs):
            pair.cut = True
            if pair.up is not None:
                _reset(pair.up)
            for task in pair.tasks:
                task.cancel()
            _reset(pair.down)
            self._pairs.discard(pair)

    async def close(self) -> None:
        """Close everything (idempotent)."""
        self.is_cut = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        for pair in list(self._pairs):
            for task in pair.tasks:
                task.cancel()
            if pair.up is not None:
                pair.up.transport.abort()
            pair.down.transport.abort()
        self._pairs.clear()

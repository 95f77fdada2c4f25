"""The test-inspection API of the reference server: what tests and the harness's wire checks read
from it, and the faults they inject into it.

- `FrameLog`: every frame a client sends, per connection, oldest first, bounded
  (`ServerConfig.frame_log_size` frames for each of the last `frame_log_connections`
  connections, at most `frame_log_bytes` per connection and `frame_log_total_bytes` in all).
  Frames are kept as decoded, from JSON or MessagePack alike (binary data of a MessagePack
  frame stays `bytes`); a frame that does not decode as `{"$malformed": text (JSON) or bytes
  (MessagePack), "$size": bytes}`, a value that is not an object as `{"$malformed": value}`, a
  binary frame on a JSON connection as `{"$binary": bytes}`, a text frame on a MessagePack
  connection as `{"$text": bytes}`, and a frame above `RECORD_LIMIT` bytes in summary (top
  level and presence items without their data, plus `"$size"`).
- `Inspection`: the frame log, the open connections and their clientIds, and fault injection:
  `drop` (the transport is lost, no CLOSE) and `expire_now` (end a leave grace at once).

`PresenceServer` exposes these as its own methods (`frames`, `connection_ids`, ...).
"""

from __future__ import annotations

import collections
from typing import Any

from presence_conformance.reference_impl.server.realtime import RealtimeProtocol
from presence_conformance.reference_impl.server.wire import json_type

RECORD_LIMIT = 65536 + 4096  # frames larger than this are recorded in summary


class FrameLog:
    """Client->server frames of recent connections, bounded per connection and in connections."""

    def __init__(
        self,
        per_connection: int,
        connections: int,
        bytes_per_connection: int = 2 << 20,
        total_bytes: int = 64 << 20,
    ) -> None:
        self._per_connection = per_connection
        self._connections = connections
        self._bytes_per_connection = bytes_per_connection
        self._total_bytes = total_bytes
        self._frames: collections.OrderedDict[str, collections.deque[dict[str, Any]]] = (
            collections.OrderedDict()
        )
        self._sizes: dict[str, collections.deque[int]] = {}  # bytes of each kept frame
        self._bytes: dict[str, int] = {}
        self.total = 0  # bytes kept, all connections

    def open(self, connection_id: str) -> None:
        """Start a log for a new connection, forgetting the oldest beyond the bound."""
        self._frames[connection_id] = collections.deque()
        self._sizes[connection_id] = collections.deque()
        self._bytes[connection_id] = 0
        while len(self._frames) > self._connections:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        cid, _ = self._frames.popitem(last=False)
        self._sizes.pop(cid, None)
        self.total -= self._bytes.pop(cid, 0)

    def record(self, connection_id: str, frame: Any, size: int) -> None:
        """A decoded frame of `size` bytes."""
        if size > RECORD_LIMIT:
            self._append(connection_id, _summary(frame, size), 1024)
        else:
            self._append(
                connection_id,
                frame if isinstance(frame, dict) else {"$malformed": frame},
                64 + 2 * size,  # a decoded frame holds about twice its text
            )

    def record_unparsable(self, connection_id: str, text: str, size: int) -> None:
        """A text frame that is not JSON."""
        self._append(connection_id, {"$malformed": text[:256], "$size": size}, 512)

    def record_unparsable_binary(self, connection_id: str, data: bytes, size: int) -> None:
        """A binary frame that is not MessagePack."""
        self._append(connection_id, {"$malformed": bytes(data[:256]), "$size": size}, 512)

    def record_binary(self, connection_id: str, size: int) -> None:
        """A binary frame on a JSON connection."""
        self._append(connection_id, {"$binary": size})

    def record_text(self, connection_id: str, size: int) -> None:
        """A text frame on a MessagePack connection."""
        self._append(connection_id, {"$text": size})

    def frames(self, connection_id: str) -> list[dict[str, Any]]:
        """Copies of the frames recorded for a connection, oldest first ([] if unknown)."""
        return [dict(f) for f in self._frames.get(connection_id, ())]

    def _append(self, connection_id: str, frame: dict[str, Any], size: int = 64) -> None:
        """Keep `frame` (about `size` bytes held): the oldest frames of the connection go first
        beyond its count or byte bound, the oldest connections' logs beyond the total."""
        frames = self._frames.get(connection_id)
        if frames is None:
            return
        sizes = self._sizes[connection_id]
        frames.append(frame)
        sizes.append(size)
        held = self._bytes[connection_id] + size
        total = self.total + size
        count = len(frames)
        while count > 1 and (count > self._per_connection or held > self._bytes_per_connection):
            frames.popleft()
            dropped = sizes.popleft()
            held -= dropped
            total -= dropped
            count -= 1
        self._bytes[connection_id] = held
        self.total = total
        while self.total > self._total_bytes and len(self._frames) > 1:
            if next(iter(self._frames)) == connection_id:
                self._frames.move_to_end(connection_id)
            self._forget_oldest()


def _summary(frame: Any, size: int) -> dict[str, Any]:
    """An oversized frame as recorded: the top level, with presence items' data left out."""
    if not isinstance(frame, dict):
        return {"$malformed": json_type(frame), "$size": size}
    out: dict[str, Any] = {
        k: v
        for k, v in frame.items()
        if k not in ("presence", "messages") and not (isinstance(v, str) and len(v) > 1024)
    }
    items = frame.get("presence")
    if isinstance(items, list):
        out["presence"] = [
            {k: v for k, v in item.items() if k not in ("data", "extras")} | {"data": "$omitted"}
            if isinstance(item, dict)
            else "$omitted"
            for item in items[:100]
        ]
    out["$size"] = size
    return out


class Inspection:
    """What a test may read from a running server, and the faults it may inject."""

    def __init__(self, realtime: RealtimeProtocol, frame_log: FrameLog) -> None:
        self._realtime = realtime
        self._frame_log = frame_log

    def frames(self, connection_id: str) -> list[dict[str, Any]]:
        """Client->server frames recorded for a connection, oldest first (see `FrameLog`)."""
        return self._frame_log.frames(connection_id)

    def connection_ids(self) -> list[str]:
        """Ids of the connections whose transport is open."""
        return list(self._realtime.connections)

    def connection_client_id(self, connection_id: str) -> str | None:
        """The clientId a connection was opened with (`*` for wildcard, None anonymous);
        KeyError for a connection that is neither open nor waiting out its leave grace."""
        conn = self._realtime.connections.get(connection_id) or self._realtime.dropped.get(
            connection_id
        )
        if conn is None:
            raise KeyError(connection_id)
        return conn.client_id

    async def drop(self, connection_id: str) -> None:
        """Cut a connection's transport as a network failure would (no CLOSE); the server
        then keeps its members for the leave grace. Unknown ids are ignored."""
        conn = self._realtime.connections.get(connection_id)
        if conn is not None:
            await self._realtime.transport.drop(conn)

    def expire_now(self, connection_id: str) -> None:
        """End the leave grace of a dropped connection at once."""
        self._realtime.expire_now(connection_id)

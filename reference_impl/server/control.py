"""The scriptable side of the reference server: commands that stage what a client SDK meets when a
server does something other than answer (issue 15), and the log of the frames it sent.

`ServerControl(realtime, clock)` installs a `SentLog` on the server's transport (every frame
for a channel sent to a connection, in the order it was queued, which is the order the client
reads them) and runs commands, each a JSON-able mapping `{"do": NAME, "connection": ID,
"channel": NAME, ...}` (the same form over the HTTP control endpoint, `control_http.py`).
A command sends frames to that one connection only and returns them; the server's own presence
state (its `PresenceModel`) does not change, so what the client shows afterwards is judged
against the client-side oracle (`reference_impl/client_presence.py`) fed the logged frames.

Commands (the frames each sends are listed in `docs/scenarios.md`, `server:` steps):

- `sync`: a server-initiated SYNC (RTP18) of the channel's members (the server's members, less
  `omit` clientIds, plus `add` items), in `pages` SYNC frames of one new sequence id, with
  `between[i]` (lists of items) sent as PRESENCE frames after page i+1; `complete: false` keeps
  a cursor on the last page (the sync stays in flight, RTP18a); `channel_serial: false` sends
  one SYNC with no channelSerial (RTP18c).
- `attached`: ATTACHED with or without HAS_PRESENCE (`has_presence`, default false: RTP19a).
- `presence`: PRESENCE frames, one per entry of `frames` (a list of lists of items); `repeat`
  sends the whole series that many times (duplicates).
- `detached`: DETACHED with an error (the client re-attaches, RTL13a and re-enters its own
  members, RTP17i); with `refuse_reentry: true` the server NACKs the connection's next ENTER on
  the channel, the automatic re-entry (RTP17e).
- `error`: a channel ERROR (the channel becomes FAILED, RTL14); the server detaches the
  connection from the channel as it does for its own channel errors.
- `connected`: a CONNECTED with the connection's own connectionId and key (RTN24), whose
  connectionDetails take `details` (only `connectionStateTtl` and `maxIdleInterval`, in ms) over
  the server's: a short `connectionStateTtl` lets a cut client go SUSPENDED within a case
  (RTN14e, RTL3c). It needs no `channel`.

An item is `{"action": "enter"|"update"|"leave"|"present" (default: present in a SYNC, enter
in a PRESENCE), "client_id", "connection_id",
"serial", "index", "timestamp" (ms relative to the command's time), "data", "encoding", "id",
"synthesized", "omit": ["id", "connectionId", "timestamp"]}`: `data` goes on the wire as an Ably
server sends member data (RSL4): a string as it is, a JSON object or array as a JSON string with
`encoding: "json"` (RSL4c3, RSL4d3), binary as binary (a MessagePack `bin`; base64 with
`encoding: "base64"` on a JSON connection, RSL4d1, by `codec.py`); with `encoding` given,
`data` (a string or binary) is sent as it is under that encoding (a chain such as
`utf-8/base64`). Its wire id is
`connectionId:serial:index` (TP3/RTP2b2), or not prefixed by its connectionId when
`synthesized` (RTP2b1), or `id` as given; `omit` leaves fields out so that the client must take
them from the enclosing ProtocolMessage (TP3a/d/g), whose `id`, `connectionId` and `timestamp`
the command always sets.
"""

from __future__ import annotations

import collections
import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from presence_conformance.reference_impl.protocol import HAS_PRESENCE, ProtocolAction
from presence_conformance.reference_impl.server.connection import Connection
from presence_conformance.reference_impl.server.realtime import RealtimeProtocol, granted_modes
from presence_conformance.reference_impl.server.wire import FrameError, wire_presence
from presence_conformance.reference_impl.types import Action

__all__ = ["COMMANDS", "CommandError", "SentLog", "ServerControl"]

COMMANDS = ("sync", "attached", "presence", "detached", "error", "connected")
_DETAILS = frozenset({"connectionStateTtl", "maxIdleInterval"})
SENT_PER_CONNECTION = 5000
_ITEM_FIELDS = frozenset(
    {
        "action",
        "client_id",
        "connection_id",
        "serial",
        "index",
        "timestamp",
        "data",
        "encoding",
        "id",
        "synthesized",
        "omit",
    }
)
_OMITTABLE = frozenset({"id", "connectionId", "timestamp"})
CHANNEL_ERROR = 90000  # Ably: channel operation failed (a generic channel error)
DETACHED_ERROR = 90198  # Ably: an unspecified channel error that detached the channel


class CommandError(ValueError):
    """A command that cannot run: unknown, malformed, or naming a connection or channel the
    server does not have attached."""


class SentLog:
    """Channel frames sent to each connection (`channel` set), in queue order, bounded."""

    def __init__(self, per_connection: int = SENT_PER_CONNECTION) -> None:
        self._frames: dict[str, collections.deque[dict[str, Any]]] = {}
        self._per_connection = per_connection

    def add(self, connection_id: str, frame: dict[str, Any]) -> None:
        if not isinstance(frame.get("channel"), str):
            return
        log = self._frames.get(connection_id)
        if log is None:
            log = self._frames[connection_id] = collections.deque(maxlen=self._per_connection)
        log.append(frame)

    def frames(self, connection_id: str, channel: str | None = None) -> list[dict[str, Any]]:
        """Copies of the frames sent to `connection_id` (on `channel`), oldest first."""
        return [
            dict(f)
            for f in self._frames.get(connection_id, ())
            if channel is None or f.get("channel") == channel
        ]

    def install(self, realtime: RealtimeProtocol) -> None:
        """Wrap the transport's `send` and `broadcast` so every channel frame is logged."""
        transport = realtime.transport
        send, broadcast = transport.send, transport.broadcast

        def logged_send(conn: Connection, frame: dict[str, Any]) -> None:
            self.add(conn.id, frame)
            send(conn, frame)

        def logged_broadcast(conns: Iterable[Connection], frame: dict[str, Any]) -> None:
            conns = list(conns)
            for conn in conns:
                self.add(conn.id, frame)
            broadcast(conns, frame)

        transport.send = logged_send  # type: ignore[method-assign]
        transport.broadcast = logged_broadcast  # type: ignore[method-assign]


class ServerControl:
    """Runs commands against one server's realtime protocol; `log` keeps (command, frames)."""

    def __init__(self, realtime: RealtimeProtocol, clock: Callable[[], int]) -> None:
        self.realtime = realtime
        self.clock = clock
        self.sent = SentLog()
        self.sent.install(realtime)
        self.log: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        self._frame_seq = itertools.count(1)
        self._sync_seq = itertools.count(1)
        self._serial = itertools.count(1000)

    def sent_frames(self, connection_id: str, channel: str | None = None) -> list[dict[str, Any]]:
        """The channel frames the server sent to `connection_id` (see `SentLog`)."""
        return self.sent.frames(connection_id, channel)

    def run(self, command: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run one command; return the frames it sent, in order. CommandError if it cannot."""
        if not isinstance(command, Mapping):
            raise CommandError("a command is an object {do: NAME, connection: ID, channel: NAME}")
        name = command.get("do")
        if name not in COMMANDS:
            raise CommandError(f"do: unknown command {name!r} (expected one of {COMMANDS})")
        conn = self.realtime.connections.get(str(command.get("connection")))
        if conn is None or conn.state != "open":
            raise CommandError(f"connection: {command.get('connection')!r} is not open")
        if name == "connected":
            sent = self._connected(conn, command)
            self.log.append((dict(command), sent))
            return sent
        channel = command.get("channel")
        if not isinstance(channel, str) or channel not in conn.attached:
            raise CommandError(f"channel: {channel!r} is not attached by that connection")
        frames: list[dict[str, Any]] = getattr(self, f"_{name}")(conn, channel, command)
        self.log.append((dict(command), frames))
        return frames

    # -- commands -------------------------------------------------------------------------------

    def _sync(self, conn: Connection, channel: str, cmd: Mapping[str, Any]) -> list[dict]:
        now = self.clock()
        omit = set(_list(cmd, "omit"))
        members = [
            {**wire_presence(m), "action": Action.PRESENT.wire}
            for m in self.realtime.model.get(channel)
            if m.client_id not in omit
        ]
        added = [
            self._item(conn, i, item, now, "present") for i, item in enumerate(_list(cmd, "add"))
        ]
        items = members + added
        pages_wanted = _int(cmd, "pages", 1, minimum=1)
        between = _list(cmd, "between")
        out: list[dict[str, Any]] = []
        if cmd.get("channel_serial", True) is False:
            if pages_wanted != 1 or between:
                raise CommandError("channel_serial: false is one whole SYNC (pages 1, no between)")
            out.append({"action": ProtocolAction.SYNC, "channel": channel, "presence": items})
            return self._send_all(conn, out)
        size = -(-len(items) // pages_wanted) if items else 0
        pages = [items[i * size : (i + 1) * size] for i in range(pages_wanted)] if size else []
        pages = pages or [[] for _ in range(pages_wanted)]
        sync_id = f"scripted{next(self._sync_seq)}x{now}"
        complete = cmd.get("complete", True) is not False
        for number, page in enumerate(pages, 1):
            last = number == len(pages)
            cursor = "" if last and complete else f"c{number}"
            out.append(
                {
                    "action": ProtocolAction.SYNC,
                    "channel": channel,
                    "channelSerial": f"{sync_id}:{cursor}",
                    "presence": page,
                }
            )
            if number - 1 < len(between):
                out.append(self._presence_frame(conn, channel, between[number - 1], now))
        for extra in between[len(pages) :]:
            out.append(self._presence_frame(conn, channel, extra, now))
        return self._send_all(conn, out)

    def _attached(self, conn: Connection, channel: str, cmd: Mapping[str, Any]) -> list[dict]:
        flags = granted_modes(conn.capability, channel)
        if cmd.get("has_presence", False) is True:
            flags |= HAS_PRESENCE
        frame = {
            "action": ProtocolAction.ATTACHED,
            "channel": channel,
            "flags": flags,
            "channelSerial": f"scripted-{next(self._frame_seq)}",
        }
        return self._send_all(conn, [frame])

    def _presence(self, conn: Connection, channel: str, cmd: Mapping[str, Any]) -> list[dict]:
        now = self.clock()
        frames = [self._presence_frame(conn, channel, items, now) for items in _list(cmd, "frames")]
        if not frames:
            raise CommandError("frames: at least one list of presence items")
        repeat = _int(cmd, "repeat", 1, minimum=1)
        return self._send_all(conn, frames * repeat)

    def _detached(self, conn: Connection, channel: str, cmd: Mapping[str, Any]) -> list[dict]:
        if cmd.get("refuse_reentry", False) is True:
            conn.refuse_enter.add(channel)
        error = FrameError(DETACHED_ERROR, "scripted DETACHED (server control)", channel=channel)
        frame = {
            "action": ProtocolAction.DETACHED,
            "channel": channel,
            "error": error.error_info(),
        }
        return self._send_all(conn, [frame])

    def _error(self, conn: Connection, channel: str, cmd: Mapping[str, Any]) -> list[dict]:
        error = FrameError(
            CHANNEL_ERROR, "scripted channel ERROR (server control)", channel=channel
        )
        frame = {"action": ProtocolAction.ERROR, "channel": channel, "error": error.error_info()}
        sent = self._send_all(conn, [frame])
        self.realtime._detach(conn, channel)  # a channel ERROR fails the channel (RTL14)
        return sent

    def _connected(self, conn: Connection, cmd: Mapping[str, Any]) -> list[dict]:
        details = cmd.get("details") or {}
        if not isinstance(details, Mapping) or not set(details) <= _DETAILS:
            raise CommandError(f"details: an object with at most {sorted(_DETAILS)}")
        for key, value in details.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CommandError(f"details.{key}: expected a positive integer (ms)")
        frame = self.realtime._connected_frame(conn)
        frame["connectionDetails"] = {**frame["connectionDetails"], **details}
        return self._send_all(conn, [frame])

    # -- frames ---------------------------------------------------------------------------------

    def _send_all(self, conn: Connection, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for frame in frames:
            self.realtime.transport.send(conn, frame)
        return frames

    def _presence_frame(
        self, conn: Connection, channel: str, items: Any, now: int
    ) -> dict[str, Any]:
        if not isinstance(items, list) or not items:
            raise CommandError("a PRESENCE frame is a non-empty list of items")
        wire = [self._item(conn, i, item, now, "enter") for i, item in enumerate(items)]
        frame_conn = next(
            (item.get("connection_id") for item in items if item.get("connection_id")),
            "scripted",
        )
        return {
            "action": ProtocolAction.PRESENCE,
            "channel": channel,
            "id": f"{frame_conn}:{next(self._frame_seq)}",
            "connectionId": frame_conn,
            "timestamp": now,
            "presence": wire,
        }

    def _item(
        self, conn: Connection, position: int, item: Any, now: int, default: str | None
    ) -> dict[str, Any]:
        if not isinstance(item, Mapping):
            raise CommandError(f"presence item: expected an object, got {item!r}")
        unknown = set(item) - _ITEM_FIELDS
        if unknown:
            raise CommandError(f"presence item: unknown fields {sorted(unknown)}")
        try:
            action = Action(item.get("action", default))
        except ValueError:
            raise CommandError(f"presence item: unknown action {item.get('action')!r}") from None
        if action is Action.ABSENT:
            raise CommandError("presence item: absent is never sent by a server")
        client_id = item.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise CommandError("presence item: client_id is required")
        connection_id = item.get("connection_id") or "scripted"
        serial = item["serial"] if "serial" in item else next(self._serial)
        index = item.get("index", position)
        if "id" in item:
            id_ = item["id"]
        elif item.get("synthesized"):
            id_ = f"synthesized-{serial}:{index}"
        else:
            id_ = f"{connection_id}:{serial}:{index}"
        wire: dict[str, Any] = {
            "id": id_,
            "action": action.wire,
            "clientId": client_id,
            "connectionId": connection_id,
            "timestamp": now + int(item.get("timestamp", 0)),
        }
        data, encoding = _wire_data(item.get("data"), item.get("encoding"))
        if data is not None:
            wire["data"] = data
        if encoding:
            wire["encoding"] = encoding
        omit = item.get("omit") or []
        if not isinstance(omit, list) or not set(omit) <= _OMITTABLE:
            raise CommandError(f"presence item: omit takes some of {sorted(_OMITTABLE)}")
        for name in omit:
            wire.pop(name, None)
        if wire.get("id") is None:
            wire.pop("id", None)
        return wire


def _wire_data(data: Any, encoding: Any) -> tuple[Any, str | None]:
    """Item data as a server sends it (see the module docstring); CommandError if it is not
    presence data (TP3e: a string, a JSON object or array, or binary)."""
    if encoding is not None:
        if not isinstance(encoding, str) or not encoding:
            raise CommandError("presence item: encoding is a non-empty string")
        if not isinstance(data, str | bytes):
            raise CommandError("presence item: data under an encoding is a string or binary")
        return data, encoding
    if data is None or isinstance(data, str | bytes):
        return data, None
    if isinstance(data, dict | list):
        try:
            return json.dumps(data, separators=(",", ":"), allow_nan=False), "json"
        except (TypeError, ValueError) as exc:
            raise CommandError(f"presence item: data is not JSON ({exc})") from None
    raise CommandError(
        f"presence item: data {data!r} is not presence data (a string, a JSON object or "
        "array, or binary)"
    )


def _list(cmd: Mapping[str, Any], name: str) -> list[Any]:
    value = cmd.get(name) or []
    if not isinstance(value, list):
        raise CommandError(f"{name}: expected a list")
    return value


def _int(cmd: Mapping[str, Any], name: str, default: int, minimum: int) -> int:
    value = cmd.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CommandError(f"{name}: expected an integer >= {minimum}")
    return value

"""The realtime frame state machine of the reference server: connections and channels on the Ably
protocol (the subset of `docs/protocol.md`), frames in (JSON or MessagePack, `codec.py`), model
calls, frames out.

All presence state lives in the `PresenceModel` (the oracle); this module only translates frames
to model calls and model outcomes to frames.

Connection life:
- upgrade `/?key=name:secret&clientId=...&format=json|msgpack` (or `accessToken` / `access_token` for a
  token from `issue_token`) -> CONNECTED, or ERROR and close (`auth.py` checks the query);
- HEARTBEAT is echoed with its id; the server sends `{"action":0}` below `maxIdleInterval`;
- ATTACH -> ATTACHED (flags 983040, + HAS_PRESENCE when there are members) then SYNC pages;
  DETACH -> DETACHED, and the connection's members on the channel leave;
- PRESENCE -> ACK or NACK, then one broadcast, encoded once, to every attached connection;
- CLOSE -> CLOSED, members leave at once; a transport lost without CLOSE keeps the members for
  `leave_grace` seconds, then their leaves are synthesized (ids not starting with the
  connectionId, RTP2b1);
- resume (RTN15): a lost connection stays resumable while its members wait out the grace: the
  frames sent to it meanwhile are kept (at most `RESUME_BACKLOG`); an upgrade with
  `resume=<connectionKey>` then gets CONNECTED with the same connectionId and no error
  (RTN15c6), the kept frames, and ATTACHED with the RESUMED flag for each channel it attaches
  again. An unknown or expired key, an overflowing backlog or `refuse_resume` give a new
  connection whose CONNECTED carries error 80008 (RTN15c7);
- a bad frame gets an ERROR (or NACK) naming the problem; the connection stays open and nothing
  else changes. Every frame a client sends goes to the frame recorder (`inspection.FrameLog`).

Everything runs on one event loop; a frame is handled synchronously from start to end, so the
model and the outgoing queues always change together.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import secrets
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol

from aiohttp import web
from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.model import IdFactory, PresenceModel, message_size
from presence_conformance.reference_impl.protocol import (
    HAS_PRESENCE,
    RESUMED,
    SERVER_ONLY_ACTIONS,
    Flag,
    ProtocolAction,
)
from presence_conformance.reference_impl.server.auth import (
    Authenticator,
    ConnectGrant,
    require_attach,
    require_operation,
)
from presence_conformance.reference_impl.server.codec import (
    DecodeError,
    decode_json,
    decode_msgpack,
)
from presence_conformance.reference_impl.server.config import (
    ServerConfig,
    capability_allows,
    capability_grants,
)
from presence_conformance.reference_impl.server.connection import Connection
from presence_conformance.reference_impl.server.transport import Transport, close_ws
from presence_conformance.reference_impl.server.wire import (
    CLIENT_PRESENCE_ACTIONS,
    INTERNAL_ERROR,
    INVALID_CHANNEL_NAME,
    MAX_NESTING,
    UNABLE_TO_RECOVER,
    FrameError,
    WireData,
    decode_data,
    is_int,
    json_type,
    short,
    too_deep,
    wire_presence,
)
from presence_conformance.reference_impl.types import Action, Data, PresenceMessage

log = logging.getLogger(__name__)

RESUME_BACKLOG = 1000
"""Frames kept for a lost connection; beyond that it can no longer be resumed."""

_HEARTBEAT = {"action": ProtocolAction.HEARTBEAT}
_PRESENCE = int(ProtocolAction.PRESENCE)
# members bound once: an enum member read through its class costs more than a global
_ACK_ACTION, _PRESENCE_ACTION, _LEAVE = ProtocolAction.ACK, ProtocolAction.PRESENCE, Action.LEAVE
_MODEL_OPS = {
    Action.ENTER: PresenceModel.enter,
    Action.UPDATE: PresenceModel.update,
    Action.LEAVE: PresenceModel.leave,
}
CONNECTION_LIMIT = 42910  # Ably: rate limit exceeded; request rejected
# Client actions the reference server does not implement (refused with 40000, not as unknown).
_UNSUPPORTED_ACTIONS = frozenset(
    {
        ProtocolAction.AUTH,
        ProtocolAction.CONNECT,
        ProtocolAction.DISCONNECT,
        ProtocolAction.ACTIVATE,
        ProtocolAction.OBJECT,
        ProtocolAction.OBJECT_SYNC,
        ProtocolAction.ANNOTATION,
    }
)


class FrameRecorder(Protocol):
    """Where every client frame is recorded for inspection (`inspection.FrameLog`)."""

    def open(self, connection_id: str) -> None: ...

    def record(self, connection_id: str, frame: Any, size: int) -> None: ...

    def record_unparsable(self, connection_id: str, text: str, size: int) -> None: ...

    def record_unparsable_binary(self, connection_id: str, data: bytes, size: int) -> None: ...

    def record_binary(self, connection_id: str, size: int) -> None: ...

    def record_text(self, connection_id: str, size: int) -> None: ...


class RealtimeProtocol:
    """The connection and channel protocol of one server, over its `Transport`.

    `connections` holds the connections whose transport is open (state open or closing),
    `dropped` those that lost it and wait out the leave grace.
    """

    def __init__(
        self,
        config: ServerConfig,
        model: PresenceModel,
        ids: IdFactory,
        auth: Authenticator,
        recorder: FrameRecorder,
        stats: collections.Counter[str],
    ) -> None:
        self.config = config
        self.model = model
        self.auth = auth
        self.stats = stats
        self.transport = Transport(config, stats, self)
        self.connections: dict[str, Connection] = {}  # open or closing
        self.dropped: dict[str, Connection] = {}  # lost transport, leaves pending
        self._ids = ids
        self._recorder = recorder
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._subscribers: dict[str, dict[str, Connection]] = {}  # channel -> attached
        self._instance = secrets.token_hex(3)
        self._conn_seq = itertools.count(1)
        self._serial_seq = itertools.count(1)
        self._sync_seq = itertools.count(1)

    # -- the server's life -----------------------------------------------------------------------

    async def heartbeats(self, interval: float) -> None:
        """Send a HEARTBEAT to every open connection every `interval` seconds, forever."""
        while True:
            await asyncio.sleep(interval)
            live = [c for c in self.connections.values() if c.state == "open"]
            self.transport.broadcast(live, _HEARTBEAT)  # encoded once per format

    async def shutdown(self) -> None:
        """Close every connection; no leaves are synthesized."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        conns = list(self.connections.values())
        for conn in conns:
            conn.state = "closed"
            if conn.writer is not None:
                conn.writer.cancel()
        if conns:
            await asyncio.gather(*(close_ws(c.ws, 1001) for c in conns), return_exceptions=True)

    def expire_now(self, connection_id: str) -> None:
        """End the leave grace of a dropped connection at once."""
        handle = self._timers.pop(connection_id, None)
        if handle is not None:
            handle.cancel()
            self._expire(connection_id)

    # -- the transport's calls (transport.FrameHandler) ------------------------------------------

    def authenticate(self, query: Mapping[str, str]) -> ConnectGrant:
        """Check an upgrade's query; FrameError refuses the connection (also when
        `max_connections` are open)."""
        grant = self.auth.connect(query)
        if len(self.connections) >= self.config.max_connections:
            self.stats["connections_refused"] += 1
            raise FrameError(
                CONNECTION_LIMIT,
                f"connection limit: {self.config.max_connections} connections are open; "
                "try again later",
                status_code=429,
            )
        return grant

    def refuse_resume(self, connection_id: str) -> None:
        """Fault injection: the next resume of this connection is refused (RTN15c7)."""
        conn = self.connections.get(connection_id) or self.dropped.get(connection_id)
        if conn is not None:
            conn.resumable = False

    def _resumable(self, key: str, grant: ConnectGrant) -> Connection | None:
        """The lost connection a `resume` key names, if it can be resumed by this client."""
        cid = key.rpartition("!")[2]
        live = self.connections.get(cid)
        if live is not None and live.key == key and live.state == "open":
            # the client is back before the server noticed the old transport was gone
            self.lose(live)
            if live.writer is not None:
                live.writer.cancel()
            if isinstance(live.transport, asyncio.Transport):
                live.transport.abort()
        old = self.dropped.get(cid)
        if (
            old is None
            or old.key != key
            or not old.resumable
            or old.backlog is None
            or old.key_name != grant.key_name
            or old.client_id != grant.client_id
        ):
            return None
        return old

    def _resume(
        self, ws: web.WebSocketResponse, old: Connection, fmt: Literal["json", "msgpack"]
    ) -> Connection:
        """RTN15c6: the lost connection `old` continues on `ws`, same id and key, in the wire
        format the new transport asked for."""
        handle = self._timers.pop(old.id, None)
        if handle is not None:
            handle.cancel()
        del self.dropped[old.id]
        old.state = "closed"
        conn = Connection(
            id=old.id,
            key=old.key,
            key_name=old.key_name,
            client_id=old.client_id,
            capability=old.capability,
            ws=ws,
            format=fmt,
        )
        conn.entered = set(old.entered)
        self.model.resume_connection(conn.id)
        for channel in sorted(old.attached):  # subscribed until the client attaches again
            subscribers = self._subscribers.get(channel)
            if subscribers is not None and subscribers.get(conn.id) is old:
                subscribers[conn.id] = conn
        conn.resumed = set(old.attached)
        self.connections[conn.id] = conn
        self.transport.start_writer(conn)
        self.transport.send(conn, self._connected_frame(conn))
        for frame in old.backlog or ():
            self._send(conn, frame)
        self.stats["resumed"] += 1
        return conn

    def _connected_frame(self, conn: Connection) -> dict[str, Any]:
        details: dict[str, Any] = {
            "connectionKey": conn.key,
            "maxMessageSize": self.config.max_message_size,
            "maxInboundRate": 250,
            "maxOutboundRate": 100,
            "maxFrameSize": self.config.max_frame_size,
            "serverId": self.config.server_id,
            "connectionStateTtl": self.config.connection_state_ttl,
            "maxIdleInterval": self.config.max_idle_interval,
        }
        if conn.client_id is not None:
            details = {"clientId": conn.client_id, **details}
        return {
            "action": ProtocolAction.CONNECTED,
            "connectionId": conn.id,
            "connectionKey": conn.key,
            "connectionDetails": details,
        }

    def open(self, ws: web.WebSocketResponse, grant: ConnectGrant) -> Connection:
        """Register an accepted connection and send CONNECTED (a resumed one if the client
        asked to resume a connection that can be resumed)."""
        resume_error = grant.resume_error
        if grant.resume_key is not None:
            old = self._resumable(grant.resume_key, grant)
            if old is not None:
                return self._resume(ws, old, grant.format)
            resume_error = FrameError(
                UNABLE_TO_RECOVER,
                "resume: the connection cannot be resumed (unknown or expired connectionKey); "
                "this is a new connection",
            )
        cid = f"{self._instance}-{next(self._conn_seq)}"
        conn = Connection(
            id=cid,
            key=f"{secrets.token_hex(4)}!{cid}",
            key_name=grant.key_name,
            client_id=grant.client_id,
            capability=grant.capability,
            ws=ws,
            format=grant.format,
        )
        client_id = grant.client_id
        self.model.open_connection(
            None if client_id in (None, "*") else client_id, grant.capability, connection_id=cid
        )
        self.connections[cid] = conn
        self._recorder.open(cid)
        connected = self._connected_frame(conn)
        if resume_error is not None:
            connected["error"] = resume_error.error_info()
        self.transport.start_writer(conn)
        self.transport.send(conn, connected)
        self.stats["connections"] += 1
        self.stats[f"connections.{conn.format}"] += 1
        return conn

    def on_text(self, conn: Connection, text: str) -> None:
        """Decode, record and handle one text (JSON) frame."""
        self.stats["frames"] += 1
        size = len(text)
        if size * 4 > self.config.max_frame_size:  # only then can the UTF-8 size matter
            size = len(text.encode("utf-8", "surrogatepass"))
        if conn.format != "json":
            self._recorder.record_text(conn.id, size)
            self._send_error(
                conn,
                FrameError(
                    errors.BAD_REQUEST,
                    f"text frame ({size} bytes) on a format={conn.format} connection: send "
                    "MessagePack in binary frames (or connect with format=json)",
                ),
            )
            return
        try:
            frame = decode_json(text)
        except DecodeError as exc:
            self._recorder.record_unparsable(conn.id, text, size)
            if conn.state == "open":
                self._send_error(conn, FrameError(errors.BAD_REQUEST, f"malformed frame: {exc}"))
            return
        self._on_frame(conn, frame, size)

    def on_binary(self, conn: Connection, data: bytes) -> None:
        """Decode, record and handle one binary (MessagePack) frame; refused on a JSON
        connection."""
        self.stats["frames"] += 1
        size = len(data)
        if conn.format != "msgpack":
            self._recorder.record_binary(conn.id, size)
            self._send_error(
                conn,
                FrameError(
                    errors.BAD_REQUEST,
                    f"binary frame ({size} bytes) on a format=json connection: send JSON "
                    "text frames, or connect with format=msgpack to speak MessagePack",
                ),
            )
            return
        try:
            frame = decode_msgpack(data)
        except DecodeError as exc:
            self._recorder.record_unparsable_binary(conn.id, data, size)
            if conn.state == "open":
                self._send_error(conn, FrameError(errors.BAD_REQUEST, f"malformed frame: {exc}"))
            return
        self._on_frame(conn, frame, size)

    def _on_frame(self, conn: Connection, frame: Any, size: int) -> None:
        """Record and handle one decoded frame of `size` bytes."""
        channel = frame.get("channel") if isinstance(frame, dict) else None
        channel = channel if isinstance(channel, str) and channel else None
        self._recorder.record(conn.id, frame, size)
        if conn.state != "open":
            return
        try:
            if size > self.config.max_frame_size:
                raise _oversized(frame, size, self.config.max_frame_size, channel)
            if not self._presence_fast(conn, frame):
                self._dispatch(conn, frame)
        except FrameError as exc:
            self._send_error(conn, exc)
        except PresenceError as exc:
            self._send_error(conn, FrameError.from_presence_error(exc, channel=channel))
        except Exception as exc:
            log.exception("connection %s: internal error on a frame", conn.id)
            self.stats["internal_errors"] += 1
            self._send_error(
                conn,
                FrameError(
                    INTERNAL_ERROR,
                    f"internal error handling the frame "
                    f"({type(exc).__name__}); nothing was applied",
                    channel=channel,
                    status_code=500,
                ),
            )

    def transport_closed(self, conn: Connection) -> None:
        """The WebSocket is gone: after CLOSE the connection is closed, else it is lost."""
        if conn.writer is not None and not conn.writer.done():
            conn.writer.cancel()
        if conn.state == "open":
            self.lose(conn)
        elif conn.state == "closing":
            conn.state = "closed"
            self.connections.pop(conn.id, None)

    def lose(self, conn: Connection) -> None:
        """The transport is gone without CLOSE: members stay for `leave_grace` seconds, and
        the connection can be resumed until then (the frames for it are kept meanwhile)."""
        conn.state = "dropped"
        self.connections.pop(conn.id, None)
        self.model.drop_connection(conn.id)
        self.stats["dropped"] += 1
        self.dropped[conn.id] = conn
        loop = asyncio.get_running_loop()
        self._timers[conn.id] = loop.call_later(self.config.leave_grace, self._expire, conn.id)

    # -- sending ---------------------------------------------------------------------------------

    def _send(self, conn: Connection, frame: dict[str, Any]) -> None:
        self.transport.send(conn, frame)

    @staticmethod
    def _keep(conn: Connection, frame: dict[str, Any]) -> None:
        """A frame for a lost connection: kept for its resume, while the backlog allows."""
        if conn.backlog is None:
            return
        if len(conn.backlog) >= RESUME_BACKLOG:
            conn.backlog = None  # too much was missed: the resume will be refused
            return
        conn.backlog.append(frame)

    def _broadcast(self, channel: str, frame: dict[str, Any]) -> None:
        """Encode once; send the same text to every connection attached to `channel`."""
        subscribers = self._subscribers.get(channel)
        if not subscribers:
            return
        live = []
        for conn in subscribers.values():
            if conn.state == "dropped":
                self._keep(conn, frame)
            else:
                live.append(conn)
        self.transport.broadcast(live, frame)
        self.stats["broadcasts"] += 1

    def _send_error(self, conn: Connection, exc: FrameError) -> None:
        self.stats["errors"] += 1
        if exc.msg_serial is not None:
            self._send(
                conn,
                {
                    "action": ProtocolAction.NACK,
                    "msgSerial": exc.msg_serial,
                    "count": 1,
                    "error": exc.error_info(),
                },
            )
            return
        frame: dict[str, Any] = {"action": ProtocolAction.ERROR, "error": exc.error_info()}
        if exc.channel is not None:
            frame["channel"] = exc.channel
        self._send(conn, frame)
        if exc.channel is not None and exc.channel in conn.attached:
            # A channel ERROR fails the channel on the client (RTN15i): it is detached here too.
            self._detach(conn, exc.channel)

    # -- frames ----------------------------------------------------------------------------------

    def _dispatch(self, conn: Connection, frame: Any) -> None:
        if not isinstance(frame, dict):
            raise FrameError(
                errors.BAD_REQUEST,
                f"frame: expected a JSON object (ProtocolMessage), got {json_type(frame)}",
            )
        action = frame.get("action")
        channel = frame.get("channel")
        scope = channel if isinstance(channel, str) and channel else None
        if "action" not in frame:
            raise FrameError(errors.BAD_REQUEST, "action: missing", channel=scope)
        if not is_int(action):
            raise FrameError(
                errors.BAD_REQUEST,
                f"action: expected an integer, got {json_type(action)} {short(action)}",
                channel=scope,
            )
        if action == ProtocolAction.HEARTBEAT:
            self._on_heartbeat(conn, frame)
        elif action == ProtocolAction.ATTACH:
            self._on_attach(conn, frame)
        elif action == ProtocolAction.DETACH:
            self._on_detach(conn, frame)
        elif action == ProtocolAction.PRESENCE:
            self._on_presence(conn, frame)
        elif action == ProtocolAction.MESSAGE:
            self._on_message(conn, frame)
        elif action == ProtocolAction.CLOSE:
            self._on_close(conn)
        elif action in SERVER_ONLY_ACTIONS:
            raise FrameError(
                errors.BAD_REQUEST,
                f"action: {action} ({ProtocolAction(action).name}) is sent by servers, "
                "never by clients",
                channel=scope,
            )
        elif action in _UNSUPPORTED_ACTIONS:
            raise FrameError(
                errors.BAD_REQUEST,
                f"action: {action} ({ProtocolAction(action).name}) is not supported by the "
                "reference server",
                channel=scope,
            )
        else:
            raise FrameError(
                errors.BAD_REQUEST, f"action: unknown action {short(action)}", channel=scope
            )

    def _channel(self, frame: dict[str, Any], msg_serial: int | None = None) -> str:
        channel = frame.get("channel")
        if channel is None:
            raise FrameError(errors.BAD_REQUEST, "channel: missing", msg_serial=msg_serial)
        if not isinstance(channel, str):
            raise FrameError(
                INVALID_CHANNEL_NAME,
                f"channel: expected a string, got {json_type(channel)} {short(channel)}",
                msg_serial=msg_serial,
            )
        if not channel:
            raise FrameError(
                INVALID_CHANNEL_NAME, "channel: empty channel name", msg_serial=msg_serial
            )
        if len(channel) > self.config.max_channel_name_length:
            raise FrameError(
                INVALID_CHANNEL_NAME,
                f"channel: name of {len(channel)} characters "
                f"exceeds {self.config.max_channel_name_length}",
                channel=channel,
                msg_serial=msg_serial,
            )
        return channel

    @staticmethod
    def _msg_serial(frame: dict[str, Any], action: str, channel: str | None) -> int:
        serial = frame.get("msgSerial")
        if "msgSerial" not in frame or serial is None:
            raise FrameError(
                errors.BAD_REQUEST,
                f"msgSerial: missing ({action} needs one to be ACKed)",
                channel=channel,
            )
        if not is_int(serial) or serial < 0:
            raise FrameError(
                errors.BAD_REQUEST,
                f"msgSerial: expected a non-negative integer, got "
                f"{json_type(serial)} {short(serial)}",
                channel=channel,
            )
        return int(serial)

    def _on_heartbeat(self, conn: Connection, frame: dict[str, Any]) -> None:
        hid = frame.get("id")
        if hid is None:
            self._send(conn, _HEARTBEAT)
            return
        if not isinstance(hid, str):
            raise FrameError(
                errors.BAD_REQUEST, f"id: expected a string in HEARTBEAT, got {json_type(hid)}"
            )
        self._send(conn, {"action": ProtocolAction.HEARTBEAT, "id": hid})

    # -- ATTACH, SYNC, DETACH, CLOSE ------------------------------------------------------------

    def _on_attach(self, conn: Connection, frame: dict[str, Any]) -> None:
        channel = self._channel(frame)
        for name, ok in (
            (
                "params",
                frame.get("params") is None
                or (
                    isinstance(frame.get("params"), dict)
                    and all(isinstance(v, str) for v in frame["params"].values())
                ),
            ),
            (
                "flags",
                frame.get("flags") is None or (is_int(frame.get("flags")) and frame["flags"] >= 0),
            ),
            (
                "channelSerial",
                frame.get("channelSerial") is None or isinstance(frame.get("channelSerial"), str),
            ),
        ):
            if not ok:
                raise FrameError(
                    errors.BAD_REQUEST,
                    f"{name}: wrong type in ATTACH "
                    f"({json_type(frame.get(name))} {short(frame.get(name))})",
                    channel=channel,
                )
        require_attach(conn.capability, conn.key_name, channel)
        self.model.attach(conn.id, channel)
        conn.attached.add(channel)
        modes = granted_modes(conn.capability, channel)
        receives = bool(modes & Flag.PRESENCE_SUBSCRIBE)
        if receives:  # only subscribers hear the channel's presence (its own: _publish_events)
            self._subscribers.setdefault(channel, {})[conn.id] = conn
        # RTP17a: a connection without PRESENCE_SUBSCRIBE still hears its own members, so its
        # (re)attach syncs those (an ATTACHED without HAS_PRESENCE would tell it to drop them,
        # RTP19a: a resumed presence-only client would emit a LEAVE of its own member)
        members = (
            self.model.get(channel) if receives else self.model.get(channel, connection_id=conn.id)
        )
        # RTN15c6 / RTL3d: attached before the resume and nothing missed: RESUMED (RTP17i: the
        # client does not re-enter)
        resumed = RESUMED if channel in conn.resumed else 0
        conn.resumed.discard(channel)
        self._send(
            conn,
            {
                "action": ProtocolAction.ATTACHED,
                "channel": channel,
                "flags": modes | (HAS_PRESENCE if members else 0) | resumed,
                "channelSerial": self._channel_serial(),
            },
        )
        if members:
            self._sync(conn, channel, members)

    def _sync(self, conn: Connection, channel: str, members: list[PresenceMessage]) -> None:
        """RTP18: SYNC pages `<syncId>:<cursor>`, the last with an empty cursor."""
        sync_id = f"sync{self._instance}x{next(self._sync_seq)}"  # [A-Za-z0-9_-]+ (ably-js)
        size = self.config.sync_page_size
        pages = [members[i : i + size] for i in range(0, len(members), size)] or [[]]
        for number, page in enumerate(pages, 1):
            cursor = str(number) if number < len(pages) else ""
            self._send(
                conn,
                {
                    "action": ProtocolAction.SYNC,
                    "channel": channel,
                    "channelSerial": f"{sync_id}:{cursor}",
                    "presence": [wire_presence(m) for m in page],
                },
            )

    def _on_detach(self, conn: Connection, frame: dict[str, Any]) -> None:
        channel = self._channel(frame)
        self._send(conn, {"action": ProtocolAction.DETACHED, "channel": channel})
        self._detach(conn, channel)

    def _detach(self, conn: Connection, channel: str) -> None:
        """Stop sending `channel` to `conn`; its members there leave: a client cannot be present
        on a channel it is not attached to."""
        conn.attached.discard(channel)
        subscribers = self._subscribers.get(channel)
        if subscribers is not None:
            subscribers.pop(conn.id, None)
            if not subscribers:
                del self._subscribers[channel]
        if channel not in conn.entered:
            self.model.detach(conn.id, channel)
            return
        conn.entered.discard(channel)
        events = []
        for member in self.model.get(channel, connection_id=conn.id):
            try:
                outcome = self.model.leave(
                    conn.id, channel, client_id=member.client_id, event_id=self._ids("synthetic")
                )
            except PresenceError:  # pragma: no cover - a member could enter, so it can leave
                log.exception("connection %s: leave on detach refused", conn.id)
                continue
            for event in outcome.events:
                _set_member_wire(event, member)
                events.append(event)
        self.model.detach(conn.id, channel)
        self._publish_events(channel, events)

    def _on_close(self, conn: Connection) -> None:
        conn.state = "closing"
        pairs = self._member_pairs(conn)
        outcome = self.model.close_connection(conn.id)
        self.model.forget_connection(conn.id)
        self._unsubscribe_all(conn)
        self._send(conn, {"action": ProtocolAction.CLOSED})
        self.transport.close_after_flush(conn)
        self._publish_leaves(pairs, outcome.events)

    def _expire(self, connection_id: str) -> None:
        self._timers.pop(connection_id, None)
        conn = self.dropped.pop(connection_id, None)
        if conn is None:
            return
        self._unsubscribe_all(conn)
        conn.backlog = None
        try:
            pairs = self._member_pairs(conn)
            outcome = self.model.expire_connection(connection_id)
            self.model.forget_connection(connection_id)
            conn.state = "closed"
            self._publish_leaves(pairs, outcome.events)
        except Exception:  # pragma: no cover - a timer callback must never raise
            log.exception("connection %s: expiring its members failed", connection_id)

    def _unsubscribe_all(self, conn: Connection) -> None:
        for channel in conn.attached:
            subscribers = self._subscribers.get(channel)
            if subscribers is not None:
                subscribers.pop(conn.id, None)
                if not subscribers:
                    del self._subscribers[channel]
        conn.attached.clear()

    def _member_pairs(self, conn: Connection) -> list[tuple[str, PresenceMessage]]:
        return [
            (channel, member)
            for channel in sorted(conn.entered)
            for member in self.model.get(channel, connection_id=conn.id)
        ]

    def _publish_leaves(
        self, pairs: list[tuple[str, PresenceMessage]], events: Iterable[PresenceMessage]
    ) -> None:
        """Route the model's synthesized leaves (channel order, then member key) to channels."""
        queues: dict[str, collections.deque[tuple[str, PresenceMessage]]] = collections.defaultdict(
            collections.deque
        )
        for channel, member in pairs:
            queues[member.member_key].append((channel, member))
        by_channel: dict[str, list[PresenceMessage]] = {}
        for event in events:
            queue = queues.get(event.member_key)
            if not queue:  # pragma: no cover - the model only removes members it had
                log.error("synthesized leave for unknown member %s", event.member_key)
                continue
            channel, member = queue.popleft()
            _set_member_wire(event, member)
            by_channel.setdefault(channel, []).append(event)
        for channel, channel_events in by_channel.items():
            self._publish_events(channel, channel_events)

    def _publish_events(
        self,
        channel: str,
        events: list[PresenceMessage],
        conn: Connection | None = None,
        msg_serial: int | None = None,
    ) -> None:
        if not events:
            return
        frame: dict[str, Any] = {"action": _PRESENCE_ACTION, "channel": channel}
        if conn is not None:
            frame["id"] = f"{conn.id}:{msg_serial}"
            frame["connectionId"] = conn.id
        frame["timestamp"] = events[0].timestamp
        frame["channelSerial"] = self._channel_serial()
        frame["presence"] = [wire_presence(e) for e in events]
        self._broadcast(channel, frame)
        if (
            conn is not None
            and channel in conn.attached
            and conn.id not in self._subscribers.get(channel, ())
        ):
            self._send(conn, frame)  # RTP17a: its own members reach it without subscribe

    def _channel_serial(self) -> str:
        return f"{self._instance}-{next(self._serial_seq)}"

    # -- PRESENCE and MESSAGE --------------------------------------------------------------------

    def _on_presence(self, conn: Connection, frame: dict[str, Any]) -> None:
        raw_channel = frame.get("channel")
        scope = raw_channel if isinstance(raw_channel, str) and raw_channel else None
        serial = self._msg_serial(frame, "PRESENCE", scope)
        channel = self._channel(frame, serial)
        if channel not in conn.attached:
            raise FrameError(
                errors.CHANNEL_STATE,
                f"channel {channel!r}: not attached; send ATTACH before PRESENCE",
                msg_serial=serial,
            )
        items = frame.get("presence")
        if not isinstance(items, list) or not items:
            raise FrameError(
                errors.BAD_REQUEST,
                "presence: expected a non-empty array of presence "
                f"messages, got {json_type(items)}",
                msg_serial=serial,
            )
        require_operation(conn.capability, conn.key_name, channel, "presence", serial)
        if channel in conn.refuse_enter and any(
            isinstance(i, dict) and i.get("action") == Action.ENTER.wire for i in items
        ):
            conn.refuse_enter.discard(channel)
            raise FrameError(
                errors.BAD_REQUEST,
                "scripted refusal of an ENTER (server control)",
                msg_serial=serial,
            )
        try:
            prepared = [self._prepare_item(conn, index, item) for index, item in enumerate(items)]
        except FrameError as exc:
            exc.msg_serial = serial
            raise
        total = sum(size for *_, size in prepared)
        if total > self.config.max_message_size:
            raise FrameError(
                errors.MESSAGE_TOO_LARGE,
                f"presence: message size {total} bytes "
                f"exceeds maxMessageSize {self.config.max_message_size}",
                msg_serial=serial,
            )
        events: list[PresenceMessage] = []
        failure: FrameError | None = None
        for index, (action, client_id, data, wire, _size) in enumerate(prepared):
            behalf = client_id if conn.client_id == "*" else None
            if action is Action.ENTER and _reenters_present_member(
                self.model, channel, conn.id, client_id, data, items[index]
            ):
                conn.entered.add(channel)
                continue  # RTP17g: nothing changes, nobody hears it
            previous = None
            if action is Action.LEAVE and wire.data is None:
                found = self.model.get(channel, client_id=client_id, connection_id=conn.id)
                previous = found[0] if found else None
            op = _MODEL_OPS[action]
            try:
                outcome = op(
                    self.model,
                    conn.id,
                    channel,
                    data,
                    client_id=behalf,
                    event_id=f"{conn.id}:{serial}:{index}",
                )
            except PresenceError as exc:  # pragma: no cover - _prepare_item checks first
                failure = FrameError.from_presence_error(exc, msg_serial=serial)
                break
            for event in outcome.events:
                if previous is not None:
                    _set_member_wire(event, previous)
                else:
                    event.extra["wire"] = wire
                events.append(event)
            conn.entered.add(channel)
        # By default the broadcast goes out before the ACK, so the sender has heard its own event
        # by the time its call returns (a listener added right after enter() must not receive it
        # late). `ack_first` reverses that (both on one connection's queue, so also on its wire).
        self.stats["presence"] += 1
        if not self.config.ack_first:
            self._publish_events(channel, events, conn, serial)
        if failure is not None:
            self._send_error(conn, failure)
        else:
            self._send(conn, {"action": ProtocolAction.ACK, "msgSerial": serial, "count": 1})
        if self.config.ack_first:
            self._publish_events(channel, events, conn, serial)

    def _prepare_item(
        self, conn: Connection, index: int, item: Any
    ) -> tuple[Action, str, Data, WireData, int]:
        """Check one presence item completely before anything is applied (a frame is all or
        nothing); return (action, clientId, model data, wire data, size)."""
        where = f"presence[{index}]"
        if not isinstance(item, dict):
            raise FrameError(
                errors.BAD_REQUEST, f"{where}: expected an object, got {json_type(item)}"
            )
        number = item.get("action")
        if not is_int(number) or number not in CLIENT_PRESENCE_ACTIONS:
            hint = ""
            if is_int(number) and number in (0, 1):
                hint = f" ({Action.from_wire(number).value} is never sent by clients)"
            raise FrameError(
                errors.BAD_REQUEST,
                f"{where}.action: expected 2 (enter), 3 (leave) or "
                f"4 (update), got {short(number)}{hint}",
            )
        action = CLIENT_PRESENCE_ACTIONS[number]
        client_id = self._item_client_id(conn, item.get("clientId"), where)
        extras = item.get("extras")
        if extras is not None and not isinstance(extras, dict):
            raise FrameError(
                errors.BAD_REQUEST, f"{where}.extras: expected an object, got {json_type(extras)}"
            )
        if too_deep(extras):
            raise FrameError(
                errors.INVALID_DATA, f"{where}.extras: nested deeper than {MAX_NESTING} levels"
            )
        data = decode_data(item.get("data"), item.get("encoding"), where)
        try:
            extras_size = len(json.dumps(extras, allow_nan=False)) if extras else 0
            if not isinstance(item.get("data"), (str, bytes, type(None))):  # these always can
                json.dumps(item.get("data"), allow_nan=False, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise FrameError(
                errors.INVALID_DATA,
                f"{where}: data is not valid Unicode (a lone surrogate has no UTF-8 form)",
            ) from None
        except (ValueError, TypeError, RecursionError):
            raise FrameError(
                errors.INVALID_DATA, f"{where}: data or extras cannot be re-encoded as JSON"
            ) from None
        try:
            size = message_size(client_id, data) + extras_size
        except UnicodeEncodeError:
            raise FrameError(
                errors.INVALID_DATA,
                f"{where}: data or clientId is not valid Unicode (a lone surrogate has no UTF-8 form)",
            ) from None
        if size > self.config.max_message_size:
            raise FrameError(
                errors.MESSAGE_TOO_LARGE,
                f"{where}: message size {size} bytes "
                f"exceeds maxMessageSize {self.config.max_message_size}",
            )
        wire = WireData(item.get("data"), item.get("encoding") or None, extras)
        return action, client_id, data, wire, size

    @staticmethod
    def _item_client_id(conn: Connection, value: Any, where: str) -> str:
        """RTP8c / RTP8i / RTP8j / RTP15f: whose presence this item is."""
        if value is not None and (not isinstance(value, str) or not value or value == "*"):
            raise FrameError(
                errors.INVALID_CLIENT_ID, f"{where}.clientId: invalid clientId {short(value)}"
            )
        if conn.client_id == "*":
            if value is None:
                raise FrameError(
                    errors.INVALID_CLIENT_ID,
                    f"{where}.clientId: missing; a wildcard "
                    "(clientId '*') connection must name the clientId of each "
                    "presence message (RTP8j, RTP15)",
                )
            return value
        if conn.client_id is None:
            if value is None:
                raise FrameError(
                    errors.NO_CLIENT_ID,
                    f"{where}: cannot enter presence without a "
                    "clientId; the connection is anonymous (RTP8i, RTP8j)",
                )
            raise FrameError(
                errors.INVALID_CLIENT_ID,
                f"{where}.clientId: {short(value)} given on "
                "an anonymous connection, which cannot act for a clientId (RTP8j)",
            )
        if value is not None and value != conn.client_id:
            raise FrameError(
                errors.INVALID_CLIENT_ID,
                f"{where}.clientId: {short(value)} does not "
                f"match the connection's clientId {conn.client_id!r} (RTP15f)",
            )
        return conn.client_id

    def _presence_fast(self, conn: Connection, frame: Any) -> bool:
        """The common PRESENCE frame, without the general path's checks one by one: one item
        on an attached channel, string data or none, no encoding, extras or id, by a
        connection with a clientId (or a wildcard one naming it). It does exactly what
        `_on_presence` does with such a frame. Anything else, every frame that is refused
        included, returns False before anything changed, and `_on_presence` handles it (and
        names the problem). A check added to `_on_presence` must be made here too."""
        if type(frame) is not dict:
            return False
        number = frame.get("action")
        serial = frame.get("msgSerial")
        channel = frame.get("channel")
        items = frame.get("presence")
        if (
            type(number) is not int
            or number != _PRESENCE
            or type(serial) is not int
            or serial < 0
            or type(channel) is not str
            or channel not in conn.attached  # attached: a valid name (`_channel`)
            or type(items) is not list
            or len(items) != 1
            or type(item := items[0]) is not dict
        ):
            return False
        number = item.get("action")
        action = CLIENT_PRESENCE_ACTIONS.get(number) if type(number) is int else None
        data = item.get("data")
        if (
            action is None
            or (data is not None and type(data) is not str)
            or item.get("encoding") is not None
            or item.get("extras") is not None
            or item.get("id") is not None
        ):
            return False
        value, own = item.get("clientId"), conn.client_id
        if own == "*":
            if type(value) is not str or not value or value == "*":
                return False
            client_id, behalf = value, value
        elif own is None or (value is not None and value != own):
            return False
        else:
            client_id, behalf = own, None
        capability = conn.capability
        if capability is not None and not capability_allows(capability, channel, "presence"):
            return False
        try:
            if message_size(client_id, data) > self.config.max_message_size:
                return False
        except UnicodeEncodeError:  # the general path refuses it with its reason
            return False
        previous = None
        if action is _LEAVE and data is None:
            found = self.model.get(channel, client_id=client_id, connection_id=conn.id)
            previous = found[0] if found else None
        try:
            outcome = _MODEL_OPS[action](
                self.model,
                conn.id,
                channel,
                data,
                client_id=behalf,
                event_id=f"{conn.id}:{serial}:0",
            )
        except PresenceError:  # pragma: no cover - checked above; the model changed nothing
            return False
        events = outcome.events
        wire = WireData(data, None, None)
        for event in events:
            if previous is not None:
                _set_member_wire(event, previous)
            else:
                event.extra["wire"] = wire
        conn.entered.add(channel)
        self.stats["presence"] += 1
        ack = {"action": _ACK_ACTION, "msgSerial": serial, "count": 1}
        if self.config.ack_first:
            self._send(conn, ack)
            self._publish_events(channel, events, conn, serial)
        else:  # the broadcast before the ACK: see _on_presence
            self._publish_events(channel, events, conn, serial)
            self._send(conn, ack)
        return True

    def _on_message(self, conn: Connection, frame: dict[str, Any]) -> None:
        """MESSAGE (15): checked and ACKed; channel messages are not modelled."""
        raw_channel = frame.get("channel")
        scope = raw_channel if isinstance(raw_channel, str) and raw_channel else None
        serial = self._msg_serial(frame, "MESSAGE", scope)
        channel = self._channel(frame, serial)
        messages = frame.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise FrameError(
                errors.BAD_REQUEST,
                f"messages: expected an array of message objects, got {json_type(messages)}",
                msg_serial=serial,
            )
        require_operation(conn.capability, conn.key_name, channel, "publish", serial)
        try:
            size = sum(_data_size(m.get("data")) + len(str(m.get("name") or "")) for m in messages)
        except (ValueError, TypeError, RecursionError):
            raise FrameError(
                errors.INVALID_DATA,
                "messages: data cannot be re-encoded as JSON",
                msg_serial=serial,
            ) from None
        if size > self.config.max_message_size:
            raise FrameError(
                errors.MESSAGE_TOO_LARGE,
                f"messages: size {size} bytes exceeds "
                f"maxMessageSize {self.config.max_message_size}",
                msg_serial=serial,
            )
        self._send(conn, {"action": ProtocolAction.ACK, "msgSerial": serial, "count": 1})


def granted_modes(capability: Any, channel: str) -> int:
    """The ATTACHED mode flags (TR3q-t, RTL4m) the capability grants on `channel`: PRESENCE
    with `presence`, PUBLISH with `publish`, SUBSCRIBE and PRESENCE_SUBSCRIBE with `subscribe`
    (the mode set a client checks per RTL7i / RTP11f)."""
    ops = capability_grants(capability, channel)
    flags = 0
    if "presence" in ops:
        flags |= Flag.PRESENCE
    if "publish" in ops:
        flags |= Flag.PUBLISH
    if "subscribe" in ops:
        flags |= Flag.SUBSCRIBE | Flag.PRESENCE_SUBSCRIBE
    return int(flags)


def _oversized(frame: Any, size: int, limit: int, channel: str | None) -> FrameError:
    """The refusal of a frame above maxFrameSize: a NACK when the frame is a PRESENCE or
    MESSAGE with a usable msgSerial (the sender's channel and members stay as they were), a
    channel ERROR otherwise."""
    message = f"frame: {size} bytes exceeds maxFrameSize {limit}"
    serial: Any = frame.get("msgSerial") if isinstance(frame, dict) else None
    action = frame.get("action") if isinstance(frame, dict) else None
    if action in (ProtocolAction.PRESENCE, ProtocolAction.MESSAGE) and is_int(serial):
        if serial >= 0:
            return FrameError(errors.MESSAGE_TOO_LARGE, message, msg_serial=int(serial))
    return FrameError(errors.MESSAGE_TOO_LARGE, message, channel=channel)


def _reenters_present_member(
    model: PresenceModel, channel: str, connection_id: str, client_id: str, data: Data, item: Any
) -> bool:
    """True for an automatic re-entry (RTP17i, RTP17g) that brings nothing new: an ENTER that
    carries the id of a message this connection published, no newer (RTP2b2: msgSerial, then
    index) than the member still present: as a client sends after a resume (RTL3d attaches its
    channels again), possibly after a queued update that already changed the member. It is
    acknowledged and changes nothing."""
    item_id = item.get("id") if isinstance(item, dict) else None
    if not isinstance(item_id, str):
        return False
    found = model.get(channel, client_id=client_id, connection_id=connection_id)
    if not found or not isinstance(found[0].id, str):
        return False
    if found[0].id == item_id:
        return True
    mine, theirs = _serial_index(item_id, connection_id), _serial_index(found[0].id, connection_id)
    return mine is not None and theirs is not None and mine <= theirs


def _serial_index(message_id: str, connection_id: str) -> tuple[int, int] | None:
    """(msgSerial, index) of an id `connectionId:msgSerial:index` of this connection."""
    prefix, _, rest = message_id.rpartition(":")
    conn, _, serial = prefix.rpartition(":")
    if conn != connection_id or not serial.isdigit() or not rest.isdigit():
        return None
    return int(serial), int(rest)


def _set_member_wire(event: PresenceMessage, member: PresenceMessage | None) -> None:
    """A leave that carries `member`'s data carries it as the member's client sent it."""
    wire = member.extra.get("wire") if member is not None else None
    if isinstance(wire, WireData):
        event.extra["wire"] = WireData(wire.data, wire.encoding, None)


def _data_size(data: Any) -> int:
    """The size of a channel message's data: bytes as they are, anything else as JSON."""
    if isinstance(data, bytes):
        return len(data)
    return len(json.dumps(data))

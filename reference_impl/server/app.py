"""`PresenceServer`: the reference presence server on the Ably realtime protocol (JSON over ws://).

One aiohttp application on one port: the realtime WebSocket at `/` and the REST presence
endpoints (`presence_conformance.reference_impl.server.rest`). All presence state lives in one `PresenceModel`
(the oracle); this module only translates frames to model calls and model outcomes to frames.

Connection life (the protocol subset of `shared/research/ably-protocol.md`):
- upgrade `/?key=name:secret&clientId=...&format=json` (or `accessToken` / `access_token` for a
  token from `issue_token`) -> CONNECTED, or ERROR and close;
- HEARTBEAT is echoed with its id; the server sends `{"action":0}` below `maxIdleInterval`;
- ATTACH -> ATTACHED (flags 983040, + HAS_PRESENCE when there are members) then SYNC pages;
  DETACH -> DETACHED, and the connection's members on the channel leave;
- PRESENCE -> ACK or NACK, then one broadcast, encoded once, to every attached connection;
- CLOSE -> CLOSED, members leave at once; a transport lost without CLOSE keeps the members for
  `leave_grace` seconds, then their leaves are synthesized (ids not starting with the
  connectionId, RTP2b1);
- a bad frame gets an ERROR (or NACK) naming the problem; the connection stays open and nothing
  else changes. Every frame a client sends is recorded (`frames`).

Everything runs on one event loop; a frame is handled synchronously from start to end, so the
model and the outgoing queues always change together.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.model import IdFactory, PresenceModel, message_size
from presence_conformance.reference_impl.server import rest
from presence_conformance.reference_impl.server.config import (
    Capability,
    ConfigError,
    KeySpec,
    ServerConfig,
    TokenSpec,
    capability_allows,
    capability_any,
    check_capability,
    check_key_name,
    new_token,
)
from presence_conformance.reference_impl.server.wire import (
    CLIENT_PRESENCE_ACTIONS,
    HAS_PRESENCE,
    INTERNAL_ERROR,
    INVALID_CHANNEL_NAME,
    INVALID_CREDENTIALS,
    MAX_NESTING,
    MODE_FLAGS,
    SERVER_ONLY_ACTIONS,
    UNABLE_TO_RECOVER,
    Act,
    FrameError,
    WireData,
    decode_data,
    dumps,
    is_int,
    json_type,
    short,
    too_deep,
    wire_presence,
)
from presence_conformance.reference_impl.types import Action, PresenceMessage

log = logging.getLogger("presence_conformance.reference_impl.server")

_HEARTBEAT = dumps({"action": Act.HEARTBEAT})
_CLOSE = object()  # queue sentinel: flush, then close the socket
RECORD_LIMIT = 65536 + 4096  # frames larger than this are recorded in summary
DIRECT_WRITE_LIMIT = 65536  # bytes already buffered in the transport before frames are queued


@dataclass(eq=False)
class _Conn:
    """One realtime connection (one WebSocket)."""

    id: str
    key: str  # connectionKey
    key_name: str
    client_id: str | None  # None: anonymous; "*": wildcard
    capability: Capability
    ws: web.WebSocketResponse
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    attached: set[str] = field(default_factory=set)
    entered: set[str] = field(default_factory=set)  # channels where it may have members
    state: str = "open"  # open | closing | dropped | closed
    writer: asyncio.Task | None = None
    transport: asyncio.BaseTransport | None = None
    sending: bool = False  # the writer task is inside a send (a frame may not be out yet)


class PresenceServer:
    """The reference presence server. In-process use:

    server = PresenceServer(ServerConfig(leave_grace=0.2))
    host, port = await server.start()
    ... ws://host:port/?key=appid.keyid:secret&clientId=alice ...
    await server.stop()
    """

    def __init__(
        self, config: ServerConfig | None = None, *, clock: Callable[[], int] | None = None
    ) -> None:
        self.config = config or ServerConfig()
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._ids = IdFactory()
        self.model = PresenceModel(
            self._clock, self._ids, max_message_size=self.config.max_message_size
        )
        self._keys: dict[str, KeySpec] = dict(self.config.keys)
        self._tokens: dict[str, TokenSpec] = {}
        self._conns: dict[str, _Conn] = {}  # open or closing
        self._dropped: dict[str, _Conn] = {}  # lost transport, leaves pending
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._subscribers: dict[str, dict[str, _Conn]] = {}  # channel -> attached connections
        self._frames: collections.OrderedDict[str, collections.deque] = collections.OrderedDict()
        self._instance = secrets.token_hex(3)
        self._conn_seq = itertools.count(1)
        self._serial_seq = itertools.count(1)
        self._sync_seq = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._heartbeat_task: asyncio.Task | None = None
        self._host: str | None = None
        self._port: int | None = None
        self.stats = collections.Counter()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on `host:port` (0: a free port); return the address actually bound."""
        if self._runner is not None:
            raise RuntimeError("PresenceServer already started")
        app = web.Application(middlewares=[rest.error_middleware])
        app.router.add_get("/", self._ws_handler)
        rest.add_routes(app, self)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0]
        self._host, self._port = str(bound[0]), int(bound[1])
        interval = self.config.effective_heartbeat_interval
        if interval > 0:
            self._heartbeat_task = asyncio.create_task(self._heartbeats(interval))
        log.info("reference server listening on %s", self.url)
        return self._host, self._port

    async def stop(self) -> None:
        """Close every connection (no leaves are synthesized) and stop listening."""
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        conns = list(self._conns.values())
        for conn in conns:
            conn.state = "closed"
            if conn.writer is not None:
                conn.writer.cancel()
        if conns:
            await asyncio.gather(
                *(self._close_ws(c.ws, 1001) for c in conns), return_exceptions=True
            )
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> PresenceServer:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def host(self) -> str:
        if self._host is None:
            raise RuntimeError("PresenceServer not started")
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("PresenceServer not started")
        return self._port

    @property
    def url(self) -> str:
        """The realtime endpoint, `ws://host:port/`."""
        return f"ws://{self.host}:{self.port}/"

    @property
    def rest_url(self) -> str:
        """The REST base, `http://host:port`."""
        return f"http://{self.host}:{self.port}"

    @property
    def default_key(self) -> str:
        """`name:secret` of the first configured key."""
        name, spec = next(iter(self._keys.items()))
        return f"{name}:{spec.secret}"

    # -- keys, tokens, inspection ---------------------------------------------------------------

    def add_key(self, name: str, secret: str, capability: Capability | None = None) -> str:
        """Add (or replace) an API key at run time; returns `name:secret`."""
        check_key_name(name)
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"key {name!r}: empty secret")
        cap = check_capability(capability if capability is not None else {"*": ["*"]})
        self._keys[name] = KeySpec(secret, cap)
        return f"{name}:{secret}"

    def issue_token(
        self,
        key_name: str | None = None,
        client_id: str | None = None,
        capability: Capability | None = None,
    ) -> str:
        """An opaque token for `key_name` (default: the first key), usable as `accessToken` /
        `access_token` on the WebSocket and as `Authorization: Bearer base64(token)` on REST."""
        name = key_name or next(iter(self._keys))
        if name not in self._keys:
            raise ConfigError(f"key {name!r}: unknown key")
        cap = (
            check_capability(capability) if capability is not None else self._keys[name].capability
        )
        token = new_token()
        self._tokens[token] = TokenSpec(name, client_id, cap)
        return token

    def has_token(self, token: str) -> bool:
        return token in self._tokens

    def now(self) -> int:
        """The server's clock, ms since the epoch (the model's timestamps use it)."""
        return int(self._clock())

    def frames(self, connection_id: str) -> list[dict]:
        """Client->server frames recorded for a connection, oldest first (bounded, see
        `ServerConfig.frame_log_size`). Malformed frames appear as `{"$malformed": ...}`,
        oversized ones in summary with `"$size"`. Unknown connection ids give `[]`."""
        return [dict(f) for f in self._frames.get(connection_id, ())]

    def connection_ids(self) -> list[str]:
        """Ids of the connections whose transport is open."""
        return list(self._conns)

    def connection_client_id(self, connection_id: str) -> str | None:
        """The clientId a connection was opened with (`*` for wildcard, None anonymous)."""
        conn = self._conns.get(connection_id) or self._dropped.get(connection_id)
        if conn is None:
            raise KeyError(connection_id)
        return conn.client_id

    async def drop(self, connection_id: str) -> None:
        """Fault injection: cut a connection's transport as a network failure would (no CLOSE)."""
        conn = self._conns.get(connection_id)
        if conn is None:
            return
        transport = conn.transport
        if isinstance(transport, asyncio.Transport) and not transport.is_closing():
            transport.abort()
        else:
            await self._close_ws(conn.ws, 1006)

    def expire_now(self, connection_id: str) -> None:
        """End the leave grace of a dropped connection at once."""
        handle = self._timers.pop(connection_id, None)
        if handle is not None:
            handle.cancel()
            self._expire(connection_id)

    # -- authentication (REST uses it too) -------------------------------------------------------

    def authenticate_key(self, key: str) -> tuple[str, Capability]:
        """`name:secret` -> (key name, capability); FrameError 40101 / 40400 otherwise."""
        if ":" not in key:
            raise FrameError(INVALID_CREDENTIALS, "key: expected 'appId.keyId:secret'")
        name, secret = key.split(":", 1)
        spec = self._keys.get(name)
        if spec is None:
            raise FrameError(errors.NOT_FOUND, f"key: unknown key name {short(name)}")
        if not secrets.compare_digest(secret.encode(), spec.secret.encode()):
            raise FrameError(INVALID_CREDENTIALS, f"key: wrong secret for key {name!r}")
        return name, spec.capability

    def authenticate_token(self, token: str, param: str) -> TokenSpec:
        """A token issued by `issue_token`; FrameError 40101 naming `param` otherwise."""
        spec = self._tokens.get(token)
        if spec is None or spec.key_name not in self._keys:
            raise FrameError(
                INVALID_CREDENTIALS,
                f"{param}: unknown token (the reference server only accepts tokens "
                "from PresenceServer.issue_token)",
            )
        return spec

    def _connect_params(self, query: Any) -> tuple[str, str | None, Capability, FrameError | None]:
        """Check the upgrade query; return (key name, clientId, capability, resume error)."""
        fmt = query.get("format")
        if fmt is not None and fmt != "json":
            raise FrameError(
                errors.BAD_REQUEST,
                f"format: {short(fmt)} is not supported; the "
                "reference server speaks JSON only (format=json / useBinaryProtocol "
                "false)",
            )
        client_id = query.get("clientId")
        if client_id is not None and not client_id:
            raise FrameError(errors.INVALID_CLIENT_ID, "clientId: empty clientId")
        key = query.get("key")
        token_param = next((p for p in ("accessToken", "access_token") if p in query), None)
        if key is not None:
            key_name, capability = self.authenticate_key(key)
        elif token_param is not None:
            spec = self.authenticate_token(query[token_param], token_param)
            key_name, capability = spec.key_name, spec.capability
            if spec.client_id is not None:
                if client_id is not None and client_id != spec.client_id:
                    raise FrameError(
                        errors.INVALID_CLIENT_ID,
                        f"clientId: {short(client_id)} does not match the token's "
                        f"clientId {spec.client_id!r}",
                    )
                client_id = spec.client_id
        else:
            raise FrameError(
                INVALID_CREDENTIALS,
                "no credentials: expected key=name:secret (or accessToken) in the query",
            )
        resume_error = None
        for param in ("resume", "recover"):
            if query.get(param):
                resume_error = FrameError(
                    UNABLE_TO_RECOVER,
                    f"{param}: the reference server does "
                    "not resume connections; this is a new connection",
                )
        return key_name, client_id, capability, resume_error

    # -- the WebSocket ---------------------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            max_msg_size=max(4 * self.config.max_frame_size, 4 << 20), timeout=2.0
        )
        if not ws.can_prepare(request).ok:
            return rest.error_response(
                errors.BAD_REQUEST, "expected a WebSocket upgrade on / (REST is under /channels)"
            )
        await ws.prepare(request)
        try:
            key_name, client_id, capability, resume_error = self._connect_params(request.query)
        except FrameError as exc:
            self.stats["auth_refused"] += 1
            try:
                await ws.send_str(dumps({"action": Act.ERROR, "error": exc.error_info()}))
            finally:
                await self._close_ws(ws, 1000)
            return ws
        try:
            conn = self._open(ws, key_name, client_id, capability, resume_error)
        except Exception as exc:  # pragma: no cover - nothing in _open is expected to fail
            log.exception("opening a connection failed")
            with contextlib.suppress(Exception):
                await ws.send_str(
                    dumps(
                        {
                            "action": Act.ERROR,
                            "error": {
                                "code": INTERNAL_ERROR,
                                "statusCode": 500,
                                "message": f"internal error opening the connection ({type(exc).__name__})",
                            },
                        }
                    )
                )
            await self._close_ws(ws, 1011)
            return ws
        conn.transport = request.transport
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self._record(conn, {"$binary": len(msg.data)})
                    self._send_error(
                        conn,
                        FrameError(
                            errors.BAD_REQUEST,
                            f"binary frame ({len(msg.data)} bytes): msgpack is not "
                            "supported; send JSON text frames (format=json)",
                        ),
                    )
                else:  # ERROR (e.g. beyond the hard size limit): the transport is gone
                    break
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - aiohttp transport failures
            log.exception("connection %s: transport failure", conn.id)
        finally:
            self._transport_closed(conn)
        return ws

    def _open(
        self,
        ws: web.WebSocketResponse,
        key_name: str,
        client_id: str | None,
        capability: Capability,
        resume_error: FrameError | None,
    ) -> _Conn:
        cid = f"{self._instance}-{next(self._conn_seq)}"
        conn = _Conn(
            id=cid,
            key=f"{secrets.token_hex(4)}!{cid}",
            key_name=key_name,
            client_id=client_id,
            capability=capability,
            ws=ws,
        )
        self.model.open_connection(
            None if client_id in (None, "*") else client_id, capability, connection_id=cid
        )
        self._conns[cid] = conn
        self._frames[cid] = collections.deque(maxlen=self.config.frame_log_size)
        while len(self._frames) > self.config.frame_log_connections:
            self._frames.popitem(last=False)
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
        if client_id is not None:
            details = {"clientId": client_id, **details}
        connected: dict[str, Any] = {
            "action": Act.CONNECTED,
            "connectionId": cid,
            "connectionKey": conn.key,
            "connectionDetails": details,
        }
        if resume_error is not None:
            connected["error"] = resume_error.error_info()
        conn.writer = asyncio.create_task(self._writer(conn))
        self._send(conn, connected)
        self.stats["connections"] += 1
        return conn

    async def _writer(self, conn: _Conn) -> None:
        ws = conn.ws
        try:
            while True:
                item = await conn.queue.get()
                if item is _CLOSE:
                    await self._close_ws(ws, 1000)
                    return
                conn.sending = True
                try:
                    await ws.send_str(item)
                finally:
                    conn.sending = False
        except asyncio.CancelledError:
            raise
        except Exception:  # the peer went away; the reader notices and cleans up
            return

    @staticmethod
    async def _close_ws(ws: web.WebSocketResponse, code: int) -> None:
        try:
            await asyncio.wait_for(ws.close(code=code), 2.0)
        except Exception:
            pass

    async def _heartbeats(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for conn in list(self._conns.values()):
                if conn.state == "open":
                    self._enqueue(conn, _HEARTBEAT)

    def _enqueue(self, conn: _Conn, text: Any) -> None:
        if conn.state in ("closed", "dropped"):
            return
        if conn.queue.qsize() >= self.config.max_outbound_queue:
            log.warning(
                "connection %s: %d frames queued, cutting off a slow client",
                conn.id,
                conn.queue.qsize(),
            )
            self.stats["slow_consumers"] += 1
            if conn.writer is not None:
                conn.writer.cancel()
            if isinstance(conn.transport, asyncio.Transport):
                conn.transport.abort()
            if conn.state == "open":
                self._lose(conn)
            return
        if not _write_now(conn, text):
            conn.queue.put_nowait(text)

    def _send(self, conn: _Conn, frame: dict) -> None:
        self._enqueue(conn, dumps(frame))

    def _broadcast(self, channel: str, frame: dict) -> None:
        """Encode once; queue the same text for every connection attached to `channel`."""
        subscribers = self._subscribers.get(channel)
        if not subscribers:
            return
        text = dumps(frame)
        for conn in list(subscribers.values()):
            self._enqueue(conn, text)
        self.stats["broadcasts"] += 1

    def _record(self, conn: _Conn, frame: dict) -> None:
        frames = self._frames.get(conn.id)
        if frames is not None:
            frames.append(frame)

    # -- frames ----------------------------------------------------------------------------------

    def _on_text(self, conn: _Conn, text: str) -> None:
        self.stats["frames"] += 1
        size = len(text)
        if size * 4 > self.config.max_frame_size:  # only then can the UTF-8 size matter
            size = len(text.encode("utf-8", "surrogatepass"))
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError) as exc:
            self._record(conn, {"$malformed": text[:256], "$size": size})
            if conn.state == "open":
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                where = f" at position {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
                self._send_error(
                    conn,
                    FrameError(
                        errors.BAD_REQUEST, f"malformed frame: not valid JSON ({reason}{where})"
                    ),
                )
            return
        channel = frame.get("channel") if isinstance(frame, dict) else None
        channel = channel if isinstance(channel, str) and channel else None
        if size > RECORD_LIMIT:
            self._record(conn, _summary(frame, size))
        else:
            self._record(conn, frame if isinstance(frame, dict) else {"$malformed": frame})
        if conn.state != "open":
            return
        try:
            if size > self.config.max_frame_size:
                raise FrameError(
                    errors.MESSAGE_TOO_LARGE,
                    f"frame: {size} bytes exceeds maxFrameSize {self.config.max_frame_size}",
                    channel=channel,
                )
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

    def _send_error(self, conn: _Conn, exc: FrameError) -> None:
        self.stats["errors"] += 1
        if exc.msg_serial is not None:
            self._send(
                conn,
                {
                    "action": Act.NACK,
                    "msgSerial": exc.msg_serial,
                    "count": 1,
                    "error": exc.error_info(),
                },
            )
            return
        frame: dict[str, Any] = {"action": Act.ERROR, "error": exc.error_info()}
        if exc.channel is not None:
            frame["channel"] = exc.channel
        self._send(conn, frame)
        if exc.channel is not None and exc.channel in conn.attached:
            # A channel ERROR fails the channel on the client (RTN15i): it is detached here too.
            self._detach(conn, exc.channel)

    def _dispatch(self, conn: _Conn, frame: Any) -> None:
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
        if action == Act.HEARTBEAT:
            self._on_heartbeat(conn, frame)
        elif action == Act.ATTACH:
            self._on_attach(conn, frame)
        elif action == Act.DETACH:
            self._on_detach(conn, frame)
        elif action == Act.PRESENCE:
            self._on_presence(conn, frame)
        elif action == Act.MESSAGE:
            self._on_message(conn, frame)
        elif action == Act.CLOSE:
            self._on_close(conn)
        elif action in SERVER_ONLY_ACTIONS:
            raise FrameError(
                errors.BAD_REQUEST,
                f"action: {action} ({Act(action).name}) is sent by servers, never by clients",
                channel=scope,
            )
        elif action in (
            Act.AUTH,
            Act.CONNECT,
            Act.DISCONNECT,
            Act.ACTIVATE,
            Act.OBJECT,
            Act.OBJECT_SYNC,
            Act.ANNOTATION,
        ):
            raise FrameError(
                errors.BAD_REQUEST,
                f"action: {action} ({Act(action).name}) is not supported by the reference server",
                channel=scope,
            )
        else:
            raise FrameError(errors.BAD_REQUEST, f"action: unknown action {action}", channel=scope)

    def _channel(self, frame: dict, msg_serial: int | None = None) -> str:
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
    def _msg_serial(frame: dict, action: str, channel: str | None) -> int:
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
        return serial

    def _on_heartbeat(self, conn: _Conn, frame: dict) -> None:
        hid = frame.get("id")
        if hid is None:
            self._enqueue(conn, _HEARTBEAT)
            return
        if not isinstance(hid, str):
            raise FrameError(
                errors.BAD_REQUEST, f"id: expected a string in HEARTBEAT, got {json_type(hid)}"
            )
        self._send(conn, {"action": Act.HEARTBEAT, "id": hid})

    def _on_attach(self, conn: _Conn, frame: dict) -> None:
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
        if not capability_any(conn.capability, channel):
            raise FrameError(
                errors.CAPABILITY_DENIED,
                f"capability: key {conn.key_name!r} grants nothing on channel {channel!r}",
                channel=channel,
            )
        self.model.attach(conn.id, channel)
        conn.attached.add(channel)
        self._subscribers.setdefault(channel, {})[conn.id] = conn
        members = self.model.get(channel)
        self._send(
            conn,
            {
                "action": Act.ATTACHED,
                "channel": channel,
                "flags": MODE_FLAGS | (HAS_PRESENCE if members else 0),
                "channelSerial": self._channel_serial(),
            },
        )
        if members:
            self._sync(conn, channel, members)

    def _sync(self, conn: _Conn, channel: str, members: list[PresenceMessage]) -> None:
        """RTP18: SYNC pages `<syncId>:<cursor>`, the last with an empty cursor."""
        sync_id = f"sync{self._instance}x{next(self._sync_seq)}"  # [A-Za-z0-9_-]+ (ably-js)
        size = self.config.sync_page_size
        pages = [members[i : i + size] for i in range(0, len(members), size)] or [[]]
        for number, page in enumerate(pages, 1):
            cursor = str(number) if number < len(pages) else ""
            self._send(
                conn,
                {
                    "action": Act.SYNC,
                    "channel": channel,
                    "channelSerial": f"{sync_id}:{cursor}",
                    "presence": [wire_presence(m) for m in page],
                },
            )

    def _on_detach(self, conn: _Conn, frame: dict) -> None:
        channel = self._channel(frame)
        self._send(conn, {"action": Act.DETACHED, "channel": channel})
        self._detach(conn, channel)

    def _detach(self, conn: _Conn, channel: str) -> None:
        """Stop sending `channel` to `conn`; its members there leave: a client cannot be present
        on a channel it is not attached to."""
        conn.attached.discard(channel)
        subscribers = self._subscribers.get(channel)
        if subscribers is not None:
            subscribers.pop(conn.id, None)
            if not subscribers:
                del self._subscribers[channel]
        if channel not in conn.entered:
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
        self._publish_events(channel, events)

    def _on_close(self, conn: _Conn) -> None:
        conn.state = "closing"
        pairs = self._member_pairs(conn)
        outcome = self.model.close_connection(conn.id)
        self._unsubscribe_all(conn)
        self._send(conn, {"action": Act.CLOSED})
        self._enqueue(conn, _CLOSE)
        self._publish_leaves(pairs, outcome.events)

    def _transport_closed(self, conn: _Conn) -> None:
        if conn.writer is not None and not conn.writer.done():
            conn.writer.cancel()
        if conn.state == "open":
            self._lose(conn)
        elif conn.state == "closing":
            conn.state = "closed"
            self._conns.pop(conn.id, None)

    def _lose(self, conn: _Conn) -> None:
        """The transport is gone without CLOSE: members stay for `leave_grace` seconds."""
        conn.state = "dropped"
        self._conns.pop(conn.id, None)
        self._unsubscribe_all(conn)
        self.model.drop_connection(conn.id)
        self.stats["dropped"] += 1
        if not conn.entered:
            conn.state = "closed"
            self.model.expire_connection(conn.id)
            return
        self._dropped[conn.id] = conn
        loop = asyncio.get_running_loop()
        self._timers[conn.id] = loop.call_later(self.config.leave_grace, self._expire, conn.id)

    def _expire(self, connection_id: str) -> None:
        self._timers.pop(connection_id, None)
        conn = self._dropped.pop(connection_id, None)
        if conn is None:
            return
        try:
            pairs = self._member_pairs(conn)
            outcome = self.model.expire_connection(connection_id)
            conn.state = "closed"
            self._publish_leaves(pairs, outcome.events)
        except Exception:  # pragma: no cover - a timer callback must never raise
            log.exception("connection %s: expiring its members failed", connection_id)

    def _unsubscribe_all(self, conn: _Conn) -> None:
        for channel in conn.attached:
            subscribers = self._subscribers.get(channel)
            if subscribers is not None:
                subscribers.pop(conn.id, None)
                if not subscribers:
                    del self._subscribers[channel]
        conn.attached.clear()

    def _member_pairs(self, conn: _Conn) -> list[tuple[str, PresenceMessage]]:
        return [
            (channel, member)
            for channel in sorted(conn.entered)
            for member in self.model.get(channel, connection_id=conn.id)
        ]

    def _publish_leaves(
        self, pairs: list[tuple[str, PresenceMessage]], events: Iterable[PresenceMessage]
    ) -> None:
        """Route the model's synthesized leaves (channel order, then member key) to channels."""
        queues: dict[str, collections.deque] = collections.defaultdict(collections.deque)
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
        conn: _Conn | None = None,
        msg_serial: int | None = None,
    ) -> None:
        if not events:
            return
        frame: dict[str, Any] = {"action": Act.PRESENCE, "channel": channel}
        if conn is not None:
            frame["id"] = f"{conn.id}:{msg_serial}"
            frame["connectionId"] = conn.id
        frame["timestamp"] = events[0].timestamp
        frame["channelSerial"] = self._channel_serial()
        frame["presence"] = [wire_presence(e) for e in events]
        self._broadcast(channel, frame)

    def _channel_serial(self) -> str:
        return f"{self._instance}-{next(self._serial_seq)}"

    # -- PRESENCE and MESSAGE ---------------------------------------------------------------------

    def _on_presence(self, conn: _Conn, frame: dict) -> None:
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
        if not capability_allows(conn.capability, channel, "presence"):
            raise FrameError(
                errors.CAPABILITY_DENIED,
                f"capability: key {conn.key_name!r} has no "
                f"presence capability on channel {channel!r}",
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
            previous = None
            if action is Action.LEAVE and wire.data is None:
                found = self.model.get(channel, client_id=client_id, connection_id=conn.id)
                previous = found[0] if found else None
            op = {
                Action.ENTER: self.model.enter,
                Action.UPDATE: self.model.update,
                Action.LEAVE: self.model.leave,
            }[action]
            try:
                outcome = op(
                    conn.id, channel, data, client_id=behalf, event_id=f"{conn.id}:{serial}:{index}"
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
        # The broadcast goes out before the ACK, so the sender has heard its own event by the time
        # its call returns (a listener added right after enter() must not receive it late).
        self.stats["presence"] += 1
        self._publish_events(channel, events, conn, serial)
        if failure is not None:
            self._send_error(conn, failure)
        else:
            self._send(conn, {"action": Act.ACK, "msgSerial": serial, "count": 1})

    def _prepare_item(
        self, conn: _Conn, index: int, item: Any
    ) -> tuple[Action, str, Any, WireData, int]:
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
            json.dumps(item.get("data"), allow_nan=False)
        except (ValueError, TypeError, RecursionError):
            raise FrameError(
                errors.INVALID_DATA, f"{where}: data or extras cannot be re-encoded as JSON"
            ) from None
        size = message_size(client_id, data) + extras_size
        if size > self.config.max_message_size:
            raise FrameError(
                errors.MESSAGE_TOO_LARGE,
                f"{where}: message size {size} bytes "
                f"exceeds maxMessageSize {self.config.max_message_size}",
            )
        wire = WireData(item.get("data"), item.get("encoding") or None, extras)
        return action, client_id, data, wire, size

    @staticmethod
    def _item_client_id(conn: _Conn, value: Any, where: str) -> str:
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

    def _on_message(self, conn: _Conn, frame: dict) -> None:
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
        if not capability_allows(conn.capability, channel, "publish"):
            raise FrameError(
                errors.CAPABILITY_DENIED,
                f"capability: key {conn.key_name!r} has no "
                f"publish capability on channel {channel!r}",
                msg_serial=serial,
            )
        try:
            size = sum(
                len(json.dumps(m.get("data"))) + len(str(m.get("name") or "")) for m in messages
            )
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
        self._send(conn, {"action": Act.ACK, "msgSerial": serial, "count": 1})


def _write_now(conn: _Conn, text: Any) -> bool:
    """Write a text frame straight to the transport when nothing is waiting to go out before it
    (the queue is empty and the writer is idle) and the transport is not backed up; return False
    to leave it to the writer task.

    This saves a wake-up of the connection's writer task per frame, which is most of the cost of
    a fan-out (each event goes to every subscriber) and a step on the way of every ACK. The frame
    is a plain RFC 6455 server frame (FIN, text, unmasked; RSV1 clear, so it is valid with or
    without permessage-deflate). Anything unusual takes the writer's path, which awaits drain.
    """
    transport = conn.transport
    if (
        not isinstance(text, str)
        or conn.state != "open"
        or conn.sending
        or not conn.queue.empty()
        or conn.writer is None
        or conn.writer.done()
        or conn.ws.closed
        or not isinstance(transport, asyncio.WriteTransport)
        or transport.is_closing()
        or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT
    ):
        return False
    payload = text.encode("utf-8")
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    transport.write(header + payload)
    return True


def _set_member_wire(event: PresenceMessage, member: PresenceMessage | None) -> None:
    """A leave that carries `member`'s data carries it as the member's client sent it."""
    wire = member.extra.get("wire") if member is not None else None
    if isinstance(wire, WireData):
        event.extra["wire"] = WireData(wire.data, wire.encoding, None)


def _summary(frame: Any, size: int) -> dict:
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

"""Realtime connection, channels and presence over the Ably protocol (WebSocket, JSON or
MessagePack).

    conn = await RealtimeConnection.connect("127.0.0.1:8080", "app.key:secret", "alice")
    channel = conn.channel("room")
    channel.presence.subscribe(print)           # registers, then attaches in the background
    await channel.presence.enter({"mood": "ok"})
    members = await channel.presence.get()
    await conn.close()                          # or: await conn.drop() (abrupt)

What the client does (the protocol subset of `docs/protocol.md`):

- connect: `GET /?key=...&clientId=...&format=json&heartbeats=true&v=5`, then waits for
  CONNECTED (connectionId, connectionDetails) or ERROR (raised as PresenceError);
- `wire_format="msgpack"` asks for `format=msgpack` (RTN2a) and speaks MessagePack in binary
  frames both ways, binary data as `bin` (RSL4d3); in JSON, text frames. A frame of the other
  type from the server is a protocol violation;
- answers a server HEARTBEAT that carries an `id` by echoing it (RTN13), and treats every frame
  as activity: with `connectionDetails.maxIdleInterval` set, a server silent for longer than
  that plus the request timeout is a lost connection (CD2h);
- msgSerial starts at 0 and goes up by one per PRESENCE/MESSAGE (RTN19a2); ACK and NACK settle
  `msgSerial .. msgSerial+count-1`; a NACK raises PresenceError with its code;
- ERROR without `channel` fails the connection and every pending operation with its code; ERROR
  with `channel` fails that channel (RTN15i);
- close: CLOSE, then CLOSED; `drop()` aborts the TCP transport without any frame;
- every wait is bounded by `timeout` and ends in `OperationTimeout` (a TimeoutError).

This is the harness's own client, not an SDK: it reconnects only after `interrupt` (a transient
disconnect, RTN15: resumed, or not, then its own members re-entered, RTP17i), and it goes
SUSPENDED when that disconnect outlasts the connectionStateTtl the server advertised (RTN14e,
RTL3c: its channels keep their presence maps, RTP5f; presence operations fail, RTP16c, RTL11;
`get` fails with 91005 or, without waiting for a sync, returns the stored members, RTP11d), and
then makes a fresh connection (RTN15g). It exists to drive an Ably-protocol *server* under test.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import inspect
import itertools
import json
import logging
import time
from collections.abc import Awaitable
from typing import Any, Literal
from urllib.parse import urlencode

import msgpack
from presence_conformance.harness.ably_client.emitter import Listener
from presence_conformance.harness.ably_client.presence_map import PresenceOracle, PresenceState
from presence_conformance.harness.ably_client.protocol import (
    OperationTimeout,
    ProtocolViolation,
    error_from_wire,
    presence_to_wire,
)
from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.client_presence import ClientPresence
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.model import message_size
from presence_conformance.reference_impl.protocol import (
    PRESENCE_SUBSCRIBE,
    Flag,
    ProtocolAction,
)
from presence_conformance.reference_impl.types import Action, PresenceMessage, validate_data
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

__all__ = [
    "ChannelState",
    "ConnectionState",
    "OperationTimeout",
    "RealtimeChannel",
    "RealtimeConnection",
    "RealtimePresence",
]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = "5"
CONNECTION_FAILED = 80000  # Connection failed
CONNECTION_DISCONNECTED = 80003  # Connection disconnected
_WS_OPTIONS: dict[str, Any] = {
    "ping_interval": None,
    "compression": None,
    "max_size": None,
    "open_timeout": None,
    "close_timeout": 2,
}
if "proxy" in inspect.signature(ws_connect.__init__).parameters:
    _WS_OPTIONS["proxy"] = None  # a local server under test is never reached through a proxy


class ConnectionState(enum.StrEnum):
    """Connection states (RTN4)."""

    INITIALIZED = "initialized"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSING = "closing"
    CLOSED = "closed"
    DISCONNECTED = "disconnected"  # the transport went away (dropped, or lost)
    SUSPENDED = "suspended"  # an interrupt outlasted connectionStateTtl (RTN14e)
    FAILED = "failed"


class ChannelState(enum.StrEnum):
    """Channel states (RTL2)."""

    INITIALIZED = "initialized"
    ATTACHING = "attaching"
    ATTACHED = "attached"
    DETACHING = "detaching"
    DETACHED = "detached"
    SUSPENDED = "suspended"
    FAILED = "failed"


CONNECTION_SUSPENDED = 80002  # Connection to server unavailable (RTN14e)
PRESENCE_OUT_OF_SYNC = 91005  # RTP11d
REENTRY_FAILED = 91004  # RTP17e
DEFAULT_CONNECTION_STATE_TTL = 120000  # ms (TO3l5/DF1a)


async def _bounded(awaitable: Awaitable[Any], timeout: float, what: str) -> Any:
    """Await a future without cancelling it on timeout (others may share it)."""
    try:
        return await asyncio.wait_for(asyncio.shield(awaitable), timeout)
    except TimeoutError:
        raise OperationTimeout(f"{what}: no answer within {timeout:g} s") from None


def _fail(future: asyncio.Future | None, exc: BaseException) -> None:
    if future is not None and not future.done():
        future.set_exception(exc)
        future.exception()  # mark retrieved: nobody may be waiting any more


def _resolve(future: asyncio.Future | None, value: Any = None) -> None:
    if future is not None and not future.done():
        future.set_result(value)


class RealtimeConnection:
    """One realtime connection to an Ably-protocol server. Create it with `connect()`.

    Attributes: `id` (connectionId), `key` (connectionKey), `client_id`, `details`
    (connectionDetails), `state`, `error` (why it failed or was lost), `frames` (the last
    frames both ways, for debugging), `violations` (protocol violations seen from the server),
    `presence_oracle` (what builds each channel's presence map: `ClientPresence` or a mutant).
    """

    def __init__(
        self,
        endpoint: str,
        key: str,
        client_id: str | None = None,
        *,
        timeout: float = 10.0,
        heartbeats: bool = True,
        params: dict[str, str] | None = None,
        frame_log: int = 2000,
        wire_format: Literal["json", "msgpack"] = "json",
        token: str | None = None,
        presence_oracle: PresenceOracle = ClientPresence,
    ) -> None:
        if wire_format not in ("json", "msgpack"):
            raise ValueError(f"wire_format: expected 'json' or 'msgpack', got {wire_format!r}")
        self.endpoint = endpoint
        self.wire_format = wire_format
        self.binary = wire_format == "msgpack"
        self.api_key = key
        self.token = token  # an Ably token string: sent as accessToken instead of the key
        self.presence_oracle = presence_oracle  # builds each channel's presence map
        self.client_id = client_id
        self.timeout = timeout
        self.heartbeats = heartbeats
        self.params = dict(params or {})
        self.id: str = ""
        self.key: str | None = None
        self.details: dict[str, Any] = {}
        self.state = ConnectionState.INITIALIZED
        self.error: PresenceError | None = None
        self.frames: collections.deque[tuple[float, str, dict]] = collections.deque(
            maxlen=frame_log
        )
        self.violations: list[str] = []
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task | None = None
        self._watchdog: asyncio.Task | None = None
        self._send_lock = asyncio.Lock()
        self._msg_serial = 0
        self._pending: dict[int, tuple[asyncio.Future, str | None]] = {}
        self._pings: dict[str, asyncio.Future] = {}
        self._own_ping_ids: set[str] = set()
        self._answered_ids: set[Any] = set()
        self._ping_ids = itertools.count(1)
        self._connected: asyncio.Future | None = None
        self._closed: asyncio.Future | None = None
        self._channels: dict[str, RealtimeChannel] = {}
        self._last_activity = time.monotonic()
        # a transient disconnect (`interrupt`): cleared until connected and re-attached again
        self._online = asyncio.Event()
        self._online.set()
        self._suspended = asyncio.Event()  # set while SUSPENDED (RTN14e)
        self.resume_key: str | None = None  # sent as `resume` on the next connect (RTN15b1)
        self.resumed: bool | None = None  # after a reconnect: did the server resume (RTN15c6)?
        self.reentry_errors: list[PresenceError] = []  # RTP17e: automatic re-entries refused

    # -- lifecycle -------------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        endpoint: str,
        key: str,
        client_id: str | None = None,
        *,
        timeout: float = 10.0,
        **options: Any,
    ) -> RealtimeConnection:
        """Open a connection and wait (at most `timeout` s in all) for CONNECTED.

        Raises PresenceError if the server answers with ERROR (or refuses the upgrade with an
        Ably error body), OperationTimeout if it says nothing in time, ConnectionError if the
        endpoint cannot be reached."""
        conn = cls(endpoint, key, client_id, timeout=timeout, **options)
        await conn._open()
        return conn

    @property
    def url(self) -> str:
        query: dict[str, str] = {"accessToken": self.token} if self.token else {"key": self.api_key}
        if self.client_id is not None:
            query["clientId"] = self.client_id
        query.update(
            {
                "format": self.wire_format,
                "heartbeats": "true" if self.heartbeats else "false",
                "v": PROTOCOL_VERSION,
            }
        )
        query.update(self.params)
        if self.resume_key is not None:
            query["resume"] = self.resume_key
        return f"ws://{self.endpoint}/?{urlencode(query)}"

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self.state = ConnectionState.CONNECTING
        self._connected = loop.create_future()
        deadline = loop.time() + self.timeout
        try:
            async with asyncio.timeout(self.timeout):
                self._ws = await ws_connect(self.url, **_WS_OPTIONS)
        except TimeoutError:
            self.state = ConnectionState.FAILED
            raise OperationTimeout(
                f"connect to ws://{self.endpoint}: no WebSocket upgrade within {self.timeout:g} s"
            ) from None
        except InvalidStatus as exc:
            self.state = ConnectionState.FAILED
            raise self._handshake_error(exc) from None
        except (OSError, InvalidHandshake) as exc:
            self.state = ConnectionState.FAILED
            raise ConnectionError(f"connect to ws://{self.endpoint} failed: {exc}") from exc
        self._last_activity = time.monotonic()
        self._reader = asyncio.create_task(self._read_loop(), name=f"ably-read-{self.endpoint}")
        try:
            await _bounded(
                self._connected,
                max(0.0, deadline - loop.time()),
                f"connect to ws://{self.endpoint} (waiting for CONNECTED)",
            )
        except BaseException:
            if self.state in (ConnectionState.CONNECTING, ConnectionState.CONNECTED):
                self.state = ConnectionState.FAILED
            await self._abort()
            raise

    def _handshake_error(self, exc: InvalidStatus) -> Exception:
        status = exc.response.status_code
        body = exc.response.body or b""
        with contextlib.suppress(ValueError, AttributeError):
            error = json.loads(body).get("error")
            if isinstance(error, dict):
                err = error_from_wire(error, CONNECTION_FAILED)
                self.error = err
                return err
        return ConnectionError(
            f"connect to ws://{self.endpoint}: the server refused the WebSocket "
            f"upgrade with HTTP {status}: {body[:200]!r}"
        )

    async def close(self) -> None:
        """Close gracefully: CLOSE, wait for CLOSED (bounded), close the socket.

        Raises OperationTimeout if the server never sent CLOSED (the socket is closed anyway)."""
        reconnect = getattr(self, "_reconnect_task", None)
        if reconnect is not None and not reconnect.done():  # closed during an interrupt
            reconnect.cancel()
            with contextlib.suppress(BaseException):
                await reconnect
        if (
            self.state
            in (ConnectionState.CLOSED, ConnectionState.FAILED, ConnectionState.DISCONNECTED)
            or self._ws is None
        ):
            await self._abort()
            return
        self.state = ConnectionState.CLOSING
        self._closed = asyncio.get_running_loop().create_future()
        timed_out = False
        try:
            await self._send({"action": ProtocolAction.CLOSE})
            await _bounded(self._closed, self.timeout, f"close connection {self.id}")
        except OperationTimeout:
            timed_out = True
        except (PresenceError, ConnectionError):
            pass  # the transport is gone: closed all the same
        self.state = ConnectionState.CLOSED
        closed = PresenceError(errors.CONNECTION_CLOSED, f"connection {self.id} closed")
        self._fail_all(closed)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                await self._ws.close()
        await self._abort()
        if timed_out:
            raise OperationTimeout(
                f"close connection {self.id}: no CLOSED within {self.timeout:g} s"
            )

    async def drop(self) -> None:
        """Abrupt disconnect: abort the TCP transport, no CLOSE frame (fault injection)."""
        if self._ws is None or self.state in (
            ConnectionState.CLOSED,
            ConnectionState.FAILED,
            ConnectionState.DISCONNECTED,
        ):
            return
        self.state = ConnectionState.DISCONNECTED
        self.error = PresenceError(
            errors.CONNECTION_CLOSED, f"connection {self.id} was dropped (abrupt disconnect)"
        )
        self._fail_all(self.error)
        await self._abort()

    @property
    def reconnecting(self) -> bool:
        """True during a transient disconnect (`interrupt`), until re-attached."""
        return not self._online.is_set()

    async def wait_usable(self) -> None:
        """During a transient disconnect wait (bounded) until the connection is back: presence
        operations made meanwhile are queued (RTP16a, RTP16b, RTL3d2)."""
        if self._online.is_set() or self._suspended.is_set():
            return
        online = asyncio.ensure_future(self._online.wait())
        suspended = asyncio.ensure_future(self._suspended.wait())
        try:
            await _bounded(
                asyncio.wait((online, suspended), return_when=asyncio.FIRST_COMPLETED),
                self.timeout,
                f"reconnect of connection {self.id}",
            )
        finally:
            online.cancel()
            suspended.cancel()

    async def interrupt(self, seconds: float, resume_key: str | None = None) -> None:
        """A transient disconnect (RTN15): cut the transport now, without CLOSE; after `seconds`
        reconnect with `resume` = the connectionKey (or `resume_key` when given, e.g. one the
        server cannot know), attach every channel again (RTL3d) and
        re-enter this connection's own members (RTP17i, RTP17g; no id when the connectionId
        changed, RTP17g1). When `seconds` outlast connectionDetails.connectionStateTtl, the
        connection goes SUSPENDED once that ttl has passed, and with it its attached channels
        (RTN14e, RTL3c); it then comes back on a fresh connection (RTN15g: no resume).
        Returns at once; `reconnected()` waits."""
        if self._ws is None or self.state is not ConnectionState.CONNECTED:
            raise PresenceError(errors.CONNECTION_CLOSED, f"connection is {self.state}")
        self._online.clear()
        old_id = self.id
        own: dict[str, list[PresenceMessage]] = {  # the RTP17 map, by channel
            name: [m for m in ch.presence.state.map.values() if m.connection_id == old_id]
            for name, ch in self._channels.items()
        }
        self.state = ConnectionState.DISCONNECTED
        back_at = asyncio.get_running_loop().time() + seconds
        if self._ws.transport is not None:
            self._ws.transport.abort()
        for task in (self._watchdog, self._reader):
            if task is not None and not task.done():
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(task), 1.0)
        self._watchdog = self._reader = None
        ttl = self.details.get("connectionStateTtl")
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
            ttl = DEFAULT_CONNECTION_STATE_TTL
        suspend_at = None
        if seconds * 1000 > ttl:
            suspend_at = back_at - seconds + ttl / 1000
            resume_key = None
        self._reconnect_task = asyncio.ensure_future(
            self._come_back(back_at, resume_key or self.key, old_id, own, suspend_at)
        )

    async def reconnected(self) -> None:
        """Wait until the connection is back after `interrupt` (raises if it could not be)."""
        task = getattr(self, "_reconnect_task", None)
        if task is not None:
            await task

    def _suspend(self) -> None:
        """RTN14e: disconnected for longer than connectionStateTtl; RTL3c: ATTACHING and
        ATTACHED channels go SUSPENDED, keeping their presence maps (RTP5f)."""
        self.state = ConnectionState.SUSPENDED
        self.error = PresenceError(
            CONNECTION_SUSPENDED, f"connection {self.id}: suspended (connectionStateTtl passed)"
        )
        self.key = None  # RTN15g: the connection state is discarded, no resume
        for channel in self._channels.values():
            if channel.state in (ChannelState.ATTACHED, ChannelState.ATTACHING):
                channel._on_suspended(self.error)
        self._suspended.set()

    async def _come_back(
        self,
        back_at: float,
        key: str | None,
        old_id: str,
        own: dict[str, list[PresenceMessage]],
        suspend_at: float | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            if suspend_at is not None:
                await asyncio.sleep(max(0.0, suspend_at - loop.time()))
                self._suspend()
                key = None
            await asyncio.sleep(max(0.0, back_at - loop.time()))
            self._suspended.clear()
            self.resume_key = key
            self.error = None
            try:
                await self._open()
            finally:
                self.resume_key = None
            self.resumed = self.id == old_id
            channels = [
                ch
                for ch in self._channels.values()
                if ch.state
                in (ChannelState.ATTACHED, ChannelState.ATTACHING, ChannelState.SUSPENDED)
            ]
            for ch in channels:  # RTL3d
                ch.state = ChannelState.DETACHED
                await ch.attach()
            # RTP17i: re-enter on every ATTACHED but that of a channel already attached: after
            # RTL3d the channels were attaching, so also after a resume (with the members' ids,
            # RTP17g, by which the server knows them for what they are)
            for ch in channels:
                for member in own.get(ch.name, ()):
                    item = presence_to_wire(
                        Action.ENTER,
                        member.data,
                        member.client_id,
                        member.id if member.connection_id == self.id else None,  # RTP17g1
                    )
                    try:
                        await self.send_acked(
                            {
                                "action": ProtocolAction.PRESENCE,
                                "channel": ch.name,
                                "presence": [item],
                            },
                            ch.name,
                        )
                    except PresenceError as exc:  # RTP17e
                        ch._reentry_failed(member.client_id, exc)
        finally:
            self._online.set()

    async def _abort(self) -> None:
        if self._ws is not None and self._ws.transport is not None:
            self._ws.transport.abort()
        for task in (self._watchdog, self._reader):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, 1.0)

    async def ping(self) -> float:
        """RTN13: send HEARTBEAT with an id and wait for the echo; return the round trip in s."""
        self.check_usable()
        ping_id = f"ping-{next(self._ping_ids)}"
        self._own_ping_ids.add(ping_id)
        future = asyncio.get_running_loop().create_future()
        self._pings[ping_id] = future
        started = time.monotonic()
        try:
            await self._send({"action": ProtocolAction.HEARTBEAT, "id": ping_id})
            await _bounded(future, self.timeout, f"ping {ping_id}")
        finally:
            self._pings.pop(ping_id, None)
        return time.monotonic() - started

    # -- channels ------------------------------------------------------------------------------

    def channel(self, name: str) -> RealtimeChannel:
        """The channel object for `name` (the same object every time)."""
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = RealtimeChannel(self, name)
        return channel

    # -- sending -------------------------------------------------------------------------------

    def check_usable(self) -> None:
        """Raise PresenceError unless CONNECTED: 80017 after close() or drop(), the failure's
        code after ERROR, 80003 after the server went away."""
        if self.state is not ConnectionState.CONNECTED:
            if self.error is not None and self.state is not ConnectionState.CLOSED:
                raise PresenceError(
                    self.error.code,
                    f"connection is {self.state}: {self.error.message}",
                    status_code=self.error.status_code,
                )
            raise PresenceError(errors.CONNECTION_CLOSED, f"connection is {self.state}")

    async def _send(self, frame: dict) -> None:
        if self._ws is None:
            raise PresenceError(errors.CONNECTION_CLOSED, "connection is not open")
        data: str | bytes
        if self.binary:
            data = msgpack.packb(frame, use_bin_type=True)
        else:
            data = json.dumps(frame, separators=(",", ":"))
        self.frames.append((time.monotonic(), "out", frame))
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise PresenceError(
                CONNECTION_DISCONNECTED, f"connection {self.id} lost while sending: {exc}"
            ) from None

    async def send_acked(self, frame: dict, channel: str | None = None) -> Any:
        """Send a message that needs an ACK (PRESENCE, MESSAGE) and wait for ACK or NACK.

        Returns the ACK's `res` (if any); raises PresenceError on NACK or connection failure,
        OperationTimeout without an answer."""
        self.check_usable()
        future = asyncio.get_running_loop().create_future()
        async with self._send_lock:
            serial = self._msg_serial
            self._msg_serial += 1
            self._pending[serial] = (future, channel)
            frame = {**frame, "msgSerial": serial}
            try:
                await self._send(frame)
            except BaseException:
                self._pending.pop(serial, None)
                raise
        try:
            return await _bounded(
                future,
                self.timeout,
                f"{ProtocolAction(frame['action']).name} msgSerial {serial} (waiting for ACK/NACK)",
            )
        finally:
            self._pending.pop(serial, None)

    # -- receiving -----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._ws is not None
        error: PresenceError | None = None
        try:
            if self._watchdog is None:
                self._watchdog = asyncio.create_task(self._idle_watchdog())
            async for raw in self._ws:
                self._last_activity = time.monotonic()
                if isinstance(raw, bytes) != self.binary:
                    kind = "binary" if isinstance(raw, bytes) else "text"
                    self._violation(
                        f"{kind} frame on a format={self.wire_format} connection: {raw[:200]!r}"
                    )
                    continue
                try:
                    frame = msgpack.unpackb(raw) if self.binary else json.loads(raw)
                    if not isinstance(frame, dict):
                        raise ValueError("not an object (a ProtocolMessage)")
                except (ValueError, msgpack.UnpackException) as exc:
                    self._violation(f"undecodable frame ({exc}): {raw[:200]!r}")
                    continue
                self.frames.append((time.monotonic(), "in", frame))
                try:
                    self._dispatch(frame)
                except ProtocolViolation as exc:
                    self._violation(str(exc))
                except PresenceError as exc:
                    self._violation(f"{exc.message}: {frame!r}")
        except ConnectionClosed as exc:
            error = PresenceError(
                CONNECTION_DISCONNECTED, f"connection {self.id or '(none)'} lost: {exc}"
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leave waiters hanging
            log.exception("ably client reader failed")
            error = PresenceError(CONNECTION_FAILED, f"client reader failed: {exc!r}")
        finally:
            self._on_transport_closed(error)

    def _on_transport_closed(self, error: PresenceError | None) -> None:
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        if self.state is ConnectionState.CLOSING:
            _resolve(self._closed)
            return
        if self.state in (ConnectionState.CONNECTED, ConnectionState.CONNECTING):
            self.state = ConnectionState.DISCONNECTED
            self.error = error or PresenceError(
                CONNECTION_DISCONNECTED,
                f"connection {self.id or '(none)'}: the server closed the socket",
            )
        self._fail_all(self.error or PresenceError(errors.CONNECTION_CLOSED, "connection closed"))

    def _fail_all(self, exc: PresenceError) -> None:
        _fail(self._connected, exc)
        for future, _ in list(self._pending.values()):
            _fail(future, exc)
        self._pending.clear()
        for future in list(self._pings.values()):
            _fail(future, exc)
        for channel in self._channels.values():
            channel._on_connection_gone(exc)

    async def _idle_watchdog(self) -> None:
        """CD2h: the server must send something every maxIdleInterval ms."""
        while True:
            idle = self.details.get("maxIdleInterval")
            if not isinstance(idle, int | float) or isinstance(idle, bool) or idle <= 0:
                await asyncio.sleep(1.0)
                continue
            limit = idle / 1000 + self.timeout
            silent = time.monotonic() - self._last_activity
            if silent > limit and self.state is ConnectionState.CONNECTED:
                self._violation(
                    f"no frame from the server for {silent:.1f} s (maxIdleInterval {idle} ms)"
                )
                self.state = ConnectionState.DISCONNECTED
                self.error = PresenceError(
                    CONNECTION_DISCONNECTED, f"connection {self.id}: server idle for {silent:.1f} s"
                )
                self._fail_all(self.error)
                if self._ws is not None and self._ws.transport is not None:
                    self._ws.transport.abort()
                return
            await asyncio.sleep(max(0.05, min(1.0, limit - silent)))

    def _violation(self, text: str) -> None:
        log.warning("ably protocol violation from %s: %s", self.endpoint, text)
        self.violations.append(text)

    def _dispatch(self, frame: dict) -> None:
        action = frame.get("action")
        if action == ProtocolAction.HEARTBEAT:
            self._on_heartbeat(frame)
        elif action == ProtocolAction.ACK:
            self._settle(frame, None)
        elif action == ProtocolAction.NACK:
            self._settle(
                frame, error_from_wire(frame.get("error"), errors.BAD_REQUEST, "NACK without error")
            )
        elif action == ProtocolAction.CONNECTED:
            self._on_connected(frame)
        elif action == ProtocolAction.DISCONNECTED:
            err = error_from_wire(
                frame.get("error"), CONNECTION_DISCONNECTED, "the server sent DISCONNECTED"
            )
            self.state = ConnectionState.DISCONNECTED
            self.error = err
            self._fail_all(err)
        elif action == ProtocolAction.CLOSED:
            _resolve(self._closed)
        elif action == ProtocolAction.ERROR:
            self._on_error(frame)
        elif action in (
            ProtocolAction.ATTACHED,
            ProtocolAction.DETACHED,
            ProtocolAction.PRESENCE,
            ProtocolAction.SYNC,
        ):
            if self.state is ConnectionState.CLOSING:
                return  # close() was called: the connection hears nothing more
            name = frame.get("channel")
            if not isinstance(name, str) or not name:
                raise ProtocolViolation(
                    f"{ProtocolAction(action).name} without a channel: {frame!r}"
                )
            channel = self._channels.get(name)
            if channel is None:
                raise ProtocolViolation(
                    f"{ProtocolAction(action).name} for channel {name!r} that "
                    "this connection never attached"
                )
            channel._on_frame(frame)
        elif action in (ProtocolAction.MESSAGE, ProtocolAction.AUTH):
            pass
        else:
            raise ProtocolViolation(f"unexpected action {action!r} from the server: {frame!r}")

    def _on_heartbeat(self, frame: dict) -> None:
        ping_id = frame.get("id")
        if ping_id is None:
            return  # keep-alive
        if ping_id in self._own_ping_ids:
            future = self._pings.get(ping_id)
            if future is not None:
                self._own_ping_ids.discard(ping_id)  # answered: forget it (a late echo is kept)
                _resolve(future)
            return
        if ping_id in self._answered_ids:
            return  # the server echoed our answer back: do not ping-pong
        self._answered_ids.add(ping_id)
        # The server pings us: answer with the same id (RTN13 in the other direction).
        task = asyncio.ensure_future(
            self._send({"action": ProtocolAction.HEARTBEAT, "id": ping_id})
        )
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _on_connected(self, frame: dict) -> None:
        connection_id = frame.get("connectionId")
        details = frame.get("connectionDetails")
        if not isinstance(connection_id, str) or not connection_id:
            raise ProtocolViolation(f"CONNECTED without connectionId: {frame!r}")
        if not isinstance(details, dict):
            raise ProtocolViolation(f"CONNECTED without connectionDetails: {frame!r}")
        if self.id and connection_id != self.id:
            self._msg_serial = 0  # RTN19a2: a new connectionId resets msgSerial
        self.id = connection_id
        self.details = details
        self.key = details.get("connectionKey") or frame.get("connectionKey")
        granted = details.get("clientId")
        if self.client_id is not None and granted not in (None, self.client_id):
            err = PresenceError(
                errors.INVALID_CLIENT_ID,
                f"CONNECTED for clientId {granted!r}, asked for {self.client_id!r}",
            )
            self.state = ConnectionState.FAILED
            self.error = err
            self._fail_all(err)
            return
        if self.client_id is None and isinstance(granted, str) and granted != "*":
            self.client_id = granted
        if self.state is ConnectionState.CONNECTING:
            self.state = ConnectionState.CONNECTED
        _resolve(self._connected)

    def _on_error(self, frame: dict) -> None:
        err = error_from_wire(frame.get("error"), CONNECTION_FAILED, "ERROR without details")
        name = frame.get("channel")
        if name:
            channel = self._channels.get(name)
            if channel is not None:
                channel._on_error(err)
                for serial, (future, ch) in list(self._pending.items()):
                    if ch == name:
                        _fail(future, err)
                        self._pending.pop(serial, None)
            return
        self.state = ConnectionState.FAILED
        self.error = err
        self._fail_all(err)
        if self._ws is not None and self._ws.transport is not None:
            asyncio.get_running_loop().call_soon(self._ws.transport.abort)

    def _settle(self, frame: dict, error: PresenceError | None) -> None:
        serial = frame.get("msgSerial")
        count = frame.get("count", 1)
        if isinstance(serial, bool) or not isinstance(serial, int):
            raise ProtocolViolation(f"ACK/NACK without an integer msgSerial: {frame!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ProtocolViolation(f"ACK/NACK with a bad count: {frame!r}")
        unknown = []
        for s in range(serial, serial + count):
            entry = self._pending.pop(s, None)
            if entry is None:
                unknown.append(s)
            elif error is None:
                _resolve(entry[0], frame.get("res"))
            else:
                _fail(
                    entry[0],
                    PresenceError(error.code, error.message, status_code=error.status_code),
                )
        if unknown:
            raise ProtocolViolation(
                f"ACK/NACK for msgSerial(s) {unknown} that are not pending: {frame!r}"
            )


class RealtimeChannel:
    """A channel on one connection: attach/detach (RTL4, RTL5) and its `presence`."""

    def __init__(self, connection: RealtimeConnection, name: str) -> None:
        self.connection = connection
        self.name = name
        self._state = ChannelState.INITIALIZED
        # every ChannelStateChange (RTL2a) and UPDATE (RTL2g, RTP17e) emitted, oldest first:
        # {"event", "current", "previous", "resumed", "reason": PresenceError | None}
        self.state_changes: list[dict[str, Any]] = []
        self.flags = 0
        self.error: PresenceError | None = None
        self.presence = RealtimePresence(self)
        self._attaching: asyncio.Future | None = None
        self._detaching: asyncio.Future | None = None

    @property
    def state(self) -> ChannelState:
        return self._state

    @state.setter
    def state(self, value: ChannelState) -> None:
        previous, self._state = self._state, value
        if value is not previous:
            self.state_changes.append(
                {
                    "event": value.value,
                    "current": value.value,
                    "previous": previous.value,
                    "resumed": False,
                    "reason": self.error,
                }
            )

    def _reentry_failed(self, client_id: str | None, cause: PresenceError) -> None:
        """RTP17e: an automatic re-entry was refused: an UPDATE with reason 91004."""
        log.warning("automatic re-entry of %r failed: %s", client_id, cause)
        self.connection.reentry_errors.append(cause)
        reason = PresenceError(
            REENTRY_FAILED,
            f"automatic re-enter of clientId {client_id!r} failed: {cause.message} "
            f"(code {cause.code})",
        )
        self.state_changes.append(
            {
                "event": "update",
                "current": self.state.value,
                "previous": self.state.value,
                "resumed": True,
                "reason": reason,
            }
        )

    async def _reenter(self, own: list[PresenceMessage]) -> None:
        """RTP17i, RTP17g: re-enter this connection's own members (with their ids, RTP17g1)."""
        conn = self.connection
        for member in own:
            item = presence_to_wire(
                Action.ENTER,
                member.data,
                member.client_id,
                member.id if member.connection_id == conn.id else None,
                binary=conn.binary,
            )
            try:
                await conn.send_acked(
                    {"action": ProtocolAction.PRESENCE, "channel": self.name, "presence": [item]},
                    self.name,
                )
            except PresenceError as exc:
                self._reentry_failed(member.client_id, exc)
            except OperationTimeout as exc:
                self._reentry_failed(member.client_id, PresenceError(50003, str(exc)))

    @property
    def modes(self) -> Flag:
        """The granted modes from ATTACHED's flags (RTL4m)."""
        return Flag(
            self.flags
            & int(Flag.PRESENCE | Flag.PUBLISH | Flag.SUBSCRIBE | Flag.PRESENCE_SUBSCRIBE)
        )

    async def attach(self) -> None:
        """ATTACH and wait for ATTACHED (bounded). A second call while attaching waits too."""
        conn = self.connection
        if self.state is ChannelState.ATTACHED:
            return
        if self.state is not ChannelState.ATTACHING or self._attaching is None:
            conn.check_usable()
            self.state = ChannelState.ATTACHING
            self.error = None
            self._attaching = asyncio.get_running_loop().create_future()
            await conn._send({"action": ProtocolAction.ATTACH, "channel": self.name})
        future = self._attaching
        try:
            await _bounded(future, conn.timeout, f"attach channel {self.name!r}")
        except OperationTimeout:
            if self.state is ChannelState.ATTACHING and self._attaching is future:
                self.state = ChannelState.DETACHED  # RTL4f: no ATTACHED in time
                self._attaching = None
            raise

    async def detach(self) -> None:
        """DETACH and wait for DETACHED (bounded); the presence set is cleared (RTP5a)."""
        conn = self.connection
        if self.state in (ChannelState.INITIALIZED, ChannelState.DETACHED):
            return
        if self.state is ChannelState.FAILED:
            raise PresenceError(errors.CHANNEL_STATE, f"channel {self.name!r} is failed")
        if self.state is not ChannelState.DETACHING or self._detaching is None:
            conn.check_usable()
            self.state = ChannelState.DETACHING
            self._detaching = asyncio.get_running_loop().create_future()
            await conn._send({"action": ProtocolAction.DETACH, "channel": self.name})
        await _bounded(self._detaching, conn.timeout, f"detach channel {self.name!r}")

    def _on_frame(self, frame: dict) -> None:
        action = frame["action"]
        if action == ProtocolAction.ATTACHED:
            if self.state is ChannelState.DETACHING:
                return  # an ATTACHED that crossed our DETACH
            flags = frame.get("flags") or 0
            if isinstance(flags, bool) or not isinstance(flags, int):
                raise ProtocolViolation(f"ATTACHED with non-integer flags: {frame!r}")
            self.flags = flags
            if frame.get("error"):
                self.error = error_from_wire(frame["error"])
            previous: ChannelState = self.state
            conn = self.connection
            reenter = (
                conn._online.is_set()  # an interrupt's come-back re-enters by itself
                and previous in (ChannelState.ATTACHED, ChannelState.ATTACHING)
                and not (previous is ChannelState.ATTACHED and flags & Flag.RESUMED)
            )
            own = (  # RTP17: the members this connection entered
                [m for m in self.presence.state.map.values() if m.connection_id == conn.id]
                if reenter
                else []
            )
            self.state = ChannelState.ATTACHED
            self.presence.state.on_attached(flags)
            if own:  # RTP17i
                task = asyncio.ensure_future(self._reenter(own))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
            _resolve(self._attaching)
            self._attaching = None
        elif action == ProtocolAction.DETACHED:
            err = (
                error_from_wire(frame["error"], errors.CHANNEL_STATE)
                if frame.get("error")
                else None
            )
            previous = self.state
            self.state = ChannelState.DETACHED
            if previous is not ChannelState.ATTACHED:
                # RTL13a re-attaches an ATTACHED channel (it goes ATTACHING, not DETACHED), so
                # its presence map is kept (RTP5a) and the sync that follows purges it (RTP19)
                self.presence.state.on_detached()
            if previous is ChannelState.DETACHING:
                _resolve(self._detaching)
                self._detaching = None
            elif previous is ChannelState.ATTACHING:
                self.error = err
                _fail(
                    self._attaching,
                    err
                    or PresenceError(
                        errors.CHANNEL_STATE, f"channel {self.name!r}: DETACHED while attaching"
                    ),
                )
                self._attaching = None
            elif previous is ChannelState.ATTACHED:
                self.error = err
                # RTL13a: a DETACHED we did not ask for: attach again.
                task = asyncio.ensure_future(self.attach())
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
        elif action == ProtocolAction.PRESENCE:
            if self.state is ChannelState.ATTACHED:
                self.presence.state.on_presence(frame)
        elif action == ProtocolAction.SYNC:
            if self.state is ChannelState.ATTACHED:
                self.presence.state.on_sync(frame)

    def _on_error(self, err: PresenceError) -> None:
        self.state = ChannelState.FAILED
        self.error = err
        self.presence.state.on_detached()
        _fail(self._attaching, err)
        _fail(self._detaching, err)
        self._attaching = self._detaching = None

    def _on_suspended(self, err: PresenceError) -> None:
        """RTL3c: the connection went SUSPENDED; the presence map is kept (RTP5f)."""
        self.state = ChannelState.SUSPENDED
        self.error = err
        self.presence.state.on_suspended()
        _fail(self._attaching, err)
        self._attaching = None

    def _on_connection_gone(self, err: PresenceError) -> None:
        _fail(self._attaching, err)
        _fail(self._detaching, err)
        self._attaching = self._detaching = None
        self.presence.state._synced.set()  # wake get() waiters; they re-check the state


class RealtimePresence:
    """A channel's presence (RTP): enter/update/leave, get from the local set, subscriptions."""

    def __init__(self, channel: RealtimeChannel) -> None:
        self.channel = channel
        self.state = PresenceState(oracle=channel.connection.presence_oracle)

    @property
    def sync_complete(self) -> bool:
        """RTP13: the initial SYNC has completed."""
        return self.state.sync_complete

    @property
    def members(self) -> list[PresenceMessage]:
        """The members held right now (no waiting)."""
        return self.state.map.values()

    async def enter(self, data: Any = None) -> None:
        """RTP8: ENTER with `data`, no clientId on the wire (RTP8c)."""
        await self._publish(Action.ENTER, data)

    async def update(self, data: Any = None) -> None:
        """RTP9: UPDATE with `data` (RTP9d)."""
        await self._publish(Action.UPDATE, data)

    async def leave(self, data: Any = None) -> None:
        """RTP10: LEAVE with `data` (RTP10c); without data the server supplies the member's."""
        await self._publish(Action.LEAVE, data)

    async def enter_client(
        self, client_id: str, data: Any = None, action: Action = Action.ENTER
    ) -> None:
        """RTP14/RTP15: publish `action` on behalf of `client_id` (clientId on the wire). On a
        connection with a clientId of its own, another clientId is refused (RTP15f, 40012) and
        its own is an ordinary enter / update / leave (no clientId on the wire, RTP8c)."""
        own = self.channel.connection.client_id
        if own is not None and own != "*":
            if client_id != own:
                raise PresenceError(
                    errors.INVALID_CLIENT_ID,
                    f"clientId: {client_id!r} does not match the connection's clientId {own!r}"
                    " (RTP15f)",
                    "clientId",
                )
            await self._publish(action, data)
            return
        await self._publish(action, data, client_id)

    async def _publish(self, action: Action, data: Any, client_id: str | None = None) -> None:
        """Checks in the reference model's order, all before anything is sent: connection
        (80017), data type (40013, as the SDKs refuse it), clientId (RTP8j), size (TO3l8:
        40009 against connectionDetails.maxMessageSize), channel state (RTP8g: 90001 when
        detached; when failed, the code of the error that failed it)."""
        channel = self.channel
        connection = channel.connection
        await connection.wait_usable()
        if channel.state is ChannelState.SUSPENDED:  # RTP16c, RTP5f
            raise PresenceError(
                errors.CHANNEL_STATE,
                f"cannot {action.value} presence on channel {channel.name!r}: it is suspended",
            )
        connection.check_usable()
        data = validate_data(data)
        item = presence_to_wire(action, data, client_id, binary=connection.binary)
        acting = client_id if client_id is not None else connection.client_id
        if acting is None or acting == "*":  # RTP8j
            raise PresenceError(
                errors.NO_CLIENT_ID,
                f"clientId: cannot {action.value} presence without a clientId "
                f"(the connection's clientId is {connection.client_id!r})",
                "clientId",
            )
        limit = connection.details.get("maxMessageSize")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            size = message_size(acting, data)
            if size > limit:
                raise PresenceError(
                    errors.MESSAGE_TOO_LARGE,
                    f"data: message size {size} bytes exceeds maxMessageSize {limit}",
                    "data",
                )
        if channel.state in (ChannelState.DETACHED, ChannelState.FAILED):  # RTP8g
            reason = channel.error if channel.state is ChannelState.FAILED else None
            raise PresenceError(
                reason.code if reason else errors.CHANNEL_STATE,
                f"cannot {action.value} presence on channel {channel.name!r} "
                f"in state {channel.state}" + (f" ({reason.message})" if reason else ""),
                status_code=reason.status_code if reason else None,
            )
        # RTP16a: on an ATTACHED channel the message is sent at once, sync or no sync (waiting
        # for a sync the server left in flight held every enter until the operation timed out)
        await self.ensure_active(wait_for_sync=False)
        await connection.send_acked(
            {"action": ProtocolAction.PRESENCE, "channel": channel.name, "presence": [item]},
            channel.name,
        )

    async def ensure_active(self, wait_for_sync: bool = True, strict: bool = False) -> None:
        """Attach if needed (RTL33, RTP8d, RTP11e); then, with `wait_for_sync`, wait for the sync
        to end: bounded, and with `strict` a sync that does not end raises OperationTimeout."""
        channel = self.channel
        await channel.connection.wait_usable()
        channel.connection.check_usable()
        if channel.state is ChannelState.FAILED:
            err = channel.error
            raise PresenceError(
                err.code if err else errors.CHANNEL_STATE,
                f"channel {channel.name!r} is failed" + (f": {err.message}" if err else ""),
            )
        if channel.state is not ChannelState.ATTACHED:
            await channel.attach()
        if not wait_for_sync:
            return
        timeout = channel.connection.timeout
        if not await self.state.wait_synced(timeout) and strict:
            raise OperationTimeout(
                f"presence sync on channel {channel.name!r} did not complete within {timeout:g} s"
            )
        channel.connection.check_usable()
        if strict and channel.state is not ChannelState.ATTACHED:
            raise PresenceError(
                errors.CHANNEL_STATE, f"channel {channel.name!r} is {channel.state}"
            )

    async def get(
        self,
        client_id: str | None = None,
        connection_id: str | None = None,
        wait_for_sync: bool = True,
    ) -> list[PresenceMessage]:
        """RTP11: the members from the local set, after the sync (RTP11c1). With `wait_for_sync`
        False the set known right now is returned at once; an attach it needs (RTP11e) goes on
        in the background."""
        for name, value in (("clientId", client_id), ("connectionId", connection_id)):
            if value is not None and not isinstance(value, str):
                raise PresenceError(
                    errors.INVALID_PARAMETER_VALUE,
                    f"{name}: expected a string, got {type(value).__name__}",
                    name,
                )
        if not isinstance(wait_for_sync, bool):
            raise PresenceError(
                errors.INVALID_PARAMETER_VALUE,
                f"waitForSync: expected a boolean, got {wait_for_sync!r}",
                "waitForSync",
            )
        channel = self.channel
        await channel.connection.wait_usable()
        if channel.state is ChannelState.SUSPENDED:  # RTP11d
            if wait_for_sync:
                raise PresenceError(
                    PRESENCE_OUT_OF_SYNC,
                    f"presence state of channel {channel.name!r} is out of sync: the channel "
                    "is suspended",
                )
            return self.state.map.values(client_id, connection_id)
        if not wait_for_sync:
            channel.connection.check_usable()
            if channel.state in (ChannelState.INITIALIZED, ChannelState.DETACHED):
                task = asyncio.ensure_future(channel.attach())
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
            return self.state.map.values(client_id, connection_id)
        await self.ensure_active(wait_for_sync=True, strict=True)
        if not channel.flags & PRESENCE_SUBSCRIBE:
            log.warning(
                "channel %r attached without PRESENCE_SUBSCRIBE mode (RTP11f)", channel.name
            )
        return self.state.map.values(client_id, connection_id)

    async def subscribe(self, listener: Listener, actions: Any = None) -> None:
        """RTP6: register `listener` (for all actions, or the given ones), then attach (RTP6d)
        and wait for the sync, so that the members present are delivered as PRESENT first."""
        self.channel.connection.check_usable()
        self.state.emitter.subscribe(listener, actions)
        await self.ensure_active(wait_for_sync=True, strict=False)

    def unsubscribe(self, listener: Listener | None = None, actions: Any = None) -> None:
        """RTP7: the four forms (see `PresenceEmitter.unsubscribe`)."""
        self.state.emitter.unsubscribe(listener, actions)

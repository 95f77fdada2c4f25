"""`ably-python`: the official Ably Python SDK (`ably` 3.1.4 on PyPI) as the implementation under test.

It tests a *client*: each contract connection is one `AblyRealtime` client of the SDK, unmodified,
against the embedded reference server (started in-process on a free port, see
`presence_conformance.harness.adapters.embedded`), or against another Ably-protocol server given by
`--adapter-option endpoint=HOST:PORT --adapter-option key=NAME:SECRET`.

    pip install 'presence-conformance[ably]'
    presence-conformance run --adapter ably-python

Client options (docs/protocol.md §1.1): `endpoint="127.0.0.1:PORT"` (the realtime client
ignores `port`), `tls=False`, `fallback_hosts=[]`, and `use_binary_protocol` from
`--adapter-option protocol=msgpack|json`: msgpack (the SDK's default, `use_binary_protocol=True`:
realtime `format=msgpack`, REST `Accept: application/x-msgpack`) unless `protocol=json` is given.
A wildcard client (`client_id="*"`) connects with a token bound to `*`.

Mapping of the contract onto the SDK:

| contract | ably-python 3.1.4 |
|---|---|
| `connect(client_id, capability)` | `AblyRealtime(key=..., client_id=...)`, waits for `connected`; the key carries the capability (minted on the embedded server) |
| `enter/update/leave(data)` | `channel.presence.enter/update/leave(data)` |
| `get(client_id, connection_id, wait_for_sync)` | `presence.get(wait_for_sync=, client_id=, connection_id=)` |
| `subscribe(listener)` / `(listener, [action])` | `presence.subscribe(listener)` / `presence.subscribe(action, listener)` |
| `unsubscribe()` / `(listener)` / `(listener, [action])` | `presence.unsubscribe()` / `(listener)` / `(action, listener)` |
| `history(...)` | REST: `AblyRest(token=...).channels.get(name).presence.history(...)` (see below) |
| `sync_complete()` | `presence.sync_complete` |
| `close()` | `client.close()` |
| `drop()` | the client's TCP relay is cut (server sees a reset), then `client.close()` |

Forms the SDK does not offer are not emulated; the features are not declared, so the cases that
need them are reported `unsupported`:
- `subscribe` with a list of several actions (its event emitter takes one event name:
  Feature.SUBSCRIBE_ACTION_LIST);
- `unsubscribe(actions)` without a listener, or with several actions (Feature.UNSUBSCRIBE_BY_ACTION).

History: ably-python 3.1.4's `RealtimePresence` has no `history()`; presence history exists only
on the SDK's REST client, so that is the route taken: one `AblyRest` per connection, with a token
issued by the embedded server for the connection's key (the SDK refuses Basic auth over plain
http, error 40103, and its REST client needs `endpoint` and `port` separately). Against another
server, history needs `--adapter-option token=TOKEN`; without it Feature.HISTORY is not declared.
The SDK checks some history arguments itself and raises `ValueError` (limit > 1000, start after
end): that is a refusal without an Ably error code, reported as `PresenceError` with code None.

`drop()`: every client connects through its own TCP relay (`presence_conformance.harness.adapters.relay`); dropping
resets the relay's server side (a network failure for the server: no WebSocket close, no Ably
CLOSE) and stops it from accepting, then closes the client, whose CLOSE frame reaches only the
relay. The SDK never reconnects, so the server synthesizes the members' leaves after its grace.

Every `AblyException` becomes `PresenceError(code)`; anything else the SDK raises is reported as
the adapter breaking (outcome `error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.util
import logging
import os
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from presence_conformance.harness.adapter import (
    ALL_FEATURES,
    Adapter,
    AdapterChannel,
    AdapterConnection,
    AdapterPresence,
    Feature,
    HistoryPage,
    Listener,
    PresenceError,
    UsageError,
)
from presence_conformance.harness.adapters.embedded import (
    DEFAULT_LEAVE_GRACE,
    FULL_CAPABILITY,
    EmbeddedServer,
    ServerTarget,
    parse_float,
    parse_protocol,
    parse_server_variants,
)
from presence_conformance.harness.adapters.relay import TcpRelay
from presence_conformance.reference_impl.types import Action, PresenceMessage

__all__ = ["AblyPythonAdapter", "sdk_message"]

NAME = "ably-python"
INSTALL_HINT = "pip install 'presence-conformance[ably]'"
DEFAULT_TIMEOUT = 10.0
_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

SDK_FEATURES: frozenset[Feature] = (
    ALL_FEATURES | {Feature.WIRE_FRAMES, Feature.SERVER_CONTROL, Feature.CHANNEL_EVENTS}
) - {
    Feature.SUBSCRIBE_ACTION_LIST,
    Feature.UNSUBSCRIBE_BY_ACTION,
}


def _ms(value: Any) -> Any:
    """An SDK timestamp (naive UTC or aware datetime) as ms since the epoch; others unchanged."""
    if isinstance(value, dt.datetime):
        base = _EPOCH if value.tzinfo is None else _EPOCH_UTC
        return (value - base) // dt.timedelta(milliseconds=1)
    return value


def _data(value: Any) -> Any:
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


def sdk_message(message: Any) -> PresenceMessage:
    """An ably-python `PresenceMessage` in the harness's form, field for field (nothing is
    repaired: a missing id stays None, an unknown action number stays a number)."""
    action: Any = message.action
    if isinstance(action, int) and not isinstance(action, bool):
        try:
            action = Action.from_wire(action)
        except PresenceError:
            pass
    return PresenceMessage(
        action=action,
        client_id=message.client_id,
        connection_id=message.connection_id,
        data=_data(message.data),
        timestamp=_ms(message.timestamp),
        id=message.id,
    )


def _sdk_error(exc: BaseException) -> PresenceError:
    code = getattr(exc, "code", None)
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc)
    return PresenceError(
        code,  # type: ignore[arg-type]  # as the SDK gave it; None is judged by error.has-code
        f"{message} (ably-python: {type(exc).__name__})",
        status_code=status if isinstance(status, int) else None,
    )


def _ably_exception() -> type[BaseException]:
    from ably.util.exceptions import AblyException

    return AblyException


class SdkError(RuntimeError):
    """The SDK raised something other than an AblyException (a bug in it, or in this adapter)."""


class _Translate:
    """Context manager around one SDK call: AblyException -> PresenceError(code); any other
    exception of the SDK -> SdkError naming the call (outcome `error`)."""

    def __init__(self, call: str) -> None:
        self.call = call

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None or isinstance(
            exc,
            PresenceError
            | NotImplementedError
            | TimeoutError
            | asyncio.CancelledError
            | GeneratorExit,
        ):
            return False
        if isinstance(exc, _ably_exception()):
            raise _sdk_error(exc) from exc
        if isinstance(exc, Exception):
            raise SdkError(
                f"ably-python raised {type(exc).__name__} in {self.call}: {exc!r}"
            ) from exc
        return False


class SdkHistoryPage(HistoryPage):
    """A page of the SDK's REST `PaginatedResult`."""

    def __init__(self, page: Any) -> None:
        self._page = page
        self.items = [sdk_message(m) for m in page.items]

    def has_next(self) -> bool:
        return bool(self._page.has_next())

    async def next(self) -> HistoryPage | None:
        with _Translate("PaginatedResult.next()"):
            page = await self._page.next()
        return None if page is None else SdkHistoryPage(page)


class SdkPresence(AdapterPresence):
    """`channel.presence` of one SDK client."""

    def __init__(self, channel: SdkChannel) -> None:
        self._channel = channel
        self._presence = channel.sdk.presence
        self._wrappers: dict[Any, Any] = {}

    def _wrapper(self, listener: Listener) -> Any:
        """One SDK listener per contract listener (the SDK identifies listeners by object)."""
        wrapper = self._wrappers.get(listener)
        if wrapper is None:

            def wrapper(message: Any) -> None:
                listener(sdk_message(message))

            self._wrappers[listener] = wrapper
        return wrapper

    async def enter(self, data: Any = None) -> None:
        with _Translate("presence.enter()"):
            await self._presence.enter(data)

    async def update(self, data: Any = None) -> None:
        with _Translate("presence.update()"):
            await self._presence.update(data)

    async def leave(self, data: Any = None) -> None:
        with _Translate("presence.leave()"):
            await self._presence.leave(data)

    async def get(
        self,
        client_id: str | None = None,
        connection_id: str | None = None,
        wait_for_sync: bool = True,
    ) -> list[PresenceMessage]:
        with _Translate("presence.get()"):
            members = await self._presence.get(
                wait_for_sync=wait_for_sync, client_id=client_id, connection_id=connection_id
            )
        return [sdk_message(m) for m in members]

    async def subscribe(self, listener: Listener, actions: list[str] | None = None) -> None:
        wrapper = self._wrapper(listener)
        with _Translate("presence.subscribe()"):
            if actions is None:
                await self._presence.subscribe(wrapper)
            elif len(actions) == 1:
                await self._presence.subscribe(actions[0], wrapper)
            else:
                raise NotImplementedError(
                    "ably-python 3.1.4 subscribes a listener to one action at a time; a list of "
                    "actions is not offered (Feature.SUBSCRIBE_ACTION_LIST is not declared)"
                )

    async def unsubscribe(
        self, listener: Listener | None = None, actions: list[str] | None = None
    ) -> None:
        with _Translate("presence.unsubscribe()"):
            if listener is None and actions is None:
                self._presence.unsubscribe()
                return
            if listener is None or (actions is not None and len(actions) != 1):
                raise NotImplementedError(
                    "ably-python 3.1.4 has unsubscribe(), unsubscribe(listener) and "
                    "unsubscribe(action, listener) only (Feature.UNSUBSCRIBE_BY_ACTION is not "
                    "declared)"
                )
            wrapper = self._wrappers.get(listener)
            if wrapper is None:  # never subscribed here: the SDK gets an object it never saw
                wrapper = self._wrapper(listener)
            if actions is None:
                self._presence.unsubscribe(wrapper)
            else:
                self._presence.unsubscribe(actions[0], wrapper)

    async def history(
        self,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        direction: str | None = None,
    ) -> HistoryPage:
        rest = self._channel.connection.rest()
        presence = rest.channels.get(self._channel.name).presence
        try:
            page = await presence.history(limit=limit, direction=direction, start=start, end=end)
        except _ably_exception() as exc:
            raise _sdk_error(exc) from exc
        except ValueError as exc:  # the SDK's own argument checks carry no Ably code
            raise PresenceError(
                None,  # type: ignore[arg-type]  # judged by error.has-code
                f"ably-python refused the arguments without an Ably error code: ValueError: {exc}",
            ) from exc
        return SdkHistoryPage(page)

    async def sync_complete(self) -> bool:
        return self._presence.sync_complete

    async def enter_client(self, client_id: str, data: Any = None) -> None:
        with _Translate("presence.enter_client()"):
            await self._presence.enter_client(client_id, data)

    async def update_client(self, client_id: str, data: Any = None) -> None:
        with _Translate("presence.update_client()"):
            await self._presence.update_client(client_id, data)

    async def leave_client(self, client_id: str, data: Any = None) -> None:
        with _Translate("presence.leave_client()"):
            await self._presence.leave_client(client_id, data)

    async def rest_get(
        self,
        limit: int | None = None,
        client_id: str | None = None,
        connection_id: str | None = None,
    ) -> list[PresenceMessage]:
        if client_id is not None or connection_id is not None:
            raise NotImplementedError(
                "ably-python 3.1.4's REST Presence.get(limit=None) takes no clientId or "
                "connectionId filter (RSP3a2, RSP3a3 are not implemented)"
            )
        rest = self._channel.connection.rest()
        presence = rest.channels.get(self._channel.name).presence
        try:
            page = await presence.get(limit=limit)
        except _ably_exception() as exc:
            raise _sdk_error(exc) from exc
        except ValueError as exc:  # the SDK's own argument check carries no Ably code
            raise PresenceError(
                None,  # type: ignore[arg-type]
                f"ably-python refused the arguments without an Ably error code: {exc}",
            ) from exc
        return [sdk_message(m) for m in page.items]


class SdkChannel(AdapterChannel):
    """`client.channels.get(name)` of one SDK client."""

    def __init__(self, connection: SdkConnection, name: str) -> None:
        self.connection = connection
        self.name = name
        self.sdk = connection.client.channels.get(name)
        self._presence = SdkPresence(self)
        # every ChannelStateChange from now on (RTL2a; RTL2g UPDATE: current == previous)
        self._changes: list[dict[str, Any]] = []
        self.sdk.on(self._changed)

    def _changed(self, change: Any, *_: Any) -> None:
        current = str(getattr(change.current, "value", change.current))
        previous = str(getattr(change.previous, "value", change.previous))
        reason = getattr(change, "reason", None)
        self._changes.append(
            {
                "event": "update" if current == previous else current,
                "current": current,
                "previous": previous,
                "resumed": bool(getattr(change, "resumed", False)),
                "reason_code": getattr(reason, "code", None),
            }
        )

    async def state_changes(self) -> list[dict[str, Any]]:
        return list(self._changes)

    @property
    def presence(self) -> SdkPresence:
        return self._presence

    async def attach(self) -> None:
        with _Translate("channel.attach()"):
            await self.sdk.attach()

    async def detach(self) -> None:
        with _Translate("channel.detach()"):
            await self.sdk.detach()

    async def state(self) -> str:
        state = self.sdk.state  # ChannelState, a str enum ("attached", ...)
        return str(getattr(state, "value", state))


class SdkConnection(AdapterConnection):
    """One `AblyRealtime` client, through its own TCP relay."""

    def __init__(
        self,
        adapter: AblyPythonAdapter,
        client: Any,
        relay: TcpRelay,
        client_id: str | None,
        rest_token: str | None,
    ) -> None:
        self.adapter = adapter
        self.client = client
        self.relay = relay
        self.id = client.connection.connection_manager.connection_id
        self.client_id = client_id
        self._rest_token = rest_token
        self._rest: Any = None
        self._channels: dict[str, SdkChannel] = {}
        self.closed = False

    def channel(self, name: str) -> SdkChannel:
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = SdkChannel(self, name)
        return channel

    def rest(self) -> Any:
        """The SDK's REST client for this connection (presence history)."""
        if self._rest is None:
            if self._rest_token is None:
                raise NotImplementedError(
                    "ably-python: presence history is REST-only in 3.1.4 and its REST client "
                    "refuses Basic auth over plain http; give --adapter-option token=TOKEN "
                    "(Feature.HISTORY is not declared without it)"
                )
            from ably import AblyRest

            target = self.adapter.target
            self._rest = AblyRest(
                token=self._rest_token,
                endpoint=target.host,
                port=target.port,
                tls=False,
                use_binary_protocol=self.adapter.binary,
                http_request_timeout=int(self.adapter.timeout * 1000),
            )
        return self._rest

    @property
    def live(self) -> bool:
        from ably.types.connectionstate import ConnectionState

        return not self.closed and self.client.connection.state == ConnectionState.CONNECTED

    async def close(self) -> None:
        """`client.close()`: the SDK sends CLOSE and waits for the transport to end."""
        self.closed = True
        try:
            with _Translate("client.close()"):
                await asyncio.wait_for(self.client.close(), self.adapter.timeout)
        finally:
            await self._release()

    async def drop(self) -> None:
        """Cut the relay (the server sees a reset), then close the client: no reconnection."""
        self.closed = True
        self.relay.cut()
        try:
            with _Translate("client.close() after the cut"):
                await asyncio.wait_for(self.client.close(), self.adapter.timeout)
        finally:
            await self._release()

    async def interrupt(self, seconds: float, resume: bool = True) -> None:
        """A transient disconnect through the relay (see `TcpRelay.interrupt`); without
        `resume` the embedded server refuses the SDK's resume (RTN15c7)."""
        if not resume:
            if self.adapter.embedded is None:
                raise NotImplementedError(
                    f"{NAME}: a refused resume needs the embedded server (refuse_resume)"
                )
            self.adapter.embedded.server.refuse_resume(self.id)
        self._accepted_before = self.relay.accepted
        self.relay.interrupt(seconds)

    async def reconnected(self) -> None:
        """Wait until the SDK reconnected through the relay and its channels are attached."""
        from ably.types.channelstate import ChannelState
        from ably.types.connectionstate import ConnectionState

        connection = self.client.connection
        while not (
            self.relay.accepted > getattr(self, "_accepted_before", self.relay.accepted - 1)
            and connection.state == ConnectionState.CONNECTED
            and all(
                c.sdk.state == ChannelState.ATTACHED
                for c in self._channels.values()
                if c.sdk.state in (ChannelState.ATTACHING, ChannelState.ATTACHED)
            )
        ):
            if connection.state in (ConnectionState.FAILED, ConnectionState.CLOSED):
                raise PresenceError(
                    errors_connection_failed(connection), f"{NAME}: connection {connection.state}"
                )
            await asyncio.sleep(0.01)
        self.id = connection.connection_manager.connection_id

    async def _release(self) -> None:
        await self.relay.close()
        rest, self._rest = self._rest, None
        if rest is not None:
            with contextlib.suppress(Exception):
                await rest.close()


class AblyPythonAdapter(Adapter):
    """The official ably-python SDK (3.1.4) against the embedded reference server."""

    name: ClassVar[str] = NAME
    features: frozenset[Feature] = SDK_FEATURES  # type: ignore[misc]
    options: ClassVar[Mapping[str, str]] = {
        "endpoint": "HOST:PORT of another Ably-protocol server (default: start the embedded "
        "reference server on a free port)",
        "key": "API key NAME:SECRET for that server (needed with endpoint)",
        "token": "a token that server accepts on REST, for presence history (ably-python "
        "refuses Basic auth over plain http); without it history is unsupported",
        "leave_grace": "seconds before a dropped connection's members leave: the embedded "
        f"server is started with it; for another server, give its value "
        f"(default {DEFAULT_LEAVE_GRACE:g})",
        "timeout": f"seconds to wait for a connection or a close (default {DEFAULT_TIMEOUT:g})",
        "protocol": "msgpack or json: the SDK's use_binary_protocol true or false (default "
        "msgpack, the SDK's own default)",
        "server_variants": "conforming variants of the embedded server, comma-separated, or "
        "all (reference_impl/server/variants.py; default none)",
        "variant_seed": "seed of the embedded server's variant randomness (default 0)",
    }
    quiet_period = 0.1

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        if importlib.util.find_spec("ably") is None:
            raise UsageError(
                f"adapter {NAME!r}: the ably package (ably-python) is not installed: {INSTALL_HINT}"
            )
        opts = self.option_values
        self.leave_grace = parse_float(NAME, opts, "leave_grace", DEFAULT_LEAVE_GRACE)
        self.timeout = parse_float(NAME, opts, "timeout", DEFAULT_TIMEOUT, minimum=0.001)
        self.protocol = parse_protocol(NAME, opts, "msgpack")
        self.binary = self.protocol == "msgpack"
        self.target = ServerTarget.from_options(NAME, opts)
        self.server_variants, self.variant_seed = parse_server_variants(NAME, opts)
        if self.target.external and self.server_variants:
            raise UsageError(
                f"adapter {NAME!r}: server_variants only applies to the embedded server"
            )
        self.rest_token = opts.get("token")
        if self.rest_token is not None and not self.target.external:
            raise UsageError(
                f"adapter {NAME!r}: option token only applies with endpoint "
                "(the embedded server issues its own tokens)"
            )
        if self.target.external:
            features = set(SDK_FEATURES) - {
                Feature.CAPABILITIES,
                Feature.WIRE_FRAMES,
                Feature.SERVER_CONTROL,
            }
            if self.rest_token is None:
                features.discard(Feature.HISTORY)
                features.discard(Feature.REST_PRESENCE)
            self.features = frozenset(features)
        self.embedded: EmbeddedServer | None = None
        self._connections: list[SdkConnection] = []
        self._restore_handler: tuple[asyncio.AbstractEventLoop, Any] | None = None

    async def start(self) -> None:
        """Start the embedded reference server (unless an endpoint was given)."""
        import ably  # noqa: F401  (fail here, clearly, if the package is broken)

        logging.getLogger("ably").setLevel(logging.CRITICAL)  # the SDK logs expected failures
        self._quiet_sdk_tasks(asyncio.get_running_loop())
        if self.target.external:
            return
        variants: dict[str, Any] = {}
        if self.server_variants:
            variants = {"variants": self.server_variants, "variant_seed": self.variant_seed}
        self.embedded = EmbeddedServer(leave_grace=self.leave_grace, **variants)
        self.target.endpoint = await self.embedded.start()
        self.target.key = self.embedded.key

    def _quiet_sdk_tasks(self, loop: asyncio.AbstractEventLoop) -> None:
        """The SDK starts background tasks whose failures it never collects (an implicit
        attach refused after a NACK, a CLOSE sent on a cut relay): keep asyncio's "Task exception
        was never retrieved" for those out of the run's output (logged at DEBUG instead)."""
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            task = context.get("future") or context.get("task")
            coro = task.get_coro() if isinstance(task, asyncio.Task) else None
            code = getattr(coro, "cr_code", None)
            if code is not None and f"{os.sep}ably{os.sep}" in code.co_filename:
                logging.getLogger("ably").debug("SDK task failed: %s", context.get("exception"))
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)
        self._restore_handler = (loop, previous)

    async def stop(self) -> None:
        """Close every client still open (bounded), then stop the server."""
        connections, self._connections = self._connections, []

        async def close(conn: SdkConnection) -> None:
            if not conn.closed:
                with contextlib.suppress(Exception):
                    await conn.close()
            await conn._release()

        await asyncio.gather(*(close(c) for c in connections), return_exceptions=True)
        if self.embedded is not None:
            embedded, self.embedded = self.embedded, None
            await embedded.stop()
        restore, self._restore_handler = self._restore_handler, None
        if restore is not None:
            restore[0].set_exception_handler(restore[1])

    def _key_for(self, capability: dict[str, list[str]] | None) -> str:
        if self.embedded is not None:
            return self.embedded.key_for(capability)
        if capability is not None and capability != FULL_CAPABILITY:
            raise NotImplementedError(
                f"{NAME}: capabilities need the embedded server (it mints a key per capability)"
            )
        return self.target.key

    async def connect(
        self, client_id: str | None, capability: dict[str, list[str]] | None = None
    ) -> SdkConnection:
        from ably import AblyRealtime

        if not self.target.endpoint:
            raise RuntimeError(f"{NAME}: connect() before start()")
        key = self._key_for(capability)
        token = None if self.embedded is None else self.embedded.token_for(key, client_id)
        relay = TcpRelay(self.target.host, self.target.port)
        await relay.start()
        common: dict[str, Any] = {
            "endpoint": relay.endpoint,
            "tls": False,
            "use_binary_protocol": self.binary,
            "fallback_hosts": [],
        }
        if client_id == "*":
            if token is None:
                await relay.close()
                raise NotImplementedError(
                    f"{NAME}: a wildcard clientId needs a token bound to "
                    "'*' (the embedded server issues one)"
                )
            # with clientId '*' in the options too: from the token alone, 3.1.4's realtime Auth
            # takes the '*' of CONNECTED for "no clientId" (Auth.__init__ leaves client_id None
            # for realtime clients, Auth._configure_client_id keeps None) and then refuses every
            # enterClient with 40012 (Auth.can_assume_client_id)
            client = AblyRealtime(token=token, client_id="*", **common)
        elif client_id is None:
            client = AblyRealtime(key=key, **common)
        else:
            client = AblyRealtime(key=key, client_id=client_id, **common)
        try:
            await asyncio.wait_for(_connected(client), self.timeout)
        except BaseException:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(client.close(), 2.0)
            await relay.close()
            raise
        rest_token = token if token is not None else self.rest_token
        conn = SdkConnection(self, client, relay, client_id, rest_token)
        self._connections = [c for c in self._connections if not c.closed]
        self._connections.append(conn)
        return conn

    async def quiesce(self) -> bool:
        """With the embedded server: ping every open client and wait for the echoes.

        The reference server writes each connection's frames in order, the relay forwards them in
        order, and the SDK handles its frames in order (one task each, FIFO), so once a ping's
        echo is back every event sent to that client before it has reached the listeners.
        Another server makes no such promise: False."""
        if self.embedded is None:
            return False
        live = [c for c in self._connections if c.live]
        await asyncio.gather(
            *(asyncio.wait_for(c.client.connection.ping(), self.timeout) for c in live),
            return_exceptions=True,
        )
        await asyncio.sleep(0)
        return True

    @property
    def server_control(self) -> Any:
        """The embedded server's control (Feature.SERVER_CONTROL); None before start()."""
        return None if self.embedded is None else self.embedded.control

    def wire_frames(self, connection_id: str) -> list[dict]:
        """Client->server frames the embedded server recorded for `connection_id`."""
        if self.embedded is None:
            raise NotImplementedError(f"{NAME}: wire frames need the embedded server")
        return self.embedded.frames(connection_id)


def errors_connection_failed(connection: Any) -> int:
    """The code of the SDK connection's error reason (80000 without one)."""
    reason = connection.error_reason
    code = getattr(reason, "code", None)
    return code if isinstance(code, int) else 80000


async def _connected(client: Any) -> None:
    """Wait until `client` is CONNECTED; PresenceError with the reason if it fails instead."""
    from ably.types.connectionstate import ConnectionState

    connection = client.connection
    failed = (
        ConnectionState.FAILED,
        ConnectionState.SUSPENDED,
        ConnectionState.CLOSED,
        ConnectionState.DISCONNECTED,
    )
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def check(*_: Any) -> None:
        if done.done():
            return
        state = connection.state
        if state == ConnectionState.CONNECTED and connection.connection_manager.connection_id:
            done.set_result(None)
        elif state in failed and connection.error_reason is not None:
            done.set_exception(_sdk_error(connection.error_reason))

    connection.on(check)
    try:
        check()
        await done
    finally:
        connection.off(check)

"""The `ably-wire` adapter: the harness's own Ably-protocol client against an Ably-protocol server.

It tests a *server*. By default `start()` runs the embedded reference server
(`presence_conformance.reference_impl.server`) in-process on a free port of 127.0.0.1 with a short leave grace, so a
run needs nothing else; with `--adapter-option endpoint=HOST:PORT` (and `key=NAME:SECRET`) it
drives any other server that speaks the Ably realtime protocol over plain `ws://` with JSON
(or MessagePack, below) and serves REST presence history over plain `http://` on the same port.

    presence-conformance run --adapter ably-wire
    presence-conformance run --adapter ably-wire --adapter-option endpoint=127.0.0.1:8080 \\
        --adapter-option key=appid.keyid:secret --adapter-option leave_grace=15
    presence-conformance run --adapter ably-wire --adapter-option protocol=msgpack

`protocol=json` (the default: the harness's client is the judge of a server, and JSON frames are
the ones a reader can follow) or `protocol=msgpack`: realtime `format=msgpack` with MessagePack
binary frames, binary data as `bin`, and REST with `Accept: application/x-msgpack`, as the
SDKs speak with `useBinaryProtocol`.

Mapping of the contract (`presence_conformance.harness.adapter`) onto the protocol (`presence_conformance.harness.ably_client`):
`connect` opens a realtime connection: with the key, or, for a narrower capability, with a token
minted through the server's standard token endpoint (`POST /keys/{keyName}/requestToken` with
TokenParams `capability` and `clientId`, authenticated with the key: RSA8, TK2) as an
application server would, so capability cases run against any server that has that endpoint; `enter`/`update`/`leave` send PRESENCE and wait for ACK (NACK raises
PresenceError); `get`, `subscribe` and `sync_complete` are answered from the client's own
presence map, fed by SYNC and PRESENCE (RTP2, RTP18); `history` is REST
(`GET /channels/{name}/presence/history`, RTP12); `close` is CLOSE/CLOSED; `drop` aborts the TCP
connection without a frame. With the embedded server, `wire_frames` returns the frames the
server recorded from a connection (Feature.WIRE_FRAMES). With any server, `server_frames`
returns what the server sent to the harness's client on a connection, with the client's frames
in between and the protocol problems the client noticed (Feature.SERVER_FRAMES), so that the
server checks judge the frames the client's presence map would otherwise repair.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import aiohttp
from presence_conformance.harness.ably_client import (
    ConnectionState,
    PaginatedResult,
    PresenceOracle,
    RealtimeConnection,
    RestClient,
)
from presence_conformance.harness.ably_client.connection import RealtimeChannel
from presence_conformance.harness.ably_client.server_log import ServerFrames, server_log
from presence_conformance.harness.adapter import (
    ALL_FEATURES,
    Adapter,
    AdapterChannel,
    AdapterConnection,
    AdapterPresence,
    Feature,
    HistoryPage,
    Listener,
    UsageError,
)
from presence_conformance.harness.adapters.control import HttpControl, local_control
from presence_conformance.harness.adapters.embedded import (
    DEFAULT_LEAVE_GRACE,
    FULL_CAPABILITY,
    check_endpoint,
    check_key,
    parse_float,
    parse_protocol,
    parse_server_variants,
)
from presence_conformance.reference_impl.client_presence import ClientPresence
from presence_conformance.reference_impl.errors import INVALID_CLIENT_ID, PresenceError
from presence_conformance.reference_impl.types import Action, PresenceMessage

__all__ = ["AblyWireAdapter"]

DEFAULT_TIMEOUT = 10.0
KEPT_CONNECTIONS = 256  # client connections whose frame logs stay readable (server_frames)


class WireHistoryPage(HistoryPage):
    """A REST history page (RTP12c) as the contract's HistoryPage."""

    def __init__(self, page: PaginatedResult, connection: RealtimeConnection) -> None:
        self._page = page
        self._connection = connection
        self.items = list(page.items)

    def has_next(self) -> bool:
        return self._page.has_next()

    async def next(self) -> HistoryPage | None:
        self._connection.check_usable()
        page = await self._page.next()
        return None if page is None else WireHistoryPage(page, self._connection)


class WirePresence(AdapterPresence):
    """Presence of one channel on one connection, over the wire.

    As the contract says, every call on a closed or dropped connection raises PresenceError
    80017, unsubscribe and history included (the client would allow those)."""

    def __init__(self, channel: WireChannel) -> None:
        self._channel = channel
        self._realtime = channel.connection.realtime
        self._presence = channel.realtime.presence

    async def enter(self, data: Any = None) -> None:
        await self._presence.enter(data)

    async def update(self, data: Any = None) -> None:
        await self._presence.update(data)

    async def leave(self, data: Any = None) -> None:
        await self._presence.leave(data)

    async def get(
        self,
        client_id: str | None = None,
        connection_id: str | None = None,
        wait_for_sync: bool = True,
    ) -> list[PresenceMessage]:
        return await self._presence.get(client_id, connection_id, wait_for_sync)

    async def subscribe(self, listener: Listener, actions: list[str] | None = None) -> None:
        if not callable(listener) and callable(actions):  # the seed's order (actions, listener)
            listener, actions = actions, listener
        await self._presence.subscribe(listener, actions)

    async def unsubscribe(
        self, listener: Listener | None = None, actions: list[str] | None = None
    ) -> None:
        if (
            listener is not None
            and not callable(listener)
            and (actions is None or callable(actions))
        ):
            listener, actions = actions, listener  # the seed's order (actions[, listener])
        self._realtime.check_usable()
        self._presence.unsubscribe(listener, actions)

    async def history(
        self,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        direction: str | None = None,
    ) -> HistoryPage:
        self._realtime.check_usable()
        rest = self._channel.connection.rest
        page = await rest.presence_history(self._channel.name, start, end, limit, direction)
        return WireHistoryPage(page, self._realtime)

    async def sync_complete(self) -> bool:
        return self._presence.sync_complete

    async def enter_client(self, client_id: str, data: Any = None) -> None:
        await self._presence.enter_client(client_id, data, Action.ENTER)

    async def update_client(self, client_id: str, data: Any = None) -> None:
        await self._presence.enter_client(client_id, data, Action.UPDATE)

    async def leave_client(self, client_id: str, data: Any = None) -> None:
        await self._presence.enter_client(client_id, data, Action.LEAVE)

    async def rest_get(
        self,
        limit: int | None = None,
        client_id: str | None = None,
        connection_id: str | None = None,
    ) -> list[PresenceMessage]:
        rest = self._channel.connection.rest
        page = await rest.presence_get(self._channel.name, limit, client_id, connection_id)
        return list(page.items)


class WireChannel(AdapterChannel):
    """A channel on one wire connection."""

    def __init__(self, connection: WireConnection, realtime: RealtimeChannel) -> None:
        self.connection = connection
        self.realtime = realtime
        self.name = realtime.name
        self._presence = WirePresence(self)

    @property
    def presence(self) -> WirePresence:
        return self._presence

    async def attach(self) -> None:
        await self.realtime.attach()

    async def detach(self) -> None:
        await self.realtime.detach()

    async def state(self) -> str:
        return str(self.realtime.state.value)

    async def state_changes(self) -> list[dict[str, Any]]:
        return [
            {
                "event": c["event"],
                "current": c["current"],
                "previous": c["previous"],
                "resumed": c["resumed"],
                "reason_code": c["reason"].code if c["reason"] is not None else None,
            }
            for c in self.realtime.state_changes
        ]


class WireConnection(AdapterConnection):
    """One realtime connection (plus REST with the same key for history)."""

    def __init__(
        self,
        adapter: AblyWireAdapter,
        realtime: RealtimeConnection,
        key: str,
        token: str | None = None,
    ) -> None:
        self.adapter = adapter
        self.realtime = realtime
        self.id = realtime.id
        self.client_id = realtime.client_id
        self.rest = RestClient(
            adapter.endpoint,
            key,
            timeout=adapter.timeout,
            session=adapter._session,
            wire_format=adapter.protocol,
            token=token,
        )
        self._channels: dict[str, WireChannel] = {}

    def channel(self, name: str) -> WireChannel:
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = WireChannel(self, self.realtime.channel(name))
        return channel

    async def close(self) -> None:
        await self.realtime.close()

    async def drop(self) -> None:
        await self.realtime.drop()

    async def interrupt(self, seconds: float, resume: bool = True) -> None:
        """RTN15: cut the transport; the client resumes after `seconds`. Without `resume` the
        embedded server is told to refuse the resume (RTN15c7); another server is sent a
        connectionKey it cannot know."""
        key = None
        if not resume:
            server = self.adapter.server
            if server is not None:
                server.refuse_resume(self.realtime.id)
            else:
                key = f"{self.realtime.key or 'none'}-not-a-key"
        await self.realtime.interrupt(seconds, key)

    async def reconnected(self) -> None:
        await self.realtime.reconnected()
        self.id = self.realtime.id
        self.adapter._keep(self.realtime)


class AblyWireAdapter(Adapter):
    """Drives an Ably-protocol server (the embedded reference server by default) over the wire."""

    name: ClassVar[str] = "ably-wire"
    features: frozenset[Feature] = ALL_FEATURES | {  # type: ignore[misc]
        Feature.WIRE_FRAMES,
        Feature.SERVER_FRAMES,
        Feature.TOKEN_IDENTITY,
        Feature.SERVER_CONTROL,
        Feature.CHANNEL_EVENTS,
    }
    options: ClassVar[Mapping[str, str]] = {
        "endpoint": "HOST:PORT of an Ably-protocol server to test (default: start the embedded "
        "reference server on a free port)",
        "key": "API key NAME:SECRET for that server (default: the embedded server's own key)",
        "leave_grace": "seconds before a dropped connection's members leave: the embedded "
        f"server is started with it; for another server, give its value "
        f"(default {DEFAULT_LEAVE_GRACE:g})",
        "timeout": f"seconds to wait for any answer from the server (default {DEFAULT_TIMEOUT:g})",
        "sync_page_size": "members per SYNC frame on the embedded server (default: the server's)",
        "ack_first": "true: the embedded server ACKs a PRESENCE before broadcasting its events "
        "(default false: broadcast first)",
        "server_variants": "conforming variants of the embedded server, comma-separated, or "
        "all (reference_impl/server/variants.py; default none)",
        "variant_seed": "seed of the embedded server's variant randomness (default 0)",
        "protocol": "json or msgpack: the wire format of realtime frames and REST bodies "
        "(default json)",
        "control_token": "with endpoint: the token of that server's control endpoint "
        "(`serve --control`), for `server:` steps (Feature.SERVER_CONTROL)",
    }
    quiet_period = 0.05
    # builds each channel's client presence map: the oracle, or a mutant of it
    # (presence_conformance.harness.mutants.client_presence.ably_wire_with)
    presence_oracle: ClassVar[PresenceOracle] = ClientPresence

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        opts = self.option_values
        self.leave_grace = parse_float(self.name, opts, "leave_grace", DEFAULT_LEAVE_GRACE)
        self.timeout = parse_float(self.name, opts, "timeout", DEFAULT_TIMEOUT, minimum=0.001)
        self.protocol: Literal["json", "msgpack"] = (
            "msgpack" if parse_protocol(self.name, opts, "json") == "msgpack" else "json"
        )
        self.external = "endpoint" in opts
        self.endpoint = check_endpoint(self.name, opts["endpoint"]) if self.external else ""
        if "key" in opts:
            self.key = check_key(self.name, opts["key"])
        elif self.external:
            raise UsageError("adapter 'ably-wire': option endpoint needs key=NAME:SECRET too")
        else:
            self.key = ""
        self.sync_page_size: int | None = None
        if "sync_page_size" in opts:
            if self.external:
                raise UsageError(
                    "adapter 'ably-wire': sync_page_size only applies to the embedded server"
                )
            raw = opts["sync_page_size"]
            if not raw.isdigit() or int(raw) < 1:
                raise UsageError(
                    f"adapter 'ably-wire': sync_page_size={raw!r}: expected an integer >= 1"
                )
            self.sync_page_size = int(raw)
        self.ack_first = False
        if "ack_first" in opts:
            if self.external:
                raise UsageError(
                    "adapter 'ably-wire': ack_first only applies to the embedded server"
                )
            raw = opts["ack_first"].strip().lower()
            if raw not in ("true", "false", "1", "0", "yes", "no"):
                raise UsageError(
                    f"adapter 'ably-wire': ack_first={opts['ack_first']!r}: expected true or false"
                )
            self.ack_first = raw in ("true", "1", "yes")
        self.server_variants, self.variant_seed = parse_server_variants(self.name, opts)
        if self.external and (self.server_variants or "variant_seed" in opts):
            raise UsageError(
                "adapter 'ably-wire': server_variants only applies to the embedded server"
            )
        self.control_token = opts.get("control_token")
        if self.control_token is not None and not self.external:
            raise UsageError(
                "adapter 'ably-wire': control_token only applies with endpoint=HOST:PORT "
                "(the embedded server is controlled in-process)"
            )
        if self.external:
            # Another server: no log of the client's frames to read (its own frames to our client
            # are judged all the same); capabilities through its token endpoint.
            self.features = ALL_FEATURES | {
                Feature.SERVER_FRAMES,
                Feature.TOKEN_IDENTITY,
                Feature.CHANNEL_EVENTS,
            }
            if self.control_token:  # `server:` steps only through its control endpoint
                self.features |= {Feature.SERVER_CONTROL}
        self.server: Any = None
        self.server_control: Any = None
        self._session: aiohttp.ClientSession | None = None
        self._connections: list[WireConnection] = []
        # connectionId -> the client connection that had it, for server_frames (bounded)
        self._realtimes: collections.OrderedDict[str, RealtimeConnection] = (
            collections.OrderedDict()
        )
        self._no_token_endpoint: str | None = None

    async def start(self) -> None:
        """Start the embedded reference server (unless an endpoint was given)."""
        self._session = aiohttp.ClientSession()
        if self.external:
            if self.control_token:
                self.server_control = HttpControl(
                    self._session, f"http://{self.endpoint}", self.control_token
                )
            return
        from presence_conformance.reference_impl.server import PresenceServer, ServerConfig

        config_args: dict[str, Any] = {"leave_grace": self.leave_grace}
        if self.sync_page_size is not None:
            config_args["sync_page_size"] = self.sync_page_size
        if self.ack_first:
            config_args["ack_first"] = True
        if self.server_variants:
            config_args["variants"] = self.server_variants
            config_args["variant_seed"] = self.variant_seed
        config = ServerConfig(**config_args)
        self.server = PresenceServer(config)
        host, port = await self.server.start("127.0.0.1", 0)
        self.server_control = local_control(self.server)
        self.endpoint = f"{host}:{port}"
        if not self.key:
            name, spec = next(iter(config.keys.items()))
            self.key = f"{name}:{spec.secret}"

    async def stop(self) -> None:
        """Close every connection still open (bounded), then stop the server."""
        connections, self._connections = self._connections, []
        if connections:

            async def _close(conn: WireConnection) -> None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.realtime.close(), self.timeout)

            await asyncio.gather(*(_close(c) for c in connections), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()

    async def _token_for(
        self, capability: dict[str, list[str]] | None, client_id: str | None, always: bool = False
    ) -> str | None:
        """A token limited to `capability` for `client_id`, minted as an application server
        would: `POST /keys/{keyName}/requestToken` with the user's key (RSA8, TK2b, TK2c).
        None: the key itself will do (no capability asked, or the key's own), unless `always`."""
        if not always and (capability is None or capability == FULL_CAPABILITY):
            return None
        if capability is None:
            capability = FULL_CAPABILITY
        if self._no_token_endpoint is not None:
            raise NotImplementedError(self._no_token_endpoint)
        rest = RestClient(
            self.endpoint,
            self.key,
            timeout=self.timeout,
            session=self._session,
            wire_format=self.protocol,
        )
        try:
            details = await rest.request_token(capability, client_id)
        except PresenceError as exc:
            if exc.code in (40400, 40500) or exc.status_code in (404, 405):
                self._no_token_endpoint = (
                    f"ably-wire: the server at {self.endpoint} has no token endpoint "
                    f"(POST /keys/{{keyName}}/requestToken answered {exc.code}), so no "
                    "capability-limited credential can be minted"
                )
                raise NotImplementedError(self._no_token_endpoint) from None
            raise
        token: str = details["token"]
        return token

    async def connect(
        self, client_id: str | None, capability: dict[str, list[str]] | None = None
    ) -> WireConnection:
        if not self.endpoint:
            raise RuntimeError("ably-wire: connect() before start()")
        token = await self._token_for(capability, client_id)
        realtime = await RealtimeConnection.connect(
            self.endpoint,
            self.key,
            client_id,
            timeout=self.timeout,
            wire_format=self.protocol,
            token=token,
            presence_oracle=self.presence_oracle,
        )
        conn = WireConnection(self, realtime, self.key, token)
        self._keep(realtime)
        self._connections = [
            c for c in self._connections if c.realtime.state is ConnectionState.CONNECTED
        ]
        self._connections.append(conn)
        return conn

    async def connect_with_token(
        self,
        client_id: str | None,
        capability: dict[str, list[str]] | None,
        token_client_id: str | None,
    ) -> WireConnection:
        """Connect with a token minted for `token_client_id` (None: without a clientId) while
        claiming `client_id` in the URL (RSA7e1), as a client holding someone else's token.
        A connection that comes up as the token's clientId rather than the claimed one is failed
        here, as a client library must (RSA15a, RSA15c); one that comes up as claimed, or
        without a clientId, is returned: what it may then do is the scenario's to judge."""
        if not self.endpoint:
            raise RuntimeError("ably-wire: connect() before start()")
        token = await self._token_for(capability, token_client_id, always=True)
        realtime = await RealtimeConnection.connect(
            self.endpoint,
            self.key,
            client_id,
            timeout=self.timeout,
            wire_format=self.protocol,
            token=token,
        )
        granted = realtime.details.get("clientId")
        if granted is not None and granted != client_id and granted == token_client_id:
            with contextlib.suppress(Exception):
                await realtime.close()
            raise PresenceError(
                INVALID_CLIENT_ID,
                f"ably-wire: connected as the token's clientId {granted!r}, not the claimed "
                f"{client_id!r}; a client fails such a connection (RSA15a, RSA15c)",
            )
        conn = WireConnection(self, realtime, self.key, token)
        self._connections.append(conn)
        return conn

    async def quiesce(self) -> bool:
        """With the embedded server: ping every open connection and wait for the echoes.

        The reference server handles a frame from start to end at once and writes each
        connection's frames in order, so once a connection's HEARTBEAT echo is back, every event
        the server had produced for it before has been received and given to the listeners
        (they are called by the reader, in order). Another server makes no such promise: False.
        """
        if self.external or self.server is None:
            return False
        live = [
            c.realtime for c in self._connections if c.realtime.state is ConnectionState.CONNECTED
        ]
        await asyncio.gather(*(r.ping() for r in live), return_exceptions=True)
        return True

    def _keep(self, realtime: RealtimeConnection) -> None:
        self._realtimes[realtime.id] = realtime
        self._realtimes.move_to_end(realtime.id)
        while len(self._realtimes) > KEPT_CONNECTIONS:
            self._realtimes.popitem(last=False)

    def server_frames(self, connection_id: str) -> ServerFrames:
        """What the server sent to the client connection that had `connection_id` (and that
        client's own frames, and the problems it noticed); KeyError for an unknown id."""
        return server_log(self._realtimes[connection_id], connection_id)

    def wire_frames(self, connection_id: str) -> list[dict]:
        """Client->server frames the embedded server recorded for `connection_id`."""
        if self.server is None:
            raise NotImplementedError("ably-wire: wire frames need the embedded server")
        return [dict(frame) for frame in self.server.frames(connection_id)]

"""`PresenceServer`: the reference presence server on the Ably realtime protocol (JSON over ws://).

One aiohttp application on one port: the realtime WebSocket at `/` and the REST presence
endpoints. All presence state lives in one `PresenceModel` (the oracle). This module assembles
the parts, each with one job, and runs their life:

- `auth.py`: keys, tokens, and what a credential may do on a channel;
- `transport.py`: the WebSockets, frames in and out, the direct-write path;
- `realtime.py`: the connection and channel protocol (the subset of `docs/protocol.md`);
- `rest.py`: the REST endpoints;
- `inspection.py`: what tests read from the server (the client frame log, the connections) and
  the faults they inject (`drop`, `expire_now`);
- `variants.py`: conforming variants (`ServerConfig.variants`): behaviours the spec allows that
  the reference does not show by default.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from presence_conformance.reference_impl.model import PresenceModel
from presence_conformance.reference_impl.server import rest, variants
from presence_conformance.reference_impl.server.auth import Authenticator
from presence_conformance.reference_impl.server.config import Capability, ServerConfig
from presence_conformance.reference_impl.server.inspection import FrameLog, Inspection
from presence_conformance.reference_impl.server.limits import (
    GuardedSite,
    HandshakeGuard,
    SocketCap,
    install_log_limits,
)

log = logging.getLogger("presence_conformance.reference_impl.server")


class PresenceServer:
    """The reference presence server. In-process use:

    server = PresenceServer(ServerConfig(leave_grace=0.2))
    host, port = await server.start()
    ... ws://host:port/?key=appid.keyid:secret&clientId=alice ...
    await server.stop()

    Parts: `model` (the presence state), `auth` (keys and tokens), `realtime` (the protocol
    state machine, with its `transport`), `inspection` (what tests read), `stats` (counters).
    """

    def __init__(
        self, config: ServerConfig | None = None, *, clock: Callable[[], int] | None = None
    ) -> None:
        self.config = config or ServerConfig()
        self._clock = variants.skewed_clock(self.config, clock or (lambda: int(time.time() * 1000)))
        ids = variants.id_factory(self.config)
        self.model = PresenceModel(
            self._clock,
            ids,
            max_message_size=self.config.max_message_size,
            history_max_count=self.config.history_max_count,
            history_max_age_ms=self.config.history_max_age_ms,
        )
        self.stats: collections.Counter[str] = collections.Counter()
        self.auth = Authenticator(self.config.keys, self.now)
        frame_log = FrameLog(
            self.config.frame_log_size,
            self.config.frame_log_connections,
            self.config.frame_log_bytes,
            self.config.frame_log_total_bytes,
        )
        self.realtime = variants.protocol_class(self.config)(
            self.config, self.model, ids, self.auth, frame_log, self.stats
        )
        self.inspection = Inspection(self.realtime, frame_log)
        self._runner: web.AppRunner | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._guard: HandshakeGuard | None = None
        # the TCP socket cap (`sockets.open`, `sockets.by_ip` tell what is held)
        self.sockets = SocketCap(
            self.config.effective_max_sockets, self.config.max_sockets_per_ip, self.stats
        )
        # more routes for the app (`serve --control` adds the control endpoint's)
        self.route_hooks: list[Callable[[web.Application], None]] = []
        self._host: str | None = None
        self._port: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on `host:port` (0: a free port); return the address actually bound."""
        if self._runner is not None:
            raise RuntimeError("PresenceServer already started")
        guard = HandshakeGuard(self.config.handshake_timeout, self.stats)
        app = web.Application(middlewares=[guard.middleware, rest.error_middleware])
        app.router.add_get("/", self.realtime.transport.handle)
        rest.add_routes(
            app,
            model=self.model,
            auth=self.auth,
            now=self.now,
            max_channel_name_length=self.config.max_channel_name_length,
            history_page=variants.history_page(self.config),
        )
        for hook in self.route_hooks:
            hook(app)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=1.0,
            keepalive_timeout=self.config.keepalive_timeout,
        )
        await runner.setup()
        install_log_limits(self.config.log_rate, self.config.log_rate_period)
        guard.runner = runner
        self._guard = guard
        site = GuardedSite(runner, guard, host, port, self.sockets)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound: Any = runner.addresses[0]  # (host, port, ...) for TCP sites
        self._host, self._port = str(bound[0]), int(bound[1])
        interval = self.config.effective_heartbeat_interval
        if interval > 0:
            self._heartbeat_task = asyncio.create_task(self.realtime.heartbeats(interval))
        sweep = self.config.sweep_interval
        if self.config.history_max_age is not None:  # history expires at most half late
            sweep = min(sweep, self.config.history_max_age / 2)
        self._sweep_task = asyncio.create_task(self._sweeps(sweep))
        log.info("reference server listening on %s", self.url)
        return self._host, self._port

    async def stop(self) -> None:
        """Close every connection (no leaves are synthesized) and stop listening."""
        for task in (self._heartbeat_task, self._sweep_task):
            if task is not None:
                task.cancel()
        self._heartbeat_task = self._sweep_task = None
        await self.realtime.shutdown()
        if self._guard is not None:
            self._guard.cancel_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _sweeps(self, interval: float) -> None:
        """Free idle channels and expired history every `interval` seconds, forever."""
        while True:
            await asyncio.sleep(interval)
            self.stats["channels_freed"] += self.model.sweep()

    async def __aenter__(self) -> PresenceServer:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def host(self) -> str:
        """The address bound by `start`."""
        if self._host is None:
            raise RuntimeError("PresenceServer not started")
        return self._host

    @property
    def port(self) -> int:
        """The port bound by `start`."""
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

    def now(self) -> int:
        """The server's clock, ms since the epoch (the model's timestamps use it)."""
        return int(self._clock())

    # -- keys and tokens (auth.Authenticator) ----------------------------------------------------

    @property
    def default_key(self) -> str:
        """`name:secret` of the first configured key."""
        return self.auth.default_key

    def add_key(self, name: str, secret: str, capability: Capability | None = None) -> str:
        """Add (or replace) an API key at run time; returns `name:secret`."""
        return self.auth.add_key(name, secret, capability)

    def issue_token(
        self,
        key_name: str | None = None,
        client_id: str | None = None,
        capability: Capability | None = None,
    ) -> str:
        """An opaque token for `key_name` (default: the first key), usable as `accessToken` /
        `access_token` on the WebSocket and as `Authorization: Bearer base64(token)` on REST."""
        return self.auth.issue_token(key_name, client_id, capability)

    # -- test inspection and fault injection (inspection.Inspection) -----------------------------

    def frames(self, connection_id: str) -> list[dict[str, Any]]:
        """Client->server frames recorded for a connection, oldest first (bounded, see
        `ServerConfig.frame_log_size`). Malformed frames appear as `{"$malformed": ...}`,
        oversized ones in summary with `"$size"`. Unknown connection ids give `[]`."""
        return self.inspection.frames(connection_id)

    def connection_ids(self) -> list[str]:
        """Ids of the connections whose transport is open."""
        return self.inspection.connection_ids()

    def connection_client_id(self, connection_id: str) -> str | None:
        """The clientId a connection was opened with (`*` for wildcard, None anonymous)."""
        return self.inspection.connection_client_id(connection_id)

    async def drop(self, connection_id: str) -> None:
        """Fault injection: cut a connection's transport as a network failure would (no CLOSE)."""
        await self.inspection.drop(connection_id)

    def refuse_resume(self, connection_id: str) -> None:
        """Fault injection: refuse the next resume of this connection (RTN15c7: the client
        gets a new connection with error 80008)."""
        self.realtime.refuse_resume(connection_id)

    def expire_now(self, connection_id: str) -> None:
        """End the leave grace of a dropped connection at once."""
        self.inspection.expire_now(connection_id)

"""`reference`: the in-process reference implementation (`presence_conformance.reference_impl.service`) as an adapter.

It supports every feature, answers `quiesce()` precisely (the service's delivery queues are
empty), and so runs a case at the speed of the event loop. Options:

- `leave_grace`: seconds between an abrupt `drop()` and the synthesized leaves (default 0.2);
- `op_delay`: seconds of artificial latency before every operation (default 0), to exercise the
  runner's waiting against a slower implementation.

The classes are small and meant to be subclassed: a deliberately broken variant (a mutant)
overrides one method, e.g. `ReferencePresence.get` or `ReferencePresence.wrap_listener`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

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
from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.service import (
    PresenceService,
    ServiceChannel,
    ServiceConnection,
    ServiceHistoryPage,
    ServicePresence,
)
from presence_conformance.reference_impl.types import PresenceMessage

__all__ = ["ReferenceAdapter", "ReferenceChannel", "ReferenceConnection", "ReferencePresence"]


class ReferencePage(HistoryPage):
    """A service history page in the contract's form."""

    def __init__(self, page: ServiceHistoryPage, presence: ReferencePresence) -> None:
        self._page = page
        self._presence = presence
        self.items: list[PresenceMessage] = presence.history_items(list(page.items))

    def has_next(self) -> bool:
        return self._page.has_next()

    async def next(self) -> HistoryPage | None:
        await self._presence.delay()
        page = await self._page.next()
        return None if page is None else type(self)(page, self._presence)


class ReferencePresence(AdapterPresence):
    """One connection's presence object on one channel."""

    def __init__(self, adapter: ReferenceAdapter, presence: ServicePresence, channel: str) -> None:
        self.adapter = adapter
        self.service_presence = presence
        self.channel_name = channel
        self._wrapped: dict[Any, Listener] = {}

    async def delay(self) -> None:
        if self.adapter.op_delay:
            await asyncio.sleep(self.adapter.op_delay)

    def wrap_listener(self, listener: Listener) -> Listener:
        """The callable registered with the service for `listener` (itself, by default)."""
        return listener

    def _wrapper(self, listener: Listener) -> Listener:
        wrapped = self._wrapped.get(listener)
        if wrapped is None:
            wrapped = self._wrapped[listener] = self.wrap_listener(listener)
        return wrapped

    def history_items(self, items: list[PresenceMessage]) -> list[PresenceMessage]:
        """The items of a history page as returned to the caller (unchanged by default)."""
        return items

    async def enter(self, data: Any = None) -> None:
        await self.delay()
        await self.service_presence.enter(data)

    async def update(self, data: Any = None) -> None:
        await self.delay()
        await self.service_presence.update(data)

    async def leave(self, data: Any = None) -> None:
        await self.delay()
        await self.service_presence.leave(data)

    async def get(
        self,
        client_id: str | None = None,
        connection_id: str | None = None,
        wait_for_sync: bool = True,
    ) -> list[PresenceMessage]:
        await self.delay()
        return await self.service_presence.get(client_id, connection_id, wait_for_sync)

    async def subscribe(self, listener: Listener, actions: list[str] | None = None) -> None:
        await self.delay()
        await self.service_presence.subscribe(self._wrapper(listener), actions)

    async def unsubscribe(
        self, listener: Listener | None = None, actions: list[str] | None = None
    ) -> None:
        await self.delay()
        wrapped = None if listener is None else self._wrapped.get(listener, listener)
        # sync in ServicePresence; a subclass of it may make it a coroutine
        unsubscribe: Callable[..., Any] = self.service_presence.unsubscribe
        result = unsubscribe(wrapped, actions)
        if inspect.isawaitable(result):
            await result

    async def history(
        self,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        direction: str | None = None,
    ) -> HistoryPage:
        await self.delay()
        page = await self.service_presence.history(start, end, limit, direction)
        return ReferencePage(page, self)

    async def sync_complete(self) -> bool:
        return self.service_presence.sync_complete

    async def enter_client(self, client_id: str, data: Any = None) -> None:
        await self.delay()
        await self.service_presence.enter_client(client_id, data)

    async def update_client(self, client_id: str, data: Any = None) -> None:
        await self.delay()
        await self.service_presence.update_client(client_id, data)

    async def leave_client(self, client_id: str, data: Any = None) -> None:
        await self.delay()
        await self.service_presence.leave_client(client_id, data)

    async def rest_get(
        self,
        limit: int | None = None,
        client_id: str | None = None,
        connection_id: str | None = None,
    ) -> list[PresenceMessage]:
        await self.delay()
        return await self.service_presence.rest_get(limit, client_id, connection_id)


class ReferenceChannel(AdapterChannel):
    """A channel of one reference connection."""

    def __init__(
        self, name: str, presence: ReferencePresence, service_channel: ServiceChannel
    ) -> None:
        self.name = name
        self._presence = presence
        self.service_channel = service_channel

    @property
    def presence(self) -> ReferencePresence:
        return self._presence

    async def attach(self) -> None:
        await self._presence.delay()
        await self.service_channel.attach()

    async def detach(self) -> None:
        await self._presence.delay()
        await self.service_channel.detach()

    async def state(self) -> str:
        return self.service_channel.state


class ReferenceConnection(AdapterConnection):
    """A connection to the in-process service."""

    presence_class: ClassVar[type[ReferencePresence]] = ReferencePresence
    channel_class: ClassVar[type[ReferenceChannel]] = ReferenceChannel

    def __init__(self, adapter: ReferenceAdapter, conn: ServiceConnection) -> None:
        self.adapter = adapter
        self.service_connection = conn
        self.id = conn.id
        self.client_id = conn.client_id
        self._channels: dict[str, ReferenceChannel] = {}

    def channel(self, name: str) -> ReferenceChannel:
        channel = self._channels.get(name)
        if channel is None:
            service_channel = self.service_connection.channels.get(name)
            presence = self.presence_class(self.adapter, service_channel.presence, name)
            channel = self._channels[name] = self.channel_class(name, presence, service_channel)
        return channel

    async def close(self) -> None:
        await self.service_connection.close()

    async def drop(self) -> None:
        await self.service_connection.drop()

    async def interrupt(self, seconds: float, resume: bool = True) -> None:
        self.service_connection.interrupt(seconds, resume)

    async def reconnected(self) -> None:
        await self.service_connection.reconnected()
        self.id = self.service_connection.id


def _seconds(options: Mapping[str, str], key: str, default: float) -> float:
    raw = options.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    if value < 0:
        raise UsageError(f"adapter 'reference': option {key}={raw!r}: expected seconds >= 0")
    return value


class ReferenceAdapter(Adapter):
    """The embedded reference implementation: every feature, in-process, precise `quiesce`."""

    name: ClassVar[str] = "reference"
    features: ClassVar[frozenset[Feature]] = ALL_FEATURES | {Feature.TOKEN_IDENTITY}
    options: ClassVar[Mapping[str, str]] = {
        "leave_grace": "seconds before a dropped connection's members leave (default 0.2)",
        "op_delay": "seconds of artificial latency before every operation (default 0)",
    }
    connection_class: ClassVar[type[ReferenceConnection]] = ReferenceConnection
    quiet_period: float = 0.01
    # the service drops the connection and starts its grace timer within drop()
    drops_noticed_at_once: ClassVar[bool] = True

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        self.leave_grace = _seconds(self.option_values, "leave_grace", 0.2)
        self.op_delay = _seconds(self.option_values, "op_delay", 0.0)
        self.service: PresenceService | None = None

    async def start(self) -> None:
        if self.service is None or self.service.closed:
            self.service = PresenceService(leave_grace=self.leave_grace)

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.close()

    async def connect(
        self, client_id: str | None, capability: dict[str, list[str]] | None = None
    ) -> ReferenceConnection:
        if self.service is None or self.service.closed:
            await self.start()
        assert self.service is not None
        if self.op_delay:
            await asyncio.sleep(self.op_delay)
        conn = await self.service.connect(client_id, capability)
        return self.connection_class(self, conn)

    async def connect_with_token(
        self,
        client_id: str | None,
        capability: dict[str, list[str]] | None,
        token_client_id: str | None,
    ) -> ReferenceConnection:
        """As the reference server does (TK2c, TD6, RSA15a): a token with a clientId enforces
        it and one without forbids any, so a connection claiming another is refused (40012);
        only a wildcard token may be narrowed to the claimed clientId (RSA15b)."""
        if token_client_id != "*" and client_id is not None and client_id != token_client_id:
            held = "no clientId" if token_client_id is None else f"clientId {token_client_id!r}"
            raise PresenceError(
                errors.INVALID_CLIENT_ID,
                f"clientId: {client_id!r} does not match the token, which has {held}",
            )
        return await self.connect(
            client_id if client_id is not None else token_client_id, capability
        )

    async def quiesce(self) -> bool:
        """True once no connection of the service has an event waiting to be delivered."""
        service = self.service
        if service is None:
            return True
        quiet = 0
        for _ in range(10_000):
            await asyncio.sleep(0)  # work scheduled with call_soon (a sync completing) runs first
            if service.queued():
                quiet = 0
            else:
                quiet += 1
                if quiet == 2:
                    return True
        return False

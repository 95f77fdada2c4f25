"""A complete, minimal presence adapter: a small in-memory implementation that passes the suite.

Copy it, then replace `Hub` (the "server") with calls to your own implementation.

    presence-conformance run --adapter examples/minimal_adapter.py:MinimalAdapter
    pytest --adapter examples/minimal_adapter.py:MinimalAdapter
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from presence_conformance.harness.adapter import (
    Adapter,
    AdapterChannel,
    AdapterConnection,
    AdapterPresence,
    Feature,
    Listener,
    PresenceError,
    PresenceMessage,
)
from presence_conformance.reference_impl.types import Action


def now_ms() -> int:
    return int(time.time() * 1000)


class Hub:
    """The "server": each channel's members (by member key) and the presence objects attached."""

    def __init__(self) -> None:
        self.members: dict[str, dict[str, PresenceMessage]] = {}
        self.attached: dict[str, list[MinimalPresence]] = {}
        self.ids = itertools.count(1)

    def publish(self, channel: str, message: PresenceMessage) -> None:
        members = self.members.setdefault(channel, {})
        if message.action is Action.LEAVE:
            del members[message.member_key]
        else:  # the set stores every member with action `present`
            members[message.member_key] = message.with_action(Action.PRESENT)
        for presence in self.attached.get(channel, []):
            presence.deliver(message)


class MinimalPresence(AdapterPresence):
    def __init__(self, conn: MinimalConnection, channel: str) -> None:
        self.conn, self.channel, self.attached = conn, channel, False
        self.listeners: list[tuple[Listener, str | None]] = []  # (listener, action; None: all)

    def attach(self) -> None:  # implicit on enter/get/subscribe: listeners get `present` events
        if not self.attached:
            self.attached = True
            self.conn.hub.attached.setdefault(self.channel, []).append(self)
            for member in self.conn.hub.members.get(self.channel, {}).values():
                self.deliver(member)

    def deliver(self, message: PresenceMessage) -> None:  # later, never in the caller's stack
        for listener, action in self.listeners:
            if action in (None, message.action.value):
                asyncio.get_running_loop().call_soon(listener, message)

    async def _publish(self, action: Action, data: Any) -> None:
        conn = self.conn
        if conn.closed:
            raise PresenceError(80017, "connection closed")
        if conn.client_id in (None, "*"):  # anonymous, or the wildcard: not a member identity
            raise PresenceError(91000, "cannot enter presence without a clientId")
        self.attach()
        member = conn.hub.members.get(self.channel, {}).get(f"{conn.id}:{conn.client_id}")
        if action is Action.LEAVE:
            if member is None:
                return  # leaving when not present succeeds and emits nothing
            data = member.data if data is None else data  # a leave carries the member's data
        conn.hub.publish(
            self.channel,
            PresenceMessage(
                action, conn.client_id, conn.id, data, now_ms(), f"{conn.id}:{next(conn.serials)}:0"
            ),
        )

    async def enter(self, data: Any = None) -> None:
        await self._publish(Action.ENTER, data)

    async def update(self, data: Any = None) -> None:
        await self._publish(Action.UPDATE, data)

    async def leave(self, data: Any = None) -> None:
        await self._publish(Action.LEAVE, data)

    async def get(
        self,
        client_id: str | None = None,
        connection_id: str | None = None,
        wait_for_sync: bool = True,
    ) -> list[PresenceMessage]:
        self.attach()
        return [
            m
            for m in self.conn.hub.members.get(self.channel, {}).values()
            if client_id in (None, m.client_id) and connection_id in (None, m.connection_id)
        ]

    async def subscribe(self, listener: Listener, actions: list[str] | None = None) -> None:
        self.listeners += [(listener, action) for action in (actions or [None])]
        self.attach()

    async def unsubscribe(
        self, listener: Listener | None = None, actions: list[str] | None = None
    ) -> None:
        self.listeners = [
            (fn, a)
            for fn, a in self.listeners
            if not (listener in (None, fn) and (actions is None or a in actions))
        ]

    async def sync_complete(self) -> bool:
        return self.attached


class MinimalChannel(AdapterChannel):
    def __init__(self, conn: MinimalConnection, name: str) -> None:
        self.name, self._presence = name, MinimalPresence(conn, name)

    @property
    def presence(self) -> MinimalPresence:
        return self._presence


class MinimalConnection(AdapterConnection):
    def __init__(self, hub: Hub, client_id: str | None) -> None:
        self.hub, self.client_id, self.closed = hub, client_id, False
        self.id = f"conn-{next(hub.ids)}"
        self.serials = itertools.count()
        self.channels: dict[str, MinimalChannel] = {}

    def channel(self, name: str) -> MinimalChannel:
        if name not in self.channels:
            self.channels[name] = MinimalChannel(self, name)
        return self.channels[name]

    async def close(self) -> None:  # graceful: hear nothing more, then every member leaves
        self.closed = True
        for name, channel in self.channels.items():
            if channel.presence.attached:
                self.hub.attached[name].remove(channel.presence)
            for member in list(self.hub.members.get(name, {}).values()):
                if member.connection_id == self.id:  # a leave not sent by the client: own id
                    self.hub.publish(
                        name,
                        PresenceMessage(
                            Action.LEAVE,
                            member.client_id,
                            self.id,
                            member.data,
                            now_ms(),
                            f"synthetic-{next(self.hub.ids)}",
                        ),
                    )


class MinimalAdapter(Adapter):
    """A minimal in-memory presence implementation (examples/minimal_adapter.py)."""

    name = "minimal"
    features = frozenset(
        {
            Feature.MULTIPLE_CONNECTIONS,
            Feature.ANONYMOUS_CLIENTS,
            Feature.BINARY_DATA,
            Feature.SUBSCRIBE_ACTION_LIST,
            Feature.UNSUBSCRIBE_BY_ACTION,
            Feature.SYNC_COMPLETE,
        }
    )

    async def start(self) -> None:
        self.hub = Hub()

    async def connect(
        self, client_id: str | None, capability: dict[str, list[str]] | None = None
    ) -> MinimalConnection:
        return MinimalConnection(self.hub, client_id)

    async def quiesce(self) -> bool:  # events go out with call_soon: one loop turn delivers all
        await asyncio.sleep(0)
        return True

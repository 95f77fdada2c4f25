"""The base of every mutant: the reference adapter with hooks to break one behaviour.

A mutant is a subclass of `MutantAdapter` with a docstring naming the bug, registered with
`@mutant(name, *requirement_ids)`. It overrides what it breaks, in one of these places:

- `Presence` (a `ReferencePresence` subclass): one presence operation (`get`, `subscribe`, ...);
- `Connection` (a `ReferenceConnection` subclass): `close`, `drop`;
- `Service` (a `PresenceService` subclass): the in-process service itself (synthesized leaves);
- `on_event` / `on_member` / `on_history`: what listeners receive, what `get()` returns, what
  history pages hold, one message in, a list of messages out (default: unchanged). `mangle`
  is the default of all three, for a bug that shows wherever a message is read.

The mutant adapters accept the reference adapter's options (`leave_grace`, `op_delay`).

A mutant of the reference *server* is a `ServerMutantAdapter` instead: the `ably-wire` adapter
with its embedded server, whose outgoing frames pass through `rewrite` (every frame, per
recipient for a frame sent to one connection, once for a broadcast) and `on_broadcast` (who
receives a broadcast). It takes `ably-wire`'s options.

One difference from the reference that is not a bug: a mutant's service stamps events with a
clock that ticks at least one millisecond per event (the wall clock, or the last timestamp plus
one), as events of an implementation behind a network would be. In-process, consecutive events
often share a millisecond, and history bugs that only show between distinct timestamps (the
default direction, bounds that exclude their own millisecond) would be invisible.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar, cast

from presence_conformance.harness.adapters.ably_wire import AblyWireAdapter
from presence_conformance.harness.adapters.reference import (
    ReferenceAdapter,
    ReferenceConnection,
    ReferencePresence,
)
from presence_conformance.reference_impl.model import PresenceModel
from presence_conformance.reference_impl.service import PresenceService, ServiceConnection
from presence_conformance.reference_impl.types import PresenceMessage

__all__ = ["REGISTRY", "MutantAdapter", "MutantPresence", "ServerMutantAdapter", "mutant"]

REGISTRY: dict[str, type[MutantAdapter] | type[ServerMutantAdapter]] = {}


class _TickingClock:
    """Milliseconds since the epoch, at least one more than the last value returned."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> int:
        self.last = max(int(time.time() * 1000), self.last + 1)
        return self.last


class MutantPresence(ReferencePresence):
    """A presence object whose events, members and history items pass through the adapter's
    `on_event`, `on_member` and `on_history` hooks."""

    adapter: MutantAdapter

    @property
    def service_connection(self) -> ServiceConnection:
        return self.service_presence._conn

    @property
    def model(self) -> PresenceModel:
        assert self.adapter.service is not None
        return self.adapter.service.model

    def wrap_listener(self, listener: Callable[[PresenceMessage], Any]) -> Callable[[Any], Any]:
        adapter = self.adapter

        def wrapped(message: PresenceMessage) -> None:
            for out in adapter.on_event(message, self):
                listener(out)

        return wrapped

    async def get(
        self,
        client_id: str | None = None,
        connection_id: str | None = None,
        wait_for_sync: bool = True,
    ) -> list[PresenceMessage]:
        members = await super().get(client_id, connection_id, wait_for_sync)
        return [out for m in members for out in self.adapter.on_member(m, self)]

    def history_items(self, items: list[PresenceMessage]) -> list[PresenceMessage]:
        return [out for m in items for out in self.adapter.on_history(m, self)]


class MutantAdapter(ReferenceAdapter):
    """The reference adapter with one behaviour broken (see the module docstring)."""

    name: ClassVar[str] = "mutant"
    requirements: ClassVar[tuple[str, ...]] = ()
    Presence: ClassVar[type[MutantPresence]] = MutantPresence
    Connection: ClassVar[type[ReferenceConnection]] = ReferenceConnection
    Service: ClassVar[type[PresenceService]] = PresenceService

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.connection_class = type(
            f"{cls.__name__}Connection", (cls.Connection,), {"presence_class": cls.Presence}
        )

    async def start(self) -> None:
        if self.service is None or self.service.closed:
            self.service = self.Service(clock=_TickingClock(), leave_grace=self.leave_grace)

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        """The message as the broken implementation shows it (default: unchanged)."""
        return [message]

    def on_event(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        """What a listener receives for one event."""
        return self.mangle(message, presence)

    def on_member(
        self, message: PresenceMessage, presence: MutantPresence
    ) -> list[PresenceMessage]:
        """What get() returns for one member."""
        return self.mangle(message, presence)

    def on_history(
        self, message: PresenceMessage, presence: MutantPresence
    ) -> list[PresenceMessage]:
        """What a history page holds for one event."""
        return self.mangle(message, presence)


class ServerMutantAdapter(AblyWireAdapter):
    """`ably-wire` against an embedded reference server whose outgoing frames are rewritten
    (see the module docstring)."""

    name: ClassVar[str] = "server-mutant"
    requirements: ClassVar[tuple[str, ...]] = ()

    async def start(self) -> None:
        await super().start()
        transport = self.server.realtime.transport
        send, broadcast = transport.send, transport.broadcast

        def mutated_send(conn: Any, frame: dict[str, Any]) -> None:
            for out in self.rewrite(frame, conn):
                send(conn, out)

        def mutated_broadcast(conns: Iterable[Any], frame: dict[str, Any]) -> None:
            receivers = list(self.on_broadcast(frame, list(conns)))
            for out in self.rewrite(frame, None):
                broadcast(receivers, out)

        transport.send = mutated_send
        transport.broadcast = mutated_broadcast

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        """The frames the broken server sends instead of `frame` (default: `frame`). `conn` is
        the receiving server connection, None for a broadcast. Never mutate `frame`."""
        return [frame]

    def on_broadcast(self, frame: dict[str, Any], conns: list[Any]) -> Iterable[Any]:
        """The server connections a broadcast `frame` goes to (default: `conns`)."""
        return conns


M = TypeVar("M", bound=MutantAdapter | ServerMutantAdapter)


def mutant(name: str, *requirements: str) -> Callable[[type[M]], type[M]]:
    """Register a mutant class as `mutant:<name>`, violating `requirements` (catalogue IDs)."""

    def register(cls: type[M]) -> type[M]:
        if name in REGISTRY:
            raise ValueError(f"mutant {name!r} is registered twice")
        if not (cls.__doc__ or "").strip():
            raise ValueError(f"mutant {name!r} needs a docstring naming its bug")
        cls.name = f"mutant:{name}"
        cls.requirements = tuple(requirements)
        REGISTRY[name] = cast("type[MutantAdapter] | type[ServerMutantAdapter]", cls)
        return cls

    return register

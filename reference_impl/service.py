"""An asyncio presence service with the seed's API (`spec/presence-api.md`), in-process, over `PresenceModel`.

The service is the model plus what a network adds: time passing between a call and its effects.

- Attach is implicit (enter, update, leave, get, subscribe) and completes one event-loop hop after
  the call that caused it: `sync_complete` is False until then (RTP13), `get(wait_for_sync=True)`
  waits for it (RTP11c1) and `get(wait_for_sync=False)` returns the connection's view so far, which
  is empty before the sync (the client has received nothing yet) and the model's set after it.
- Events are delivered asynchronously: each connection has one `asyncio.Queue` drained by one task,
  so a listener never runs inside the caller's stack (the caller of `enter()` returns first), each
  listener sees its events in the model's order, and a listener that raises is logged and skipped.
  An async listener is awaited before the connection's next event is delivered.
- What is delivered is exactly the model's `Delivery` list. A delivery carries `min_count` and
  `max_count`; the service delivers `min_count` copies (so 1 for a normal delivery, and 1 for a
  listener registered twice: the model accepts 1 or 2). A `min_count` of 0 is the case RTP7b leaves
  open, `unsubscribe(action, listener)` on a listener subscribed to all actions; the service
  delivers 0 copies there: it follows "unsubscribe(action, L) removes that action from an
  all-actions listener".
- `close()` is graceful (the connection's members leave at once); `drop()` is abrupt (the members
  stay for `leave_grace` seconds, then the service synthesizes their leaves, RTP2b1). After
  either, every presence call on the connection raises `PresenceError` 80017. An ended
  connection's listeners are let go, and once it is closed and its deliveries are over the
  service and its model forget it (it still answers as closed): a service that serves a whole
  run keeps only the connections still open.
- `interrupt(seconds, resume)` is a transient disconnect (RTN15): for `seconds` nothing is
  delivered to the connection and its presence calls wait (queued, RTP16). Resumed (RTN15c6), the
  connection keeps its id and gets what was sent meanwhile. Not resumed (RTN15c7), the old
  connection is dropped (its members leave after the grace), a new one with a new id takes its
  place, re-attaches its channels with the same listeners and re-enters the members the old
  one had (RTP17i, RTP17g: enter, same clientId and data).
- `enter_client` / `update_client` / `leave_client` act for another clientId (RTP14, RTP15);
  `rest_get` is the REST read of the members (RSP3: first page, `limit`, filters).

Listener callables are mapped to model listener names `L1`, `L2`, … per channel, keyed by the
callable itself (so two accesses to the same bound method are one listener).
Every refused call raises `PresenceError` (with its Ably code) before anything changes.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from typing import Any

from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.model import (
    DEFAULT_HISTORY_LIMIT,
    DEFAULT_MAX_MESSAGE_SIZE,
    Capability,
    HistoryPage,
    Outcome,
    PresenceModel,
)
from presence_conformance.reference_impl.types import PresenceMessage

logger = logging.getLogger(__name__)

Listener = Callable[[PresenceMessage], Any]
"""A presence listener: called with each `PresenceMessage`; may return an awaitable."""

# history(start, end, limit, direction), kept to fetch the next pages with the same query
_HistoryParams = tuple[int | None, int | None, int | None, str | None]

_STOP = object()  # queue sentinel: deliver what is queued, then stop


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class _Done:
    """An awaitable for methods that finish synchronously but may be awaited (`drop`, `close`)."""

    __slots__ = ("_tasks",)

    def __init__(self, tasks: Iterable[asyncio.Task] = ()) -> None:
        self._tasks = [t for t in tasks if not t.done()]

    def __await__(self) -> Generator[Any, None, None]:
        if self._tasks:
            yield from asyncio.gather(*self._tasks, return_exceptions=True).__await__()


def _listener_key(listener: Listener) -> Any:
    try:
        hash(listener)
    except TypeError:
        return ("id", id(listener))
    return listener


class PresenceService:
    """An in-process presence service: one `PresenceModel`, many connections, async delivery.

    `clock` returns milliseconds since the epoch (default: the wall clock); `leave_grace` is the
    delay in seconds between an abrupt `drop()` and the synthesized leaves of its members.
    """

    def __init__(
        self,
        clock: Callable[[], int] | None = None,
        leave_grace: float = 15.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        if (
            isinstance(leave_grace, bool)
            or not isinstance(leave_grace, int | float)
            or leave_grace < 0
        ):
            raise PresenceError(
                errors.INVALID_PARAMETER_VALUE,
                f"leave_grace: expected seconds >= 0, got {leave_grace!r}",
                "leave_grace",
            )
        self.model = PresenceModel(clock or _wall_clock_ms, max_message_size=max_message_size)
        self.leave_grace = float(leave_grace)
        self._connections: dict[str, ServiceConnection] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._closed = False
        # the connections that have had events queued since their queue was last seen empty
        self._busy: set[ServiceConnection] = set()

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    async def connect(
        self, client_id: str | None = None, capability: Capability = None
    ) -> ServiceConnection:
        """Open a connection for `client_id` (None: anonymous) with `capability` (None: everything)."""
        if self._closed:
            raise PresenceError(
                errors.CONNECTION_CLOSED, "service: the service is closed", "service"
            )
        # the wildcard clientId '*' (RTP14, RTP15) has no clientId of its own: it acts only
        # through enterClient and friends
        connection_id = self.model.open_connection(
            None if client_id == "*" else client_id, capability
        )
        conn = ServiceConnection(self, connection_id, client_id)
        self._connections[connection_id] = conn
        return conn

    def pending_deliveries(self) -> int:
        """How many events are queued for, or being delivered to, listeners right now
        (0: every listener has returned for every event so far)."""
        return sum(conn._pending for conn in self._connections.values())

    def queued(self) -> bool:
        """True while an event waits in a connection's delivery queue (False: every event so
        far has been taken for delivery). Looks only at the connections that had events queued
        since it last found their queue empty, not at every connection the service ever had."""
        busy = self._busy
        for conn in [c for c in busy if c._queue.empty()]:
            busy.discard(conn)
        return bool(busy)

    def connection(self, connection_id: str) -> ServiceConnection:
        """The connection with this id (KeyError if there is none)."""
        return self._connections[connection_id]

    def close(self) -> _Done:
        """Shut everything down: cancel grace timers and delivery tasks. May be awaited, which
        waits until the cancelled tasks have finished. The model keeps its state."""
        self._closed = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        tasks = []
        for conn in self._connections.values():
            task = conn._cancel_delivery()
            if task is not None:
                tasks.append(task)
        return _Done(tasks)

    # -- internals -------------------------------------------------------------------------------

    def _dispatch(self, outcome: Outcome) -> None:
        for delivery in outcome.deliveries:
            copies = delivery.min_count  # 0 on the open RTP7b case, 1 otherwise: see the docstring
            if not copies:
                continue
            conn = self._connections.get(delivery.connection_id)
            if conn is None:
                continue
            listener = conn._listener(delivery.channel, delivery.listener)
            if listener is None:  # pragma: no cover - the model only names registered listeners
                continue
            for _ in range(copies):
                conn._enqueue(listener, delivery.event)

    def _schedule_expiry(self, connection_id: str) -> None:
        loop = asyncio.get_running_loop()
        self._timers[connection_id] = loop.call_later(self.leave_grace, self._expire, connection_id)

    def _expire(self, connection_id: str) -> None:
        self._timers.pop(connection_id, None)
        if self._closed:
            return
        self._dispatch(self.model.expire_connection(connection_id))
        self._forget_ended(connection_id)

    def _forget_ended(self, connection_id: str) -> None:
        """Let go of a connection that the model has closed, once its delivery task is over:
        a service that lives across many callers (the in-process adapter, for a whole run)
        would otherwise keep every connection it ever had. Its `ServiceConnection` still
        answers, as closed. (A connection replaced after an interrupt keeps its old ids.)"""
        conn = self._connections.get(connection_id)
        if (
            conn is None
            or conn.id != connection_id
            or conn.interrupted
            or (conn._task is not None and not conn._task.done() and not conn._stopped)
            or self.model.connection_state(connection_id) != "closed"
        ):
            return
        del self._connections[connection_id]
        self.model.forget_connection(connection_id)
        conn._forgotten = True


class ServiceChannels:
    """The channels of one connection: `get(name)` returns the same `ServiceChannel` per name."""

    def __init__(self, connection: ServiceConnection) -> None:
        self._connection = connection
        self._channels: dict[str, ServiceChannel] = {}

    def get(self, name: str) -> ServiceChannel:
        """The channel called `name` (created on first use; attaching is implicit and later)."""
        channel = self._channels.get(name) if isinstance(name, str) else None
        if channel is None:
            if not isinstance(name, str) or not name:
                raise PresenceError(
                    errors.INVALID_PARAMETER_VALUE,
                    f"channel: expected a non-empty channel name, got {name!r}",
                    "channel",
                )
            channel = self._channels[name] = ServiceChannel(self._connection, name)
        return channel

    def __getitem__(self, name: str) -> ServiceChannel:
        return self.get(name)

    def __iter__(self) -> Iterator[ServiceChannel]:
        """The channels used so far."""
        return iter(list(self._channels.values()))


class ServiceConnection:
    """One client connection to a `PresenceService`: `id`, `client_id`, `channels`, `close`, `drop`."""

    def __init__(self, service: PresenceService, connection_id: str, client_id: str | None) -> None:
        self._service = service
        self.id = connection_id
        self.client_id = client_id
        self.channels = ServiceChannels(self)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._pending = 0  # events queued or being delivered
        self._online = asyncio.Event()  # cleared during an interrupt (transient disconnect)
        self._online.set()
        self._reconnect: asyncio.TimerHandle | None = None
        self.previous_ids: list[str] = []  # ids of connections this one replaced (RTN15c7)
        self._stopped = False  # the delivery task has delivered everything and stops
        self._forgotten = False  # closed, and let go by the service and its model

    @property
    def state(self) -> str:
        """`connected`, `dropped` or `closed` (the model's view)."""
        if self._forgotten:
            return "closed"
        return self._service.model.connection_state(self.id)

    @property
    def interrupted(self) -> bool:
        """True between `interrupt()` and the reconnection."""
        return not self._online.is_set()

    def interrupt(self, seconds: float, resume: bool = True) -> None:
        """A transient disconnect (RTN15, see the module doc); the connection is back after
        `seconds` (resumed or not). Interrupting an interrupted or ended connection does nothing."""
        if self.state != "connected" or self.interrupted:
            return
        self._online.clear()
        saved: dict[str, tuple[Any, list[PresenceMessage]]] = {}
        if not resume:
            model = self._service.model
            for channel in self.channels:
                name = channel.name
                if model.is_attached(self.id, name):
                    saved[name] = (
                        model.listener_state(self.id, name),
                        model.get(name, connection_id=self.id),
                    )
            model.drop_connection(self.id)
            if not self._service.closed:
                self._service._schedule_expiry(self.id)
        loop = asyncio.get_running_loop()
        self._reconnect = loop.call_later(seconds, self._come_back, resume, saved)

    def _come_back(self, resume: bool, saved: dict[str, tuple[Any, list[PresenceMessage]]]) -> None:
        self._reconnect = None
        service = self._service
        if not resume and not service.closed:
            model = service.model
            old = self.id
            new = model.open_connection(
                model.connection_client_id(old), model.connection_capability(old)
            )
            self.previous_ids.append(old)
            self.id = new
            service._connections[new] = self
            for name, (listeners, members) in saved.items():
                model.restore_listener_state(new, name, listeners)
                service._dispatch(model.attach(new, name))
                for member in members:  # RTP17i, RTP17g: re-enter, same clientId and data
                    service._dispatch(
                        model.enter(new, name, member.data, client_id=member.client_id)
                    )
        self._online.set()

    async def reconnected(self) -> None:
        """Wait until an interrupted connection is back."""
        await self._online.wait()

    async def close(self) -> None:
        """Graceful close: the connection's members leave at once; other connections hear it.
        Closing a connection that is already closed or dropped does nothing."""
        await self._online.wait()
        if self.state != "connected":
            return
        outcome = self._service.model.close_connection(self.id)
        self._shutdown()
        self._service._dispatch(outcome)
        self._service._forget_ended(self.id)

    def drop(self) -> _Done:
        """Abrupt disconnect (fault injection): the connection hears nothing more and its members
        stay until `leave_grace` seconds have passed; then their leaves are synthesized and
        delivered. Works called plainly or awaited. Dropping twice, or after close, does nothing."""
        if self.state != "connected":
            return _Done()
        self._service.model.drop_connection(self.id)
        self._shutdown()
        if not self._service.closed:
            self._service._schedule_expiry(self.id)
        return _Done()

    # -- internals -------------------------------------------------------------------------------

    def _check_live(self) -> None:
        if self._service.closed:
            raise PresenceError(
                errors.CONNECTION_CLOSED, "service: the service is closed", "connection"
            )
        state = self.state
        if state != "connected":
            raise PresenceError(
                errors.CONNECTION_CLOSED, f"connection {self.id!r} is {state}", "connection"
            )

    def _shutdown(self) -> None:
        if self._reconnect is not None:
            self._reconnect.cancel()
            self._reconnect = None
        self._online.set()
        for channel in self.channels:
            channel.presence._release()
            # an ended connection hears nothing more: its listeners are let go (the queue holds
            # those of the events still to be delivered), or a long-lived service would keep
            # every listener, and all its callers' state, for ever
            channel.presence._forget_listeners()
        if self._task is not None:
            self._queue.put_nowait(_STOP)  # events already queued are still delivered

    def _listener(self, channel: str, name: str) -> Listener | None:
        ch = self.channels._channels.get(channel)
        return None if ch is None else ch.presence._by_name.get(name)

    def _enqueue(self, listener: Listener, event: PresenceMessage) -> None:
        if self._task is None:
            if self._service.closed:
                return
            self._task = asyncio.get_running_loop().create_task(
                self._pump(), name=f"presence-delivery-{self.id}"
            )
        self._pending += 1
        self._service._busy.add(self)
        self._queue.put_nowait((listener, event))

    async def _pump(self) -> None:
        while True:
            item = await self._queue.get()
            if item is _STOP:
                self._stopped = True
                self._service._forget_ended(self.id)
                return
            await self._online.wait()  # what is sent during an interrupt arrives after it
            listener, event = item
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "presence listener %r raised on %s %s (connection %s)",
                    listener,
                    event.action.value,
                    event.id,
                    self.id,
                )
            finally:
                self._pending -= 1

    def _cancel_delivery(self) -> asyncio.Task | None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            return task
        return None


class ServiceChannel:
    """A channel as seen by one connection; its presence is `presence`, its state `state`
    (initialized, attached, detached or failed), `attach()` and `detach()` (RTL4, RTL5)."""

    def __init__(self, connection: ServiceConnection, name: str) -> None:
        self.name = name
        self.connection = connection
        self.presence = ServicePresence(connection, name)

    @property
    def state(self) -> str:
        """The channel state (RTL2b): attaching is implicit in the presence operations."""
        return self.presence._channel_state

    async def attach(self) -> None:
        """Attach (RTL4): a connection without capability on the channel is refused (40160) and
        the channel is failed (RTL14); attaching a failed channel tries again (RTL4g)."""
        await self.connection._online.wait()
        self.connection._check_live()
        presence = self.presence
        if presence._channel_state == "attached":
            return
        presence._after(presence._attach())

    async def detach(self) -> None:
        """Detach (RTL5): nothing on an initialized or detached channel (RTL5a), an error on a
        failed one (RTL5b). The connection's members on the channel leave (others hear the
        leaves); this connection's presence map is cleared silently (RTP5a) and its members
        are not re-entered on a later attach; its listeners stay registered."""
        await self.connection._online.wait()
        self.connection._check_live()
        presence = self.presence
        state = presence._channel_state
        if state in ("initialized", "detached"):
            return
        if state == "failed":
            raise PresenceError(
                errors.CHANNEL_STATE, f"channel {self.name!r} is failed: cannot detach", "channel"
            )
        model, cid = presence._model, self.connection.id
        outcome = None
        if model.is_attached(cid, self.name):
            presence._saved_listeners = model.listener_state(cid, self.name)
            outcome = model.detach_channel(cid, self.name)
        presence._release()
        presence._channel_state = "detached"
        if outcome is not None:
            self.connection._service._dispatch(outcome)


class ServicePresence:
    """The seed's presence object: enter, update, leave, get, subscribe, unsubscribe, history,
    `sync_complete`."""

    def __init__(self, connection: ServiceConnection, channel: str) -> None:
        self._conn = connection
        self._channel = channel
        self._names: dict[Any, str] = {}  # listener key -> model listener name (stable)
        self._by_name: dict[str, Listener] = {}
        self._ids = itertools.count(1)
        self._sync_state = "detached"  # detached | syncing | synced
        self._synced = asyncio.Event()
        self._channel_state = "initialized"  # initialized | attached | detached | failed
        self._saved_listeners: Any = None  # the model's registrations, kept across a detach

    @property
    def _model(self) -> PresenceModel:
        return self._conn._service.model

    @property
    def sync_complete(self) -> bool:
        """True once the implicit attach has been processed and the presence set is in sync."""
        return self._sync_state == "synced"

    # -- operations ------------------------------------------------------------------------------

    async def enter(self, data: Any = None) -> None:
        """Enter the presence set with `data` (string, JSON object or array, binary, or None)."""
        await self._conn._online.wait()  # queued during an interrupt (RTP16)
        self._publish(self._model.enter, data)

    async def update(self, data: Any = None) -> None:
        """Update this member's data; enters it if it is not present (RTP9b)."""
        await self._conn._online.wait()
        self._publish(self._model.update, data)

    async def leave(self, data: Any = None) -> None:
        """Leave the presence set; without `data` the leave carries the member's data."""
        await self._conn._online.wait()
        self._publish(self._model.leave, data)

    async def enter_client(self, client_id: str, data: Any = None) -> None:
        """Enter on behalf of `client_id` (RTP14, RTP15a; RTP15f: it must be the connection's
        own clientId when it has one)."""
        await self._conn._online.wait()
        self._publish(self._model.enter, data, client_id)

    async def update_client(self, client_id: str, data: Any = None) -> None:
        """Update the member `client_id` of this connection (RTP15a)."""
        await self._conn._online.wait()
        self._publish(self._model.update, data, client_id)

    async def leave_client(self, client_id: str, data: Any = None) -> None:
        """Leave on behalf of `client_id` (RTP15a)."""
        await self._conn._online.wait()
        self._publish(self._model.leave, data, client_id)

    async def rest_get(
        self,
        limit: int | None = None,
        client_id: str | None = None,
        connection_id: str | None = None,
    ) -> list[PresenceMessage]:
        """RSP3: the first page of members over REST (no attach): at most `limit` (1..1000,
        default 100, RSP3a1), filtered by clientId (RSP3a2) and connectionId (RSP3a3)."""
        if limit is None:
            limit = DEFAULT_HISTORY_LIMIT
        elif isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise PresenceError(
                errors.INVALID_PARAMETER_VALUE,
                f"limit: expected an integer from 1 to 1000, got {limit!r}",
                "limit",
            )
        return self._model.get(self._channel, client_id, connection_id)[:limit]

    def _publish(
        self, method: Callable[..., Outcome], data: Any, client_id: str | None = None
    ) -> None:
        self._conn._check_live()
        if self._channel_state in ("detached", "failed"):  # RTP8g, RTP9e, RTP10e, RTP16c
            raise PresenceError(
                errors.CHANNEL_STATE,
                f"channel {self._channel!r} is {self._channel_state}: presence operations "
                "need an attached channel",
                "channel",
            )
        self._restore_listeners()
        try:
            if client_id is None:
                outcome = method(self._conn.id, self._channel, data)
            else:
                outcome = method(self._conn.id, self._channel, data, client_id=client_id)
        except PresenceError as exc:
            # refused after the implicit attach (no presence capability: RTP8d, then RTP8h):
            # the attach stays, so the sync completes as for any attach
            if self._sync_state == "detached" and self._model.is_attached(
                self._conn.id, self._channel
            ):
                self._after(Outcome())
            else:
                self._refused_attach(exc)
            raise
        self._after(outcome)

    async def get(
        self,
        client_id: str | None = None,
        connection_id: str | None = None,
        wait_for_sync: bool = True,
    ) -> list[PresenceMessage]:
        """The members (action `present`), filtered by `client_id` and/or `connection_id`.
        With `wait_for_sync` (default) waits for the sync; without it returns the view so far."""
        await self._conn._online.wait()
        self._conn._check_live()
        if not isinstance(wait_for_sync, bool):
            raise PresenceError(
                errors.INVALID_PARAMETER_VALUE,
                f"waitForSync: expected a boolean, got {wait_for_sync!r}",
                "waitForSync",
            )
        members = self._model.get(self._channel, client_id, connection_id)  # validates the filters
        if self._sync_state == "synced":
            return members
        if self._channel_state == "failed":  # RTL33c
            raise PresenceError(
                errors.CHANNEL_STATE, f"channel {self._channel!r} is failed", "channel"
            )
        self._after(self._attach())  # RTL33b: an implicit attach, also of a detached channel
        if not wait_for_sync:
            return []  # nothing has been received yet
        await self._wait_for_sync()
        return self._model.get(self._channel, client_id, connection_id)

    async def subscribe(self, listener: Listener, actions: Any = None) -> None:
        """Call `listener` for each presence event, or only for `actions` (one name or a list of
        enter, leave, update, present). The seed's order `subscribe(actions, listener)` also works."""
        if not callable(listener) and callable(actions):
            listener, actions = actions, listener
        if not callable(listener):
            raise PresenceError(
                errors.INVALID_PARAMETER_VALUE,
                f"listener: expected a callable, got {listener!r}",
                "listener",
            )
        self._conn._check_live()
        key = _listener_key(listener)
        name = self._names.get(key)
        fresh = name is None
        if name is None:
            name = f"L{next(self._ids)}"
            self._names[key] = name
            self._by_name[name] = listener
        self._restore_listeners()
        try:
            outcome = self._model.subscribe(self._conn.id, self._channel, name, actions)
        except PresenceError as exc:
            if fresh:
                del self._names[key]
                del self._by_name[name]
            self._refused_attach(exc)
            raise
        self._after(outcome)

    def unsubscribe(self, listener: Listener | None = None, actions: Any = None) -> None:
        """RTP7: `()` removes every listener; `(listener)` removes it; `(listener, actions)` removes
        those actions from it; `(actions=...)` removes those actions from every listener. The seed's
        orders `unsubscribe(action, listener)` and `unsubscribe(action)` are accepted too."""
        if listener is not None and not callable(listener):
            if actions is None:
                listener, actions = None, listener
            elif callable(actions):
                listener, actions = actions, listener
            else:
                raise PresenceError(
                    errors.INVALID_PARAMETER_VALUE,
                    f"listener: expected a callable, got {listener!r}",
                    "listener",
                )
        self._conn._check_live()
        # on a detached channel, from the listeners the detach put aside (RTP7 removes them
        # whatever the channel's state; an attach must not hand them back)
        self._restore_listeners()
        name = None
        if listener is not None:
            # an unknown listener gets a name nobody has, so that nothing is removed
            name = self._names.get(_listener_key(listener), "L-unregistered")
        self._model.unsubscribe(self._conn.id, self._channel, name, actions)

    async def history(
        self,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        direction: str | None = None,
    ) -> ServiceHistoryPage:
        """The first page of presence events: `start`/`end` inclusive ms, `limit` 1..1000
        (default 100), `direction` forwards or backwards (default)."""
        self._conn._check_live()
        self._model.check_capability(self._conn.id, self._channel, "history")
        params: _HistoryParams = (start, end, limit, direction)
        page = self._model.history(self._channel, *params)
        return ServiceHistoryPage(self, params, page)

    # -- internals -------------------------------------------------------------------------------

    def _restore_listeners(self) -> None:
        """Before attaching again after a detach: the listeners registered before it hear the
        channel again (they were never removed on the client side)."""
        saved, self._saved_listeners = self._saved_listeners, None
        if saved is not None and not self._model.is_attached(self._conn.id, self._channel):
            self._model.restore_listener_state(self._conn.id, self._channel, saved)

    def _attach(self) -> Outcome:
        """The model's attach (listeners restored first); a refusal fails the channel."""
        self._restore_listeners()
        try:
            return self._model.attach(self._conn.id, self._channel)
        except PresenceError as exc:
            self._refused_attach(exc)
            raise

    def _refused_attach(self, exc: PresenceError) -> None:
        """An attach the model refused (no capability on the channel): failed (RTL14)."""
        if exc.code == errors.CAPABILITY_DENIED and not self._model.is_attached(
            self._conn.id, self._channel
        ):
            self._channel_state = "failed"

    def _after(self, outcome: Outcome) -> None:
        if self._model.is_attached(self._conn.id, self._channel):
            self._channel_state = "attached"
        if self._sync_state == "detached":
            self._sync_state = "syncing"
            self._synced.clear()
            asyncio.get_running_loop().call_soon(self._complete_sync)  # before any delivery
        self._conn._service._dispatch(outcome)

    def _complete_sync(self) -> None:
        if self._sync_state != "syncing":
            return
        if self._conn.state == "connected" and self._model.is_attached(
            self._conn.id, self._channel
        ):
            self._sync_state = "synced"
        else:
            self._sync_state = "detached"
        self._synced.set()

    async def _wait_for_sync(self) -> None:
        await self._synced.wait()
        self._conn._check_live()

    def _release(self) -> None:
        """The connection went away: not in sync any more; release anyone waiting for the sync."""
        self._sync_state = "detached"
        self._synced.set()

    def _forget_listeners(self) -> None:
        """The connection has ended (closed or dropped): no listener of it is called again."""
        self._names.clear()
        self._by_name.clear()

    def _page(self, params: _HistoryParams, cursor: str) -> HistoryPage:
        self._conn._check_live()
        return self._model.history(self._channel, *params, cursor=cursor)


class ServiceHistoryPage:
    """One page of history: `items`, `has_next()`, `is_last()`, `await next()` (None after the last)."""

    def __init__(
        self, presence: ServicePresence, params: _HistoryParams, page: HistoryPage
    ) -> None:
        self._presence = presence
        self._params = params
        self._cursor = page.next_cursor
        self.items: list[PresenceMessage] = page.items

    def has_next(self) -> bool:
        """True if another page follows."""
        return self._cursor is not None

    def is_last(self) -> bool:
        """True on the last page."""
        return self._cursor is None

    async def next(self) -> ServiceHistoryPage | None:
        """The next page, or None if this is the last one."""
        if self._cursor is None:
            return None
        page = self._presence._page(self._params, self._cursor)
        return ServiceHistoryPage(self._presence, self._params, page)

    def __aiter__(self) -> AsyncIterator[PresenceMessage]:
        """Every item of this page and of the pages after it."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[PresenceMessage]:
        page: ServiceHistoryPage | None = self
        while page is not None:
            for item in page.items:
                yield item
            page = await page.next()


__all__ = [
    "Listener",
    "PresenceService",
    "ServiceChannel",
    "ServiceChannels",
    "ServiceConnection",
    "ServiceHistoryPage",
    "ServicePresence",
]

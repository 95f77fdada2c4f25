"""The pure presence model: the oracle of every check and the core of every reference service.

Synchronous and deterministic: time comes from an injected clock (milliseconds) and identifiers
from an injected factory. Nothing here does I/O or knows about asyncio.

What it models, per the seed (`spec/presence-api.md`) and the Ably specification where it is silent:
- connections, each with an optional clientId and capabilities (seed: enter requirements);
- channels whose presence set is keyed by member key `connectionId:clientId` (TP3h), each member
  stored with action `present` (RTP2d2);
- enter / update / leave (RTP8, RTP9, RTP10), with implicit attach (RTP8d, RTP11e, RTP6d);
- which listener must receive which event (RTP2d1, RTP2h1a, RTP6, RTP7): every mutating call
  returns the `Delivery` list the runner waits for;
- `present` events for existing members when a connection attaches (RTP1, RTP18, RTP2d1);
- the history log with `start`/`end` (inclusive, ms), `limit` (default 100, at most 1000),
  `direction` (default backwards) and cursor pagination (RSP4b, RTP12a);
- abrupt disconnects: members stay until `expire_connection`, which synthesizes their leaves,
  with ids that do not start with the connectionId (RTP2b1); meanwhile they are pending leaves
  (`pending_leaves`);
- operations of one member in flight together, applied in an order learnt afterwards
  (`apply_order`; or, where the events depend on that order, `retract` and apply again).

Every refused call raises `PresenceError` before it changes anything.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.types import (
    Action,
    Data,
    PresenceMessage,
    member_key,
    parse_actions,
    validate_data,
)

DEFAULT_HISTORY_LIMIT = 100  # RSP4b3
MAX_HISTORY_LIMIT = 1000  # RSP4b3, seed: history `limit` (max 1000)
DEFAULT_MAX_MESSAGE_SIZE = 65536  # TO3l8, Ably's 64 KiB limit
ALL = "*"  # a listener registration without an action filter (RTP6a)
_LEAVE, _PRESENT = Action.LEAVE, Action.PRESENT  # bound once: read on every publish

Capability = dict[str, list[str]] | None
"""Ably-style capability: channel pattern -> operations ("presence", "subscribe", "history", "*").
`None` grants everything."""


class IdFactory:
    """Default identifier factory: `conn-1`, `conn-2`, … and `synthetic-…` for synthesized leaves."""

    def __init__(self) -> None:
        self._counters: dict[str, itertools.count] = {}

    def __call__(self, kind: str) -> str:
        counter = self._counters.setdefault(kind, itertools.count(1))
        return f"{kind}-{next(counter)}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """An event that the listener `listener` on `connection_id` must receive.

    The listener must receive it at least `min_count` and at most `max_count` times; `min_count`
    is 0 where the specification leaves it open (RTP7b on a listener subscribed to all actions).
    """

    event: PresenceMessage
    connection_id: str
    channel: str
    listener: str
    min_count: int = 1
    max_count: int = 1


@dataclass(slots=True)
class Outcome:
    """What a mutating call did: the event it published (if any) and who must receive what."""

    events: list[PresenceMessage] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)

    def extend(self, other: Outcome) -> None:
        self.events.extend(other.events)
        self.deliveries.extend(other.deliveries)


@dataclass(slots=True)
class HistoryPage:
    """One page of a history query; `next_cursor` is None on the last page."""

    items: list[PresenceMessage]
    next_cursor: str | None


@dataclass(slots=True)
class _Registration:
    filter: str  # an Action value or ALL
    # actions for which this ALL registration may or may not still fire (RTP7b is open there)
    maybe_removed: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Connection:
    id: str
    client_id: str | None
    capability: Capability
    state: str = "connected"  # connected | dropped | closed
    msg_serial: int = 0
    attached: set[str] = field(default_factory=set)
    # channel -> listener name -> registrations (a multiset: subscribing twice registers twice)
    listeners: dict[str, dict[str, list[_Registration]]] = field(default_factory=dict)
    # channels where this connection has members: found through this index, never by a scan
    member_channels: set[str] = field(default_factory=set)


# one connection's listener registrations on one channel: listener name -> registrations
ListenerState = dict[str, list[_Registration]]


@dataclass(slots=True)
class _Channel:
    name: str
    members: dict[str, PresenceMessage] = field(default_factory=dict)
    by_client: dict[str, set[str]] = field(default_factory=dict)
    by_connection: dict[str, set[str]] = field(default_factory=dict)
    log: list[PresenceMessage] = field(default_factory=list)
    log_times: list[int] = field(default_factory=list)
    log_base: int = 0  # events dropped from the front by the retention (cursors stay absolute)
    attached: set[str] = field(default_factory=set)  # connection ids
    # attached connections with at least one listener here: the only ones an event can reach
    listening: set[str] = field(default_factory=set)


def _check_capability(capability: Capability, channel: str, operation: str) -> bool:
    if capability is None:
        return True
    for pattern, ops in capability.items():
        if (
            pattern == "*"
            or pattern == channel
            or (pattern.endswith(":*") and channel.startswith(pattern[:-1]))
        ):
            if "*" in ops or operation in ops:
                return True
    return False


def _grants_attach(capability: Capability, channel: str) -> bool:
    """True when the capability lets a connection attach to `channel`: `subscribe` or
    `presence` there (Ably's capability model: `subscribe` receives presence, `presence`
    registers it; `publish` or `history` alone give nothing to attach for)."""
    return _check_capability(capability, channel, "subscribe") or _check_capability(
        capability, channel, "presence"
    )


def message_size(client_id: str | None, data: Data) -> int:
    """TP5 / TM6: size of a presence message (clientId plus data) in bytes."""
    size = len(client_id.encode()) if client_id else 0
    if isinstance(data, str):
        size += len(data.encode())
    elif isinstance(data, bytes):
        size += len(data)
    elif data is not None:
        size += len(json.dumps(data, separators=(",", ":")).encode())
    return size


class PresenceModel:
    """The presence state of every channel, connection and listener, and the history of each channel."""

    def __init__(
        self,
        clock: Callable[[], int],
        ids: Callable[[str], str] | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        *,
        history_max_count: int | None = None,
        history_max_age_ms: int | None = None,
    ) -> None:
        """`history_max_count` / `history_max_age_ms` bound each channel's history (None:
        unbounded, the oracle's default); a server sets them to retain a bounded history."""
        self._clock = clock
        self._ids = ids or IdFactory()
        self.max_message_size = max_message_size
        self.history_max_count = history_max_count
        self.history_max_age_ms = history_max_age_ms
        self._connections: dict[str, _Connection] = {}
        self._channels: dict[str, _Channel] = {}
        self._last_time = 0

    # -- connections ---------------------------------------------------------------------------

    def open_connection(
        self,
        client_id: str | None = None,
        capability: Capability = None,
        connection_id: str | None = None,
    ) -> str:
        """Open a connection and return its id (the caller may impose one, e.g. the adapter's)."""
        if client_id is not None and (
            not isinstance(client_id, str) or not client_id or client_id == "*"
        ):
            raise PresenceError(
                errors.INVALID_CLIENT_ID, f"clientId: invalid clientId {client_id!r}", "clientId"
            )
        cid = connection_id or self._ids("conn")
        if cid in self._connections:
            raise PresenceError(
                errors.BAD_REQUEST, f"connectionId: {cid!r} is already in use", "connectionId"
            )
        self._connections[cid] = _Connection(cid, client_id, capability)
        return cid

    def connection_client_id(self, connection_id: str) -> str | None:
        return self._conn(connection_id).client_id

    def connection_capability(self, connection_id: str) -> Capability:
        return self._conn(connection_id).capability

    def connection_state(self, connection_id: str) -> str:
        return self._conn(connection_id).state

    def replace_capability(self, connection_id: str, capability: Capability) -> Capability:
        """Give the connection another capability; returns the one it had."""
        conn = self._conn(connection_id)
        previous, conn.capability = conn.capability, capability
        return previous

    def close_connection(self, connection_id: str) -> Outcome:
        """A graceful close: every member of the connection leaves at once."""
        conn = self._conn(connection_id)
        self._detach_all(
            conn
        )  # first: the closing connection hears nothing more, not even its leaves
        outcome = self._remove_connection_members(conn)
        conn.state = "closed"
        return outcome

    def drop_connection(self, connection_id: str) -> None:
        """An abrupt disconnect: the connection hears nothing more; its members stay (grace)."""
        conn = self._conn(connection_id)
        self._detach_all(conn)
        conn.state = "dropped"

    def resume_connection(self, connection_id: str) -> None:
        """A dropped connection is resumed (RTN15c6): connected again with its members; it
        attaches its channels again itself."""
        conn = self._conn(connection_id)
        if conn.state != "dropped":
            raise PresenceError(
                errors.CONNECTION_CLOSED,
                f"connection {connection_id!r} is {conn.state}, not dropped",
                "connection",
            )
        conn.state = "connected"

    def expire_connection(self, connection_id: str) -> Outcome:
        """The grace after an abrupt disconnect is over: synthesize a leave for each member."""
        conn = self._conn(connection_id)
        outcome = self._remove_connection_members(conn)
        conn.state = "closed"
        return outcome

    def forget_connection(self, connection_id: str) -> None:
        """Free a closed connection's record (a server calls this once nothing refers to it;
        the oracle keeps closed connections to answer for them). Unknown ids are ignored."""
        conn = self._connections.get(connection_id)
        if conn is not None and conn.state == "closed":
            del self._connections[connection_id]

    def detach(self, connection_id: str, channel: str) -> None:
        """The connection no longer hears `channel` (its listeners there are dropped); a
        channel with nothing left in it is freed."""
        conn = self._conn(connection_id)
        conn.attached.discard(channel)
        conn.listeners.pop(channel, None)
        ch = self._channels.get(channel)
        if ch is not None:
            ch.attached.discard(connection_id)
            ch.listening.discard(connection_id)
            self._free_if_idle(channel)

    def detach_channel(self, connection_id: str, channel: str) -> Outcome:
        """The client detaches `channel` (RTL5): as `detach` (its listener registrations there
        are dropped: keep them with `listener_state` first), and its members there leave, each
        with a synthesized leave, as on a close (a connection is present only on channels it is
        attached to)."""
        conn = self._conn(connection_id)
        conn.attached.discard(channel)
        conn.listeners.pop(channel, None)
        outcome = Outcome()
        ch = self._channels.get(channel)
        if ch is None:
            return outcome
        ch.attached.discard(connection_id)
        ch.listening.discard(connection_id)
        outcome.extend(self._synthesize_leaves(ch, connection_id))
        self._free_if_idle(channel)
        return outcome

    def sweep(self) -> int:
        """Apply the history retention to every channel and free the channels left with no
        members, no attached connection and no retained history; returns how many were freed."""
        freed = 0
        self._now()  # the retention's age is judged at the clock's time now
        for name in list(self._channels):
            self._retain(self._channels[name])
            freed += self._free_if_idle(name)
        return freed

    def _retain(self, ch: _Channel) -> None:
        """Drop the events beyond the retention (count, then age) from the front of the log."""
        drop = 0
        if self.history_max_count is not None and len(ch.log) > self.history_max_count:
            drop = len(ch.log) - self.history_max_count
        if self.history_max_age_ms is not None and ch.log_times:
            cutoff = self._last_time - self.history_max_age_ms
            if ch.log_times[0] < cutoff:  # else none is that old
                drop = max(drop, bisect.bisect_left(ch.log_times, cutoff))
        if drop:
            del ch.log[:drop]
            del ch.log_times[:drop]
            ch.log_base += drop

    def _free_if_idle(self, name: str) -> int:
        ch = self._channels.get(name)
        if ch is None or ch.members or ch.attached or ch.listening or ch.log:
            return 0
        del self._channels[name]
        return 1

    # -- attach and listeners ------------------------------------------------------------------

    def attach(self, connection_id: str, channel: str) -> Outcome:
        """Attach (idempotent). The first attach delivers `present` for every member (RTP1, RTP18)."""
        conn = self._live(connection_id)
        self._check_channel_name(channel)
        outcome = Outcome()
        if channel in conn.attached:
            return outcome
        if not _grants_attach(conn.capability, channel):
            raise PresenceError(
                errors.CAPABILITY_DENIED,
                f"capability: neither subscribe nor presence capability on channel {channel!r}",
                "capability",
            )
        ch = self._channel(channel)
        conn.attached.add(channel)
        ch.attached.add(conn.id)
        if conn.listeners.get(channel):  # kept across a detach (RTL5, RTP5a), or restored
            ch.listening.add(conn.id)
        if conn.listeners.get(channel):  # without listeners there is nobody to deliver to
            for member in ch.members.values():
                outcome.deliveries.extend(self._deliveries_to(conn, channel, member))
        return outcome

    def check_capability(self, connection_id: str, channel: str, operation: str) -> None:
        """Raise 40160 unless the connection's capability grants `operation` on `channel`
        ("presence" for enter/update/leave, RTP8h; "history" for history)."""
        if not _check_capability(self._conn(connection_id).capability, channel, operation):
            raise PresenceError(
                errors.CAPABILITY_DENIED,
                f"capability: no {operation} capability on channel {channel!r}",
                "capability",
            )

    def is_attached(self, connection_id: str, channel: str) -> bool:
        return channel in self._conn(connection_id).attached

    def receives_presence(self, connection_id: str, channel: str) -> bool:
        """Whether the connection hears the presence of others on `channel`: its capability
        grants `subscribe` there, so its attach is granted the PRESENCE_SUBSCRIBE mode. Without
        it the server delivers it only its own members (RTP17a) and its get() reflects no more
        than that (RTP11f: 91008 in strictMode, else "an empty or incomplete list")."""
        return _check_capability(self._conn(connection_id).capability, channel, "subscribe")

    def sync_complete(self, connection_id: str, channel: str) -> bool:
        """RTP13: the model's sync is complete as soon as the channel is attached."""
        return self.is_attached(connection_id, channel)

    def subscribe(
        self, connection_id: str, channel: str, listener: str, actions: Any = None
    ) -> Outcome:
        """Register `listener` for `actions` (None: all, RTP6a; one or a list, RTP6b), then attach (RTP6d)."""
        conn = self._live(connection_id)
        self._check_channel_name(channel)
        parsed = parse_actions(actions)
        regs = conn.listeners.setdefault(channel, {}).setdefault(listener, [])
        if parsed is None:
            regs.append(_Registration(ALL))
        else:
            for action in sorted(parsed):
                regs.append(_Registration(action.value))
                for reg in regs:  # a fresh subscription settles an open RTP7b question
                    reg.maybe_removed.discard(action.value)
        outcome = self.attach(connection_id, channel)
        self._channels[channel].listening.add(conn.id)
        return outcome

    def unsubscribe(
        self, connection_id: str, channel: str, listener: str | None = None, actions: Any = None
    ) -> None:
        """RTP7: no arguments removes every listener (RTP7c); a listener removes it (RTP7a);
        actions with or without a listener remove those actions' registrations (RTP7b)."""
        conn = self._live(connection_id)
        parsed = parse_actions(actions)
        table = conn.listeners.get(channel, {})
        if parsed is None:
            if listener is None:
                table.clear()
            else:
                table.pop(listener, None)
            self._update_listening(conn, channel)
            return
        names = [listener] if listener is not None else list(table)
        wanted = {a.value for a in parsed}
        for name in names:
            regs = table.get(name)
            if not regs:
                continue
            kept = []
            for reg in regs:
                if reg.filter in wanted:
                    continue
                if reg.filter == ALL:
                    # ably-js keeps an all-actions listener on off(action, listener); others drop
                    # the action from it. RTP7b does not settle it, so both are accepted.
                    reg.maybe_removed |= wanted
                kept.append(reg)
            if kept:
                table[name] = kept
            else:
                del table[name]
        self._update_listening(conn, channel)

    def _update_listening(self, conn: _Connection, channel: str) -> None:
        ch = self._channels.get(channel)
        if ch is not None and not conn.listeners.get(channel):
            ch.listening.discard(conn.id)

    def listeners(self, connection_id: str, channel: str) -> list[str]:
        return sorted(self._conn(connection_id).listeners.get(channel, {}))

    def listener_state(self, connection_id: str, channel: str) -> ListenerState:
        """A copy of the connection's listener registrations on `channel`, to hand back to
        `restore_listener_state` (e.g. when an implementation refused a subscribe or an
        unsubscribe that the model accepted)."""
        table = self._conn(connection_id).listeners.get(channel, {})
        # what deepcopy would make (no registration is shared), several times faster
        return {
            name: [_Registration(reg.filter, set(reg.maybe_removed)) for reg in regs]
            for name, regs in table.items()
        }

    def restore_listener_state(
        self, connection_id: str, channel: str, saved: ListenerState
    ) -> None:
        """Put back registrations taken by `listener_state` (attachment is left as it is: the
        listeners of a connection not attached hear the channel once it attaches)."""
        self._conn(connection_id).listeners[channel] = saved
        ch = self._channels.get(channel)
        if ch is not None:
            if saved and connection_id in ch.attached:
                ch.listening.add(connection_id)
            else:
                ch.listening.discard(connection_id)

    def deliveries_for(self, channel: str, event: PresenceMessage) -> list[Delivery]:
        """Who would receive `event` on `channel` now (every attached connection's listeners),
        without changing anything: e.g. the deliveries of an event with another action."""
        ch = self._channels.get(channel)
        if ch is None:
            return []
        out: list[Delivery] = []
        for cid in sorted(ch.attached):
            out.extend(self._deliveries_to(self._connections[cid], channel, event))
        return out

    # -- presence operations -------------------------------------------------------------------

    # Optional keywords on enter / update / leave (defaults keep the plain seed behaviour):
    # `client_id` acts on behalf of that clientId (RTP14, RTP15: enterClient on a connection
    # without a clientId of its own, e.g. a wildcard one); it must equal the connection's
    # clientId when the connection has one (RTP15f). `event_id` imposes the event's id, e.g.
    # `connectionId:msgSerial:index` from the wire (TP3a) or a synthesized id (RTP2b1).

    def enter(
        self,
        connection_id: str,
        channel: str,
        data: Any = None,
        *,
        client_id: str | None = None,
        event_id: str | None = None,
    ) -> Outcome:
        """RTP8: enter the connection's clientId with `data`; entering again updates the data."""
        return self._publish(connection_id, channel, Action.ENTER, data, client_id, event_id)

    def update(
        self,
        connection_id: str,
        channel: str,
        data: Any = None,
        *,
        client_id: str | None = None,
        event_id: str | None = None,
    ) -> Outcome:
        """RTP9: update the member's data; enters it if it is not present (RTP9b)."""
        return self._publish(connection_id, channel, Action.UPDATE, data, client_id, event_id)

    def leave(
        self,
        connection_id: str,
        channel: str,
        data: Any = None,
        *,
        client_id: str | None = None,
        event_id: str | None = None,
    ) -> Outcome:
        """RTP10: leave; without data the leave carries the member's data (RTP10a, RTP8e).
        Leaving when not present succeeds and emits nothing (RTP10d, RTP2h)."""
        return self._publish(connection_id, channel, Action.LEAVE, data, client_id, event_id)

    def _publish(
        self,
        connection_id: str,
        channel: str,
        action: Action,
        data: Any,
        on_behalf_of: str | None = None,
        event_id: str | None = None,
    ) -> Outcome:
        # (the checks are inlined where they pass: this is the path of every presence frame)
        conn = self._connections.get(connection_id)
        if conn is None or conn.state != "connected":
            conn = self._live(connection_id)  # raises
        if not isinstance(channel, str) or not channel:
            self._check_channel_name(channel)  # raises
        if data is not None and type(data) is not str:
            data = validate_data(data)
        client_id = conn.client_id
        if on_behalf_of is not None:
            if not isinstance(on_behalf_of, str) or not on_behalf_of or on_behalf_of == "*":
                raise PresenceError(
                    errors.INVALID_CLIENT_ID,
                    f"clientId: invalid clientId {on_behalf_of!r}",
                    "clientId",
                )
            if client_id is not None and on_behalf_of != client_id:
                raise PresenceError(
                    errors.INVALID_CLIENT_ID,
                    f"clientId: {on_behalf_of!r} does not match the connection's "
                    f"clientId {client_id!r} (RTP15f)",
                    "clientId",
                )
            client_id = on_behalf_of
        if client_id is None:
            raise PresenceError(
                errors.NO_CLIENT_ID,
                f"clientId: cannot {action.value} presence without a clientId "
                "(the connection has none)",
                "clientId",
            )
        try:
            size = message_size(client_id, data)
        except UnicodeEncodeError:
            raise PresenceError(
                errors.INVALID_DATA,
                "data: not valid Unicode (a lone surrogate has no UTF-8 form)",
                "data",
            ) from None
        if size > self.max_message_size:
            raise PresenceError(
                errors.MESSAGE_TOO_LARGE,
                f"data: message size exceeds the {self.max_message_size}-byte limit",
                "data",
            )
        # A client checks clientId, data and size itself; the capability is the server's to judge,
        # after the implicit attach (RTP8d, then a NACK per RTP8h): the attach stays.
        # (the checks are made in place first: this is the path of every presence frame)
        outcome = self.attach(connection_id, channel) if channel not in conn.attached else None
        if not _check_capability(conn.capability, channel, "presence"):
            self.check_capability(connection_id, channel, "presence")
        ch = self._channels.get(channel)
        if ch is None:
            ch = self._channel(channel)
        key = f"{conn.id}:{client_id}"  # member_key
        serial = conn.msg_serial
        conn.msg_serial += 1
        existing = ch.members.get(key)
        if action is _LEAVE:
            if existing is None:
                return outcome or Outcome()  # RTP10d: ACKed, nothing happens
            if data is None:
                data = existing.data
        event = PresenceMessage(
            action, client_id, conn.id, data, self._now(), event_id or f"{conn.id}:{serial}:0"
        )
        applied = self._apply(ch, event, key)
        if outcome is None:
            return applied
        outcome.extend(applied)
        return outcome

    def _apply(self, ch: _Channel, event: PresenceMessage, key: str | None = None) -> Outcome:
        """Apply `event` to `ch` (members, indexes, history); `key` is its member key, when
        the caller has it."""
        if key is None:
            key = event.member_key
        client_id, connection_id = event.client_id, event.connection_id
        if event.action is _LEAVE:
            del ch.members[key]
            keys = ch.by_client[client_id]
            keys.discard(key)
            if not keys:
                del ch.by_client[client_id]
            keys = ch.by_connection[connection_id]
            keys.discard(key)
            if not keys:
                del ch.by_connection[connection_id]
                owner = self._connections.get(connection_id)
                if owner is not None:
                    owner.member_channels.discard(ch.name)
        else:
            ch.members[key] = event.with_action(_PRESENT)
            found = ch.by_client.get(client_id)
            if found is None:
                ch.by_client[client_id] = {key}
            else:
                found.add(key)
            found = ch.by_connection.get(connection_id)
            if found is None:
                ch.by_connection[connection_id] = {key}
            else:
                found.add(key)
            owner = self._connections.get(connection_id)
            if owner is not None:
                owner.member_channels.add(ch.name)
        ch.log.append(event)
        ch.log_times.append(event.timestamp)
        if self.history_max_count is not None or self.history_max_age_ms is not None:
            self._retain(ch)
        outcome = Outcome([event])
        if ch.listening:
            for cid in sorted(ch.listening):  # O(listening connections), not O(attached)
                outcome.deliveries.extend(
                    self._deliveries_to(self._connections[cid], ch.name, event)
                )
        return outcome

    def _remove_connection_members(self, conn: _Connection) -> Outcome:
        outcome = Outcome()
        for name in sorted(conn.member_channels):  # the index: O(its channels), not O(all)
            outcome.extend(self._synthesize_leaves(self._channels[name], conn.id))
            self._free_if_idle(name)
        return outcome

    def _synthesize_leaves(self, ch: _Channel, connection_id: str) -> Outcome:
        """A LEAVE for each member of `connection_id` on `ch`, made by the service: not
        published by the connection, so its id does not start with the connectionId (RTP2b1)."""
        outcome = Outcome()
        for key in sorted(ch.by_connection.get(connection_id, ())):
            member = ch.members[key]
            leave = PresenceMessage(
                action=Action.LEAVE,
                client_id=member.client_id,
                connection_id=member.connection_id,
                data=member.data,
                timestamp=self._now(),
                id=self._ids("synthetic"),
            )
            outcome.extend(self._apply(ch, leave))
        return outcome

    def _deliveries_to(
        self, conn: _Connection, channel: str, event: PresenceMessage
    ) -> list[Delivery]:
        if conn.state != "connected":
            return []
        if event.connection_id != conn.id and not _check_capability(
            conn.capability, channel, "subscribe"
        ):
            # Presence events reach subscribers only; a connection without `subscribe` still
            # hears its own members (RTP17a).
            return []
        table = conn.listeners.get(channel)
        if not table:
            return []
        out = []
        action = event.action  # a str enum: equal to (and hashed as) its value, read once
        for name, regs in sorted(table.items()):
            definite = possible = 0
            for reg in regs:
                if reg.filter == action:
                    definite += 1
                    possible += 1
                elif reg.filter == ALL:
                    possible += 1
                    if action not in reg.maybe_removed:
                        definite += 1
            if possible:
                out.append(Delivery(event, conn.id, channel, name, min(definite, 1), possible))
        return out

    # -- queries -------------------------------------------------------------------------------

    def get(
        self, channel: str, client_id: str | None = None, connection_id: str | None = None
    ) -> list[PresenceMessage]:
        """RTP11 / RSP3: the members, filtered by clientId (RTP11c2) and connectionId (RTP11c3).
        Cost O(result + log n): the filters use the per-client and per-connection indexes."""
        for name, value in (("clientId", client_id), ("connectionId", connection_id)):
            if value is not None and not isinstance(value, str):
                raise PresenceError(
                    errors.INVALID_PARAMETER_VALUE,
                    f"{name}: expected a string, got {type(value).__name__}",
                    name,
                )
        ch = self._channels.get(channel)
        if ch is None:
            return []
        if client_id is not None and connection_id is not None:
            key = member_key(connection_id, client_id)
            keys: Iterable[str] = [key] if key in ch.members else []
        elif client_id is not None:
            keys = ch.by_client.get(client_id, ())
        elif connection_id is not None:
            keys = ch.by_connection.get(connection_id, ())
        else:
            keys = ch.members
        return [ch.members[k] for k in sorted(keys)]

    def pending_leaves(self, channel: str) -> list[PresenceMessage]:
        """The members of `channel` whose connection dropped and whose leave is pending: still
        present until `expire_connection` synthesizes their leaves (RTP2b1); a reader may see
        them or not until then."""
        ch = self._channels.get(channel)
        if ch is None:
            return []
        return [
            member
            for key, member in sorted(ch.members.items())
            if self._connections.get(member.connection_id) is not None
            and self._connections[member.connection_id].state == "dropped"
        ]

    def apply_order(self, channel: str, event_ids: list[str]) -> None:
        """Operations of one member that were in flight together were applied in the order of
        `event_ids` (ids of events in the channel's log, applied by the model in another order):
        the log holds them in that order, at the positions they had, and the member is the
        last one's (RTP2: the presence map keeps the newest). Only enters and updates of one
        member may be reordered: their outcome differs only in that order."""
        ch = self._channel(channel)
        positions = [i for i, event in enumerate(ch.log) if event.id in set(event_ids)]
        by_id = {ch.log[i].id: ch.log[i] for i in positions}
        if len(positions) != len(event_ids) or set(by_id) != set(event_ids):
            raise ValueError(f"apply_order: {event_ids!r} are not events of {channel!r}")
        events = [by_id[i] for i in event_ids]
        keys = {e.member_key for e in events}
        if len(keys) != 1 or any(e.action not in (Action.ENTER, Action.UPDATE) for e in events):
            raise ValueError("apply_order: only enters and updates of one member")
        for position, event in zip(positions, events, strict=True):
            ch.log[position] = event
        key = keys.pop()
        if key in ch.members:
            ch.members[key] = events[-1].with_action(Action.PRESENT)

    def retract(self, channel: str, event_ids: list[str]) -> None:
        """Take back events of one member that were in flight together (its latest events in the
        channel's log, applied by the model in an order the implementation did not take): they
        leave the log, and the member is again as its last event before them left it (present
        with that event's data, or absent). The caller then applies the operations again in the
        order the implementation applied them: unlike `apply_order`, for operations whose
        events depend on that order (a leave racing an enter or update of its member: RTP10d,
        RTP9b)."""
        ch = self._channel(channel)
        wanted = set(event_ids)
        positions = [i for i, event in enumerate(ch.log) if event.id in wanted]
        if len(positions) != len(wanted):
            raise ValueError(f"retract: {event_ids!r} are not events of {channel!r}")
        keys = {ch.log[i].member_key for i in positions}
        if len(keys) > 1:
            raise ValueError("retract: only events of one member")
        if not positions:
            return
        key = keys.pop()
        if any(e.member_key == key and e.id not in wanted for e in ch.log[positions[0] :]):
            raise ValueError("retract: only a member's latest events")
        sample = ch.log[positions[0]]
        for i in reversed(positions):
            del ch.log[i]
            del ch.log_times[i]
        before = next((e for e in reversed(ch.log) if e.member_key == key), None)
        self._set_member(
            ch, sample, None if before is None or before.action is Action.LEAVE else before
        )

    def _set_member(
        self, ch: _Channel, sample: PresenceMessage, latest: PresenceMessage | None
    ) -> None:
        """Make the member of `sample` present as `latest` says, or absent (None), indexes too."""
        key = sample.member_key
        owner = self._connections.get(sample.connection_id)
        if latest is not None:
            ch.members[key] = latest.with_action(Action.PRESENT)
            ch.by_client.setdefault(sample.client_id, set()).add(key)
            ch.by_connection.setdefault(sample.connection_id, set()).add(key)
            if owner is not None:
                owner.member_channels.add(ch.name)
            return
        ch.members.pop(key, None)
        for index, value in (
            (ch.by_client, sample.client_id),
            (ch.by_connection, sample.connection_id),
        ):
            keys = index.get(value)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[value]
        if owner is not None and sample.connection_id not in ch.by_connection:
            owner.member_channels.discard(ch.name)

    def member_count(self, channel: str) -> int:
        ch = self._channels.get(channel)
        return len(ch.members) if ch else 0

    def history(
        self,
        channel: str,
        start: Any = None,
        end: Any = None,
        limit: Any = None,
        direction: Any = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        """RSP4b / RTP12a: one page of the channel's presence events.
        `start`/`end` are inclusive milliseconds; `limit` defaults to 100 and may not exceed
        1000; `direction` defaults to backwards. Cost O(page + log n)."""
        start, end, limit, direction = validate_history_params(start, end, limit, direction)
        ch = self._channels.get(channel)
        if ch is not None and self.history_max_age_ms is not None:
            self._now()
            self._retain(ch)
        times = ch.log_times if ch else []
        base = ch.log_base if ch else 0
        lo = 0 if start is None else bisect.bisect_left(times, start)
        hi = len(times) if end is None else bisect.bisect_right(times, end)
        if cursor is not None:  # cursors hold absolute positions: the retention may have moved
            lo, hi = _parse_cursor(cursor, direction, lo + base, hi + base, base)
            lo, hi = lo - base, hi - base
        log = ch.log if ch else []
        if direction == "forwards":
            stop = min(hi, lo + limit)
            items = log[lo:stop]
            nxt = f"f:{stop + base}" if stop < hi else None
        else:
            first = max(lo, hi - limit)
            items = log[first:hi][::-1]
            nxt = f"b:{first + base}" if first > lo else None
        return HistoryPage(items, nxt)

    def history_all(self, channel: str) -> list[PresenceMessage]:
        """Every event of the channel, oldest first."""
        ch = self._channels.get(channel)
        return list(ch.log) if ch else []

    def channels(self) -> list[str]:
        return sorted(self._channels)

    # -- internals -----------------------------------------------------------------------------

    def _now(self) -> int:
        now = int(self._clock())
        self._last_time = max(self._last_time, now)  # history stays sorted by timestamp
        return self._last_time

    def _conn(self, connection_id: str) -> _Connection:
        try:
            return self._connections[connection_id]
        except KeyError:
            raise PresenceError(
                errors.NOT_FOUND,
                f"connectionId: unknown connection {connection_id!r}",
                "connectionId",
            ) from None

    def _live(self, connection_id: str) -> _Connection:
        conn = self._conn(connection_id)
        if conn.state != "connected":
            raise PresenceError(
                errors.CONNECTION_CLOSED,
                f"connection {connection_id!r} is {conn.state}",
                "connection",
            )
        return conn

    def _channel(self, name: str) -> _Channel:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = _Channel(name)
        return ch

    @staticmethod
    def _check_channel_name(channel: Any) -> None:
        if not isinstance(channel, str) or not channel:
            raise PresenceError(
                errors.INVALID_PARAMETER_VALUE,
                f"channel: expected a non-empty channel name, got {channel!r}",
                "channel",
            )

    def _detach_all(self, conn: _Connection) -> None:
        for name in conn.attached:
            self._channels[name].attached.discard(conn.id)
            self._channels[name].listening.discard(conn.id)
            self._free_if_idle(name)
        conn.attached.clear()
        conn.listeners.clear()


def validate_history_params(
    start: Any, end: Any, limit: Any, direction: Any
) -> tuple[int | None, int | None, int, str]:
    """Check history options (RSP4b1-3) and apply the defaults; raise 40003 naming the option."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise PresenceError(
                errors.INVALID_PARAMETER_VALUE,
                f"{name}: expected milliseconds since the epoch, got {value!r}",
                name,
            )
    if start is not None and end is not None and start > end:
        raise PresenceError(
            errors.INVALID_PARAMETER_VALUE,
            f"start: {start} is after end {end} (RSP4b1: start must be <= end)",
            "start",
        )
    if limit is None:
        limit = DEFAULT_HISTORY_LIMIT
    elif (
        isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY_LIMIT
    ):
        raise PresenceError(
            errors.INVALID_PARAMETER_VALUE,
            f"limit: expected an integer from 1 to {MAX_HISTORY_LIMIT}, got {limit!r}",
            "limit",
        )
    if direction is None:
        direction = "backwards"
    elif direction not in ("forwards", "backwards"):
        raise PresenceError(
            errors.INVALID_PARAMETER_VALUE,
            f"direction: expected 'forwards' or 'backwards', got {direction!r}",
            "direction",
        )
    return start, end, limit, direction


def _parse_cursor(cursor: str, direction: str, lo: int, hi: int, base: int = 0) -> tuple[int, int]:
    """(lo, hi) of the rest of a query from its cursor; positions are absolute (`base`: events
    dropped by the retention). A cursor pointing at dropped events resumes at the oldest kept."""
    try:
        kind, pos_text = cursor.split(":", 1)
        pos = int(pos_text)
    except (ValueError, AttributeError):
        raise PresenceError(
            errors.INVALID_PARAMETER_VALUE, f"cursor: malformed cursor {cursor!r}", "cursor"
        ) from None
    if kind == direction[0] and 0 <= pos < base:
        pos = lo  # the retention dropped the events the cursor pointed at
    if kind != direction[0] or not lo <= pos <= hi:
        raise PresenceError(
            errors.INVALID_PARAMETER_VALUE,
            f"cursor: {cursor!r} does not belong to this query",
            "cursor",
        )
    return (pos, hi) if direction == "forwards" else (lo, pos)

"""The client-side presence oracle: what a conforming client's presence map does with its frames.

`ClientPresence` is a pure, synchronous model of one channel's `PresenceMap` on a realtime
client (Ably features spec, RTP1, RTP2, RTP5, RTP18, RTP19, TP3). It is fed the frames a client
receives (ProtocolMessage dicts in their JSON wire form) and the channel's state changes, and
answers with the events a subscriber sees (`Event`: action, member, and whether the client
synthesized it), the members (`members()`), and `sync_complete` (RTP13). It does no I/O and
imports nothing from the harness, so a check can compare an SDK's visible presence with it, and
the harness's own client can use the same rules.

Rules, each with the spec sentence it follows (quoted in the method that applies it):

- TP3a/TP3d/TP3g: `id`, `connectionId`, `timestamp` missing on an item come from the enclosing
  ProtocolMessage (`protocolMsgId:index` for the id): `item_from_wire`.
- RTP2a/RTP2b: newness, by `timestamp` when either message is synthesized (RTP2b1, ties going to
  the incoming message, RTP2b1a), otherwise by `msgSerial` then `index` (RTP2b2): `is_newer`.
- RTP2c/RTP2d/RTP2h: SYNC items and PRESENCE items alike; ENTER/UPDATE/PRESENT stored as PRESENT
  and emitted with their own action; LEAVE deletes and is emitted (RTP2h1), or during a sync is
  kept as ABSENT and purged when the sync ends (RTP2h2).
- RTP18: sync cursors `<sequence id>:<cursor>`, a new sequence discarding the one in flight
  (RTP18a), an empty cursor ending it (RTP18b), a SYNC without `channelSerial` being a whole sync
  (RTP18c).
- RTP19/RTP19a: members not seen during a sync, and every member on an ATTACHED without
  HAS_PRESENCE, leave with a LEAVE whose `id` is None and whose `timestamp` is now.
- RTP5a/RTP5f: DETACHED and FAILED clear the map silently; SUSPENDED keeps it.
- RSL6a: member data is decoded by its `encoding` (`decode_data`: the inverse of RSL4, JSON
  objects and arrays from `json`, binary from `base64`, text from `utf-8`), when the map is
  built with `decode=decode_data` (the harness's own client, and the `client.*` checks, do).

Where the spec leaves a choice open, the choice made here is named in the docstring of the rule
and, where both readings are plausible, is a constructor option (`emit_leave_during_sync`,
`absent_for_unknown_leave`) so that a check can accept either.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.protocol import HAS_PRESENCE, ProtocolAction
from presence_conformance.reference_impl.types import Action, PresenceMessage

__all__ = [
    "ChannelState",
    "ClientPresence",
    "Event",
    "MalformedFrame",
    "decode_data",
    "is_newer",
    "is_synthesized",
    "item_from_wire",
    "serial_index",
]


class MalformedFrame(ValueError):
    """A frame the oracle cannot read (a `presence` that is not a list, an unknown action)."""


class ChannelState(enum.StrEnum):
    """The channel states (RTL2b) the presence map reacts to or ignores."""

    INITIALIZED = "initialized"
    ATTACHING = "attaching"
    ATTACHED = "attached"
    DETACHING = "detaching"
    DETACHED = "detached"
    SUSPENDED = "suspended"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Event:
    """One presence event a subscriber receives.

    `synthesized` is True for the LEAVEs the client makes up itself (RTP19, RTP19a: `id` None,
    `timestamp` now), False for a message received from the server (which may itself be a
    server-synthesized leave in the RTP2b1 sense: see `is_synthesized`).
    """

    action: Action
    member: PresenceMessage
    synthesized: bool = False


def decode_data(data: Any, encoding: str | None) -> tuple[Any, str | None]:
    """Decode received `data` by its `encoding`; return (data, residual encoding or None).

    RSL6a: "All messages received will be decoded automatically based on the `encoding` field
    (by inverting the encoding rules of RSL4 ...) and the payloads will be converted into the
    format they were originally sent using". The chain is `/`-separated and undone right to
    left: `base64` -> binary (RSL4d1), `utf-8` -> text, `json` -> the JSON value (RSL4c3,
    RSL4d3). RSL6b: a step that cannot be undone (unknown, or invalid base64) stops the
    decoding, and the data is kept as decoded so far with the steps left as its encoding.
    Data without an encoding is kept as it is, whatever it looks like."""
    if not encoding:
        return data, None
    steps = [s for s in encoding.split("/") if s]
    while steps:
        step = steps[-1]
        try:
            if step == "json" and isinstance(data, str | bytes):
                data = json.loads(data)
            elif step == "base64" and isinstance(data, str):
                data = base64.b64decode(data, validate=True)
            elif step in ("utf-8", "utf8") and isinstance(data, bytes):
                data = data.decode("utf-8")
            else:
                break
        except (ValueError, binascii.Error, UnicodeDecodeError):
            break
        steps.pop()
    return data, ("/".join(steps) or None)


def item_from_wire(
    item: Any,
    parent: Mapping[str, Any] | None = None,
    index: int = 0,
    decode: Callable[[Any, str | None], tuple[Any, str | None]] | None = None,
) -> PresenceMessage:
    """A received presence item as a `PresenceMessage`, its missing fields taken from `parent`.

    TP3a: "For presence messages received over Realtime, if the presence message does not
    contain an `id`, it should be set to `protocolMsgId:index`, where `protocolMsgId` is the id
    of the `ProtocolMessage` encapsulating it, and `index` is the index of the presence message
    inside the `presence` array of the `ProtocolMessage`".
    TP3d: "If a presence message received from Ably does not contain a `connectionId`, it should
    be set to the `connectionId` of the encapsulating `ProtocolMessage`".
    TP3g: "If a presence message received from Ably does not contain a `timestamp`, it should be
    set to the `timestamp` of the encapsulating `ProtocolMessage`".

    An id missing on both stays None; a timestamp missing on both is 0; a missing clientId is "".
    `data` is kept as sent unless `decode(data, encoding) -> (data, residual encoding)` is
    given; a residual encoding and `extras` go to `extra`.
    """
    if not isinstance(item, Mapping):
        raise MalformedFrame(f"presence item is not an object: {item!r}")
    parent = parent or {}
    try:
        action = Action.from_wire(item.get("action"))
    except PresenceError:
        raise MalformedFrame(f"presence item has an unknown action: {item!r}") from None
    id_ = item.get("id")
    if not id_:
        id_ = f"{parent['id']}:{index}" if parent.get("id") else None
    connection_id = item.get("connectionId") or parent.get("connectionId") or ""
    timestamp = item.get("timestamp")
    if timestamp is None:
        timestamp = parent.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        timestamp = 0
    data, encoding = item.get("data"), item.get("encoding")
    if decode is not None:
        data, encoding = decode(data, encoding)
    extra: dict[str, Any] = {}
    if encoding:
        extra["encoding"] = encoding
    if item.get("extras") is not None:
        extra["extras"] = item["extras"]
    return PresenceMessage(
        action=action,
        client_id=item.get("clientId") or "",
        connection_id=connection_id,
        data=data,
        timestamp=int(timestamp),
        id=id_,
        extra=extra,
    )


def is_synthesized(message: PresenceMessage) -> bool:
    """RTP2b1: "If either presence message has a `connectionId` which is not an initial
    substring of its `id`, compare them by `timestamp` numerically. (This will be the case when
    one of them is a 'synthesized leave' event ...)". A message without an id is synthesized.

    A message without a `connectionId` (none on the item, none on its ProtocolMessage to take
    by TP3d) has no connectionId that could fail to be a prefix of its id, so RTP2b1 does not
    apply to it and its id is compared by RTP2b2 ("Else split the `id`"), as ably-python does;
    ably-js counts it as synthesized (`presencemessage.ts` `isSynthesized`)."""
    return not (message.id or "").startswith(message.connection_id) or not message.id


def serial_index(message_id: str | None) -> tuple[int, int] | None:
    """RTP2b2: the `msgSerial` and `index` of an id `connid:msgSerial:index`; None if not so."""
    if not message_id:
        return None
    parts = message_id.rsplit(":", 2)
    if len(parts) != 3:
        return None
    try:
        return int(parts[1]), int(parts[2])
    except ValueError:
        return None


def is_newer(incoming: PresenceMessage, existing: PresenceMessage) -> bool:
    """True if `incoming` replaces `existing` (RTP2a, RTP2b).

    RTP2b1: "If either presence message has a `connectionId` which is not an initial substring
    of its `id`, compare them by `timestamp` numerically." RTP2b1a: "If the timestamps compare
    equal, the newly-incoming message is considered newer than the existing one".
    RTP2b2: "Else split the `id` of both presence messages (which will be of the form
    `connid:msgSerial:index`, e.g. `aaaaaa:0:0`) on the separator `:`, and parse the latter two as
    integers. Compare them first by `msgSerial` numerically, then (if `msgSerial` is equal) by
    `index` numerically, larger being newer in both cases".

    Choices where the spec is silent: an id whose last two parts are not integers is compared by
    timestamp; an incoming message with the same msgSerial and index as the existing one is the
    same message delivered again and is not newer (RTP5f expects members unchanged across a
    re-sync to emit no events, which a re-listed PRESENT with the same id would otherwise do).
    """
    if not is_synthesized(incoming) and not is_synthesized(existing):
        a, b = serial_index(incoming.id), serial_index(existing.id)
        if a is not None and b is not None:
            return a > b
    return incoming.timestamp >= existing.timestamp


class ClientPresence:
    """One channel's presence map on a conforming client, fed frames and state changes.

    `receive(frame)` and `channel_state(state)` return the events emitted, in order; `feed`
    takes a whole sequence (frames, and `{"state": ...}` entries for state changes), which is
    how `tests/reference_impl/test_client_presence_mutants.py` keeps its sequences as data.

    Options where the spec admits two readings:
    - `emit_leave_during_sync` (default True): RTP2h2 says a LEAVE during a sync "must be stored
      in the presence map with the action set to ABSENT" and does not say whether it is emitted
      (RTP2h1a says so only outside a sync; RTP2h2b: "No leave events should be emitted other
      than those required by RTP19" is about the purge). ably-js and ably-python emit it.
    - `absent_for_unknown_leave` (default False): RTP2h applies "if and only if there is a member
      with a matching `memberKey` currently in the presence map", so a LEAVE for an unknown
      member is ignored, even during a sync; True keeps it as ABSENT during a sync (as ably-js
      does), which makes an older PRESENT later in the same sync lose to it (RTP2c).
    """

    def __init__(
        self,
        clock: Callable[[], int] = lambda: 0,
        *,
        emit_leave_during_sync: bool = True,
        absent_for_unknown_leave: bool = False,
        decode: Callable[[Any, str | None], tuple[Any, str | None]] | None = None,
    ) -> None:
        self.clock = clock
        self.emit_leave_during_sync = emit_leave_during_sync
        self.absent_for_unknown_leave = absent_for_unknown_leave
        self.decode = decode
        self._map: dict[str, PresenceMessage] = {}
        self._residual: set[str] | None = None  # keys a sync in progress has yet to confirm
        self._sync_id: str | None = None
        self.sync_complete = False  # RTP13

    # -- what a subscriber sees ------------------------------------------------------------

    @property
    def sync_in_progress(self) -> bool:
        """True between the start of a sync (ATTACHED with HAS_PRESENCE, or a SYNC) and its end."""
        return self._residual is not None

    def members(self) -> list[PresenceMessage]:
        """The PRESENT members (what `get` returns, RTP11), sorted by memberKey."""
        return [m for _, m in sorted(self._map.items()) if m.action is Action.PRESENT]

    def entry(self, member_key: str) -> PresenceMessage | None:
        """The map's entry for `member_key` (PRESENT, or ABSENT during a sync), or None."""
        return self._map.get(member_key)

    def entries(self) -> dict[str, PresenceMessage]:
        """The whole map by memberKey, ABSENT entries of a sync in progress included."""
        return dict(self._map)

    # -- inputs ----------------------------------------------------------------------------

    def feed(self, sequence: Iterable[Mapping[str, Any]]) -> list[Event]:
        """Apply frames and `{"state": "<channel state>"}` entries in order; all events emitted."""
        events: list[Event] = []
        for entry in sequence:
            if "state" in entry:
                events += self.channel_state(entry["state"])
            else:
                events += self.receive(entry)
        return events

    def receive(self, frame: Mapping[str, Any]) -> list[Event]:
        """One ProtocolMessage for this channel. Actions other than those below change nothing.

        ATTACHED: RTP1/RTP19a. PRESENCE and SYNC: RTP2, RTP18. ERROR for the channel: the channel
        becomes FAILED (RTL14), so RTP5a applies. DETACHED from the server is not a state change
        by itself: an attached channel re-attaches (RTL13a), and the state the channel ends in
        is given through `channel_state`.
        """
        action = frame.get("action")
        if action == ProtocolAction.ATTACHED:
            return self.on_attached(frame.get("flags"))
        if action == ProtocolAction.PRESENCE:
            return self._apply(self._items(frame))
        if action == ProtocolAction.SYNC:
            return self.on_sync(frame)
        if action == ProtocolAction.ERROR and frame.get("channel"):
            return self.channel_state(ChannelState.FAILED)
        return []

    def channel_state(self, state: str) -> list[Event]:
        """A channel state change (RTP5).

        RTP5a: "If the channel enters the `DETACHED` or `FAILED` state then ... the `PresenceMap`
        ... is cleared. ... presence events (specifically `LEAVE`) should not be emitted when the
        `PresenceMap` is cleared as each presence member's state is unknown".
        RTP5f: "If the channel enters the `SUSPENDED` state then ... the `PresenceMap` is
        maintained." Other states change nothing here.
        """
        state = ChannelState(state)
        if state in (ChannelState.DETACHED, ChannelState.FAILED):
            self.clear_silently()
        return []

    def on_attached(self, flags: Any) -> list[Event]:
        """RTP1: "If the flag is 1, the server will shortly perform a `SYNC` operation ... If that
        flag is 0 or there is no `flags` field, the presence map should be considered in sync
        immediately with no members present on the channel".
        RTP19a: "If the `PresenceMap` has existing members when an `ATTACHED` message is received
        without a `HAS_PRESENCE` flag, the client library should emit a `LEAVE` event for each
        existing member ... with the `action` set to `LEAVE`, `PresenceMessage#id` set to `null`,
        and the `timestamp` set to the current time. Once complete, all members in the
        `PresenceMap` should be removed".

        With HAS_PRESENCE the sync starts here (any sync in flight is discarded, RTP18a), so that
        PRESENCE messages before the first SYNC page count as confirmations (RTP19).
        """
        has_presence = isinstance(flags, int) and not isinstance(flags, bool)
        if has_presence and flags & HAS_PRESENCE:
            self.start_sync(restart=True)
            self._sync_id = None
            return []
        return self.clear_with_leaves()

    def on_sync(self, frame: Mapping[str, Any]) -> list[Event]:
        """A SYNC ProtocolMessage (RTP18).

        RTP18a: "The `channelSerial` is used as the sync cursor and is a two-part identifier
        `<sync sequence id>:<cursor value>`. If a new sequence identifier is sent from Ably, then
        the client library must consider that to be the start of a new sync sequence and any
        previous in-flight sync should be discarded".
        RTP18b: "The sync operation for that sequence identifier has completed once the cursor is
        empty; that is, when the `channelSerial` looks like `<sync sequence id>:`".
        RTP18c: "a `SYNC` may also be sent with no `channelSerial` attribute. In this case, the
        sync data is entirely contained within that `ProtocolMessage`".

        Discarding a sync in flight means every member in the map must be confirmed again by the
        new sequence. A sync started by ATTACHED adopts the first sequence id it sees. A serial
        without `:` has an empty cursor. A SYNC without `channelSerial` is a whole sync: it
        discards a sync in flight, starts and ends one.
        """
        items = self._items(frame)
        serial = frame.get("channelSerial")
        if not serial or not isinstance(serial, str):
            self.start_sync(restart=True)
            events = self._apply(items)
            return events + self.end_sync()
        sync_id, _, cursor = serial.partition(":")
        if not self.sync_in_progress:
            self.start_sync()
        elif self._sync_id is not None and sync_id != self._sync_id:
            self.start_sync(restart=True)
        self._sync_id = sync_id
        events = self._apply(items)
        if not cursor:
            events += self.end_sync()
        return events

    # -- the map's rules (methods so that mutants can override one) -------------------------

    def start_sync(self, restart: bool = False) -> None:
        """Begin a sync: remember the PRESENT members it must confirm (RTP19).

        RTP19: "the client library must keep track of any members that have not been added or
        updated in the `PresenceMap` during the sync process". `restart` discards a sync in
        flight (RTP18a): every member must be confirmed again.
        """
        if self._residual is None or restart:
            self._residual = {k for k, m in self._map.items() if m.action is Action.PRESENT}
        self.sync_complete = False

    def end_sync(self) -> list[Event]:
        """End the sync: purge ABSENT entries (RTP2h2b) and leave unconfirmed members (RTP19).

        RTP2h2b: "When the `SYNC` completes, then all `ABSENT` members in the presence map must be
        deleted. (No leave events should be emitted other than those required by `RTP19`)".
        RTP19: "Once the sync is complete, the members in the `PresenceMap` that have not been
        added or updated should be removed from the `PresenceMap` and a `LEAVE` event should be
        emitted for each."
        """
        residual = sorted(self._residual or ())
        self._residual = None
        self._sync_id = None
        self.sync_complete = True
        for key in [k for k, m in self._map.items() if m.action is Action.ABSENT]:
            del self._map[key]
        gone = [self._map.pop(key) for key in residual if key in self._map]
        return [self._synthesized_leave(m) for m in gone]

    def clear_with_leaves(self) -> list[Event]:
        """RTP19a: every PRESENT member leaves (synthesized LEAVE), the map empties, in sync."""
        gone = self.members()
        self._map.clear()
        self._residual = None
        self._sync_id = None
        self.sync_complete = True
        return [self._synthesized_leave(m) for m in gone]

    def clear_silently(self) -> None:
        """RTP5a: the map empties without events; the next attach syncs again."""
        self._map.clear()
        self._residual = None
        self._sync_id = None
        self.sync_complete = False

    def newer(self, incoming: PresenceMessage, existing: PresenceMessage) -> bool:
        """RTP2a: "If there is an existing message but it is `RTP2b`-newer than the incoming
        message, the incoming message should be discarded without taking any action"."""
        return is_newer(incoming, existing)

    def put(self, message: PresenceMessage) -> list[Event]:
        """An ENTER, UPDATE or PRESENT (RTP2d), from a PRESENCE or a SYNC alike (RTP2c).

        RTP2d1: "It must be emitted to `RealtimePresence` subscribers (with its original presence
        action ...)". RTP2d2: "It must be added to the presence map with the action set to
        `PRESENT`". RTP19: "a member can be added or updated when received in a `SYNC` message or
        when received in a `PRESENCE` message during the sync process": a member seen during a
        sync is confirmed even when the message is not newer (a re-listed unchanged member).
        """
        key = message.member_key
        if self._residual is not None:
            self._residual.discard(key)
        existing = self._map.get(key)
        if existing is not None and not self.newer(message, existing):
            return []
        self._map[key] = message.with_action(Action.PRESENT)
        return [Event(message.action, message)]

    def remove(self, message: PresenceMessage) -> list[Event]:
        """A LEAVE (RTP2h): "if and only if there is a member with a matching `memberKey`
        currently in the presence map (and the incoming event satisfies the `RTP2b` newness check
        against it)".

        RTP2h1 (no sync in progress): "The incoming message must be emitted to `RealtimePresence`
        subscribers" and "That member must be deleted from the presence map".
        RTP2h2a (a sync in progress): "The incoming message must be stored in the presence map
        with the action set to `ABSENT`"; the member counts as updated for RTP19 (no second
        LEAVE at the end). An entry already ABSENT is updated but not emitted again.
        """
        key = message.member_key
        existing = self._map.get(key)
        syncing = self._residual is not None
        if existing is None and not (syncing and self.absent_for_unknown_leave):
            return []
        if existing is not None and not self.newer(message, existing):
            return []
        was_present = existing is not None and existing.action is Action.PRESENT
        if syncing:
            assert self._residual is not None
            self._residual.discard(key)
            self._map[key] = message.with_action(Action.ABSENT)
            emit = was_present and self.emit_leave_during_sync
        else:
            del self._map[key]
            emit = was_present
        return [Event(Action.LEAVE, message)] if emit else []

    # -- internals ---------------------------------------------------------------------------

    def _items(self, frame: Mapping[str, Any]) -> list[PresenceMessage]:
        raw = frame.get("presence") or []
        if not isinstance(raw, list):
            raise MalformedFrame(f"'presence' is not an array: {raw!r}")
        return [item_from_wire(item, frame, i, self.decode) for i, item in enumerate(raw)]

    def _apply(self, items: list[PresenceMessage]) -> list[Event]:
        events: list[Event] = []
        for message in items:
            if message.action is Action.LEAVE:
                events += self.remove(message)
            elif message.action is not Action.ABSENT:  # ABSENT is client-local (TP2): ignored
                events += self.put(message)
        return events

    def _synthesized_leave(self, member: PresenceMessage) -> Event:
        """RTP19: "The `PresenceMessage` emitted should contain the original attributes of the
        presence member with the `action` set to `LEAVE`, `PresenceMessage#id` set to `null`, and
        the `timestamp` set to the current time"."""
        leave = replace(member, action=Action.LEAVE, id=None, timestamp=self.clock())
        return Event(Action.LEAVE, leave, synthesized=True)

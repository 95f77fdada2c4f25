"""The client-side presence set of one channel: PresenceMap (RTP2), SYNC (RTP18) and RTP19.

Pure and synchronous: it is fed ProtocolMessages (dicts) by the channel and calls an emitter.
Nothing here does I/O, so it can be tested with hand-made frames.

Rules implemented:

- RTP2a/RTP2b newness: if either message is synthesized (its connectionId is not a prefix of
  its id, or either is missing) compare timestamps, a tie going to the incoming one (RTP2b1,
  RTP2b1a); otherwise compare `connId:msgSerial:index` by msgSerial then index, numerically
  (RTP2b2). An id whose last two parts are not integers is compared by timestamp as well.
- RTP2c: SYNC items go through the same check.
- RTP2d: ENTER, UPDATE and PRESENT are emitted with their own action and stored as PRESENT.
- RTP2h: a LEAVE for a member in the map is emitted and the member deleted (RTP2h1); during a
  sync it is stored as ABSENT and deleted silently when the sync ends (RTP2h2). Like ably-js
  and ably-python, a LEAVE for a member that is PRESENT in the map is emitted during a sync too
  (the spec only says how to store it); the member then also stops counting as a residual, so
  RTP19 does not emit a second LEAVE for it.
- RTP18: `channelSerial` `<syncId>:<cursor>`; an empty cursor ends the sync (RTP18b); a SYNC
  without channelSerial is a whole sync (RTP18c); a new syncId while a sync is in progress
  starts over: every member then has to be confirmed by the new sequence (RTP18a).
- RTP19: members that were in the map when the sync started and were not seen during it get a
  LEAVE (original attributes, `id` None, `timestamp` now) at sync end; RTP19a does the same for
  every member on an ATTACHED without HAS_PRESENCE (RTP1).
- RTP5a: on DETACHED/FAILED the map is cleared without events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

from presence_conformance.harness.ably_client.emitter import PresenceEmitter
from presence_conformance.harness.ably_client.protocol import ProtocolViolation, presence_from_wire
from presence_conformance.reference_impl.protocol import HAS_PRESENCE
from presence_conformance.reference_impl.types import Action, PresenceMessage

__all__ = ["PresenceMap", "PresenceState", "is_newer", "is_synthesized"]


def _now_ms() -> int:
    return int(time.time() * 1000)


def is_synthesized(message: PresenceMessage) -> bool:
    """RTP2b1: the message was not published by its connection (its id lacks the prefix)."""
    return (
        not message.id
        or not message.connection_id
        or not message.id.startswith(message.connection_id)
    )


def _serial_index(message_id: str | None) -> tuple[int, int] | None:
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
    """RTP2b: True if `incoming` is newer than `existing` (so it replaces it)."""
    if not is_synthesized(incoming) and not is_synthesized(existing):
        a, b = _serial_index(incoming.id), _serial_index(existing.id)
        if a is not None and b is not None:
            return a > b  # RTP2b2: msgSerial, then index, numerically
    return incoming.timestamp >= existing.timestamp  # RTP2b1, RTP2b1a


class PresenceMap:
    """memberKey -> latest message (PRESENT, or ABSENT during a sync), with sync bookkeeping."""

    def __init__(self) -> None:
        self._map: dict[str, PresenceMessage] = {}
        self._residual: dict[str, PresenceMessage] | None = None

    @property
    def sync_in_progress(self) -> bool:
        return self._residual is not None

    def get(self, key: str) -> PresenceMessage | None:
        return self._map.get(key)

    def put(self, message: PresenceMessage) -> bool:
        """RTP2d: store an ENTER/UPDATE/PRESENT as PRESENT; False if an existing one is newer."""
        key = message.member_key
        if self._residual is not None:
            self._residual.pop(key, None)
        existing = self._map.get(key)
        if existing is not None and not is_newer(message, existing):
            return False
        self._map[key] = message.with_action(Action.PRESENT)
        return True

    def remove(self, message: PresenceMessage) -> bool:
        """RTP2h: apply a LEAVE; True if it must be emitted (a PRESENT member left)."""
        key = message.member_key
        existing = self._map.get(key)
        if existing is not None and not is_newer(message, existing):
            return False
        if self._residual is not None:  # RTP2h2a
            self._residual.pop(key, None)
            self._map[key] = message.with_action(Action.ABSENT)
            return existing is not None and existing.action is not Action.ABSENT
        if existing is None:
            return False
        del self._map[key]  # RTP2h1b
        return True

    def values(
        self, client_id: str | None = None, connection_id: str | None = None
    ) -> list[PresenceMessage]:
        """The PRESENT members, optionally filtered (RTP11c2, RTP11c3), sorted by memberKey."""
        return [
            m
            for _, m in sorted(self._map.items())
            if m.action is Action.PRESENT
            and (client_id is None or m.client_id == client_id)
            and (connection_id is None or m.connection_id == connection_id)
        ]

    def start_sync(self, restart: bool = False) -> None:
        """Snapshot the members a sync must confirm (RTP19); `restart` re-snapshots (RTP18a)."""
        if self._residual is None or restart:
            self._residual = {k: m for k, m in self._map.items() if m.action is Action.PRESENT}

    def end_sync(self) -> list[PresenceMessage]:
        """Finish a sync: drop ABSENT entries (RTP2h2b) and unconfirmed members; return the latter."""
        if self._residual is None:
            return []
        residual = [m for _, m in sorted(self._residual.items())]
        self._residual = None
        for key in [k for k, m in self._map.items() if m.action is Action.ABSENT]:
            del self._map[key]
        for member in residual:
            self._map.pop(member.member_key, None)
        return residual

    def clear(self) -> list[PresenceMessage]:
        """Remove everything; return the PRESENT members that were there."""
        members = self.values()
        self._map.clear()
        self._residual = None
        return members


class PresenceState:
    """One channel's presence set as seen by one connection: feeds frames into a `PresenceMap`
    and emits the resulting events to a `PresenceEmitter`."""

    def __init__(
        self, emitter: PresenceEmitter | None = None, clock: Callable[[], int] = _now_ms
    ) -> None:
        self.map = PresenceMap()
        self.emitter = emitter or PresenceEmitter()
        self._clock = clock
        self._sync_id: str | None = None
        self.sync_complete = False  # RTP13
        self._synced = asyncio.Event()

    @property
    def sync_in_progress(self) -> bool:
        return self.map.sync_in_progress

    async def wait_synced(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until no sync is in progress; False if it did not end."""
        if not self.map.sync_in_progress and self.sync_complete:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._synced.wait()
        except TimeoutError:
            return False
        return True

    # -- frames ------------------------------------------------------------------------------

    def on_attached(self, flags: int | None) -> None:
        """RTP1: HAS_PRESENCE means a SYNC follows; otherwise the set is empty and in sync (RTP19a)."""
        if flags and int(flags) & HAS_PRESENCE:
            self._sync_id = None
            self.map.start_sync()
            self.sync_complete = False
            self._synced.clear()
            return
        leaves = self._leaves(self.map.clear())
        self._sync_id = None
        self._mark_synced()
        self.emitter.emit_all(leaves)

    def on_detached(self) -> None:
        """RTP5a: DETACHED or FAILED clears the set without events."""
        self.map.clear()
        self._sync_id = None
        self.sync_complete = False
        self._synced.set()  # release waiters; callers re-check the channel state

    def on_presence(self, frame: dict) -> None:
        """A PRESENCE ProtocolMessage."""
        self._apply(self._items(frame))

    def on_sync(self, frame: dict) -> None:
        """A SYNC ProtocolMessage (RTP18)."""
        serial = frame.get("channelSerial")
        items = self._items(frame)
        if not serial:  # RTP18c: the whole sync is in this message
            self.map.start_sync()
            self._apply(items)
            self._end_sync()
            return
        if not isinstance(serial, str):
            raise ProtocolViolation(f"SYNC channelSerial is not a string: {serial!r}")
        sync_id, _, cursor = serial.partition(":")
        restart = self._sync_id is not None and sync_id != self._sync_id
        self._sync_id = sync_id
        self.map.start_sync(restart=restart)
        self.sync_complete = False
        self._synced.clear()
        self._apply(items)
        if not cursor:  # RTP18b
            self._end_sync()

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _items(frame: dict) -> list[PresenceMessage]:
        raw = frame.get("presence") or []
        if not isinstance(raw, list):
            raise ProtocolViolation(f"'presence' is not an array: {raw!r}")
        return [presence_from_wire(item, frame, i) for i, item in enumerate(raw)]

    def _apply(self, items: list[PresenceMessage]) -> None:
        out: list[PresenceMessage] = []
        for message in items:
            if message.action is Action.LEAVE:
                if self.map.remove(message):
                    out.append(message)
            elif message.action in (Action.ENTER, Action.UPDATE, Action.PRESENT):
                if self.map.put(message):
                    out.append(message)
            # ABSENT is never sent by a server; ignore it
        self.emitter.emit_all(out)

    def _end_sync(self) -> None:
        leaves = self._leaves(self.map.end_sync())
        self._sync_id = None
        self._mark_synced()
        self.emitter.emit_all(leaves)

    def _mark_synced(self) -> None:
        self.sync_complete = True
        self._synced.set()

    def _leaves(self, members: list[PresenceMessage]) -> list[PresenceMessage]:
        """RTP19/RTP19a: LEAVE with the member's attributes, id None and timestamp now."""
        now = self._clock()
        return [replace(m, action=Action.LEAVE, id=None, timestamp=now) for m in members]

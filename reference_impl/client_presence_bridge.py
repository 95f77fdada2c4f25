"""The presence-map interface the harness's client uses, computed by the client-side oracle.

`harness/ably_client/presence_map.py` has `PresenceState` (frames in, events out to an emitter,
`sync_complete`, an asyncio wait for the end of a sync) over its own `PresenceMap`. This module
gives the same synchronous surface on top of `ClientPresence`, so that `PresenceState` can
delegate to it and keep only what is asyncio:

    state = OracleMapState(emit=emitter.emit_all, clock=_now_ms, decode=decode_data,
                           violation=ProtocolViolation, oracle=ClientPresence)
    state.on_attached(flags); state.on_presence(frame); state.on_sync(frame); state.on_detached()
    state.values(client_id, connection_id); state.get(member_key)
    state.sync_complete; state.sync_in_progress

It imports nothing from the harness: the emitter, the data decoder and the exception raised for a
malformed frame are passed in. Events reach `emit` as `PresenceMessage`s, as the harness's
emitter expects; a LEAVE the client synthesizes (RTP19, RTP19a) is the one with `id` None.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from presence_conformance.reference_impl.client_presence import (
    ChannelState,
    ClientPresence,
    Event,
    MalformedFrame,
)
from presence_conformance.reference_impl.protocol import ProtocolAction
from presence_conformance.reference_impl.types import Action, PresenceMessage

__all__ = ["OracleMapState"]


def _now_ms() -> int:
    return int(time.time() * 1000)


class OracleMapState:
    """`PresenceState`'s synchronous part (frames, members, `sync_complete`) over the oracle.

    `violation(message)` builds the exception raised for a frame the protocol does not allow
    (the harness passes its `ProtocolViolation`); `on_*` methods raise it for a malformed
    `presence` array or item and for a `channelSerial` that is present but not a string.
    `on_detached` is RTP5a (DETACHED or FAILED: cleared silently); a channel that goes SUSPENDED
    calls `on_suspended` (RTP5f: nothing changes).

    `oracle` builds the map (called with `clock`, `decode` and the options): `ClientPresence`,
    or a subclass that breaks one rule (a mutant), which is how a broken client map is plugged
    into the harness's own client.
    """

    def __init__(
        self,
        emit: Callable[[list[PresenceMessage]], None],
        clock: Callable[[], int] = _now_ms,
        decode: Callable[[Any, str | None], tuple[Any, str | None]] | None = None,
        violation: Callable[[str], Exception] = ValueError,
        oracle: Callable[..., ClientPresence] = ClientPresence,
        **options: bool,
    ) -> None:
        self.oracle = oracle(clock=clock, decode=decode, **options)
        self._emit = emit
        self._violation = violation

    @property
    def sync_complete(self) -> bool:
        """RTP13."""
        return self.oracle.sync_complete

    @property
    def sync_in_progress(self) -> bool:
        return self.oracle.sync_in_progress

    def values(
        self, client_id: str | None = None, connection_id: str | None = None
    ) -> list[PresenceMessage]:
        """The PRESENT members, optionally filtered (RTP11c2, RTP11c3), sorted by memberKey."""
        return [
            m
            for m in self.oracle.members()
            if (client_id is None or m.client_id == client_id)
            and (connection_id is None or m.connection_id == connection_id)
        ]

    def get(self, member_key: str) -> PresenceMessage | None:
        """The map's entry for `member_key` (ABSENT during a sync included), or None."""
        return self.oracle.entry(member_key)

    def on_attached(self, flags: int | None) -> None:
        """RTP1 / RTP19a. `flags` is an integer (TR4i) or None (no `flags` field)."""
        if flags is not None and (isinstance(flags, bool) or not isinstance(flags, int)):
            raise self._violation(f"ATTACHED flags is not an integer: {flags!r}")
        self._run(lambda: self.oracle.on_attached(flags))

    def on_detached(self) -> None:
        """RTP5a: DETACHED or FAILED clear the map without events."""
        self._run(lambda: self.oracle.channel_state(ChannelState.DETACHED))

    def on_suspended(self) -> None:
        """RTP5f: SUSPENDED keeps the map."""
        self._run(lambda: self.oracle.channel_state(ChannelState.SUSPENDED))

    def on_presence(self, frame: Mapping[str, Any]) -> None:
        """A PRESENCE ProtocolMessage (RTP2)."""
        self._run(lambda: self.oracle.receive({**frame, "action": int(ProtocolAction.PRESENCE)}))

    def on_sync(self, frame: Mapping[str, Any]) -> None:
        """A SYNC ProtocolMessage (RTP18)."""
        serial = frame.get("channelSerial")
        if serial is not None and not isinstance(serial, str):
            raise self._violation(f"SYNC channelSerial is not a string: {serial!r}")
        self._run(lambda: self.oracle.receive({**frame, "action": int(ProtocolAction.SYNC)}))

    def _run(self, step: Callable[[], list[Event]]) -> None:
        try:
            events = step()
        except MalformedFrame as exc:
            raise self._violation(str(exc)) from None
        if events:
            self._emit([as_message(e) for e in events])


def as_message(event: Event) -> PresenceMessage:
    """The event as the `PresenceMessage` a listener receives (its action is the event's)."""
    if event.member.action is event.action:
        return event.member
    return event.member.with_action(Action(event.action))

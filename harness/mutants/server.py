"""Mutants of the reference *server*: `ably-wire` against an embedded server that sends one kind
of frame wrong.

Each is a `ServerMutantAdapter`: the `ably-wire` adapter whose embedded reference server passes
every frame it sends through `rewrite` (and `on_broadcast` for the frames it broadcasts) before
encoding it. Most of these bugs are ones the harness's client repairs or ignores (a member listed
twice in a SYNC, a sync cursor without its colon, a frame for a channel the connection never
attached), so only the server frame checks (`harness.checks.server_frames`) see them.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable
from typing import Any

from presence_conformance.harness.mutants.base import ServerMutantAdapter, mutant
from presence_conformance.reference_impl.protocol import HAS_PRESENCE, ProtocolAction

__all__ = ["sync_items"]

PRESENT, ENTER, LEAVE = 1, 2, 3


def sync_items(frame: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The presence items of a SYNC frame (None for any other frame)."""
    if frame.get("action") != ProtocolAction.SYNC or not isinstance(frame.get("presence"), list):
        return None
    return [item for item in frame["presence"] if isinstance(item, dict)]


@mutant("server-sync-lists-member-twice", "wire.sync-member-once")
class SyncListsMemberTwice(ServerMutantAdapter):
    """The server's SYNC lists its first member twice: the page repeats that member's item at
    its end. A client's presence map discards the copy (it is not newer), so only the frames
    show it."""

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        items = sync_items(frame)
        if not items:
            return [frame]
        out = copy.deepcopy(frame)
        out["presence"].append(copy.deepcopy(items[0]))
        return [out]


@mutant("server-sync-cursor-without-colon", "wire.sync-cursor")
class SyncCursorWithoutColon(ServerMutantAdapter):
    """The last SYNC page of a sequence has the channelSerial `<sync id>` instead of
    `<sync id>:` (no colon, so no cursor part). A client that splits at the first colon finds an
    empty cursor all the same, so only the frames show it."""

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        serial = frame.get("channelSerial")
        if frame.get("action") != ProtocolAction.SYNC or not isinstance(serial, str):
            return [frame]
        if not serial.endswith(":"):
            return [frame]
        return [{**frame, "channelSerial": serial[:-1]}]


@mutant("server-sync-enter-action", "wire.sync-present-action")
class SyncEnterAction(ServerMutantAdapter):
    """The server's SYNC items carry the action ENTER instead of PRESENT. The client emits them
    as enter events, so the event checks see it as well as the frames."""

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        if not sync_items(frame):
            return [frame]
        out = copy.deepcopy(frame)
        for item in out["presence"]:
            if isinstance(item, dict) and item.get("action") == PRESENT:
                item["action"] = ENTER
        return [out]


@mutant("server-sync-shared-id", "wire.server-ids-unique", "wire.server-id-form")
class SyncSharedId(ServerMutantAdapter):
    """Every item of a SYNC page carries the id of the page's first item, so different members'
    messages share one id. A client treats the others as synthesized (their id does not start
    with their connectionId) and compares them by timestamp, which hides it."""

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        items = sync_items(frame)
        if not items or len(items) < 2:
            return [frame]
        out = copy.deepcopy(frame)
        for item in out["presence"][1:]:
            if isinstance(item, dict):
                item["id"] = items[0].get("id")
        return [out]


@mutant("server-members-without-has-presence", "wire.attached-without-presence-empty")
class MembersWithoutHasPresence(ServerMutantAdapter):
    """ATTACHED never carries HAS_PRESENCE, though the SYNC with the channel's members follows
    at once. The client takes the channel for empty and in sync, then applies the SYNC."""

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        flags = frame.get("flags")
        if frame.get("action") != ProtocolAction.ATTACHED or not isinstance(flags, int):
            return [frame]
        return [{**frame, "flags": flags & ~HAS_PRESENCE}]


@mutant("server-has-presence-without-sync", "wire.has-presence-sync")
class HasPresenceWithoutSync(ServerMutantAdapter):
    """ATTACHED always carries HAS_PRESENCE, also on a channel without members, where no SYNC
    follows: a client waits for a sync that never comes."""

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        flags = frame.get("flags")
        if frame.get("action") != ProtocolAction.ATTACHED or not isinstance(flags, int):
            return [frame]
        return [{**frame, "flags": flags | HAS_PRESENCE}]


@mutant("server-presence-leak", "wire.server-channel-attached")
class PresenceLeak(ServerMutantAdapter):
    """The server broadcasts every PRESENCE also to the open connections that are not attached
    to its channel (a cross-channel leak). The client drops such frames and notes a protocol
    violation that, without the server frame checks, nobody reads."""

    def on_broadcast(self, frame: dict[str, Any], conns: list[Any]) -> Iterable[Any]:
        if frame.get("action") != ProtocolAction.PRESENCE or self.server is None:
            return conns
        extra = [
            c
            for c in self.server.realtime.connections.values()
            if c.state == "open" and frame.get("channel") not in c.attached and c not in conns
        ]
        return [*conns, *extra]


@mutant("server-members-to-non-subscribers", "error.capability-hides-members")
class MembersToNonSubscribers(ServerMutantAdapter):
    """The server broadcasts every PRESENCE to every connection attached to its channel, also
    to those whose capability grants presence but no subscribe there: a key that was not given
    the channel's members hears every other member's events (its ATTACHED still says no
    PRESENCE_SUBSCRIBE, and the client applies the events all the same)."""

    def on_broadcast(self, frame: dict[str, Any], conns: list[Any]) -> Iterable[Any]:
        if frame.get("action") != ProtocolAction.PRESENCE or self.server is None:
            return conns
        extra = [
            c
            for c in self.server.realtime.connections.values()
            if c.state == "open" and frame.get("channel") in c.attached and c not in conns
        ]
        return [*conns, *extra]


@mutant("server-ack-unknown-serial", "wire.server-protocol")
class AckUnknownSerial(ServerMutantAdapter):
    """After every ACK the server sends a second ACK for a msgSerial the client never used. The
    client notes the protocol violation and carries on."""

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        serial = frame.get("msgSerial")
        if frame.get("action") != ProtocolAction.ACK or not isinstance(serial, int):
            return [frame]
        return [frame, {**frame, "msgSerial": serial + 100_000, "count": 1}]


@mutant("server-string-timestamp", "wire.server-frames-valid")
class StringTimestamp(ServerMutantAdapter):
    """The server's PRESENCE frames carry their timestamp as a string of digits. Clients read
    the timestamp of each presence item instead, so only the frame's schema shows it."""

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        stamp = frame.get("timestamp")
        if frame.get("action") != ProtocolAction.PRESENCE or not isinstance(stamp, int):
            return [frame]
        return [{**frame, "timestamp": str(stamp)}]


@mutant("server-id-wrong-index", "wire.server-id-form")
class IdWrongIndex(ServerMutantAdapter):
    """The ids of published presence events name index 7 of their message instead of the item's
    own index (`connId:msgSerial:7`). The form is right and newness still works, since msgSerial
    is compared first, so only a comparison with what the publisher sent shows it."""

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        if frame.get("action") not in (ProtocolAction.PRESENCE, ProtocolAction.SYNC):
            return [frame]
        out = copy.deepcopy(frame)
        for item in out.get("presence") or ():
            item_id = item.get("id") if isinstance(item, dict) else None
            if isinstance(item_id, str) and item_id.startswith(f"{item.get('connectionId')}:"):
                head, _, _ = item_id.rpartition(":")
                item["id"] = f"{head}:7"
        return [out]


@mutant("server-synthesized-leave-published-id", "wire.synthesized-leave")
class SynthesizedLeavePublishedId(ServerMutantAdapter):
    """The leaves the server synthesizes (after a drop, a close or a detach) carry ids of the
    published form `connectionId:msgSerial:0`, with a msgSerial the member's connection never
    used, so clients compare them by msgSerial rather than by timestamp."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._serials = itertools.count(900_000)
        self._given: dict[str, str] = {}

    def rewrite(self, frame: dict[str, Any], conn: Any) -> list[dict[str, Any]]:
        if frame.get("action") != ProtocolAction.PRESENCE:
            return [frame]
        out = copy.deepcopy(frame)
        for item in out.get("presence") or ():
            item_id = item.get("id") if isinstance(item, dict) else None
            if item.get("action") == LEAVE and str(item_id).startswith("synthetic"):
                # one id per synthesized leave, whoever receives it
                given = self._given.get(str(item_id))
                if given is None:
                    given = f"{item.get('connectionId')}:{next(self._serials)}:0"
                    self._given[str(item_id)] = given
                item["id"] = given
        return [out]

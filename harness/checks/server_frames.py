"""Server frame checks: the frames a server sent to the harness's own client, judged against the
Ably realtime protocol (`docs/protocol.md`), before the client's presence map repairs them.

They apply only when the adapter declares `Feature.SERVER_FRAMES` (`ably-wire`, with the
embedded server or any other): at the end of a case the runner calls
`collect_server_frames(record, adapter)`, which reads `adapter.server_frames(connection_id)` (an
`ably_client.server_log.ServerFrames`: the frames both ways and the problems the client noticed)
for every connection of the case. SDK adapters do not see server frames: nothing is collected,
nothing is judged. The log holds both directions, so "after ATTACH" is known, and the client's own
PRESENCE frames tell which msgSerial and index each of its messages had.

Rules, each bound to its requirement (a frame is numbered by its place in the log, both ways):
- `wire.server-frames-valid` (TR4, TR2): every server frame is a ProtocolMessage valid against
  `spec/schemas/wire-protocol-message.json` (MessagePack `bin` data allowed in presence items),
  and every frame the client could not decode, or got in the other format, is one too.
- `wire.server-protocol` (TR4, RTN7b): an ACK or NACK answers only msgSerials the client sent on
  that connectionId, each once per transport (judged from the frames: the client also complains
  of an answer that comes after it gave up waiting, which is late, not wrong); and the other
  problems the client noticed in the server's frames (CONNECTED without connectionId, an
  unknown action, a silent server, ...), one violation each, in the client's words.
- `wire.server-channel-attached` (RTP16b, RTP5a, docs/protocol.md §4): PRESENCE and SYNC only
  for a channel the client sent ATTACH for, and not after the DETACHED that answered its DETACH
  (how a cross-channel leak shows on the wire; the client drops such frames).
- `wire.has-presence-sync` (RTP1): an ATTACHED with HAS_PRESENCE is followed by a SYNC for that
  channel before CLOSED, judged when the client closed at least `SYNC_GRACE` s after the
  ATTACHED. A DETACHED, a channel ERROR or another ATTACHED (RTL12) in between ends the duty.
- `wire.attached-without-presence-empty` (RTP1): after an ATTACHED without HAS_PRESENCE the next
  frame of that channel is not a SYNC that lists members.
- `wire.sync-cursor` (RTP18a, RTP18b): a SYNC's channelSerial, when present, is
  `<sync sequence id>:<cursor>` with a non-empty sequence id; a sequence ends with an empty cursor
  unless a new sequence or an ATTACHED replaces it or the channel detaches (judged at CLOSED,
  like HAS_PRESENCE).
- `wire.sync-member-once` (RTP18, TP3h): a member (memberKey connectionId:clientId, after TP3d)
  is listed at most once per sync sequence (per frame for a SYNC without channelSerial).
- `wire.sync-present-action` (RTP18, TP2, seed `Presence Actions: present`): SYNC items have
  action PRESENT (1).
- `wire.server-ids-unique` (TP3a): two presence items of a channel with the same id (after
  TP3a's `<frame id>:<index>`) are the same message: same clientId, connectionId, data and
  encoding, and, unless one is a PRESENT, the same action.
- `wire.server-id-form` (RTP2b2, TR4n, TP3a): an ENTER, UPDATE or PRESENT item has an id, of the
  form `connectionId:msgSerial:index` with its own connectionId; a LEAVE whose id starts with its
  connectionId has that form too. When the publishing connection is one of the case's (its log
  complete), the msgSerial and index name a presence message it sent on that channel with that
  action (a PRESENT names an ENTER or UPDATE).
- `wire.synthesized-leave` (RTP2b1, TP3g): a LEAVE the member's connection did not publish (its id
  does not start with the connectionId, or names no LEAVE that connection sent) has an id that
  does not start with the member's connectionId, and a numeric timestamp (its own or the
  frame's), so that clients compare it by timestamp.

A case with `server:` steps (`SCRIPTED_STEPS`), which script the embedded server to send odd
frames on purpose so as to test a client, is not judged. The rules are available without a case
record too: `analyse(logs)` returns `WireFinding`s.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from presence_conformance.harness.ably_client.server_log import ServerFrames
from presence_conformance.harness.adapter import Adapter, Feature
from presence_conformance.harness.checks.base import CheckContext, check
from presence_conformance.harness.checks.wire import (
    WireFinding,
    case_connections,
    frame_schema_finding,
    shown,
)
from presence_conformance.harness.record.records import CaseRecord
from presence_conformance.harness.results import Violation

__all__ = [
    "SCRIPTED_STEPS",
    "SYNC_GRACE",
    "ServerFrames",
    "analyse",
    "collect_server_frames",
    "server_frames_of",
    "set_server_frames",
]

# ProtocolMessage actions (TR2; docs/protocol.md §3.2) and the HAS_PRESENCE flag (TR3)
ACK, NACK, CONNECTED, CLOSE, CLOSED, ERROR = 1, 2, 4, 7, 8, 9
ATTACH, ATTACHED, DETACHED, PRESENCE, SYNC = 10, 11, 13, 14, 16
HAS_PRESENCE = 1
ABSENT, PRESENT, ENTER, LEAVE, UPDATE = 0, 1, 2, 3, 4
ACTION_NAMES = {0: "ABSENT", 1: "PRESENT", 2: "ENTER", 3: "LEAVE", 4: "UPDATE"}
SYNC_GRACE = 1.0
"""Seconds a server has to send the SYNC HAS_PRESENCE promised, or to end a sync sequence,
before the client's CLOSE (RTP1: "shortly")."""

# the client's own words for problems other checks judge from the frames themselves
_NEVER_ATTACHED = "that this connection never attached"
_NOT_PENDING = "that are not pending"
_UNDECODABLE = ("undecodable frame", " frame on a format=")
_PUBLISHED_ID = re.compile(r"^(?P<conn>.+):(?P<serial>\d+):(?P<index>\d+)$")


@dataclass
class _Stored:
    logs: list[ServerFrames] = field(default_factory=list)


_LOGS: weakref.WeakKeyDictionary[CaseRecord, _Stored] = weakref.WeakKeyDictionary()


# -- collecting ---------------------------------------------------------------------------------


def collect_server_frames(record: CaseRecord, adapter: Adapter) -> list[ServerFrames]:
    """Read the server frames of every connection the case opened from an adapter with
    `Feature.SERVER_FRAMES`, keep them for the checks and return them ([] otherwise)."""
    if not adapter.supports(Feature.SERVER_FRAMES):
        return []
    logs: list[ServerFrames] = []
    for client, connection_id in case_connections(record):
        try:
            log = adapter.server_frames(connection_id)
        except NotImplementedError:
            return []
        except KeyError:
            continue
        if isinstance(log, ServerFrames):
            log.client = client
            logs.append(log)
    set_server_frames(record, logs)
    return logs


def set_server_frames(record: CaseRecord, logs: Iterable[ServerFrames]) -> None:
    """Keep `logs` as the server frames of `record` (replacing any kept before)."""
    _LOGS[record] = _Stored(list(logs))


def server_frames_of(record: CaseRecord) -> list[ServerFrames]:
    """The server frames kept for `record` ([] when none were collected)."""
    stored = _LOGS.get(record)
    return list(stored.logs) if stored is not None else []


# -- helpers ------------------------------------------------------------------------------------


def _int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _frame(value: Any) -> dict | None:
    return value if isinstance(value, dict) else None


def _items(frame: dict) -> list[tuple[int, dict]]:
    raw = frame.get("presence")
    if not isinstance(raw, list):
        return []
    return [(i, item) for i, item in enumerate(raw) if isinstance(item, dict)]


def _effective(item: dict, frame: dict, index: int) -> tuple[Any, Any, Any]:
    """(id, connectionId, timestamp) of an item, missing ones taken from its frame (TP3a/d/g)."""
    item_id = item.get("id")
    if not item_id and frame.get("id"):
        item_id = f"{frame['id']}:{index}"
    connection_id = item.get("connectionId") or frame.get("connectionId")
    timestamp = item.get("timestamp")
    if timestamp is None:
        timestamp = frame.get("timestamp")
    return item_id, connection_id, timestamp


def _action_name(action: Any) -> str:
    return ACTION_NAMES.get(action, repr(action)) if _int(action) else repr(action)


@dataclass
class _Transport:
    """One transport of a connection: from a CONNECTED (or the log's start) to the next."""

    connection_id: str | None
    start: int
    entries: list[tuple[int, str, float, dict]]


def _transports(log: ServerFrames) -> list[_Transport]:
    out: list[_Transport] = []
    current = _Transport(None if log.truncated else log.connection_id, 0, [])
    for index, (direction, at, raw) in enumerate(log.entries):
        frame = _frame(raw)
        if frame is None:
            continue
        if direction == "in" and frame.get("action") == CONNECTED:
            if current.entries:
                out.append(current)
            conn_id = frame.get("connectionId")
            current = _Transport(conn_id if isinstance(conn_id, str) else None, index, [])
        current.entries.append((index, direction, at, frame))
    if current.entries:
        out.append(current)
    return out


def _where(log: ServerFrames, index: int) -> str:
    return f"{log.label}, server frame #{index}"


# -- the rules ------------------------------------------------------------------------------------


def frames_valid_findings(log: ServerFrames) -> Iterator[WireFinding]:
    """TR4 / TR2: every server frame is a valid ProtocolMessage; undecodable ones count too."""
    for index, (direction, _, frame) in enumerate(log.entries):
        if direction != "in":
            continue
        finding = frame_schema_finding(
            "wire.server-frames-valid", log.connection_id, index, _where(log, index), frame
        )
        if finding is not None:
            yield finding
    for text in log.noticed:
        if any(marker in text for marker in _UNDECODABLE):
            yield WireFinding(
                "wire.server-frames-valid",
                log.connection_id,
                -1,
                f"{log.label}: the client could not read a server frame: {shown(text)}",
                None,
                expected="a ProtocolMessage in the connection's format",
            )


def noticed_findings(log: ServerFrames) -> Iterator[WireFinding]:
    """The client's other noticed protocol problems (the leak, undecodable frames and ACKs for
    serials not pending aside: the other rules judge those from the frames themselves)."""
    for text in log.noticed:
        if (
            _NEVER_ATTACHED in text
            or _NOT_PENDING in text
            or any(marker in text for marker in _UNDECODABLE)
        ):
            continue
        yield WireFinding(
            "wire.server-protocol",
            log.connection_id,
            -1,
            f"{log.label}: the client found a protocol violation in the server's frames: "
            f"{shown(text)}",
            None,
            expected="frames the client can act on (docs/protocol.md §2-§6)",
        )


def ack_findings(log: ServerFrames) -> Iterator[WireFinding]:
    """An ACK or NACK answers msgSerials the client sent on that connectionId, each once per
    transport. The client calls any answer it no longer waits for a violation; an answer that
    comes after the client gave up waiting (an operation timeout) is late, not wrong, so the
    frames decide. A log that lost frames is not judged."""
    if log.truncated:
        return
    sent: dict[str | None, set[int]] = {}
    for transport in _transports(log):
        mine = sent.setdefault(transport.connection_id, set())
        answered: set[int] = set()
        for index, direction, _, frame in transport.entries:
            serial, action = frame.get("msgSerial"), frame.get("action")
            if direction == "out":
                if _int(serial):
                    mine.add(serial)
                continue
            if action not in (ACK, NACK) or not _int(serial):
                continue  # not an answer, or a malformed one (the client reports it)
            count = frame.get("count", 1)
            if not _int(count) or count < 0:
                continue
            serials = range(serial, serial + count)
            unknown = [s for s in serials if s not in mine]
            again = [s for s in serials if s in answered]
            answered.update(serials)
            if not unknown and not again:
                continue
            name = "ACK" if action == ACK else "NACK"
            why = (
                f"msgSerial(s) {unknown} that the client never sent"
                if unknown
                else f"msgSerial(s) {again} answered before on this transport"
            )
            yield WireFinding(
                "wire.server-protocol",
                log.connection_id,
                index,
                f"{_where(log, index)}: {name} for {why}; an ACK or NACK settles the "
                "client's own msgSerials, msgSerial to msgSerial+count-1 (RTN7b)",
                shown(frame),
                expected="serials the client sent and that have no answer yet",
            )


def channel_attached_findings(log: ServerFrames) -> Iterator[WireFinding]:
    """PRESENCE and SYNC only for channels the client attached and has not had DETACHED for."""
    previous_id: str | None = None
    asked: set[str] = set()  # ATTACH sent, no DETACHED since
    detached: set[str] = set()
    for transport in _transports(log):
        if transport.connection_id is None or transport.connection_id != previous_id:
            asked, detached = set(), set()  # a new connectionId: nothing is attached
        previous_id = transport.connection_id
        for index, direction, _, frame in transport.entries:
            action, channel = frame.get("action"), frame.get("channel")
            if not isinstance(channel, str):
                continue
            if direction == "out":
                if action == ATTACH:
                    asked.add(channel)
                    detached.discard(channel)
                continue
            if action == DETACHED or (action == ERROR and channel):
                asked.discard(channel)
                detached.add(channel)
            elif action in (PRESENCE, SYNC) and channel not in asked:
                if log.truncated and channel not in detached:
                    continue  # its ATTACH may be among the frames the log lost
                why = (
                    "after the DETACHED for it, without a new ATTACH"
                    if channel in detached
                    else "that this connection never sent ATTACH for"
                )
                name = "PRESENCE" if action == PRESENCE else "SYNC"
                yield WireFinding(
                    "wire.server-channel-attached",
                    log.connection_id,
                    index,
                    f"{_where(log, index)}: {name} for channel {channel!r} {why}; a server "
                    "sends a channel's presence only to connections attached to it (a "
                    "cross-channel leak shows this way)",
                    shown(frame),
                    expected=f"no {name} for {channel!r}",
                )


@dataclass
class _Sequence:
    sync_id: str | None
    start: int
    at: float
    members: dict[tuple[Any, Any], int] = field(default_factory=dict)


def sync_findings(log: ServerFrames) -> Iterator[WireFinding]:
    """RTP1 and RTP18: HAS_PRESENCE followed by a SYNC, no members right after an ATTACHED
    without it, well-formed cursors, sequences that end, each member once, PRESENT items."""
    for transport in _transports(log):
        promised: dict[str, tuple[int, float]] = {}  # channel -> ATTACHED with HAS_PRESENCE
        empty: dict[str, int] = {}  # channel -> ATTACHED without HAS_PRESENCE, next frame due
        open_seq: dict[str, _Sequence] = {}
        close_at: float | None = None
        for index, direction, at, frame in transport.entries:
            action, channel = frame.get("action"), frame.get("channel")
            if direction == "out":
                if action == CLOSE:
                    close_at = at
                continue
            if action == CLOSED:
                yield from _unkept(log, promised, open_seq, close_at, index)
                promised, open_seq = {}, {}
                continue
            if not isinstance(channel, str):
                continue
            if action == ATTACHED:
                # an additional ATTACHED (RTL12) replaces what the last one promised
                flags = frame.get("flags")
                if _int(flags) and flags & HAS_PRESENCE:
                    promised[channel] = (index, at)
                    empty.pop(channel, None)
                else:
                    promised.pop(channel, None)
                    empty[channel] = index
                open_seq.pop(channel, None)
                continue
            if action in (DETACHED, ERROR):
                promised.pop(channel, None)
                empty.pop(channel, None)
                open_seq.pop(channel, None)
                continue
            if action not in (PRESENCE, SYNC):
                continue
            attached_empty = empty.pop(channel, None)
            if action != SYNC:
                continue
            promised.pop(channel, None)
            items = _items(frame)
            if attached_empty is not None and items:
                yield WireFinding(
                    "wire.attached-without-presence-empty",
                    log.connection_id,
                    index,
                    f"{_where(log, index)}: the SYNC right after the ATTACHED without "
                    f"HAS_PRESENCE (frame #{attached_empty}) lists {len(items)} member(s); "
                    "RTP1: without the flag the channel has no members present",
                    shown(frame),
                    expected="HAS_PRESENCE on the ATTACHED, or no members",
                )
            yield from _sync_frame(log, index, at, frame, channel, items, open_seq)


def _unkept(
    log: ServerFrames,
    promised: dict[str, tuple[int, float]],
    open_seq: dict[str, _Sequence],
    close_at: float | None,
    index: int,
) -> Iterator[WireFinding]:
    """The SYNCs promised and the sequences left open when the connection closed, judged only
    if the client closed `SYNC_GRACE` s or more after the ATTACHED or the sequence's last page."""
    if close_at is None:
        return
    for channel, (at_index, at) in sorted(promised.items()):
        if close_at - at < SYNC_GRACE:
            continue
        yield WireFinding(
            "wire.has-presence-sync",
            log.connection_id,
            at_index,
            f"{_where(log, at_index)}: ATTACHED for {channel!r} has HAS_PRESENCE but no SYNC "
            f"for it came in the {close_at - at:.1f} s before the client closed (CLOSED is "
            f"frame #{index}); RTP1: with the flag the server shortly performs a SYNC",
            None,
            expected=f"a SYNC for {channel!r}",
        )
    for channel, seq in sorted(open_seq.items()):
        if close_at - seq.at < SYNC_GRACE:
            continue
        yield WireFinding(
            "wire.sync-cursor",
            log.connection_id,
            seq.start,
            f"{_where(log, seq.start)}: the sync sequence {seq.sync_id!r} of {channel!r} "
            f"never ended: no SYNC with an empty cursor in the {close_at - seq.at:.1f} s "
            f"before the client closed (CLOSED is frame #{index}); RTP18b: a sequence "
            "completes when the cursor is empty",
            None,
            expected=f"'{seq.sync_id}:' (an empty cursor)",
        )


def _sync_frame(
    log: ServerFrames,
    index: int,
    at: float,
    frame: dict,
    channel: str,
    items: list[tuple[int, dict]],
    open_seq: dict[str, _Sequence],
) -> Iterator[WireFinding]:
    serial = frame.get("channelSerial")
    cursor: str | None = ""
    seq: _Sequence | None
    if serial is None:  # RTP18c: the whole sync in this frame
        seq = _Sequence(None, index, at)
    else:
        sync_id, colon, rest = serial.partition(":") if isinstance(serial, str) else ("", "", "")
        if not colon or not sync_id:
            yield WireFinding(
                "wire.sync-cursor",
                log.connection_id,
                index,
                f"{_where(log, index)}: SYNC channelSerial {serial!r} is not "
                "'<sync sequence id>:<cursor>' (RTP18a)",
                shown(frame),
                expected="'<sync sequence id>:<cursor>'",
            )
            seq = _Sequence(None, index, at)  # judged as a whole sync from here
        else:
            cursor = rest
            seq = open_seq.get(channel)
            if seq is None or seq.sync_id != sync_id:  # RTP18a: a new sequence replaces one
                seq = open_seq[channel] = _Sequence(sync_id, index, at)
            seq.at = at
    for position, item in items:
        action = item.get("action")
        if action != PRESENT:
            yield WireFinding(
                "wire.sync-present-action",
                log.connection_id,
                index,
                f"{_where(log, index)}: SYNC item presence[{position}] has action "
                f"{_action_name(action)}; a sync lists the members present, each as PRESENT",
                shown(frame),
                expected=f"presence[{position}].action 1 (PRESENT)",
            )
        _, connection_id, _ = _effective(item, frame, position)
        key = (connection_id, item.get("clientId"))
        first = seq.members.get(key)
        if first is not None:
            yield WireFinding(
                "wire.sync-member-once",
                log.connection_id,
                index,
                f"{_where(log, index)}: SYNC item presence[{position}] lists member "
                f"{connection_id}:{item.get('clientId')} again in the sync sequence "
                f"{seq.sync_id!r} (first in frame #{first}); a sync lists each member once",
                shown(frame),
                expected="each memberKey once per sync sequence",
            )
        else:
            seq.members[key] = index
    if serial is not None and not cursor and seq.sync_id is not None:
        open_seq.pop(channel, None)  # RTP18b: an empty cursor ends the sequence


def _published(logs: Iterable[ServerFrames]) -> dict[str, dict[tuple[str, int, int], Any]]:
    """connectionId -> {(channel, msgSerial, index): action} of the presence messages the case's
    clients sent, for connections whose log is complete."""
    out: dict[str, dict[tuple[str, int, int], Any]] = {}
    for log in logs:
        if log.truncated:
            continue
        for transport in _transports(log):
            if transport.connection_id is None:
                continue
            sent = out.setdefault(transport.connection_id, {})
            for _, direction, _, frame in transport.entries:
                serial, channel = frame.get("msgSerial"), frame.get("channel")
                if direction != "out" or frame.get("action") != PRESENCE or not _int(serial):
                    continue
                for position, item in _items(frame):
                    sent[(str(channel), serial, position)] = item.get("action")
    return out


def _content(item: dict, connection_id: Any) -> tuple[Any, ...]:
    return (
        item.get("clientId"),
        connection_id,
        item.get("data"),
        item.get("encoding"),
    )


def id_findings(
    log: ServerFrames, published: dict[str, dict[tuple[str, int, int], Any]]
) -> Iterator[WireFinding]:
    """TP3a, RTP2b2, RTP2b1: ids unique per channel, of the published form, synthesized leaves
    as RTP2b1 describes them."""
    seen: dict[tuple[str, str], tuple[int, tuple[Any, ...], Any]] = {}
    for index, (direction, _, raw) in enumerate(log.entries):
        frame = _frame(raw)
        if direction != "in" or frame is None or frame.get("action") not in (PRESENCE, SYNC):
            continue
        channel = frame.get("channel")
        if not isinstance(channel, str):
            continue
        for position, item in _items(frame):
            action = item.get("action")
            item_id, connection_id, timestamp = _effective(item, frame, position)
            name = _action_name(action)
            where = f"{_where(log, index)}: {name} item presence[{position}]"
            if isinstance(item_id, str) and item_id:
                content = _content(item, connection_id)
                earlier = seen.get((channel, item_id))
                if earlier is None:
                    seen[(channel, item_id)] = (index, content, action)
                elif earlier[1] != content or (
                    PRESENT not in (action, earlier[2]) and action != earlier[2]
                ):
                    yield WireFinding(
                        "wire.server-ids-unique",
                        log.connection_id,
                        index,
                        f"{where} has id {item_id!r}, which the different message of frame "
                        f"#{earlier[0]} on channel {channel!r} has too; TP3a: an id is unique "
                        "to its presence message",
                        shown(frame),
                        expected=f"an id no other message of {channel!r} has",
                    )
            if action not in (PRESENT, ENTER, UPDATE, LEAVE):
                continue
            yield from _form(log, index, frame, where, item, item_id, connection_id, published)
            if action == LEAVE:
                yield from _leave(
                    log, index, frame, where, item, item_id, connection_id, timestamp, published
                )


def _publisher_has(
    published: dict[str, dict[tuple[str, int, int], Any]],
    channel: str,
    connection_id: str,
    serial: int,
    position: int | None,
    action: Any,
) -> bool | None:
    """Whether the case's connection `connection_id` published a message of `action`'s kind as
    item `position` (None: any item) of msgSerial `serial` on `channel` (None: unknown
    publisher). ENTER, UPDATE and PRESENT are one kind: a server turns an update of an absent
    member into an enter and an enter of a present one into an update, and a sync lists either
    as PRESENT."""
    sent = published.get(connection_id)
    if sent is None:
        return None
    leave = action == LEAVE
    return any(
        ch == channel
        and s == serial
        and (position is None or i == position)
        and (had == LEAVE) == leave
        for (ch, s, i), had in sent.items()
    )


def _form(
    log: ServerFrames,
    index: int,
    frame: dict,
    where: str,
    item: dict,
    item_id: Any,
    connection_id: Any,
    published: dict[str, dict[tuple[str, int, int], Any]],
) -> Iterator[WireFinding]:
    action = item.get("action")
    prefix = f"{connection_id}:" if isinstance(connection_id, str) and connection_id else None
    own_form = isinstance(item_id, str) and prefix is not None and item_id.startswith(prefix)
    if action == LEAVE and not own_form:
        return  # a synthesized leave: `_leave` judges it
    match = _PUBLISHED_ID.match(item_id) if isinstance(item_id, str) else None
    if not own_form or match is None or match["conn"] != connection_id:
        yield WireFinding(
            "wire.server-id-form",
            log.connection_id,
            index,
            f"{where} has id {item_id!r} with connectionId {connection_id!r}; a published "
            "message's id is connectionId:msgSerial:index (RTP2b2), with its own connectionId",
            shown(frame),
            expected=f"{connection_id}:<msgSerial>:<index>",
        )
        return
    serial, position = int(match["serial"]), int(match["index"])
    had = _publisher_has(
        published, str(frame.get("channel")), connection_id, serial, position, action
    )
    if action == LEAVE and not _publisher_has(
        published, str(frame.get("channel")), connection_id, serial, None, LEAVE
    ):
        return  # a LEAVE its connection never sent: `_leave` judges it
    if had is False:
        yield WireFinding(
            "wire.server-id-form",
            log.connection_id,
            index,
            f"{where} has id {item_id!r}, but connection {connection_id} sent no "
            f"{'LEAVE' if action == LEAVE else 'ENTER or UPDATE'} as item {position} of "
            f"msgSerial {serial} on "
            f"{frame.get('channel')!r}; the id names the publisher's msgSerial and index (RTP2b2)",
            shown(frame),
            expected="the msgSerial and index the publisher gave the message",
        )


def _leave(
    log: ServerFrames,
    index: int,
    frame: dict,
    where: str,
    item: dict,
    item_id: Any,
    connection_id: Any,
    timestamp: Any,
    published: dict[str, dict[tuple[str, int, int], Any]],
) -> Iterator[WireFinding]:
    prefix = f"{connection_id}:" if isinstance(connection_id, str) and connection_id else None
    own_form = isinstance(item_id, str) and prefix is not None and item_id.startswith(prefix)
    if own_form:
        match = _PUBLISHED_ID.match(item_id)
        if match is None:
            return  # `_form` reported it
        had = _publisher_has(
            published, str(frame.get("channel")), connection_id, int(match["serial"]), None, LEAVE
        )
        if had is not False:
            return  # published by the member's connection (or unknown)
        yield WireFinding(
            "wire.synthesized-leave",
            log.connection_id,
            index,
            f"{where} has id {item_id!r}, but connection {connection_id} never sent that "
            "LEAVE: a leave the server synthesizes has an id that does not start with the "
            "member's connectionId (RTP2b1), or clients compare it by msgSerial",
            shown(frame),
            expected=f"an id not starting with {prefix!r}",
        )
        return
    problems = []
    if not isinstance(item_id, str) or not item_id:
        problems.append("no id")
    if not _int(timestamp) and not isinstance(timestamp, float):
        problems.append(f"timestamp {timestamp!r}")
    if problems:
        yield WireFinding(
            "wire.synthesized-leave",
            log.connection_id,
            index,
            f"{where} is a synthesized leave with {' and '.join(problems)}; RTP2b1: such a "
            "leave has an id (not starting with the connectionId) and is compared by timestamp",
            shown(frame),
            expected="an id and a numeric timestamp",
        )


def analyse(logs: Iterable[ServerFrames]) -> list[WireFinding]:
    """Every rule over every log: the findings, connection by connection."""
    logs = list(logs)
    published = _published(logs)
    found: list[WireFinding] = []
    for log in logs:
        per_log: list[WireFinding] = [
            *frames_valid_findings(log),
            *noticed_findings(log),
            *ack_findings(log),
            *channel_attached_findings(log),
            *sync_findings(log),
            *id_findings(log, published),
        ]
        found.extend(sorted(per_log, key=lambda f: f.index))
    return found


# -- the checks -------------------------------------------------------------------------------------


SCRIPTED_STEPS = frozenset({"server"})
"""Step kinds that make the server send unusual frames on purpose (`server:` steps script the
embedded server to test a client): the frames of such a case are not judged."""


def _scripted(record: CaseRecord) -> bool:
    return any(step.kind in SCRIPTED_STEPS for step in record.scenario.iter_steps())


def _findings(ctx: CheckContext) -> list[WireFinding]:
    def compute() -> list[WireFinding]:
        if _scripted(ctx.record):
            return []
        return analyse(server_frames_of(ctx.record))

    return ctx.cached("server_frames", compute)


def _violations(ctx: CheckContext, *requirements: str) -> Iterator[Violation]:
    for finding in _findings(ctx):
        if finding.requirement in requirements:
            yield ctx.violation(
                finding.requirement,
                finding.message,
                expected=finding.expected,
                observed=finding.frame,
            )


@check("wire.server-frames-valid", "wire.server-protocol")
def server_frames_valid(ctx: CheckContext) -> Iterator[Violation]:
    """Every frame a server sends is a valid ProtocolMessage the client can act on; what the
    client noticed is reported too."""
    yield from _violations(ctx, "wire.server-frames-valid", "wire.server-protocol")


@check("wire.server-channel-attached")
def server_channel_attached(ctx: CheckContext) -> Iterator[Violation]:
    """PRESENCE and SYNC only for channels the connection attached (no cross-channel leak)."""
    yield from _violations(ctx, "wire.server-channel-attached")


@check(
    "wire.has-presence-sync",
    "wire.attached-without-presence-empty",
    "wire.sync-cursor",
    "wire.sync-member-once",
    "wire.sync-present-action",
)
def server_sync(ctx: CheckContext) -> Iterator[Violation]:
    """HAS_PRESENCE and the SYNC that follows; sync cursors; each member once, as PRESENT."""
    yield from _violations(
        ctx,
        "wire.has-presence-sync",
        "wire.attached-without-presence-empty",
        "wire.sync-cursor",
        "wire.sync-member-once",
        "wire.sync-present-action",
    )


@check("wire.server-ids-unique", "wire.server-id-form", "wire.synthesized-leave")
def server_ids(ctx: CheckContext) -> Iterator[Violation]:
    """Presence ids unique per channel, of the published form; synthesized leaves as RTP2b1."""
    yield from _violations(
        ctx, "wire.server-ids-unique", "wire.server-id-form", "wire.synthesized-leave"
    )

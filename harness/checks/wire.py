"""Wire checks: the client->server frames the reference server recorded for each connection of a
case, judged against the Ably realtime protocol.

They apply only when the adapter declares `Feature.WIRE_FRAMES` (today: `ably-wire` with the
embedded reference server). At the end of a case the runner calls `collect_wire_frames(record,
adapter)`, which reads `adapter.wire_frames(connection_id)` for every connection the case opened
and keeps the logs next to the record; the checks below then judge them like any other check.
With no frames collected they find nothing.

Rules, each bound to its requirement:
- `wire.enter-no-client-id`, `wire.update-no-client-id`, `wire.leave-no-client-id` (RTP8c,
  RTP9d, RTP10c): an item of a client's own PRESENCE ENTER / UPDATE / LEAVE carries no
  `clientId`, not even the connection's own (RTP8c: "must not be present"). Frames of wildcard
  (`*`) connections are enterClient-style (RTP14/RTP15) and out of scope. A null `clientId` counts
  as absent, as the schemas say.
- `wire.msg-serial-sequence` (RTN7b, RTN19a2, TR4j): per connectionId, the ACK-requiring frames
  (PRESENCE, MESSAGE, and OBJECT / ANNOTATION) carry msgSerial 0, 1, 2, ...; a frame resent
  after a resume may repeat the msgSerial of an earlier frame with the same content (RTN15c7,
  RTN19a). When the server's frame log lost its oldest frames, the first serial is not judged.
- `wire.presence-after-attach` (RTP16b, RTP5b): PRESENCE only for a channel the client sent ATTACH
  for, and not after a DETACH without a new ATTACH. The log holds only client frames, so "after
  ATTACHED was received" is judged as "after ATTACH was sent": a client that sends PRESENCE between
  its ATTACH and the ATTACHED is not caught.
- `wire.reenter-no-old-id` (RTP17g1): after a refused resume (an `interrupt` step), no
  ENTER item the client sends on its new connection carries an id of the old connection.
- `wire.json-frames-valid` (TR2, TR4): every frame is a JSON object valid against
  `spec/schemas/wire-protocol-message.json`. MessagePack frames (`format=msgpack`, decoded by the
  server that recorded them) are judged against the same schema, where a presence or message
  item's `data` may also be raw binary (a MessagePack `bin`, RSL4c1); binary anywhere else, or a
  frame that is not MessagePack, is a violation. A binary frame on a JSON connection (`$binary`)
  and a text frame on a MessagePack one (`$text`) are not judged (the server refuses them).
- `wire.msgpack-binary-data` (RSL4c1 through RTP8e, TP3f): on a MessagePack connection, binary
  data of a presence or message item goes as a MessagePack `bin`, not as a base64 string whose
  `encoding` ends in `base64` (that form is JSON's, RSL4d1).

Each violation names the connection and the frame's index in its log, and shows the frame.
The rules are also available without a case record: `analyse(logs)` returns `WireFinding`s.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from presence_conformance.harness.adapter import Adapter, Feature
from presence_conformance.harness.checks.base import CheckContext, check
from presence_conformance.harness.record.records import CaseRecord
from presence_conformance.harness.results import Violation

__all__ = [
    "ACK_REQUIRED",
    "CLIENT_ID_RULES",
    "ConnectionFrames",
    "WireFinding",
    "analyse",
    "client_id_findings",
    "collect_wire_frames",
    "frame_validity_findings",
    "msg_serial_findings",
    "msgpack_binary_findings",
    "presence_attach_findings",
    "set_wire_frames",
    "wire_frames_of",
]

HEARTBEAT, ATTACH, DETACH, PRESENCE, MESSAGE, OBJECT, ANNOTATION = 0, 10, 12, 14, 15, 19, 21
ACK_REQUIRED: dict[int, str] = {
    PRESENCE: "PRESENCE",
    MESSAGE: "MESSAGE",
    OBJECT: "OBJECT",
    ANNOTATION: "ANNOTATION",
}
"""Actions of the frames that need an ACK, so carry a msgSerial (TR4j; RTN7b)."""

CLIENT_ID_RULES: dict[int, tuple[str, str, str]] = {
    2: ("ENTER", "wire.enter-no-client-id", "RTP8c"),
    4: ("UPDATE", "wire.update-no-client-id", "RTP9d"),
    3: ("LEAVE", "wire.leave-no-client-id", "RTP10c"),
}
"""Presence item action -> (name, requirement, Ably point) of the no-clientId rule."""

SHOWN_STRING = 300
SHOWN_ITEMS = 20


@dataclass
class ConnectionFrames:
    """The client->server frames recorded for one connection, oldest first.

    `client` is the scenario's client name, `client_id` the clientId the connection was opened
    with (`*` wildcard, None anonymous). `truncated` is True when the log may have lost its
    oldest frames (the server keeps a bounded number per connection). `wire_format` is the
    format the connection spoke (`json` or `msgpack`).
    """

    connection_id: str
    client_id: str | None
    frames: list[Any]
    client: str | None = None
    truncated: bool = False
    wire_format: str = "json"  # "msgpack" when the connection asked for format=msgpack

    @property
    def label(self) -> str:
        who = f"{self.client!r}, " if self.client is not None else ""
        return f"connection {self.connection_id} ({who}clientId {self.client_id!r})"


@dataclass(frozen=True)
class WireFinding:
    """One rule broken by one frame: the requirement, where (connection, frame index), why."""

    requirement: str
    connection_id: str
    index: int
    message: str
    frame: Any
    expected: Any = None


@dataclass
class _Stored:
    logs: list[ConnectionFrames] = field(default_factory=list)


_LOGS: weakref.WeakKeyDictionary[CaseRecord, _Stored] = weakref.WeakKeyDictionary()


# -- collecting ---------------------------------------------------------------------------------


def collect_wire_frames(record: CaseRecord, adapter: Adapter) -> list[ConnectionFrames]:
    """Read the frames of every connection the case opened from an adapter that supports
    `Feature.WIRE_FRAMES` and keep them for the wire checks; return them ([] otherwise).

    Call it after the case's connections were closed, so that their CLOSE frames are in."""
    if not adapter.supports(Feature.WIRE_FRAMES):
        return []
    limit = _frame_log_limit(adapter)
    logs: list[ConnectionFrames] = []
    for client, connection_id in case_connections(record):
        try:
            frames = list(adapter.wire_frames(connection_id))
        except NotImplementedError:
            return []
        logs.append(
            ConnectionFrames(
                connection_id,
                record.client_ids.get(client),
                frames,
                client,
                truncated=limit is not None and len(frames) >= limit,
                wire_format=_wire_format(adapter),
            )
        )
    set_wire_frames(record, logs)
    return logs


def case_connections(record: CaseRecord) -> Iterator[tuple[str, str]]:
    """(client, connectionId) of every connection the case opened, each once."""
    seen: set[str] = set()
    for client, connection_ids in record.client_connections.items():
        for connection_id in connection_ids:
            if connection_id not in seen:
                seen.add(connection_id)
                yield client, connection_id


def _frame_log_limit(adapter: Adapter) -> int | None:
    """The embedded reference server's frames-per-connection bound, when the adapter has one."""
    config = getattr(getattr(adapter, "server", None), "config", None)
    limit = getattr(config, "frame_log_size", None)
    return limit if isinstance(limit, int) else None


def set_wire_frames(record: CaseRecord, logs: Iterable[ConnectionFrames]) -> None:
    """Keep `logs` as the wire frames of `record` (replacing any kept before)."""
    _LOGS[record] = _Stored(list(logs))


def wire_frames_of(record: CaseRecord) -> list[ConnectionFrames]:
    """The wire frames kept for `record` ([] when none were collected)."""
    stored = _LOGS.get(record)
    return list(stored.logs) if stored is not None else []


# -- the rules, over plain frame logs -------------------------------------------------------------


def shown(value: Any, depth: int = 0) -> Any:
    """A bounded copy of a frame for a report: long strings cut, long arrays shortened."""
    if isinstance(value, str):
        return value if len(value) <= SHOWN_STRING else value[:SHOWN_STRING] + "...(cut)"
    if isinstance(value, bytes):  # MessagePack binary
        return value if len(value) <= SHOWN_STRING else value[:SHOWN_STRING]
    if depth > 8:
        return "...(nested)"
    if isinstance(value, dict):
        return {str(k): shown(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        items = [shown(v, depth + 1) for v in value[:SHOWN_ITEMS]]
        if len(value) > SHOWN_ITEMS:
            items.append(f"...({len(value) - SHOWN_ITEMS} more)")
        return items
    return value


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_frame(frame: Any) -> bool:
    """A decoded JSON or MessagePack object (not a `$malformed` / `$binary` / `$text`
    placeholder of the server's log)."""
    return (
        isinstance(frame, dict)
        and "$malformed" not in frame
        and "$binary" not in frame
        and "$text" not in frame
    )


def _schema_view(frame: dict) -> dict:
    """`frame` as the schema sees it: the raw binary `data` of presence and message items (a
    MessagePack `bin`, RSL4c1) stands in as a string; binary anywhere else stays and is refused."""
    view = frame
    for key in ("presence", "messages"):
        items = frame.get(key)
        if not isinstance(items, list) or not any(
            isinstance(item, dict) and isinstance(item.get("data"), bytes) for item in items
        ):
            continue
        if view is frame:
            view = dict(frame)
        view[key] = [
            {**item, "data": f"<{len(item['data'])} bytes>"}
            if isinstance(item, dict) and isinstance(item.get("data"), bytes)
            else item
            for item in items
        ]
    return view


SCHEMA_EXPECTED = "a ProtocolMessage (spec/schemas/wire-protocol-message.json)"


def frame_schema_finding(
    requirement: str,
    connection_id: str,
    index: int,
    where: str,
    frame: Any,
    problem: str | None = None,
) -> WireFinding | None:
    """TR2 / TR4, for the frames a client sent (`wire.json-frames-valid`) and those a server sent
    (`wire.server-frames-valid`) alike: a finding when `frame` is not a ProtocolMessage object
    valid against the wire-protocol-message schema (binary item data allowed, `_schema_view`),
    or None. `problem`: a reason already known (an undecodable frame), reported as it is."""
    from presence_conformance import spec

    if problem is None:
        if not isinstance(frame, dict):
            problem = f"is {type(frame).__name__}, not a ProtocolMessage object"
        else:
            view = _schema_view(frame)
            if spec.validator("wire-protocol-message").is_valid(view):
                return None
            problem = "is not a valid ProtocolMessage: " + "; ".join(
                spec.validate("wire-protocol-message", view)
            )
    return WireFinding(
        requirement,
        connection_id,
        index,
        f"{where} {problem}",
        shown(frame),
        expected=SCHEMA_EXPECTED,
    )


def _action(frame: Any) -> Any:
    return frame.get("action") if _is_frame(frame) else None


def client_id_findings(log: ConnectionFrames) -> Iterator[WireFinding]:
    """RTP8c / RTP9d / RTP10c: no clientId in the items of the client's own ENTER, UPDATE and
    LEAVE. Wildcard connections (enterClient on behalf of others) are out of scope."""
    if log.client_id == "*":
        return
    for index, frame in enumerate(log.frames):
        if _action(frame) != PRESENCE or not isinstance(frame.get("presence"), list):
            continue
        for position, item in enumerate(frame["presence"]):
            if not isinstance(item, dict):
                continue
            action = item.get("action")
            rule = CLIENT_ID_RULES.get(action) if _is_int(action) else None
            if rule is None or item.get("clientId") is None:
                continue
            name, requirement, point = rule
            own = " (its own clientId)" if item["clientId"] == log.client_id else ""
            yield WireFinding(
                requirement,
                log.connection_id,
                index,
                f"{log.label}, frame #{index}: PRESENCE {name} item presence[{position}] carries "
                f"clientId {item['clientId']!r}{own}; {point}: the clientId must not be present "
                "in a client's own presence message",
                shown(frame),
                expected=f"presence[{position}] without clientId",
            )


def _same_message(a: dict, b: dict) -> bool:
    """Whether `b` resends `a`: the same action, channel and payload."""
    keys = ("action", "channel", "presence", "messages", "state", "annotations")
    return all(a.get(k) == b.get(k) for k in keys)


def msg_serial_findings(log: ConnectionFrames) -> Iterator[WireFinding]:
    """RTN7b / RTN19a2 / TR4j: msgSerial 0, 1, 2, ... over the ACK-requiring frames of one
    connectionId; a resend of an earlier frame may keep that frame's msgSerial (RTN15c7)."""
    expected: int | None = None if log.truncated else 0
    sent: dict[int, dict] = {}
    for index, frame in enumerate(log.frames):
        action = _action(frame)
        if not _is_int(action) or action not in ACK_REQUIRED:
            continue
        name = ACK_REQUIRED[action]
        serial = frame.get("msgSerial")
        where = f"{log.label}, frame #{index}"
        if not _is_int(serial) or serial < 0:
            yield WireFinding(
                "wire.msg-serial-sequence",
                log.connection_id,
                index,
                f"{where}: {name} needs an ACK but has msgSerial {serial!r}, not a "
                "non-negative integer",
                shown(frame),
                expected=expected,
            )
            continue
        if expected is None or serial == expected:
            expected = serial + 1
            sent[serial] = frame
            continue
        earlier = sent.get(serial)
        if serial < expected and earlier is not None and _same_message(earlier, frame):
            continue  # resent after a resume with its original msgSerial
        if serial < expected:
            detail = (
                "repeats the msgSerial of an earlier frame with different content"
                if earlier is not None
                else "goes back"
            )
        else:
            detail = f"skips {serial - expected} serial(s)"
        first = (
            " (the first ACK-requiring frame on a connectionId has msgSerial 0)"
            if expected == 0
            else ""
        )
        yield WireFinding(
            "wire.msg-serial-sequence",
            log.connection_id,
            index,
            f"{where}: {name} has msgSerial {serial}, expected {expected}{first}: it {detail}",
            shown(frame),
            expected=expected,
        )
        expected = max(expected, serial + 1)
        sent[serial] = frame


def presence_attach_findings(log: ConnectionFrames) -> Iterator[WireFinding]:
    """RTP16b / RTP5b: PRESENCE only for a channel the client sent ATTACH for, and not after a
    DETACH of that channel without a new ATTACH."""
    attached: set[str] = set()
    detached: set[str] = set()
    for index, frame in enumerate(log.frames):
        action = _action(frame)
        channel = frame.get("channel") if _is_frame(frame) else None
        if not isinstance(channel, str):
            continue
        if action == ATTACH:
            attached.add(channel)
            detached.discard(channel)
        elif action == DETACH:
            attached.discard(channel)
            detached.add(channel)
        elif action == PRESENCE and channel not in attached:
            why = (
                "after its DETACH, without a new ATTACH"
                if channel in detached
                else "without an ATTACH for it before"
            )
            yield WireFinding(
                "wire.presence-after-attach",
                log.connection_id,
                index,
                f"{log.label}, frame #{index}: PRESENCE for channel {channel!r} "
                f"{why}; presence is sent only once the channel is attached, "
                "operations made meanwhile are queued (RTP16b)",
                shown(frame),
                expected=f"ATTACH of {channel!r} first",
            )


def frame_validity_findings(log: ConnectionFrames) -> Iterator[WireFinding]:
    """TR2 / TR4: every frame (JSON, or MessagePack with binary item data, RSL4c1) is a
    ProtocolMessage object valid against the wire-protocol-message schema. Frames of the wrong
    type for their connection (`$binary`, `$text`) are not judged."""
    for index, frame in enumerate(log.frames):
        if isinstance(frame, dict) and ("$binary" in frame or "$text" in frame):
            continue
        problem = None
        if isinstance(frame, dict) and "$malformed" in frame:
            value = frame["$malformed"]
            if isinstance(value, bytes):
                problem = f"is not valid MessagePack: {shown(value)!r}"
            elif "$size" in frame:
                problem = f"is not valid JSON or not a JSON object: {shown(value)!r}"
            else:
                problem = f"is JSON but not an object (a ProtocolMessage): {shown(value)!r}"
        finding = frame_schema_finding(
            "wire.json-frames-valid",
            log.connection_id,
            index,
            f"{log.label}, frame #{index}",
            frame,
            problem,
        )
        if finding is not None:
            yield finding


Rule = Callable[[ConnectionFrames], Iterator[WireFinding]]
RULES: tuple[Rule, ...] = (
    client_id_findings,
    msg_serial_findings,
    presence_attach_findings,
    frame_validity_findings,
)


def analyse(logs: Iterable[ConnectionFrames]) -> list[WireFinding]:
    """Every rule over every log: the findings, connection by connection, in frame order."""
    found: list[WireFinding] = []
    for log in logs:
        per_log: list[WireFinding] = []
        for rule in RULES:
            per_log.extend(rule(log))
        found.extend(sorted(per_log, key=lambda f: f.index))
    return found


# -- the checks -------------------------------------------------------------------------------------


def _violations(ctx: CheckContext, findings: Iterable[WireFinding]) -> Iterator[Violation]:
    for finding in findings:
        yield ctx.violation(
            finding.requirement, finding.message, expected=finding.expected, observed=finding.frame
        )


@check("wire.enter-no-client-id", "wire.update-no-client-id", "wire.leave-no-client-id")
def wire_no_client_id(ctx: CheckContext) -> Iterator[Violation]:
    """A client's own PRESENCE ENTER / UPDATE / LEAVE items carry no clientId (RTP8c, RTP9d,
    RTP10c). Items naming a clientId the scenario entered, updated or left with enterClient and
    friends on that connection are exempt (RTP15a), and so are automatic re-entries: RTP17g
    publishes them with the clientId. They are
    the ENTER items of a connection that replaced one whose resume was refused, and those of a
    resumed connection sent after it attached the channel again (RTL3d)."""
    replacing = {i.new_id for i in ctx.record.interrupts if not i.resume and i.reentered}
    # a server DETACHED (the client attaches again) or ATTACHED makes the client re-enter
    # with clientId and id (RTP17i, RTP17g)
    redetached = {
        s.connection_id
        for s in ctx.record.staged.values()
        if any(c.get("do") in ("detached", "attached") for _, c, _ in s.commands)
    }
    resumed = {i.old_id for i in ctx.record.interrupts if i.resume}
    # enterClient / updateClient / leaveClient name their clientId (RTP15a) on any connection
    on_behalf: dict[str, set[str]] = {}
    for op in ctx.record.ops:
        if op.kind.endswith("_client") and op.connection_id and "client_id" in op.step.args:
            on_behalf.setdefault(op.connection_id, set()).add(op.step.args["client_id"])
    for log in wire_frames_of(ctx.record):
        findings = client_id_findings(log)
        named = on_behalf.get(log.connection_id)
        if named:
            findings = (f for f in findings if not _names_only(log.frames[f.index], named))
        if log.connection_id in replacing:
            findings = (f for f in findings if f.requirement != "wire.enter-no-client-id")
        elif log.connection_id in redetached:
            findings = (
                f
                for f in findings
                if f.requirement != "wire.enter-no-client-id"
                or not _carries_ids(log.frames[f.index])
            )
        elif log.connection_id in resumed:
            reattached = _reattach_indexes(log)
            findings = (
                f
                for f in findings
                if f.requirement != "wire.enter-no-client-id"
                or not _after_reattach(log.frames[f.index], f.index, reattached)
            )
        yield from _violations(ctx, findings)


def _carries_ids(frame: Any) -> bool:
    """True if every ENTER item of the frame carries an id: a re-entry (RTP17g)."""
    items = frame.get("presence") if isinstance(frame, dict) else None
    enters = [i for i in items or () if isinstance(i, dict) and i.get("action") == 2]
    return bool(enters) and all(i.get("id") for i in enters)


def _names_only(frame: Any, client_ids: set[str]) -> bool:
    """True if every clientId the frame's presence items carry is one of `client_ids`."""
    items = frame.get("presence") if isinstance(frame, dict) else None
    named = [i.get("clientId") for i in items or () if isinstance(i, dict) and i.get("clientId")]
    return bool(named) and all(c in client_ids for c in named)


def _reattach_indexes(log: ConnectionFrames) -> dict[str, int]:
    """Channel -> index of the first ATTACH for a channel attached before (RTL3d)."""
    attached: set[str] = set()
    out: dict[str, int] = {}
    for index, frame in enumerate(log.frames):
        if _action(frame) == ATTACH and isinstance(frame.get("channel"), str):
            if frame["channel"] in attached:
                out.setdefault(frame["channel"], index)
            attached.add(frame["channel"])
    return out


def _after_reattach(frame: Any, index: int, reattached: dict[str, int]) -> bool:
    channel = frame.get("channel") if isinstance(frame, dict) else None
    return isinstance(channel, str) and channel in reattached and index > reattached[channel]


@check("wire.msg-serial-sequence")
def wire_msg_serial(ctx: CheckContext) -> Iterator[Violation]:
    """msgSerial starts at 0 and rises by one per ACK-requiring frame on each connectionId."""
    for log in wire_frames_of(ctx.record):
        yield from _violations(ctx, msg_serial_findings(log))


@check("wire.presence-after-attach")
def wire_presence_after_attach(ctx: CheckContext) -> Iterator[Violation]:
    """PRESENCE only for channels the client attached (and did not detach since)."""
    for log in wire_frames_of(ctx.record):
        yield from _violations(ctx, presence_attach_findings(log))


@check("wire.json-frames-valid")
def wire_frames_valid(ctx: CheckContext) -> Iterator[Violation]:
    """Every frame is valid JSON or MessagePack and a valid ProtocolMessage."""
    for log in wire_frames_of(ctx.record):
        yield from _violations(ctx, frame_validity_findings(log))


@check("wire.reenter-no-old-id")
def reentry_id_omitted(ctx: CheckContext) -> Iterator[Violation]:
    """The re-entry on a new connection carries no id of the old one (RTP17g1): no ENTER item
    sent on the connection that replaced a connection whose resume was refused carries an id
    starting with the old connectionId."""
    logs = {log.connection_id: log for log in wire_frames_of(ctx.record)}
    for rec in ctx.record.interrupts:
        if rec.resume or rec.new_id is None or rec.new_id == rec.old_id:
            continue
        log = logs.get(rec.new_id)
        if log is None:
            continue
        for index, frame in enumerate(log.frames):
            if not isinstance(frame, dict) or frame.get("action") != PRESENCE:
                continue
            items = frame.get("presence")
            for position, item in enumerate(items if isinstance(items, list) else ()):
                if not isinstance(item, dict) or item.get("action") != 2:
                    continue
                item_id = item.get("id")
                if isinstance(item_id, str) and item_id.startswith(rec.old_id + ":"):
                    yield ctx.violation(
                        "wire.reenter-no-old-id",
                        f"{log.label}, frame #{index}: the ENTER item presence[{position}] sent "
                        f"on the new connection {rec.new_id!r} carries id {item_id!r} of the "
                        f"old connection {rec.old_id!r}; RTP17g1: it must have no id",
                        expected=f"presence[{position}] without id",
                        observed=shown(frame),
                        step=rec.step,
                    )


# -- binary data on a MessagePack connection (RSL4c1) -------------------------------------------------


def _wire_format(adapter: Adapter) -> str:
    """The wire format of the adapter's connections (`ably-wire`'s `protocol` option)."""
    return "msgpack" if getattr(adapter, "protocol", None) == "msgpack" else "json"


def msgpack_binary_findings(log: ConnectionFrames) -> Iterator[WireFinding]:
    """RSL4c1 (presence data "will be encoded and decoded as with normal messages", RTP8e): on a
    MessagePack connection "a binary Message payload is encoded as MessagePack binary type", so
    no base64 step is left at the end of an item's `encoding` (TP3f) over string data: that is
    the JSON form (RSL4d1). JSON connections are not judged."""
    if log.wire_format != "msgpack":
        return
    for index, frame in enumerate(log.frames):
        if _action(frame) not in (PRESENCE, MESSAGE):
            continue
        key = "presence" if frame["action"] == PRESENCE else "messages"
        items = frame.get(key)
        for position, item in enumerate(items if isinstance(items, list) else ()):
            if not isinstance(item, dict) or not isinstance(item.get("data"), str):
                continue
            encoding = item.get("encoding")
            if not isinstance(encoding, str) or encoding.split("/")[-1] != "base64":
                continue
            yield WireFinding(
                "wire.msgpack-binary-data",
                log.connection_id,
                index,
                f"{log.label}, frame #{index}: {key}[{position}] sends binary data as a base64 "
                f"string (encoding {encoding!r}) on a MessagePack connection; RSL4c1: binary "
                "data is a MessagePack bin, with no base64 step",
                shown(frame),
                expected=f"{key}[{position}].data as a MessagePack bin, encoding without "
                "a trailing 'base64'",
            )


RULES = (*RULES, msgpack_binary_findings)  # defined here, after the rules above


@check("wire.msgpack-binary-data")
def wire_msgpack_binary(ctx: CheckContext) -> Iterator[Violation]:
    """Binary data goes as a MessagePack bin on a MessagePack connection (RSL4c1, RTP8e)."""
    for log in wire_frames_of(ctx.record):
        yield from _violations(ctx, msgpack_binary_findings(log))

"""What `server:` steps record: per (client, channel) they target, the frames the server sent to
that connection and what the client under test showed after each step (events, `get`,
`sync_complete`), and the client-side oracle's replay of those frames.

`StagedRecord.replay(options)` feeds the frames to `ClientPresence`
(`reference_impl/client_presence.py`) and cuts its output at the same marks as the
observations: `Replay.segments[i]` holds the events the oracle emits for the frames of mark i,
and the members and `sync_complete` after them. The frames before `start` (sent before the
first server step: the attach and its sync) only build the oracle's map; their events are not
compared (they were delivered before the watching listener existed). The oracle decodes member
data as a conforming client does (`decode_data`, RSL6a), and `same_members` compares what a
client shows with it under the project's data equality (`data_equal`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from presence_conformance.harness.record.records import Seen, jsonable
from presence_conformance.reference_impl.client_presence import (
    ClientPresence,
    Event,
    decode_data,
)
from presence_conformance.reference_impl.types import PresenceMessage, data_equal

__all__ = [
    "ORACLE_OPTIONS",
    "Mark",
    "Replay",
    "Segment",
    "StagedRecord",
    "client_oracle",
    "same_members",
]

ORACLE_OPTIONS: tuple[dict[str, bool], ...] = (
    {"emit_leave_during_sync": True, "absent_for_unknown_leave": False},
    {"emit_leave_during_sync": False, "absent_for_unknown_leave": False},
    {"emit_leave_during_sync": True, "absent_for_unknown_leave": True},
    {"emit_leave_during_sync": False, "absent_for_unknown_leave": True},
)
"""The readings of the spec the oracle offers where it is silent (see `ClientPresence`): a
client is conforming if its behaviour matches the oracle under one of them."""


def client_oracle(options: Mapping[str, bool] | None = None) -> ClientPresence:
    """The client-side oracle as the `server:` steps and the `client.*` checks use it: member
    data decoded by its encoding as a conforming client does (RSL6a)."""
    opts = dict(options or {})
    return ClientPresence(
        emit_leave_during_sync=opts.get("emit_leave_during_sync", True),
        absent_for_unknown_leave=opts.get("absent_for_unknown_leave", False),
        decode=decode_data,
    )


def _sort_key(member: Any) -> tuple[str, str, str]:
    return (str(member.client_id), str(member.connection_id), repr(jsonable(member.data)))


def same_members(observed: Iterable[Any], expected: Iterable[Any]) -> bool:
    """The same members (clientId, connectionId) with equal data (`data_equal`: binary is not
    text, `true` is not `1`); each argument holds objects with `client_id`, `connection_id`
    and `data` (`Seen`, `PresenceMessage`)."""
    a, b = sorted(observed, key=_sort_key), sorted(expected, key=_sort_key)
    return len(a) == len(b) and all(
        (x.client_id, x.connection_id) == (y.client_id, y.connection_id)
        and data_equal(x.data, y.data)
        for x, y in zip(a, b, strict=True)
    )


@dataclass
class Mark:
    """The observation after one server step (`step` None: the end of the case)."""

    step: int | None
    requirements: tuple[str, ...]
    frames: int  # frames sent to the connection on the channel when the observation was made
    events: int  # events the watching listener had received by then
    get: list[Seen] | None  # the members get() returned (None: not read)
    get_error: Any = None
    sync_complete: Any = None  # what sync_complete() answered (None: not asked)
    history_index: int | None = None
    label: str = ""


@dataclass
class StagedRecord:
    """One (client, channel) that server steps targeted."""

    client: str
    channel: str  # logical
    wire_channel: str
    connection_id: str
    start: int = 0  # frames sent before the first server step
    frames: list[dict[str, Any]] = field(default_factory=list)
    events: list[Seen] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    commands: list[tuple[int, dict[str, Any], list[dict[str, Any]]]] = field(default_factory=list)
    # step index -> the client's own members (clientId, id, data) when the command was sent:
    # what a re-attach must re-enter (RTP17i, RTP17g)
    own: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    # the client channel's ChannelStateChanges at the end (Feature.CHANNEL_EVENTS), else None
    channel_events: list[dict[str, Any]] | None = None

    def staged_frames(self) -> list[dict[str, Any]]:
        """The frames the server steps' commands sent (deliberately unusual: a SYNC left in
        flight, ATTACHED without HAS_PRESENCE over members, ids left out); checks of the frames
        a server sends should not hold the server to account for these."""
        return [frame for _, _, frames in self.commands for frame in frames]

    def replay(self, options: Mapping[str, bool] | None = None) -> Replay:
        """The oracle fed `frames`, cut at the marks."""
        oracle = client_oracle(options)
        try:
            oracle.feed(self.frames[: self.start])
            segments: list[Segment] = []
            position = self.start
            for mark in self.marks:
                end = max(mark.frames, position)
                events = oracle.feed(self.frames[position:end])
                segments.append(
                    Segment(events, oracle.members(), oracle.sync_complete, oracle.sync_in_progress)
                )
                position = end
        except ValueError as exc:  # MalformedFrame: the server sent something unreadable
            return Replay([], str(exc))
        return Replay(segments)


@dataclass
class Segment:
    """What the oracle emits for the frames of one mark, and its state after them."""

    events: list[Event]
    members: list[PresenceMessage]
    sync_complete: bool
    sync_in_progress: bool


@dataclass
class Replay:
    """The oracle's segments, one per mark (`error`: the frames could not be read)."""

    segments: list[Segment]
    error: str | None = None

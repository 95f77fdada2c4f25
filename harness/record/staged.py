"""What `server:` steps record: per (client, channel) they target, the frames the server sent to
that connection and what the client under test showed after each step (events, `get`,
`sync_complete`), and the client-side oracle's replay of those frames.

`StagedRecord.replay(options)` feeds the frames to `ClientPresence`
(`reference_impl/client_presence.py`) and cuts its output at the same marks as the
observations: `Replay.segments[i]` holds the events the oracle emits for the frames of mark i,
and the members and `sync_complete` after them. The frames before `start` (sent before the
first server step: the attach and its sync) only build the oracle's map; their events are not
compared (they were delivered before the watching listener existed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from presence_conformance.harness.ably_client.protocol import decode_data
from presence_conformance.harness.record.records import Seen
from presence_conformance.reference_impl.client_presence import ClientPresence, Event
from presence_conformance.reference_impl.types import PresenceMessage

__all__ = ["ORACLE_OPTIONS", "Mark", "Replay", "Segment", "StagedRecord"]

ORACLE_OPTIONS: tuple[dict[str, bool], ...] = (
    {"emit_leave_during_sync": True, "absent_for_unknown_leave": False},
    {"emit_leave_during_sync": False, "absent_for_unknown_leave": False},
    {"emit_leave_during_sync": True, "absent_for_unknown_leave": True},
    {"emit_leave_during_sync": False, "absent_for_unknown_leave": True},
)
"""The readings of the spec the oracle offers where it is silent (see `ClientPresence`): a
client is conforming if its behaviour matches the oracle under one of them."""


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
        opts = dict(options or {})
        oracle = ClientPresence(
            # data decoded by its encoding, as a client does (RSL6): a member entered with a
            # JSON object travels as a JSON string with encoding "json"
            decode=decode_data,
            emit_leave_during_sync=opts.get("emit_leave_during_sync", True),
            absent_for_unknown_leave=opts.get("absent_for_unknown_leave", False),
        )
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

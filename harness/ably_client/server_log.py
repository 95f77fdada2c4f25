"""What a server sent to one of the harness's own client connections, as the server checks read it.

`RealtimeConnection` already keeps the last frames both ways (`frames`, bounded by its
`frame_log`, 2,000 by default) and the protocol problems it noticed in the server's frames
(`violations`: undecodable frames, frames of the wrong type, ACKs for serials it never sent,
channel frames for a channel it never attached, ...). `server_log(connection)` takes a copy of
both as a `ServerFrames`, the form `presence_conformance.harness.checks.server_frames` judges. An
adapter that exposes it declares `Feature.SERVER_FRAMES` (`ably-wire`).

The log holds both directions in the order the client saw them: the server's frames (`"in"`),
and the client's own (`"out"`), which the checks need to know what the client attached and which
msgSerial it gave each of its presence messages. One connection object may have had several
transports (an `interrupt`): each CONNECTED in the log starts a new one, with the connectionId it
names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from presence_conformance.harness.ably_client.connection import RealtimeConnection

__all__ = ["ServerFrames", "server_log"]

Direction = Literal["in", "out"]


@dataclass
class ServerFrames:
    """One client connection's frames both ways, oldest first, and what its client noticed.

    `entries` are (direction, seconds on the monotonic clock, frame) with direction `"in"` for a
    frame the server sent and `"out"` for one the client sent. `noticed` are the protocol
    problems the client found in the server's frames, in the client's words. `truncated` is
    True when the bounded log may have lost its oldest entries. `client` is the scenario's
    client name, `client_id` the clientId the connection was opened with.
    """

    connection_id: str
    client_id: str | None
    entries: list[tuple[Direction, float, Any]]
    noticed: list[str] = field(default_factory=list)
    truncated: bool = False
    client: str | None = None

    @property
    def label(self) -> str:
        who = f"{self.client!r}, " if self.client is not None else ""
        return f"connection {self.connection_id} ({who}clientId {self.client_id!r})"


def server_log(connection: RealtimeConnection, connection_id: str | None = None) -> ServerFrames:
    """A copy of `connection`'s frame log and noticed problems (`connection_id`: the id the log
    is filed under, by default the connection's current one)."""
    frames = connection.frames
    entries: list[tuple[Direction, float, Any]] = [
        ("in" if direction == "in" else "out", at, frame) for at, direction, frame in frames
    ]
    return ServerFrames(
        connection_id or connection.id,
        connection.client_id,
        entries,
        list(connection.violations),
        truncated=frames.maxlen is not None and len(frames) >= frames.maxlen,
    )

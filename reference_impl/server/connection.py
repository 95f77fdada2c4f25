"""`Connection`: the reference server's record of one realtime connection (one WebSocket).

One record, shared by the server's parts: the transport (`transport.py`) writes frames through
its WebSocket, queue and writer task, in the connection's wire format (`codec.py`); the frame state machine (`realtime.py`) keeps its
protocol state on it (credentials, attached and entered channels, the connection state).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web
from presence_conformance.reference_impl.server.config import Capability

# open: frames flow; closing: CLOSE received, CLOSED queued; dropped: transport lost, members
# wait out the leave grace; closed: gone.
ConnectionState = Literal["open", "closing", "dropped", "closed"]


@dataclass(eq=False)
class Connection:
    """One realtime connection (one WebSocket)."""

    id: str
    key: str  # connectionKey
    key_name: str
    client_id: str | None  # None: anonymous; "*": wildcard
    capability: Capability
    ws: web.WebSocketResponse
    # the wire format of its frames (`format` of the upgrade): JSON text or MessagePack binary
    format: Literal["json", "msgpack"] = "json"
    # Outgoing frames, encoded; None: close the WebSocket once the frames before it are out.
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    attached: set[str] = field(default_factory=set)
    entered: set[str] = field(default_factory=set)  # channels where it may have members
    state: ConnectionState = "open"
    writer: asyncio.Task[None] | None = None
    transport: asyncio.BaseTransport | None = None
    sending: bool = False  # the writer task is inside a send (a frame may not be out yet)
    # frames for a lost connection, delivered if it resumes (RTN15c6); None: too many, the
    # connection can no longer be resumed
    backlog: list[dict] | None = field(default_factory=list)
    resumable: bool = True  # False: refuse its resume (fault injection, `refuse_resume`)
    # channels whose next ENTER from this connection is NACKed (server control: a refused
    # automatic re-entry, RTP17e)
    refuse_enter: set[str] = field(default_factory=set)
    resumed: set[str] = field(default_factory=set)  # channels to attach again with RESUMED

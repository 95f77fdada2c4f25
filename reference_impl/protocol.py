"""The numbers of the Ably realtime protocol, in one table for the server and the harness's client.

ProtocolMessage actions (TR2), ProtocolMessage flags (TR3) and PresenceMessage actions on the
wire (TP2), as `docs/protocol.md` lists them. The reference server
(`presence_conformance.reference_impl.server`) and the harness's own client
(`presence_conformance.harness.ably_client`) both read them from here, so a number is written
once. Nothing here depends on the rest of the package.
"""

from __future__ import annotations

import enum

__all__ = [
    "HAS_PRESENCE",
    "MODE_FLAGS",
    "PRESENCE_SUBSCRIBE",
    "RESUMED",
    "SERVER_ONLY_ACTIONS",
    "Flag",
    "PresenceAction",
    "ProtocolAction",
]


class ProtocolAction(enum.IntEnum):
    """ProtocolMessage actions (TR2)."""

    HEARTBEAT = 0
    ACK = 1
    NACK = 2
    CONNECT = 3
    CONNECTED = 4
    DISCONNECT = 5
    DISCONNECTED = 6
    CLOSE = 7
    CLOSED = 8
    ERROR = 9
    ATTACH = 10
    ATTACHED = 11
    DETACH = 12
    DETACHED = 13
    PRESENCE = 14
    MESSAGE = 15
    SYNC = 16
    AUTH = 17
    ACTIVATE = 18
    OBJECT = 19
    OBJECT_SYNC = 20
    ANNOTATION = 21


# Actions only a server sends; a client that sends one is refused.
SERVER_ONLY_ACTIONS = frozenset(
    {
        ProtocolAction.ACK,
        ProtocolAction.NACK,
        ProtocolAction.CONNECTED,
        ProtocolAction.DISCONNECTED,
        ProtocolAction.CLOSED,
        ProtocolAction.ERROR,
        ProtocolAction.ATTACHED,
        ProtocolAction.DETACHED,
        ProtocolAction.SYNC,
    }
)


class Flag(enum.IntFlag):
    """ProtocolMessage flags (TR3): channel state bits and the channel modes."""

    HAS_PRESENCE = 1 << 0
    HAS_BACKLOG = 1 << 1
    RESUMED = 1 << 2
    TRANSIENT = 1 << 4
    ATTACH_RESUME = 1 << 5
    HAS_OBJECTS = 1 << 7
    PRESENCE = 1 << 16
    PUBLISH = 1 << 17
    SUBSCRIBE = 1 << 18
    PRESENCE_SUBSCRIBE = 1 << 19
    ANNOTATION_PUBLISH = 1 << 21
    ANNOTATION_SUBSCRIBE = 1 << 22
    OBJECT_SUBSCRIBE = 1 << 24
    OBJECT_PUBLISH = 1 << 25


# The flags as plain ints, for bit tests on received frames and for frames sent.
HAS_PRESENCE = int(Flag.HAS_PRESENCE)
RESUMED = int(Flag.RESUMED)
PRESENCE_SUBSCRIBE = int(Flag.PRESENCE_SUBSCRIBE)
# The four basic channel modes together (983040): what ATTACHED grants here.
MODE_FLAGS = int(Flag.PRESENCE | Flag.PUBLISH | Flag.SUBSCRIBE | Flag.PRESENCE_SUBSCRIBE)


class PresenceAction(enum.IntEnum):
    """PresenceMessage actions as numbered on the wire (TP2). `ABSENT` never goes on the wire
    in this subset; clients send only ENTER, LEAVE and UPDATE; servers send PRESENT in SYNC."""

    ABSENT = 0
    PRESENT = 1
    ENTER = 2
    LEAVE = 3
    UPDATE = 4

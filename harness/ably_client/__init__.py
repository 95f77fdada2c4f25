"""The harness's own small Ably-protocol client: realtime over WebSocket, REST over HTTP.

It speaks the subset of the Ably realtime protocol in `docs/protocol.md` (JSON, or MessagePack
with `wire_format="msgpack"`)
and implements client-side presence per the Ably specification (RTP2 PresenceMap and newness,
RTP18 SYNC, RTP19 residual leaves, RTP11 get, RTP6/RTP7 subscriptions). It drives an
Ably-protocol server under test; see `presence_conformance.harness.adapters.ably_wire`.
"""

from presence_conformance.harness.ably_client.connection import (
    ChannelState,
    ConnectionState,
    RealtimeChannel,
    RealtimeConnection,
    RealtimePresence,
)
from presence_conformance.harness.ably_client.emitter import PresenceEmitter
from presence_conformance.harness.ably_client.presence_map import (
    PresenceMap,
    PresenceState,
    is_newer,
    is_synthesized,
)
from presence_conformance.harness.ably_client.protocol import (
    Flag,
    OperationTimeout,
    ProtocolAction,
    ProtocolViolation,
    decode_data,
    encode_data,
    presence_from_wire,
    presence_to_wire,
)
from presence_conformance.harness.ably_client.rest import PaginatedResult, RestClient, parse_links

__all__ = [
    "ChannelState",
    "ConnectionState",
    "Flag",
    "OperationTimeout",
    "PaginatedResult",
    "PresenceEmitter",
    "PresenceMap",
    "PresenceState",
    "ProtocolAction",
    "ProtocolViolation",
    "RealtimeChannel",
    "RealtimeConnection",
    "RealtimePresence",
    "RestClient",
    "decode_data",
    "encode_data",
    "is_newer",
    "is_synthesized",
    "parse_links",
    "presence_from_wire",
    "presence_to_wire",
]

"""The harness's own small Ably-protocol client: realtime over WebSocket, REST over HTTP.

It speaks the subset of the Ably realtime protocol in `docs/protocol.md` (JSON, or MessagePack
with `wire_format="msgpack"`)
and client-side presence per the Ably specification: its presence map is the client-side oracle
(`presence_conformance.reference_impl.client_presence`: RTP2 newness, RTP18 SYNC, RTP19
residual leaves), with RTP11 get and RTP6/RTP7 subscriptions on top. It drives an
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
from presence_conformance.harness.ably_client.presence_map import PresenceOracle, PresenceState
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
    "PresenceOracle",
    "PresenceState",
    "ProtocolAction",
    "ProtocolViolation",
    "RealtimeChannel",
    "RealtimeConnection",
    "RealtimePresence",
    "RestClient",
    "decode_data",
    "encode_data",
    "parse_links",
    "presence_from_wire",
    "presence_to_wire",
]

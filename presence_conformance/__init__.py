"""presence-conformance: the conformance test harness for realtime presence.

This module is the public face for adapter authors: everything needed to put an implementation
under test through the adapter contract, importable as

    from presence_conformance import Adapter, AdapterConnection, AdapterPresence, Feature

The harness itself lives in the subpackages, each installed under this one name:

- `presence_conformance.spec`: the requirement catalogue and JSON Schemas;
- `presence_conformance.reference_impl`: the reference model, service and Ably-protocol server;
- `presence_conformance.harness`: adapters, scenarios, runner, checks, generation, reports, CLI;
- `presence_conformance.scenarios`: the packaged scenario files.

ARCHITECTURE.md in the source repository describes how they fit together.
"""

from presence_conformance.harness.adapter import (
    CHANNEL_STATES,
    Adapter,
    AdapterChannel,
    AdapterConnection,
    AdapterPresence,
    Feature,
    HistoryPage,
    Listener,
    PresenceError,
    PresenceMessage,
    UsageError,
)
from presence_conformance.reference_impl.types import Action

__all__ = [
    "CHANNEL_STATES",
    "Action",
    "Adapter",
    "AdapterChannel",
    "AdapterConnection",
    "AdapterPresence",
    "Feature",
    "HistoryPage",
    "Listener",
    "PresenceError",
    "PresenceMessage",
    "UsageError",
]

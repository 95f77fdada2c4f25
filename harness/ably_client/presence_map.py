"""The client-side presence set of one channel, computed by the client-side oracle.

The rules (RTP2 newness and the PresenceMap, RTP18 sync cursors, RTP19/RTP19a residual leaves,
RTP5a, TP3a/d/g defaults) are not implemented here: they are
`presence_conformance.reference_impl.client_presence.ClientPresence`, the same pure model the
checks compare an SDK with, reached through `OracleMapState`
(`reference_impl/client_presence_bridge.py`). What stays here is what belongs to this client:

- the data decoder (`decode_data`, RSL6) and the exception a malformed frame raises
  (`ProtocolViolation`), handed to the oracle;
- the listeners (`PresenceEmitter`, RTP6/RTP7) the oracle's events go to;
- an asyncio wait for the end of a sync (`wait_synced`, for `get` with waitForSync, RTP11c1).

`oracle` selects the map: `ClientPresence` by default, or a subclass that breaks one rule (a
mutant, `presence_conformance.harness.mutants.client_presence`) to show that a scenario catches
a client with that bug. `RealtimeConnection(presence_oracle=...)` passes it to every channel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from presence_conformance.harness.ably_client.emitter import PresenceEmitter
from presence_conformance.harness.ably_client.protocol import ProtocolViolation, decode_data
from presence_conformance.reference_impl.client_presence import ClientPresence
from presence_conformance.reference_impl.client_presence_bridge import OracleMapState

__all__ = ["PresenceOracle", "PresenceState"]

PresenceOracle = Callable[..., ClientPresence]
"""What builds a channel's map: `ClientPresence` or a subclass (called with clock, decode)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class PresenceState:
    """One channel's presence set as seen by one connection: frames go to the oracle's map
    (`map`, an `OracleMapState`), its events to a `PresenceEmitter`."""

    def __init__(
        self,
        emitter: PresenceEmitter | None = None,
        clock: Callable[[], int] = _now_ms,
        oracle: PresenceOracle = ClientPresence,
    ) -> None:
        self.emitter = emitter or PresenceEmitter()
        self.map = OracleMapState(
            emit=self.emitter.emit_all,
            clock=clock,
            decode=decode_data,
            violation=ProtocolViolation,
            oracle=oracle,
        )
        self._synced = asyncio.Event()

    @property
    def sync_complete(self) -> bool:
        """RTP13: the sync has completed (and the channel has not been cleared since)."""
        return self.map.sync_complete

    @property
    def sync_in_progress(self) -> bool:
        return self.map.sync_in_progress

    async def wait_synced(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until no sync is in progress; False if it did not end."""
        if not self.map.sync_in_progress and self.map.sync_complete:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._synced.wait()
        except TimeoutError:
            return False
        return True

    # -- frames ------------------------------------------------------------------------------

    def on_attached(self, flags: int | None) -> None:
        """RTP1: HAS_PRESENCE means a SYNC follows; otherwise the set is empty and in sync (RTP19a)."""
        self.map.on_attached(flags)
        self._track_sync()

    def on_detached(self) -> None:
        """RTP5a: DETACHED or FAILED clears the set without events."""
        self.map.on_detached()
        self._synced.set()  # release waiters; callers re-check the channel state

    def on_suspended(self) -> None:
        """RTP5f: SUSPENDED keeps the set."""
        self.map.on_suspended()
        self._synced.set()  # release waiters; callers re-check the channel state

    def on_presence(self, frame: Mapping[str, Any]) -> None:
        """A PRESENCE ProtocolMessage (RTP2)."""
        self.map.on_presence(frame)

    def on_sync(self, frame: Mapping[str, Any]) -> None:
        """A SYNC ProtocolMessage (RTP18)."""
        try:
            self.map.on_sync(frame)
        finally:
            self._track_sync()

    def _track_sync(self) -> None:
        if self.map.sync_complete and not self.map.sync_in_progress:
            self._synced.set()
        else:
            self._synced.clear()

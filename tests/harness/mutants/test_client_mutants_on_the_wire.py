"""A client-rule mutant plugged into the harness's own client shows its bug on the wire.

`ably_wire_with(mutant)` gives an `ably-wire` adapter whose client keeps each channel's presence
with the mutant instead of the oracle. Against the embedded reference server, a detach (RTP5a:
the map is cleared silently) shows `DetachedEmitsLeaves`; the same steps with the oracle emit
nothing. Scenarios that script the server catch the other mutants the same way.
"""

from __future__ import annotations

from presence_conformance.harness.adapters.ably_wire import AblyWireAdapter
from presence_conformance.harness.mutants.client_presence import (
    CLIENT_MUTANTS,
    DetachedEmitsLeaves,
    ably_wire_with,
)
from presence_conformance.reference_impl.client_presence import ClientPresence
from presence_conformance.reference_impl.types import PresenceMessage
from support import run_adapter, until


async def leaves_on_detach(adapter: AblyWireAdapter) -> list[str]:
    alice = await adapter.connect("alice")
    bob = await adapter.connect("bob")
    await bob.channel("room").presence.enter("hi")
    seen: list[PresenceMessage] = []
    await alice.channel("room").presence.subscribe(seen.append)
    await until(lambda: any(m.client_id == "bob" for m in seen), what="bob's enter at alice")
    seen.clear()
    channel = alice.realtime.channel("room")
    assert isinstance(channel.presence.state.map.oracle, adapter.presence_oracle)
    await channel.detach()
    return [f"{m.action.value}:{m.client_id}" for m in seen]


def test_the_oracle_clears_silently_on_detach() -> None:
    assert AblyWireAdapter.presence_oracle is ClientPresence
    assert run_adapter(AblyWireAdapter(), leaves_on_detach) == []


def test_a_mutant_client_map_shows_through_ably_wire() -> None:
    adapter_class = ably_wire_with(DetachedEmitsLeaves)
    assert issubclass(adapter_class, AblyWireAdapter)
    assert adapter_class.presence_oracle is DetachedEmitsLeaves
    assert run_adapter(adapter_class(), leaves_on_detach) == ["leave:bob"]


def test_every_client_mutant_builds_an_ably_wire_adapter() -> None:
    for mutant in CLIENT_MUTANTS.values():
        adapter_class = ably_wire_with(mutant)
        assert adapter_class.presence_oracle is mutant and mutant.__name__ in adapter_class.name

"""The mutants of the reference server (`harness/mutants/server.py`) are caught by the server
frame checks, and only by them where the client's presence map hides the bug; the protocol
problems the harness's client notices become violations.

Each mutant runs the scenario tagged with the server frame requirements
(`scenarios/wire/server-frames.yaml`) under `ably-wire`: its own requirements must be among the
violations, and nothing else unless `ALSO_VISIBLE` says the bug also shows to a client. The
reference server passes the same scenario, and every packaged scenario in both formats
(`tests/harness/adapters/test_ably_wire.py`), with the checks on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from presence_conformance.harness.ably_client import RealtimeConnection
from presence_conformance.harness.ably_client.server_log import server_log
from presence_conformance.harness.adapters.ably_wire import AblyWireAdapter
from presence_conformance.harness.checks.server_frames import SYNC_GRACE, analyse
from presence_conformance.harness.mutants import MUTANTS, get_mutant
from presence_conformance.harness.mutants.base import ServerMutantAdapter
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.runner import RunSettings, run_scenario
from presence_conformance.harness.scenario import load_scenario
from support import ROOT, run_adapter

SCENARIO = ROOT / "scenarios" / "wire" / "server-frames.yaml"
SETTINGS = RunSettings(op_timeout=2.0, quiet_period=0.02)
SERVER_MUTANTS = sorted(n for n in MUTANTS if issubclass(get_mutant(n), ServerMutantAdapter))

ALSO_VISIBLE = {
    # the client emits SYNC items with their own action: an enter instead of a present
    "server-sync-enter-action": {"sync.present-on-attach"},
    # the client-side check of synthesized leave ids sees the same id
    "server-synthesized-leave-published-id": {"disconnect.synthesized-leave-id"},
}
WAITS_FOREVER = {"server-has-presence-without-sync"}  # a get() waits for the promised SYNC
# mutants whose frames are well formed: a scenario of their own requirement catches them
BY_SCENARIO = {
    "server-members-to-non-subscribers": "error/presence-only-hears-own",
    # red-team mutants (harness/mutants/redteam.py)
    "server-sync-drops-page-end": "enter/client-many-members",
    "server-sync-drops-encoding": "data/late-joiner-sync",
    "server-leave-timestamp-of-enter": "disconnect/leave-after-update",
    "server-presence-after-detach": "channel/detach-clears-silently",
}


def run(adapter: Any) -> Any:
    async def body(a: Any) -> Any:
        return await run_scenario(load_scenario(SCENARIO), a, SETTINGS)

    return run_adapter(adapter, body, limit=60)


def test_there_are_server_mutants_for_every_server_frame_requirement() -> None:
    covered = {
        r
        for name in SERVER_MUTANTS
        if name not in BY_SCENARIO
        for r in get_mutant(name).requirements
    }
    assert len(SERVER_MUTANTS) >= 10
    assert covered == {
        "wire.server-frames-valid",
        "wire.server-protocol",
        "wire.server-channel-attached",
        "wire.has-presence-sync",
        "wire.attached-without-presence-empty",
        "wire.sync-cursor",
        "wire.sync-member-once",
        "wire.sync-present-action",
        "wire.server-ids-unique",
        "wire.server-id-form",
        "wire.synthesized-leave",
    }


def test_the_reference_server_passes_the_server_frame_scenario() -> None:
    for options in ({}, {"sync_page_size": "1"}, {"protocol": "msgpack"}, {"ack_first": "true"}):
        result = run(AblyWireAdapter({"leave_grace": "0.05", **options}))
        assert result.outcome is Outcome.PASS, (options, result.violations, result.error)


@pytest.mark.parametrize(
    "name", [n for n in SERVER_MUTANTS if n not in WAITS_FOREVER and n not in BY_SCENARIO]
)
def test_a_server_mutant_is_caught_by_the_server_frame_checks(name: str) -> None:
    cls = get_mutant(name)
    result = run(cls({"leave_grace": "0.05"}))
    found = {v.requirement for v in result.violations}
    assert set(cls.requirements) <= found, (result.outcome, result.violations, result.error)
    assert found <= set(cls.requirements) | ALSO_VISIBLE.get(name, set()), found


def test_has_presence_without_a_sync_is_caught() -> None:
    """The client closes well after the promised SYNC should have come."""
    adapter = get_mutant("server-has-presence-without-sync")({"leave_grace": "0.05"})

    async def body(a: Any) -> list[str]:
        conn = await RealtimeConnection.connect(a.endpoint, a.key, "alice", timeout=5)
        await conn.channel("empty-room").attach()
        await asyncio.sleep(SYNC_GRACE + 0.2)
        await conn.close()
        return [f.requirement for f in analyse([server_log(conn)])]

    assert run_adapter(adapter, body) == ["wire.has-presence-sync"]


def test_the_leak_the_client_noticed_is_a_violation() -> None:
    """A PRESENCE for a channel the connection never attached: the client notes it (and drops
    the frame); the server frame checks report it."""
    adapter = get_mutant("server-presence-leak")({"leave_grace": "0.05"})

    async def body(a: Any) -> tuple[list[str], list[str]]:
        alice = await RealtimeConnection.connect(a.endpoint, a.key, "alice", timeout=5)
        bob = await RealtimeConnection.connect(a.endpoint, a.key, "bob", timeout=5)
        await bob.channel("lobby").attach()
        await alice.channel("room").presence.enter("hi")
        await bob.ping()  # the leaked frame came before the echo
        log = server_log(bob)
        await alice.close()
        await bob.close()
        return log.noticed, [f.requirement for f in analyse([log])]

    noticed, requirements = run_adapter(adapter, body)
    assert any("never attached" in text for text in noticed)
    assert requirements == ["wire.server-channel-attached"]


@pytest.mark.parametrize("name", sorted(BY_SCENARIO))
def test_a_server_mutant_is_caught_by_the_scenario_of_its_requirement(name: str) -> None:
    """The reference server passes the scenario; the mutant's requirement is violated there (a
    SHOULD for error.capability-hides-members: the outcome is non-strict, still reported)."""
    case = load_scenario(ROOT / "scenarios" / f"{BY_SCENARIO[name]}.yaml", ROOT / "scenarios")

    def run_case_on(adapter: Any) -> Any:
        async def body(a: Any) -> Any:
            return await run_scenario(case, a, SETTINGS)

        return run_adapter(adapter, body, limit=60)

    reference = run_case_on(AblyWireAdapter({"leave_grace": "0.05"}))
    assert reference.outcome is Outcome.PASS, (reference.violations, reference.error)
    cls = get_mutant(name)
    result = run_case_on(cls({"leave_grace": "0.05"}))
    found = {v.requirement for v in result.violations}
    assert result.outcome is not Outcome.PASS
    assert set(cls.requirements) <= found, (result.outcome, result.violations, result.error)

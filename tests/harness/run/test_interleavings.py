"""Interleavings: steps issued without waiting (`wait: false`), enters and updates of one
member racing in a `concurrently` block, drops whose leaves stay pending, and reconnection of
the same clientId within the grace. A conforming implementation that applies racing operations
in an order other than the block's, or keeps a dropped member longer, is never failed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from presence_conformance.harness.adapter import PresenceError
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.mutants import get_mutant
from presence_conformance.harness.mutants.base import MutantAdapter, MutantPresence
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.harness.scenario import ScenarioError, load_scenario
from support import ROOT, make_scenario, op, run_case

INTERLEAVE = sorted((ROOT / "scenarios" / "interleave").glob("*.yaml"))
SETTINGS = RunSettings(op_timeout=5.0)


class LateEnter(MutantAdapter):
    """Not a bug: an implementation whose enter() and enterClient() reach the server a little
    after an update called together with them (the server applies the update first)."""

    class Presence(MutantPresence):
        async def enter(self, data: Any = None) -> None:
            await asyncio.sleep(0.03)
            await super().enter(data)

        async def enter_client(self, client_id: str, data: Any = None) -> None:
            await asyncio.sleep(0.03)
            await super().enter_client(client_id, data)


class LateFirstUpdate(MutantAdapter):
    """Not a bug: racing updates reach the server in reverse order of the calls."""

    calls = 0

    class Presence(MutantPresence):
        async def update(self, data: Any = None) -> None:
            type(self.adapter).calls += 1
            await asyncio.sleep(max(0.0, 0.06 - 0.02 * type(self.adapter).calls))
            await super().update(data)


class LateLeave(MutantAdapter):
    """Not a bug: an implementation whose leave() and leaveClient() reach the server a little
    after an enter or update called together with them (the server applies the leave last)."""

    class Presence(MutantPresence):
        async def leave(self, data: Any = None) -> None:
            await asyncio.sleep(0.03)
            await super().leave(data)

        async def leave_client(self, client_id: str, data: Any = None) -> None:
            await asyncio.sleep(0.03)
            await super().leave_client(client_id, data)


def _load(path: Path) -> Any:
    return load_scenario(path, root=ROOT / "scenarios")


CONFORMING: dict[str, Callable[[], Any]] = {
    "reference": ReferenceAdapter,
    "late-enter": LateEnter,
    "late-first-update": LateFirstUpdate,
    "late-leave": LateLeave,
    "no-grace": lambda: ReferenceAdapter({"leave_grace": "0"}),
    "long-grace": lambda: ReferenceAdapter({"leave_grace": "0.6"}),
    "slow-ops": lambda: ReferenceAdapter({"op_delay": "0.01"}),
}


@pytest.mark.parametrize("path", INTERLEAVE, ids=lambda p: p.stem)
@pytest.mark.parametrize("adapter", sorted(CONFORMING))
def test_interleaving_scenarios_pass_conforming_orders(path: Path, adapter: str) -> None:
    """Every order and grace the specification allows passes: the reference, racing operations
    applied in another order than the block's, no grace or a long one, slow operations."""
    result = asyncio.run(run_case(_load(path), CONFORMING[adapter](), SETTINGS))
    assert result.outcome is Outcome.PASS, [v.message for v in result.violations]


# -- the format ------------------------------------------------------------------------------------


def test_wait_false_is_kept_on_publish_and_drop_steps() -> None:
    case = make_scenario(
        [
            op("enter", "alice", wait=False),
            op("update", "alice", data="x", wait=True),
            {"drop": {"client": "alice", "wait": False}},
        ]
    )
    assert [s.args.get("wait") for s in case.steps] == [False, True, False]
    again = make_scenario(case.to_dict()["steps"])
    assert [s.args.get("wait") for s in again.steps] == [False, True, False]


@pytest.mark.parametrize("kind", ["close", "connect", "get", "subscribe"])
def test_wait_is_refused_where_it_means_nothing(kind: str) -> None:
    body: dict[str, Any] = {"client": "alice", "wait": False}
    if kind in ("get", "subscribe"):
        body["channel"] = "room"
    if kind == "subscribe":
        body["listener"] = "l"
    steps: list[dict] = [{"close": {"client": "alice"}}] if kind == "connect" else []
    with pytest.raises(ScenarioError):
        make_scenario([*steps, {kind: body}])


def test_enters_and_updates_may_race_on_one_member() -> None:
    case = make_scenario(
        [
            {
                "concurrently": [
                    op("enter", "alice", data="a"),
                    op("update", "alice", data="b"),
                    op("enter", "alice", data="c"),
                ]
            }
        ]
    )
    assert len(case.steps[0].steps) == 3


def test_a_leave_may_race_enters_and_updates_of_its_member() -> None:
    case = make_scenario(
        [
            {
                "concurrently": [
                    op("enter", "alice", data="a"),
                    op("leave", "alice"),
                    op("update", "alice", data="b"),
                ]
            }
        ]
    )
    assert [s.kind for s in case.steps[0].steps] == ["enter", "leave", "update"]


def test_a_read_may_not_race_on_one_member() -> None:
    with pytest.raises(ScenarioError) as info:
        make_scenario([{"concurrently": [op("enter", "alice"), op("get", "alice")]}])
    assert info.value.rule in ("concurrent-same-member", "concurrent-read-write")


def test_racing_is_for_concurrently_blocks_only() -> None:
    during = [op("enter", "bob"), op("update", "bob")]
    with pytest.raises(ScenarioError) as info:
        make_scenario([{"interrupt": {"client": "alice", "seconds": 0.1, "during": during}}])
    assert info.value.rule == "concurrent-same-member"


# -- no false alarm, and what is still caught -------------------------------------------------------


def test_the_applied_order_is_learnt_from_a_get_without_listeners() -> None:
    """No listener on the channel: the member's data in get() names the last one applied."""
    case = make_scenario(
        [
            {
                "concurrently": [
                    op("enter", "alice", data="entered"),
                    op("update", "alice", data="updated"),
                ]
            },
            op("get", "bob"),
        ]
    )
    for adapter in (ReferenceAdapter(), LateEnter()):
        result = asyncio.run(run_case(case, adapter, SETTINGS))
        assert result.outcome is Outcome.PASS, [v.message for v in result.violations]


def test_listeners_that_disagree_on_the_applied_order_are_caught() -> None:
    """The racing operations are applied in the calls' order, but other connections get the
    member's queued events newest first: the order learnt from a listener is not the state's."""
    overtaken = get_mutant("queued-event-overtaken")
    result = asyncio.run(
        run_case(
            _load(ROOT / "scenarios/interleave/enter-update-race.yaml"),
            overtaken(),
            SETTINGS,
        )
    )
    assert result.outcome is Outcome.FAIL
    assert {"sync.converges"} <= {v.requirement for v in result.violations}


def _arrivals_counts(adapter: Any) -> dict[str, tuple[int, int]]:
    """data of alice's events -> (min, max) deliveries required of carol's enter-only listener
    once racing-members' first block is resolved."""
    from presence_conformance.harness.run.driver import CaseDriver

    case = _load(ROOT / "scenarios/interleave/racing-members.yaml")

    async def main() -> dict[str, tuple[int, int]]:
        await adapter.start()
        try:
            driver = CaseDriver(case, adapter, SETTINGS)
            await driver.run()
            await driver.close_all()
        finally:
            await adapter.stop()
        return {
            str(e.event.data): (e.min_count, e.max_count)
            for rec in driver.record.listeners.values()
            if rec.name == "arrivals"
            for e in rec.expected
            if e.event.client_id == "alice" and e.step == 2
        }

    return asyncio.run(main())


def test_once_the_order_is_known_filtered_listeners_must_get_what_it_implies() -> None:
    """Applied enter first: the enter is an enter (an enter-only listener must get it) and the
    update an update (it must not). Applied update first: either may be reported as enter."""
    assert _arrivals_counts(ReferenceAdapter()) == {"{'v': 1}": (1, 1), "{'v': 2}": (0, 0)}
    assert _arrivals_counts(LateEnter()) == {"{'v': 1}": (0, 1), "{'v': 2}": (0, 1)}


# -- a leave in the race ---------------------------------------------------------------------------


LEAVE_RACES = [
    ROOT / "scenarios/interleave/leave-racing-update.yaml",
    ROOT / "scenarios/interleave/leave-racing-enter.yaml",
]


def _applied(result: Any) -> list[list[str]]:
    return [
        e["value"]["applied"]
        for e in result.history or ()
        if e["type"] == "info" and e["f"] == "contention"
    ]


def test_a_leave_racing_is_applied_in_the_order_the_implementation_chose() -> None:
    """The reference applies the block's order; LateLeave applies the leave last: both pass,
    and the runner learns each order."""
    case = _load(LEAVE_RACES[1])
    first = asyncio.run(run_case(case, ReferenceAdapter(), SETTINGS))
    late = asyncio.run(run_case(case, LateLeave(), SETTINGS))
    assert first.outcome is late.outcome is Outcome.PASS
    # the first block: [leave, enter]; the reference applies the leave first (a no-op)
    assert _applied(first)[0] == ["steps[2].concurrently[0]", "steps[2].concurrently[1]"]
    assert _applied(late)[0] == ["steps[2].concurrently[1]", "steps[2].concurrently[0]"]


def test_a_leave_race_without_listeners_is_learnt_from_get() -> None:
    case = make_scenario(
        [
            op("enter", "alice", data="before"),
            {
                "concurrently": [
                    op("update", "alice", data="after"),
                    op("leave", "alice"),
                ]
            },
            op("get", "bob"),
            op("history", "bob"),
        ]
    )
    for adapter in (ReferenceAdapter(), LateLeave(), LateFirstUpdate()):
        result = asyncio.run(run_case(case, adapter, SETTINGS))
        assert result.outcome is Outcome.PASS, [v.message for v in result.violations]


def test_a_leave_lost_in_the_race_is_caught_only_by_a_race() -> None:
    lost = get_mutant("leave-lost-racing-update")
    result = asyncio.run(run_case(_load(LEAVE_RACES[0]), lost(), SETTINGS))
    assert result.outcome is Outcome.FAIL
    assert "leave.event-emitted" in {v.requirement for v in result.violations}
    others = [*sorted((ROOT / "scenarios" / "leave").glob("*.yaml")), *INTERLEAVE]
    for path in others:
        if path in LEAVE_RACES:
            continue
        result = asyncio.run(run_case(_load(path), lost(), SETTINGS))
        assert result.outcome is Outcome.PASS, (path.name, [v.message for v in result.violations])


class LeaveRefusedWhileUnattached(MutantAdapter):
    """ably-js's deviation: leave() on a channel it has not attached is refused (90001)."""

    class Presence(MutantPresence):
        async def leave(self, data: Any = None) -> None:
            if not self.model.is_attached(
                self.service_connection.id, self.service_presence._channel
            ):
                raise PresenceError(
                    90001, "Unable to leave presence channel while in initialized state"
                )
            await super().leave(data)


def test_a_refused_leave_in_the_race_is_reported_alone() -> None:
    """The racing leave is refused: only that refusal is reported; the enter raced alone."""
    case = make_scenario(
        [
            op("subscribe", "bob", listener="watch"),
            {"concurrently": [op("leave", "alice"), op("enter", "alice", data="hi")]},
            op("get", "bob"),
            op("history", "bob"),
        ]
    )
    result = asyncio.run(run_case(case, LeaveRefusedWhileUnattached(), SETTINGS))
    assert {v.requirement for v in result.violations} == {"leave.when-not-present"}, [
        v.message for v in result.violations
    ]

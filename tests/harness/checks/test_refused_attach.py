"""An operation the model accepts and the implementation refuses is reported once, under its own
requirement: when the model's side of it attached the channel (a leave() on a channel never
attached, which both official SDKs refuse with 90001), the implementation's channel need not be
attached, so syncComplete is not judged on it (`sync.complete-after-attach`) until an attaching
operation of that client there succeeds."""

from __future__ import annotations

import asyncio
from typing import Any

from presence_conformance.harness.adapters.reference import (
    ReferenceAdapter,
    ReferenceConnection,
    ReferencePresence,
)
from presence_conformance.harness.results import CaseResult
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.reference_impl.errors import PresenceError
from support import make_scenario, op, run_case

SETTINGS = RunSettings(op_timeout=2.0, quiet_period=0.02)


class _LeaveNeedsAttach(ReferencePresence):
    """The reference, except that leave() on a channel never attached is refused (90001) and
    attaches nothing; with `never_synced`, syncComplete is always false."""

    never_synced = False

    async def leave(self, data: Any = None) -> None:
        conn = self.service_presence._conn
        model = self.adapter.service.model  # type: ignore[union-attr]
        if not model.is_attached(conn.id, self.channel_name):
            raise PresenceError(
                90001, "Unable to leave presence channel while in initialized state"
            )
        await super().leave(data)

    async def sync_complete(self) -> bool:
        return False if self.never_synced else await super().sync_complete()


class _NeverSynced(_LeaveNeedsAttach):
    never_synced = True


def _adapter(presence: type[ReferencePresence]) -> ReferenceAdapter:
    class Connection(ReferenceConnection):
        presence_class = presence

    class Adapter(ReferenceAdapter):
        connection_class = Connection

    return Adapter({"leave_grace": "0.05"})


def _run(presence: type[ReferencePresence], steps: list[dict]) -> CaseResult:
    case = make_scenario(steps, clients={"alice": {}}, requirements=("leave.when-not-present",))
    return asyncio.run(run_case(case, _adapter(presence), SETTINGS))


def _violated(result: CaseResult) -> set[str]:
    return {v.requirement for v in result.violations}


def test_a_refused_leave_is_reported_once_not_as_a_sync_failure() -> None:
    result = _run(_LeaveNeedsAttach, [op("leave", "alice"), op("sync_complete", "alice")])
    assert _violated(result) == {"leave.when-not-present"}


def test_the_same_without_a_sync_complete_step() -> None:
    result = _run(_LeaveNeedsAttach, [op("leave", "alice"), op("get", "alice")])
    assert _violated(result) == {"leave.when-not-present"}


def test_sync_complete_is_judged_again_after_an_attaching_operation_succeeds() -> None:
    result = _run(
        _NeverSynced,
        [
            op("leave", "alice"),
            op("sync_complete", "alice"),
            op("subscribe", "alice", listener="w"),
            op("sync_complete", "alice"),
        ],
    )
    assert "leave.when-not-present" in _violated(result)
    syncs = [v for v in result.violations if v.requirement == "sync.complete-after-attach"]
    # the reading after the subscribe (step 3) is judged; the one after the refusal (step 1) is not
    assert syncs and {v.step for v in syncs} == {3}, [(v.step, v.message) for v in syncs]

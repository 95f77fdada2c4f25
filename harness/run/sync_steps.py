"""Sync steps of the case driver: the `sync_complete` step, and the wait after a step that
attached a channel until the implementation says its presence set is synced."""

from __future__ import annotations

from typing import Any

from presence_conformance.harness.adapter import Feature
from presence_conformance.harness.record.records import OpRecord, SyncRecord, jsonable
from presence_conformance.harness.run.calls import Call, Calls
from presence_conformance.harness.run.clients import ClientState
from presence_conformance.harness.run.poll import poll_until
from presence_conformance.harness.run.state import CaseState, channel_of

__all__ = ["SyncSteps"]


class SyncSteps:
    """The `sync_complete` step and the wait for sync after an attach."""

    def __init__(self, case: CaseState, calls: Calls) -> None:
        self.case = case
        self.calls = calls

    def plan_sync_complete(self, op: OpRecord, state: ClientState) -> Call:
        channel = channel_of(op.step)
        expected = self.case.model.sync_complete(state.cid, channel)

        def done(value: Any) -> None:
            self.case.record.syncs.append(
                SyncRecord(
                    "step",
                    op.index,
                    state.spec.name,
                    channel,
                    None,
                    expected,
                    jsonable(value),
                    op.step.args.get("expect"),
                    op.done_index,
                    op.step.requirements,
                )
            )

        return self.calls.invoker(op, state, "sync_complete", lambda p: p.sync_complete(), done)

    async def wait_sync(self, op: OpRecord) -> None:
        """After `op` attached a channel: poll `sync_complete()` until true (bounded), when the
        settings ask for it and the adapter has the feature."""
        case = self.case
        if not case.settings.sync_wait or not case.adapter.supports(Feature.SYNC_COMPLETE):
            return
        state = case.client(op.step)
        channel = channel_of(op.step)
        probe = OpRecord(op.step, op.client, op.channel, op.connection_id)
        value: Any = None
        polls = 0

        async def attempt() -> bool:
            nonlocal value, polls
            polls += 1
            if polls == 1:
                value = await self.calls.call(
                    probe,
                    state,
                    "sync_complete",
                    lambda p: p.sync_complete(),
                    record=False,
                    params={},
                )
            else:
                value = await self.calls.quiet_call(
                    probe, state, "sync_complete", lambda p: p.sync_complete()
                )
            return value is True or probe.status != "ok"

        await poll_until(
            attempt,
            case.deadline(case.wait_budget),
            case.settings.poll_interval,
            case.settled,
            lambda: jsonable(value),
        )
        index = case.history.record(
            "info",
            state.spec.name,
            "sync_complete (after attach)",
            {"value": jsonable(value), "polls": polls},
            op.index,
        )
        case.record.syncs.append(
            SyncRecord(
                "wait",
                op.index,
                state.spec.name,
                channel,
                op.kind,
                True,
                jsonable(value),
                None,
                index,
            )
        )

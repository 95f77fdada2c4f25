"""The `interrupt` step of the case driver: a transient disconnect (RTN15).

The transport of one client is cut (`AdapterConnection.interrupt`), the operations of the step's
`during` list run while it is away (its own are queued by the client, RTP16, and complete once it
is back), and the client reconnects by itself after `seconds` (`reconnected`).

What the model expects:
- resumed (RTN15c6): nothing changes; the connection keeps its connectionId and every event
  sent meanwhile reaches its listeners after the resume, once;
- not resumed (RTN15c7): the old connection is dropped (its members leave after the grace,
  RTP2b1), the client's new connection (new connectionId) re-attaches and re-enters each of its
  members with the same clientId and data (RTP17i, RTP17g): others see an enter for the new
  member key, then the old member's leave. Until that leave the old members are pending leaves
  (`PresenceModel.pending_leaves`, as after a `drop` with `wait: false`): a get may show them
  beside the re-entered ones, or not; the driver settles them (`defer`, counted from the cut)
  before a step that needs them gone, or at the end of the case.

With `suspend` (needs server-control and channel-lifecycle) the server first sends the client a
CONNECTED whose connectionDetails advertise a short connectionStateTtl (RTN24, CD2f), the
transport is cut for longer than that, and the step waits until each attached channel of the
client reports SUSPENDED (RTN14e, RTL3c; `channel.suspended-with-connection`, the case stops if
it does not). The `during` steps then run one after another, the client's own judged by
`lifecycle_steps.py` against the SUSPENDED channel (RTP11d, RTP16c); the client comes back on a
fresh connection (RTN15g) and re-enters its members as after a refused resume.

A connectionId that changes on a resume, or stays on a refused one, is recorded
(`InterruptRecord`, judged by `checks/resume.py`) and stops the case: the model cannot follow.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from presence_conformance.harness.adapters.control import ControlError
from presence_conformance.harness.record.records import (
    EventOrigin,
    InterruptRecord,
    LifecycleRecord,
    OpRecord,
    Seen,
    SuspendWatch,
    jsonable,
)
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.calls import Call
from presence_conformance.harness.run.clients import ClientState
from presence_conformance.harness.run.deliveries import Deliveries
from presence_conformance.harness.run.lifecycle_steps import LifecycleSteps
from presence_conformance.harness.run.poll import poll_until
from presence_conformance.harness.run.state import CaseState
from presence_conformance.harness.run.stops import Abort, Stop
from presence_conformance.harness.scenario import Step
from presence_conformance.reference_impl.types import PresenceMessage

__all__ = ["SUSPEND_TTL_MS", "FaultSteps"]

Plan = Callable[[Step], tuple[OpRecord, Call]]
SUSPEND_TTL_MS = 1000  # the connectionStateTtl advertised before a `suspend` interrupt
_MARGIN_S = 0.5  # a suspended client surely comes back no sooner than this before it is due
# the old connection of a refused resume: its leaves are pending (step, op, client, old
# connectionId, loop time of the cut), settled by the driver (ConnectionSteps.defer)
Defer = Callable[[Step, OpRecord, ClientState, str, float], None]


class FaultSteps:
    """The `interrupt` step; `plan` and `after_ops` are the driver's (for `during`)."""

    def __init__(
        self,
        case: CaseState,
        deliveries: Deliveries,
        plan: Plan,
        after_ops: Callable[[list[OpRecord]], Awaitable[None]],
        defer: Defer,
        lifecycle: LifecycleSteps | None = None,
    ) -> None:
        self.case = case
        self.deliveries = deliveries
        self.plan = plan
        self.after_ops = after_ops
        self.lifecycle = lifecycle
        self.defer = defer

    async def step_interrupt(self, step: Step) -> None:
        case = self.case
        history, record, model = case.history, case.record, case.model
        state = case.client(step)
        name = state.spec.name
        seconds, resume = float(step.args["seconds"]), bool(step.args["resume"])
        suspend = bool(step.args.get("suspend"))
        if resume and case.leave_grace > 0:
            # a resume after the grace finds the members gone (the server may refuse it, or
            # resume without them and the client re-enters, RTP17i): another scenario. Stay
            # away for at most a third of the grace (the reconnection itself takes time too).
            seconds = min(seconds, case.leave_grace / 3)
        if state.refused is not None or state.conn is None:
            raise Stop(f"{step.label}: client {name!r} has no connection to interrupt")
        old = state.cid
        op = OpRecord(step=step, client=name, channel=None, connection_id=old)
        op.params = {"seconds": seconds, "resume": resume}
        record.ops.append(op)
        rec = InterruptRecord(name, step.index, resume, old)
        record.interrupts.append(rec)
        # the members the client must re-enter should the resume fail (RTP17)
        saved: dict[str, list[PresenceMessage]] = {}
        held: dict[str, list[PresenceMessage]] = {}  # what the client's maps hold (RTP5f)
        watches: list[SuspendWatch] = []
        if suspend:
            held = {
                channel: model.get(channel)
                for channel in case.scenario.channels
                if model.is_attached(old, channel)
            }
            watches = await self._watch(step, name, held)
            await self._short_ttl(step, name, old)
        if not resume:
            for channel in case.scenario.channels:
                if model.is_attached(old, channel):
                    saved[channel] = model.get(channel, connection_id=old)
            model.drop_connection(old)
        conn = state.conn
        cut_at = case.loop.time()
        await self._call(step, name, "interrupt", op.params, conn.interrupt(seconds, resume))
        # an implementation that notices the cut within the call started its grace timer by now
        noticed_at = case.loop.time()
        planned: list[tuple[OpRecord, Call]] = []
        queued = int(step.args.get("queued", 0))
        if suspend:
            await self._queued_fail(step, name, held, step.steps[:queued])
            suspended_at = len(history)
            for inner in step.steps[queued:]:  # one after another, while suspended
                planned.append(self.plan(inner))
                await planned[-1][1]()
            if self.lifecycle is not None:
                self.lifecycle.unsuspend(name)
            # the client comes back `seconds` after the cut: until then (with a margin) the
            # channel is still SUSPENDED; if the `during` steps took longer, only until the
            # runner saw it SUSPENDED
            still = case.loop.time() < cut_at + seconds - _MARGIN_S
            for watch in watches:
                watch.back = len(history) if still else suspended_at
            tasks: list[asyncio.Future] = []
        else:
            planned = [self.plan(inner) for inner in step.steps]
            tasks = [asyncio.ensure_future(call()) for _, call in planned]
        try:
            await self._call(
                step, name, "reconnected", None, conn.reconnected(), seconds + case.op_timeout
            )
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        new = getattr(conn, "id", None)
        rec.new_id = new if isinstance(new, str) else None
        rec.history_index = history.record(
            "info",
            name,
            "connection",
            {"connection_id": new, "was": old},
            step.index,
            bound_now=True,
        )
        mismatch = None
        if resume and new != old:
            mismatch = f"the resume was not accepted: connectionId {old!r} became {new!r}"
        elif not resume and (new == old or not isinstance(new, str) or not new):
            mismatch = f"the resume was refused but the connectionId is still {new!r}"
        if mismatch is None and not resume:
            assert isinstance(new, str)
            self._replace(step, op, rec, state.spec.capability, old, new, saved)
            state.connection_id = new
            record.client_connections.setdefault(name, []).append(new)
            case.timer_started(max(0.0, noticed_at + case.leave_grace - case.loop.time()))
            self.defer(step, op, state, old, noticed_at)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if mismatch is not None:
            raise Stop(f"{step.label}: {mismatch}")
        op.status = "ok"
        await self.after_ops([inner for inner, _ in planned])
        if not resume:  # the re-entries (the old members' leaves are pending: `defer`)
            await self.deliveries.wait(case.wait_budget)
        if watches:
            await self._settle_watches(watches, new)

    async def _short_ttl(self, step: Step, name: str, connection_id: str) -> None:
        """RTN24: a CONNECTED advertising a short connectionStateTtl (CD2f)."""
        control = getattr(self.case.adapter, "server_control", None)
        if control is None:
            raise Abort(Outcome.ERROR, f"{step.label}: the adapter has no server_control")
        command = {
            "do": "connected",
            "connection": connection_id,
            "details": {"connectionStateTtl": SUSPEND_TTL_MS},
        }
        history = self.case.history
        history.record("invoke", name, "server connected", command, step.index)
        try:
            frames = await control.run(command)
        except ControlError as exc:
            raise Abort(Outcome.ERROR, f"{step.label}: the server refused: {exc}") from None
        history.record("ok", name, "server connected", {"frames": jsonable(frames)}, step.index)
        # the client reads the frame before the cut (nothing acknowledges a CONNECTED)
        await asyncio.sleep(max(0.3, self.case.settings.poll_interval * 3))

    async def _watch(
        self, step: Step, name: str, held: dict[str, list[PresenceMessage]]
    ) -> list[SuspendWatch]:
        """Subscribe a watching listener on each channel the client has attached, before it is
        suspended: what its map emits then and after the re-attach (RTP5f, `SuspendWatch`)."""
        case = self.case
        state = case.client(step)
        assert state.conn is not None
        process = f"{name}/suspend-watch"
        watches: list[SuspendWatch] = []
        for channel, members in held.items():
            watch = SuspendWatch(name, channel, step.index, step.label, list(members), {state.cid})

            def listener(message: Any, watch: SuspendWatch = watch, channel: str = channel) -> None:
                if threading.get_ident() != case.thread:
                    case.loop.call_soon_threadsafe(listener, message)
                    return
                if not case.recording or watch.end is not None:
                    return
                index = len(case.history)
                seen = Seen.read(message, "event", index, case.current_step, channel)
                case.history.record("event", process, "event", seen.json, case.current_step)
                watch.events.append(seen)

            presence = state.conn.channel(case.record.channels[channel]).presence
            await self._call(
                step,
                process,
                "subscribe",
                {"channel": channel, "watch": True},
                presence.subscribe(listener, None),
            )
            case.record.suspends.append(watch)
            watches.append(watch)
        return watches

    async def _settle_watches(self, watches: list[SuspendWatch], new: Any) -> None:
        """The client is back: wait (bounded) until each watch saw an event for every change
        made while it was suspended, let it settle, and close the watches."""
        case, model = self.case, self.case.model
        for watch in watches:
            if isinstance(new, str):
                watch.own.add(new)
            pending = {m.member_key for m in model.pending_leaves(watch.channel)}
            watch.after = [m for m in model.get(watch.channel) if m.member_key not in pending]

        async def attempt() -> bool:
            return not any(k == "missing" for w in watches for k, *_ in w.problems())

        await poll_until(
            attempt,
            case.deadline(case.wait_budget),
            case.settings.poll_interval,
            case.settled,
            lambda: sum(len(w.events) for w in watches),
        )
        if not await case.settled():
            await asyncio.sleep(case.settings.quiet_period or case.adapter.quiet_period)
        for watch in watches:
            watch.end = len(case.history)
        case.history.record(
            "info",
            watches[0].client,
            "suspend watch",
            {w.channel: {"back": w.back, "end": w.end, "events": len(w.events)} for w in watches},
            watches[0].step,
        )

    async def _queued_fail(
        self,
        step: Step,
        name: str,
        held: dict[str, list[PresenceMessage]],
        queued: tuple[Step, ...],
    ) -> None:
        """Issue the `queued` operations at once (their channels attach behind them, RTP16b),
        wait until the client's channels are SUSPENDED, then for the operations: each must have
        failed, or fail now (RTL11), within the operation timeout from its issue."""
        if self.lifecycle is None and queued:
            raise Abort(Outcome.ERROR, f"{step.label}: queued steps need channel-lifecycle")
        calls, recs = [], []
        for inner in queued:
            assert self.lifecycle is not None
            calls.append(self.lifecycle.plan_queued(inner)[1])
            recs.append(self.case.record.lifecycle[-1])
        tasks = [asyncio.ensure_future(call()) for call in calls]
        try:
            await self._until_suspended(step, name, held)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for rec in recs:  # never SUSPENDED: RTL11 cannot be judged
                rec.observed = None
            raise
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    async def _until_suspended(
        self, step: Step, name: str, held: dict[str, list[PresenceMessage]]
    ) -> None:
        """Wait (bounded) until each channel the client had attached reports SUSPENDED."""
        case = self.case
        state = case.client(step)
        assert state.conn is not None
        deadline = case.loop.time() + SUSPEND_TTL_MS / 1000 + case.op_timeout
        for channel, members in held.items():
            rec = LifecycleRecord(
                "state",
                step.index,
                step.label,
                name,
                channel,
                "channel.suspended-with-connection",
                "suspended",
            )
            case.record.lifecycle.append(rec)
            adapter_channel = state.conn.channel(case.record.channels[channel])
            observed = None
            while True:
                try:
                    observed = str(await adapter_channel.state())
                except Exception as exc:  # the adapter broke the contract
                    raise Abort(
                        Outcome.ERROR, f"{step.label}: channel state raised {exc!r}"
                    ) from exc
                if observed == "suspended" or case.loop.time() >= deadline:
                    break
                await asyncio.sleep(case.settings.poll_interval)
            rec.observed = observed
            rec.history_index = case.history.record(
                "ok", name, "channel_state", {"channel": channel, "state": observed}, step.index
            )
            if observed != "suspended":
                raise Stop(
                    f"{step.label}: the channel {channel!r} of {name!r} is {observed!r}, not "
                    "suspended: the case cannot go on"
                )
            if self.lifecycle is not None:
                self.lifecycle.suspend(name, channel, members)

    def _replace(
        self,
        step: Step,
        op: OpRecord,
        rec: InterruptRecord,
        capability: dict[str, list[str]] | None,
        old: str,
        new: str,
        saved: dict[str, list[PresenceMessage]],
    ) -> None:
        """The model after a refused resume: a new connection re-enters the old one's members
        (the old members stay, pending leaves, until the driver settles them)."""
        record, model = self.case.record, self.case.model
        model.open_connection(model.connection_client_id(old), capability, connection_id=new)
        for channel, members in saved.items():
            self.deliveries.expect(model.attach(new, channel), step.index)
            for member in members:
                outcome = model.enter(new, channel, member.data, client_id=member.client_id)
                origin = EventOrigin("enter", step.index, channel, False, member.data is not None)
                for event in outcome.events:
                    if event.id is not None:
                        record.origins[event.id] = origin
                op.events.extend(outcome.events)
                self.deliveries.expect(outcome, step.index)
                rec.reentered.append((channel, member.client_id))

    async def _call(
        self,
        step: Step,
        process: str,
        f: str,
        params: object,
        awaitable: Awaitable[None],
        timeout: float | None = None,
    ) -> None:
        case = self.case
        timeout = case.op_timeout if timeout is None else timeout
        case.history.record("invoke", process, f, params, step.index)
        try:
            async with asyncio.timeout(timeout):
                await awaitable
        except TimeoutError:
            case.history.record("timeout", process, f, None, step.index)
            raise Abort(
                Outcome.TIMEOUT, f"{step.label}: {f} did not complete within {timeout:g}s"
            ) from None
        except Exception as exc:
            case.history.record(
                "fail", process, f, {"exception": f"{type(exc).__name__}: {exc}"}, step.index
            )
            raise Abort(
                Outcome.ERROR, f"{step.label}: {f} raised {type(exc).__name__}: {exc}"
            ) from exc
        case.history.record("ok", process, f, None, step.index)

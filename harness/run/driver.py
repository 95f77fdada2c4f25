"""Executing one scenario against one adapter, step by step, recording everything in a CaseRecord.

For each step the reference model goes first (what error, which deliveries, which members), then
the adapter call runs under the operation timeout, and its invoke / ok / fail / timeout lands in
the history. After each step the driver waits, model-driven, until every listener has received
the events the model requires of it (bounded), and after a step that attached a channel until
`sync_complete()` is true. It never judges: the checks read the record afterwards.

`CaseDriver` assembles the collaborators over one `CaseState`: `Deliveries` (what each listener
must receive, and the wait for it), `Refusals` and `Calls` (the adapter calls), and the step
families (`ConnectionSteps`, `MemberSteps`, `ListenerSteps`, `SyncSteps`, `HistorySteps`). Steps
are dispatched by kind through two tables: operations, which are planned (model first) and then
called, alone or together in a `concurrently` block; and the steps that run on their own.

Operation timeouts and adapter exceptions other than `PresenceError` stop the case by raising
`Abort`; the caller turns that into a `timeout` or `error` outcome. Once the case is judged,
`release()` breaks its reference cycles, so that it is freed as soon as it is let go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from presence_conformance.harness.adapter import Adapter
from presence_conformance.harness.record.history import History
from presence_conformance.harness.record.records import CaseRecord, OpRecord
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.calls import Call, Calls, Refusals
from presence_conformance.harness.run.client_steps import ClientSteps
from presence_conformance.harness.run.clients import ClientState
from presence_conformance.harness.run.connection_steps import ConnectionSteps
from presence_conformance.harness.run.contention import Contention, contested_steps
from presence_conformance.harness.run.deliveries import Deliveries
from presence_conformance.harness.run.fault_steps import FaultSteps
from presence_conformance.harness.run.history_steps import HistorySteps
from presence_conformance.harness.run.lifecycle_steps import LifecycleSteps
from presence_conformance.harness.run.listener_steps import ListenerSteps
from presence_conformance.harness.run.member_steps import MemberSteps
from presence_conformance.harness.run.server_steps import ServerSteps
from presence_conformance.harness.run.settings import RunSettings
from presence_conformance.harness.run.state import CaseState
from presence_conformance.harness.run.stops import Abort, Stop, adapter_raised, raised
from presence_conformance.harness.run.sync_steps import SyncSteps
from presence_conformance.harness.scenario import PUBLISH_STEPS, Scenario, Step

__all__ = ["Abort", "CaseDriver", "ClientState", "Stop"]

Plan = Callable[[OpRecord, ClientState], Call]  # model first; returns the adapter call
_ATTACHING = frozenset(
    {"enter", "update", "leave", "get", "subscribe", "attach"}
)  # attach a channel
# steps that may run while a drop's leaves are pending (`drop` with `wait: false`): they read
# the pending members as present or not (a get), or do not involve them; any other step waits
# for the leaves first (ConnectionSteps.settle_pending). Not `drop` or `close`: a listener whose
# connection goes may already have heard a pending leave that the model, settling it later,
# would no longer expect it to hear
_BESIDE_PENDING_LEAVES = frozenset({*PUBLISH_STEPS, "get", "connect", "concurrently"})


class CaseDriver:
    """Runs one scenario; `record` holds what happened."""

    def __init__(self, scenario: Scenario, adapter: Adapter, settings: RunSettings) -> None:
        self.case = case = CaseState(scenario, adapter, settings)
        self.deliveries = Deliveries(case)
        refusals = Refusals(case, self.deliveries)
        calls = Calls(case, refusals)
        self.connections = ConnectionSteps(case, calls, self.deliveries)
        self.members = MemberSteps(case, calls, self.deliveries, refusals)
        self.listeners = ListenerSteps(case, calls, self.deliveries, refusals)
        self.sync = SyncSteps(case, calls)
        self.history_steps = HistorySteps(case, calls)
        self.client_steps = ClientSteps(case, calls, self.deliveries, refusals)
        self.server = ServerSteps(case, calls)
        self.lifecycle = LifecycleSteps(case, self.deliveries, self._before_attach)
        self.faults = FaultSteps(
            case,
            self.deliveries,
            self._plan,
            self._after_ops,
            self.connections.defer,
            self.lifecycle,
        )
        self.contention = Contention(case, calls, self.deliveries)
        # operations: planned (model first), then called; alone or in a `concurrently` block
        self.plans: dict[str, Plan] = {
            "enter": self.members.plan_publish,
            "update": self.members.plan_publish,
            "leave": self.members.plan_publish,
            "get": self.members.plan_get,
            "subscribe": self.listeners.plan_subscribe,
            "unsubscribe": self.listeners.plan_unsubscribe,
            "sync_complete": self.sync.plan_sync_complete,
            "history": self.history_steps.plan_history,
            "enter_client": self.client_steps.plan_publish,
            "update_client": self.client_steps.plan_publish,
            "leave_client": self.client_steps.plan_publish,
            "rest_get": self.client_steps.plan_rest_get,
        }
        # steps that run on their own
        self.steps: dict[str, Callable[[Step], Awaitable[None]]] = {
            "connect": self._step_connect,
            "close": self.connections.step_close,
            "drop": self.connections.step_drop,
            "interrupt": self.faults.step_interrupt,
            "attach": self.lifecycle.step_attach,
            "detach": self.lifecycle.step_detach,
            "channel_state": self.lifecycle.step_channel_state,
            "expect_events": self.listeners.expect_events,
            "concurrently": self._run_block,
            "server": self.server.step_server,
        }

    @property
    def record(self) -> CaseRecord:
        return self.case.record

    @property
    def history(self) -> History:
        return self.case.history

    @property
    def settings(self) -> RunSettings:
        return self.case.settings

    # -- the case ------------------------------------------------------------------------------

    async def run(self) -> None:
        case = self.case
        for name, spec in case.scenario.clients.items():
            if spec.connect == "start":
                await self.connections.connect(case.clients[name], None)
        for step in case.scenario.steps:
            case.current_step = step.index
            await self._run_step(step)
        case.current_step = None
        await self._finish()

    async def close_all(self) -> None:
        """Close every connection still open (bounded); errors are only noted in the history."""
        case = self.case
        case.recording = False
        conns = [c for c in case.clients.values() if c.connected and c.conn is not None]
        if not conns:
            return

        async def close(state: ClientState) -> None:
            assert state.conn is not None
            try:
                async with asyncio.timeout(case.settings.close_timeout):
                    await state.conn.close()
            except BaseException as exc:  # the case is over: keep a note only
                if not adapter_raised(exc):
                    raise
                case.history.record("info", state.spec.name, "close", {"error": raised(exc)})
            state.connected = False

        await asyncio.gather(*(close(c) for c in conns))

    # -- steps ---------------------------------------------------------------------------------

    async def _run_step(self, step: Step) -> None:
        if self.connections.pending and any(
            s.kind not in _BESIDE_PENDING_LEAVES for s in (step, *step.steps)
        ):
            await self.connections.settle_pending()
        run = self.steps.get(step.kind)
        if run is not None:
            await run(step)
            return
        await self._before_attach([step])
        op, call = self._plan(step)
        await call()
        await self._after_ops([op], wait=step.args.get("wait", True))

    async def _run_block(self, block: Step) -> None:
        await self._before_attach(block.steps)
        contested = contested_steps(block.steps)
        planned = [self._plan(step, (step.sub or 0) in contested) for step in block.steps]
        self.contention.open([op for op, _ in planned])
        results = await asyncio.gather(*(call() for _, call in planned), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        ops = [op for op, _ in planned]
        await self._after_ops(ops, wait=any(s.args.get("wait", True) for s in block.steps))
        if contested:
            if not any(s.args.get("wait", True) for s in block.steps):
                await self.deliveries.wait(self.case.wait_budget)  # the order shows in them
            await self.contention.resolve(block, ops)

    async def _before_attach(self, steps: Sequence[Step]) -> None:
        """Before steps that attach a channel for a connection (implicitly): let what earlier
        steps did on that channel reach a connection already attached (`before_attach`)."""
        case = self.case
        done: set[str] = set()
        for step in steps:
            if step.kind not in _ATTACHING or step.channel is None or step.channel in done:
                continue
            state = case.client(step)
            if state.refused is not None or case.model.is_attached(state.cid, step.channel):
                continue
            done.add(step.channel)
            await self.members.before_attach(state, step.channel, step)

    async def _step_connect(self, step: Step) -> None:
        """A new connection for the client: its channels start INITIALIZED (RTL2b), whatever
        the old connection had detached or failed."""
        if step.client is not None:
            self.lifecycle.new_connection(step.client)
        await self.connections.step_connect(step)

    async def _after_ops(self, ops: list[OpRecord], wait: bool = True) -> None:
        """After operations: the sync of a channel they attached, then (unless the steps say
        `wait: false`) the deliveries the model requires so far."""
        self.lifecycle.after_ops(ops)
        for op in ops:
            if op.fresh_attach and (
                op.status == "ok" or (op.status == "fail" and op.model_error is not None)
            ):
                await self.sync.wait_sync(op)
        if wait:
            await self.deliveries.wait(self.case.wait_budget)

    def _plan(self, step: Step, contested: bool = False) -> tuple[OpRecord, Call]:
        refused = self.lifecycle.intercept(step)  # the channel's state refuses it (RTP16c)
        if refused is not None:
            return refused
        state = self.case.client(step)
        op = OpRecord(
            step=step,
            client=step.client,
            channel=step.channel,
            connection_id=state.connection_id,
            contested=contested,
        )
        self.case.record.ops.append(op)
        call = self.plans[step.kind](op, state)
        if step.expect_error is not None and op.model_error is None and step.kind != "history":
            raise Abort(
                Outcome.ERROR,
                f"{step.label}: the scenario expects an error "
                f"{list(step.expect_error)}, but the reference model accepts the operation "
                "(a mistake in the scenario)",
            )
        return op, call

    # -- the end -------------------------------------------------------------------------------

    def release(self) -> None:
        """Break the reference cycles of a case that is over and judged, so that reference
        counting frees it as soon as the caller lets the driver go, rather than the cyclic
        garbage collector (which, one case after another, found and freed every case: ~550
        objects each). The cycles: the driver's bound methods held by its dispatch table and
        its collaborators; each listener callback and its record (and the adapter's
        connection, which holds the callback); the tracebacks of the model's errors, which
        hold the frames that hold the errors. The driver is of no use afterwards."""
        self.steps.clear()
        self.plans.clear()
        del self.faults, self.lifecycle
        for state in self.case.clients.values():
            state.conn = None
        for rec in self.case.record.listeners.values():
            rec.callback = None
        for op in self.case.record.ops:
            if op.model_error is not None:
                op.model_error.__traceback__ = None

    async def _finish(self) -> None:
        case = self.case
        await self.connections.settle_pending()
        await self.deliveries.wait(case.wait_budget)
        if not await case.quiesce():
            period = (
                case.settings.quiet_period
                if case.settings.quiet_period is not None
                else case.adapter.quiet_period
            )
            await asyncio.sleep(period)
        if case.record.staged:
            await self.server.finish()
        await self.members.converge()
        case.recording = False

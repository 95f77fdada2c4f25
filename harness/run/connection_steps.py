"""Connection steps of the case driver: connect, close and drop (with the wait for a drop's
synthesized leaves: by listener where someone listens, else by watching get() from another
attached connection, else by waiting the grace period and the wait budget).

A close's leaves may come at once or, as a drop's, when the grace period ends (RTP2b1: no
sentence says a closed connection's members leave at once; `disconnect.close-leaves` is the
MUST, `disconnect.close-leaves-promptly` the SHOULD). The model removes the members at once;
the step waits for their leaves (by listener, else by watching get()) for the wait budget, and
only when they have not all come by then notes the close as late (`CloseRecord`) and waits on,
bounded by the grace, so that later steps find the members gone on either kind of server.

A drop with `wait: false` returns at once: its members stay in the model, pending leaves
(`PresenceModel.pending_leaves`: a get may show them or not), until the driver calls
`settle_pending` before a step that needs them settled, or at the end of the case; only then
does the model synthesize their leaves, and the run wait for them."""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from presence_conformance.harness.adapter import AdapterConnection, PresenceError
from presence_conformance.harness.record.records import (
    CloseRecord,
    ConnectRecord,
    DropRecord,
    EventOrigin,
    OpRecord,
    Seen,
    jsonable,
)
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.calls import Calls
from presence_conformance.harness.run.clients import ClientState
from presence_conformance.harness.run.deliveries import Deliveries
from presence_conformance.harness.run.poll import poll_until
from presence_conformance.harness.run.state import CaseState
from presence_conformance.harness.run.stops import Abort, Stop, adapter_raised, raised
from presence_conformance.harness.scenario import Step
from presence_conformance.reference_impl.model import Outcome as ModelOutcome
from presence_conformance.reference_impl.model import PresenceModel
from presence_conformance.reference_impl.types import PresenceMessage

__all__ = ["ConnectionSteps"]

# how a connection ends, by step kind
_DISCONNECT: dict[str, Callable[[AdapterConnection], Awaitable[None]]] = {
    "close": lambda conn: conn.close(),
    "drop": lambda conn: conn.drop(),
}


def _capability_for(
    capability: dict[str, list[str]] | None, prefix: str
) -> dict[str, list[str]] | None:
    """The capability with logical channel names replaced by the names used in this run."""
    if capability is None:
        return None
    return {
        pattern if pattern == "*" else prefix + pattern: list(ops)
        for pattern, ops in capability.items()
    }


def _model_refuses(client_id: str | None) -> bool:
    """True if the reference model refuses a connection for this clientId (e.g. "*")."""
    try:
        PresenceModel(lambda: 0).open_connection(client_id)
    except PresenceError:
        return True
    return False


def _where(step: Step | None, client: str) -> str:
    return step.label if step else f"connecting client {client!r}"


@dataclass
class _Pending:
    """A drop made with `wait: false` whose leaves the model has not synthesized yet."""

    step: Step
    op: OpRecord
    state: ClientState
    cid: str
    at: float  # loop time of the drop


class ConnectionSteps:
    """The `connect`, `close` and `drop` steps (and the connections made at the start)."""

    _refused_ids = itertools.count(1)  # ids of refused connections, unique in the process

    def __init__(self, case: CaseState, calls: Calls, deliveries: Deliveries) -> None:
        self.case = case
        self.calls = calls
        self.deliveries = deliveries
        # drops made with `wait: false`: their members stay in the model (pending leaves,
        # PresenceModel.pending_leaves) until `settle_pending`
        self.pending: list[_Pending] = []

    async def connect(self, state: ClientState, step: Step | None) -> None:
        """Connect a client (`step` None: at the start of the case)."""
        case = self.case
        history, record, timeout = case.history, case.record, case.op_timeout
        spec = state.spec
        capability = _capability_for(spec.capability, case.prefix)
        index = step.index if step else None
        history.record(
            "invoke",
            spec.name,
            "connect",
            {"client_id": spec.client_id, "capability": capability}
            | ({"token_client_id": spec.token_client_id} if spec.token_given else {}),
            index,
            bound_now=True,  # the adapter is handed `capability` and might change it
        )
        earlier = list(record.client_connections.get(spec.name, []))
        others = [c for n, ids in record.client_connections.items() if n != spec.name for c in ids]
        state.refused = None
        state.listeners = {}
        try:
            async with asyncio.timeout(timeout):
                if spec.token_given:
                    conn = await case.adapter.connect_with_token(
                        spec.client_id, capability, spec.token_client_id
                    )
                else:
                    conn = await case.adapter.connect(spec.client_id, capability)
        except TimeoutError:
            history.record("timeout", spec.name, "connect", None, index)
            raise Abort(
                Outcome.TIMEOUT,
                f"{_where(step, spec.name)}: connect did not complete within {timeout:g}s",
            ) from None
        except PresenceError as exc:
            hi = history.record(
                "fail",
                spec.name,
                "connect",
                {"code": jsonable(exc.code), "message": str(exc)},
                index,
            )
            state.refused = exc = exc.with_traceback(None)  # kept: without its frames (a cycle)
            state.refusal_allowed = _model_refuses(spec.client_id) or spec.claims_other_identity
            state.conn = None
            state.connection_id = f"refused-{spec.name}-{next(self._refused_ids)}"
            case.model.open_connection(
                state.model_client_id, spec.capability, connection_id=state.connection_id
            )
            state.connected = True
            record.connects.append(ConnectRecord(spec.name, index, None, earlier, others, exc, hi))
            return
        except BaseException as exc:
            if not adapter_raised(exc):
                raise
            history.record("fail", spec.name, "connect", {"exception": raised(exc)}, index)
            raise Abort(
                Outcome.ERROR, f"{_where(step, spec.name)}: connect raised {raised(exc)}"
            ) from exc
        conn_id = getattr(conn, "id", None)
        hi = history.record("ok", spec.name, "connect", {"connection_id": jsonable(conn_id)}, index)
        if not isinstance(conn_id, str) or not conn_id:
            raise Abort(
                Outcome.ERROR,
                f"{_where(step, spec.name)}: the connection has no id "
                f"(got {conn_id!r}); AdapterConnection.id must be the connectionId",
            )
        record.connects.append(ConnectRecord(spec.name, index, conn_id, earlier, others, None, hi))
        state.conn, state.connection_id, state.connected = conn, conn_id, True
        record.client_connections.setdefault(spec.name, []).append(conn_id)
        if conn_id in earlier or conn_id in others:
            state.connected = True
            raise Stop(f"connection id {conn_id!r} was given to an earlier connection")
        case.model.open_connection(state.model_client_id, spec.capability, connection_id=conn_id)

    async def step_connect(self, step: Step) -> None:
        await self.connect(self.case.client(step), step)

    async def step_close(self, step: Step) -> None:
        await self._disconnect(step, "close")

    async def step_drop(self, step: Step) -> None:
        await self._disconnect(step, "drop")

    async def _disconnect(self, step: Step, kind: str) -> None:
        case = self.case
        history, record, model, timeout = case.history, case.record, case.model, case.op_timeout
        state = case.client(step)
        cid = state.cid
        op = OpRecord(step=step, client=step.client, channel=None, connection_id=cid)
        record.ops.append(op)
        deferred = kind == "drop" and step.args.get("wait") is False
        if kind == "close":
            outcome = model.close_connection(cid)
        else:
            model.drop_connection(cid)
            outcome = ModelOutcome() if deferred else self._expire(step, op, cid)
        if kind == "close":
            self._expected(step, op, outcome)
        if state.refused is None:
            assert state.conn is not None
            history.record("invoke", state.spec.name, kind, None, step.index)
            try:
                async with asyncio.timeout(timeout):
                    await _DISCONNECT[kind](state.conn)
            except TimeoutError:
                history.record("timeout", state.spec.name, kind, None, step.index)
                raise Abort(
                    Outcome.TIMEOUT,
                    f"{step.label}: {kind} did not complete within {timeout:g}s",
                ) from None
            except BaseException as exc:
                if not adapter_raised(exc):
                    raise
                history.record(
                    "fail", state.spec.name, kind, {"exception": raised(exc)}, step.index
                )
                raise Abort(Outcome.ERROR, f"{step.label}: {kind} raised {raised(exc)}") from exc
            op.status = "ok"
            history.record("ok", state.spec.name, kind, None, step.index)
        state.connected = False
        if kind == "drop":
            case.timer_started(case.leave_grace)
            if deferred:
                self.pending.append(_Pending(step, op, state, cid, case.loop.time()))
            else:
                await self._settle_drop(step, state, cid, outcome, case.loop.time())
        else:
            await self._settle_close(step, state, cid, outcome, case.loop.time())
            await self.deliveries.wait(case.wait_budget)

    async def _settle_close(
        self, step: Step, state: ClientState, cid: str, outcome: ModelOutcome, closed_at: float
    ) -> None:
        """Wait for a close's leaves (see the module docstring): at once within the wait budget,
        else (noted as late) until the grace period has passed, plus the wait budget."""
        case = self.case
        if not outcome.events:
            return
        channels = sorted({case.record.origins[e.model_id].channel for e in outcome.events})
        pairs = {
            ((d.connection_id, d.listener), d.event.member_key)
            for d in outcome.deliveries
            if d.min_count
        }
        observed = {d.channel for d in outcome.deliveries if d.min_count}
        unobserved = [c for c in channels if c not in observed]

        def heard() -> bool:
            return not pairs & self.deliveries.unsatisfied

        async def gone(channels: list[str], deadline: float) -> list[str]:
            """The channels where an observer still shows the member at `deadline`."""
            left = []
            for channel in channels:
                observer = self._observer(channel, cid)
                if observer is None:
                    continue
                watch = functools.partial(self._member_gone, observer, channel, cid, step)
                if not await poll_until(watch, deadline, case.settings.poll_interval):
                    left.append(channel)
            return left

        # no settling on quiesce(): a server may produce a close's leaves after it answered
        at_once = await self.deliveries.wait_until(heard, case.wait_budget, settle=False)
        late = [] if at_once else sorted(observed)
        late += await gone(unobserved, case.deadline(case.wait_budget))
        if not late:
            return
        case.record.closes.append(
            CloseRecord(state.spec.name, step.index, late, case.wait_budget, len(case.history) - 1)
        )
        # the leaves may come when the grace ends, as a drop's (RTP2b1)
        rest = max(0.0, closed_at + case.leave_grace - case.loop.time())
        case.timer_started(rest)
        await self.deliveries.wait_until(heard, rest + case.wait_budget, settle=False)
        await asyncio.sleep(max(0.0, closed_at + case.leave_grace - case.loop.time()))
        await gone([c for c in late if c in unobserved], case.deadline(case.wait_budget))

    def _expire(self, step: Step, op: OpRecord, cid: str) -> ModelOutcome:
        """The model synthesizes the leaves of dropped connection `cid` (RTP2b1)."""
        outcome = self.case.model.expire_connection(cid)
        self.case.record.synthesized.update(e.model_id for e in outcome.events)
        self._expected(step, op, outcome)
        return outcome

    def _expected(self, step: Step, op: OpRecord, outcome: ModelOutcome) -> None:
        """The events of a close or an expiry, their origin and the deliveries they require."""
        op.events += outcome.events
        channel_of = self._channels_of(outcome.events)
        kind = "drop" if step.kind == "interrupt" else step.kind  # a refused resume's leaves
        for event in outcome.events:
            self.case.record.origins[event.model_id] = EventOrigin(
                kind, step.index, channel_of[event.model_id], True, False
            )
        self.deliveries.expect(outcome, step.index)

    def defer(self, step: Step, op: OpRecord, state: ClientState, cid: str, at: float) -> None:
        """Connection `cid` (already dropped in the model) leaves its members pending, as a
        drop with `wait: false` does; `at`: loop time its interrupt call returned (a refused
        resume: an implementation that notices cuts at once started its grace by then)."""
        self.pending.append(_Pending(step, op, state, cid, at))

    async def settle_pending(self) -> None:
        """The leaves of the drops made with `wait: false` are due: the model synthesizes them
        now, and the run waits for them as after a drop that waits (`_settle_drop`)."""
        while self.pending:
            pending = self.pending.pop(0)
            outcome = self._expire(pending.step, pending.op, pending.cid)
            await self._settle_drop(
                pending.step, pending.state, pending.cid, outcome, pending.at, at_once=False
            )

    def _channels_of(self, events: list[PresenceMessage]) -> dict[str, str]:
        """Model event id -> channel, for events just appended to the channels' logs."""
        out: dict[str, str] = {}
        if not events:
            return out
        for channel in self.case.scenario.channels:
            for event in self.case.model.history_all(channel)[-len(events) :]:
                out[event.model_id] = channel
        return out

    def _observer(self, channel: str, exclude: str) -> ClientState | None:
        return next(iter(self._observers(channel, exclude)), None)

    def _observers(self, channel: str, exclude: str) -> list[ClientState]:
        """The connections that hear `channel`'s presence, but `exclude`."""
        return [
            state
            for state in self.case.clients.values()
            if state.connected
            and state.refused is None
            and state.connection_id != exclude
            and self.case.model.is_attached(state.cid, channel)
            and self.case.model.receives_presence(state.cid, channel)
            # not where server steps staged what it holds (its get() may wait on a sync they
            # left in flight)
            and (state.spec.name, channel) not in self.case.record.staged
        ]

    async def _settle_drop(
        self,
        step: Step,
        state: ClientState,
        cid: str,
        outcome: ModelOutcome,
        dropped_at: float,
        at_once: bool = True,
    ) -> None:
        """Wait for a drop's synthesized leaves: by listener where someone listens, else by
        watching get() from another attached connection, else by waiting out the grace period
        and the wait budget
        (counted from `dropped_at`, loop time). `at_once`: the drop happened just now, so a
        watch can tell whether the member left at once (disconnect.grace-period)."""
        case = self.case
        channels = {case.record.origins[e.model_id].channel for e in outcome.events}
        observed = {d.channel for d in outcome.deliveries if d.min_count}
        if case.leave_grace > 0 and at_once:
            for channel in sorted(channels):
                observer = self._observer(channel, cid)
                if observer is not None:
                    gone = await self._member_gone(observer, channel, cid, step)
                    case.record.drops.append(
                        DropRecord(
                            state.spec.name,
                            step.index,
                            channel,
                            gone,
                            len(case.history) - 1,
                        )
                    )
        # the leaves come after the grace: no settling on quiesce() before they are due
        await self.deliveries.wait(case.leave_grace + case.wait_budget, settle=False)
        unobserved = sorted(channels - observed)
        if not unobserved:
            return
        await asyncio.sleep(max(0.0, dropped_at + case.leave_grace - case.loop.time()))
        deadline = case.deadline(case.wait_budget)
        blind = False
        for channel in unobserved:
            observers = self._observers(channel, cid)
            if not observers:
                blind = True
            # every one of them: a broadcast reaches different connections at different times,
            # so one that has the leave says nothing of another that may subscribe next
            for observer in observers:
                if case.loop.time() < deadline:
                    watch = functools.partial(self._member_gone, observer, channel, cid, step)
                    await poll_until(watch, deadline, case.settings.poll_interval)
        if blind and not await self._left_unwatched(dropped_at, deadline):
            # nobody can watch the leave: the grace runs from when the server noticed the drop,
            # later than `dropped_at`, and its timer may fire late; give it the budget any
            # awaited event gets, as a watch would (a flaky ably-wire ci program read the member
            # of a drop nobody watched in the get that attached the channel just after the grace)
            await asyncio.sleep(max(0.0, deadline - case.loop.time()))

    async def _left_unwatched(self, dropped_at: float, deadline: float) -> bool:
        """Whether an unwatched drop's leaves are known to have gone out before `deadline`: only
        for an implementation that noticed the drop within its call (`drops_noticed_at_once`:
        its grace timer runs from `dropped_at`, on this loop), once the grace has passed
        (`CaseState.due`) and `quiesce()` answers True (the leaves it produced were delivered)."""
        case = self.case
        if not getattr(case.adapter, "drops_noticed_at_once", False) or not case.settings.settle:
            return False
        due = case.due(dropped_at, case.leave_grace)
        if due >= deadline:
            return False
        await asyncio.sleep(max(0.0, due - case.loop.time()))
        return await case.quiesce()

    async def _member_gone(self, observer: ClientState, channel: str, cid: str, step: Step) -> bool:
        probe = OpRecord(step, observer.spec.name, channel, observer.connection_id)
        result = await self.calls.call(
            probe,
            observer,
            "get (watch drop)",
            lambda p: p.get(connection_id=cid),
            params={"connection_id": cid},
        )
        if probe.status != "ok" or not isinstance(result, list | tuple):
            return True
        return not any(Seen.read(m, "get", 0, None, channel).connection_id == cid for m in result)

"""Executing one scenario against one adapter, step by step, recording everything in a CaseRecord.

For each step the reference model goes first (what error, which deliveries, which members), then
the adapter call runs under the operation timeout, and its invoke / ok / fail / timeout lands in
the history. After each step the driver waits, model-driven, until every listener has received
the events the model requires of it (bounded), and after a step that attached a channel until
`sync_complete()` is true. It never judges: the checks read the record afterwards.

Operation timeouts and adapter exceptions other than `PresenceError` stop the case by raising
`Abort`; the caller turns that into a `timeout` or `error` outcome.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from presence_conformance.harness.adapter import (
    Adapter,
    AdapterConnection,
    AdapterPresence,
    Feature,
    PresenceError,
)
from presence_conformance.harness.record.history import History
from presence_conformance.harness.record.matching import members_equal
from presence_conformance.harness.record.records import (
    CaseRecord,
    EventOrigin,
    Expected,
    ExpectEventsRecord,
    GetRecord,
    ListenerKey,
    ListenerRecord,
    OpRecord,
    Seen,
    SyncRecord,
    jsonable,
)
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.connection_steps import ConnectionSteps
from presence_conformance.harness.run.history_steps import HistorySteps
from presence_conformance.harness.run.oracle import (
    listener_state,
    open_action_outcome,
    restore_listener_state,
)
from presence_conformance.harness.run.stops import Abort, Stop, items_json, summary
from presence_conformance.harness.scenario import ClientSpec, Scenario, Step
from presence_conformance.reference_impl.model import Outcome as ModelOutcome
from presence_conformance.reference_impl.model import PresenceModel
from presence_conformance.reference_impl.types import Action, PresenceMessage

__all__ = ["Abort", "CaseDriver", "ClientState", "Stop"]

if TYPE_CHECKING:
    from presence_conformance.harness.run.runner import RunSettings

CANONICAL_LIMIT = 1000
MAX_PAGES = 1000


@dataclass(eq=False)
class ClientState:
    """A scenario client: its current connection, in the adapter and in the model."""

    spec: ClientSpec
    conn: AdapterConnection | None = None
    connection_id: str | None = None  # also set for a refused connection (model-only id)
    connected: bool = False
    refused: PresenceError | None = None
    refusal_allowed: bool = False  # the model refuses this connection too (clientId "*")
    listeners: dict[tuple[str, str], ListenerRecord] = field(default_factory=dict)

    @property
    def model_client_id(self) -> str | None:
        cid = self.spec.client_id
        return None if cid == "*" else cid


class CaseDriver(HistorySteps, ConnectionSteps):
    """Runs one scenario; `record` holds what happened."""

    def __init__(self, scenario: Scenario, adapter: Adapter, settings: RunSettings) -> None:
        self.scenario = scenario
        self.adapter = adapter
        self.settings = settings
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.prefix = prefix = settings.channel_prefix or f"pc{secrets.token_hex(4)}-"
        clock = itertools.count(1)
        self.model = PresenceModel(lambda: next(clock))
        self.history = History()
        self.record = CaseRecord(
            scenario=scenario,
            history=self.history,
            model=self.model,
            channels={c: prefix + c for c in scenario.channels},
        )
        self.clients = {name: ClientState(spec) for name, spec in scenario.clients.items()}
        self.record.client_ids = {n: s.client_id for n, s in scenario.clients.items()}
        self.op_timeout = settings.op_timeout
        grace = settings.leave_grace if settings.leave_grace is not None else adapter.leave_grace
        self.leave_grace = float(grace or 0.0)
        self.wakeup = asyncio.Event()
        self.required: Counter[tuple[ListenerKey, str]] = Counter()
        self.got: Counter[tuple[ListenerKey, str]] = Counter()
        self.waived: Counter[tuple[ListenerKey, str]] = Counter()
        self.unsatisfied: set[tuple[ListenerKey, str]] = set()
        self.recording = True
        self.current_step: int | None = None
        self._undo: dict[int, Callable[[], None]] = {}  # id(op) -> puts the model back
        self._op_expected: dict[int, list[Expected]] = {}  # id(op) -> deliveries it added

    # -- the case ------------------------------------------------------------------------------

    async def run(self) -> None:
        for name, spec in self.scenario.clients.items():
            if spec.connect == "start":
                await self._connect(self.clients[name], None)
        for step in self.scenario.steps:
            self.current_step = step.index
            if step.kind == "concurrently":
                await self._run_block(step)
            else:
                await self._run_step(step)
        self.current_step = None
        await self._finish()

    async def close_all(self) -> None:
        """Close every connection still open (bounded); errors are only noted in the history."""
        self.recording = False
        conns = [c for c in self.clients.values() if c.connected and c.conn is not None]
        if not conns:
            return

        async def close(state: ClientState) -> None:
            try:
                await asyncio.wait_for(state.conn.close(), self.settings.close_timeout)
            except Exception as exc:  # the case is over: keep a note only
                self.history.record(
                    "info", state.spec.name, "close", {"error": f"{type(exc).__name__}: {exc}"}
                )
            state.connected = False

        await asyncio.gather(*(close(c) for c in conns))

    # -- steps ---------------------------------------------------------------------------------

    async def _run_step(self, step: Step) -> None:
        kind = step.kind
        if kind in ("drop", "close", "connect"):
            await getattr(self, f"_step_{kind}")(step)
            return
        if kind == "expect_events":
            await self._expect_events(step)
            return
        op, call = self._plan(step)
        if call is not None:
            await call()
        await self._after_ops([op])

    async def _run_block(self, block: Step) -> None:
        planned = [self._plan(step) for step in block.steps]
        calls = [call() for _, call in planned if call is not None]
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        await self._after_ops([op for op, _ in planned])

    async def _after_ops(self, ops: list[OpRecord]) -> None:
        for op in ops:
            if op.fresh_attach and (
                op.status == "ok" or (op.status == "fail" and op.model_error is not None)
            ):
                await self._wait_sync(op)
        await self._wait_deliveries(self.op_timeout)

    def _plan(self, step: Step) -> tuple[OpRecord, Callable[[], Awaitable[None]] | None]:
        state = self.clients[step.client]
        op = OpRecord(
            step=step, client=step.client, channel=step.channel, connection_id=state.connection_id
        )
        self.record.ops.append(op)
        call = getattr(self, f"_plan_{step.kind}")(op, state)
        if step.expect_error is not None and op.model_error is None and step.kind != "history":
            raise Abort(
                Outcome.ERROR,
                f"{step.label}: the scenario expects an error "
                f"{list(step.expect_error)}, but the reference model accepts the operation "
                "(a mistake in the scenario)",
            )
        return op, call

    def _presence(self, state: ClientState, channel: str) -> AdapterPresence:
        assert state.conn is not None
        return state.conn.channel(self.record.channels[channel]).presence

    def _invoker(
        self,
        op: OpRecord,
        state: ClientState,
        f: str,
        factory: Callable[[AdapterPresence], Awaitable[Any]],
        done: Callable[[Any], None] | None = None,
    ) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            result = await self._call(op, state, f, factory)
            if op.status == "ok" and done is not None:
                done(result)
            elif op.status in ("fail", "skipped") and op.model_error is None:
                self._follow_refusal(op)

        return call

    def _follow_refusal(self, op: OpRecord) -> None:
        """The implementation refused what the model accepted: put the model back as it was, so
        that one refusal is reported once (unexpected_errors) and does not cascade. The events
        involved are voided: no check expects them anywhere."""
        undo = self._undo.pop(id(op), None)
        void = {e.id for e in op.events}
        if undo is not None:
            compensation = undo()
            if compensation is not None:
                void.update(e.id for e in compensation.events)
        self.record.void.update(void)
        dropped = self._op_expected.pop(id(op), [])
        dropped_ids = {id(e) for e in dropped}
        dropped += [
            e for e in self.record.expected if e.event.id in void and id(e) not in dropped_ids
        ]
        if not dropped:
            return
        gone = {id(e) for e in dropped}
        self.record.expected = [e for e in self.record.expected if id(e) not in gone]
        for rec in self.record.listeners.values():
            rec.expected = [e for e in rec.expected if id(e) not in gone]
        for expected in dropped:
            if expected.min_count:
                pair = (expected.listener, expected.event.member_key)
                self.required[pair] -= expected.min_count
                if self.got[pair] + self.waived[pair] >= self.required[pair]:
                    self.unsatisfied.discard(pair)

    async def _call(
        self,
        op: OpRecord,
        state: ClientState,
        f: str,
        factory: Callable[[AdapterPresence], Awaitable[Any]],
        record: bool = True,
        params: Any = None,
    ) -> Any:
        """One adapter call under the operation timeout, recorded as invoke + ok/fail/timeout."""
        process = state.spec.name
        step = op.index
        op.invoke_index = self.history.record(
            "invoke", process, f, op.params if params is None else params, step
        )
        if state.refused is not None:
            err = state.refused
            if op.model_error is None and state.refusal_allowed:
                op.status = "skipped"
                op.done_index = self.history.record(
                    "info",
                    process,
                    f,
                    {"skipped": f"the connection was refused ({err.code}), as the model allows"},
                    step,
                )
                return None
            op.status, op.error_code, op.error_message = "fail", err.code, err.message
            op.done_index = self.history.record(
                "fail",
                process,
                f,
                {"code": err.code, "message": f"connection refused: {err.message}"},
                step,
            )
            return None
        try:
            async with asyncio.timeout(self.op_timeout):
                result = await factory(self._presence(state, op.channel))
        except TimeoutError:
            op.status = "timeout"
            op.done_index = self.history.record("timeout", process, f, None, step)
            raise Abort(
                Outcome.TIMEOUT,
                f"{op.step.label}: {f} did not complete within {self.op_timeout:g}s",
            ) from None
        except PresenceError as exc:
            op.status, op.error_code, op.error_message = "fail", exc.code, str(exc)
            op.done_index = self.history.record(
                "fail", process, f, {"code": jsonable(exc.code), "message": str(exc)}, step
            )
            return None
        except Exception as exc:
            op.status, op.error_message = "error", f"{type(exc).__name__}: {exc}"
            op.done_index = self.history.record(
                "fail", process, f, {"exception": op.error_message}, step
            )
            raise Abort(
                Outcome.ERROR,
                f"{op.step.label}: the adapter raised {type(exc).__name__} in {f}: {exc}",
            ) from exc
        op.status = "ok"
        if record:
            op.done_index = self.history.record("ok", process, f, summary(result), step)
        return result

    # -- enter / update / leave ----------------------------------------------------------------

    def _plan_publish(self, op: OpRecord, state: ClientState) -> Callable[[], Awaitable[None]]:
        step, model = op.step, self.model
        kind, channel = step.kind, step.channel
        data = step.args.get("data")
        if "data" in step.args:
            op.params = {"data": jsonable(data)}
        cid, client_id = state.connection_id, state.model_client_id
        was_present = bool(client_id is not None and model.get(channel, client_id, cid))
        op.was_present = was_present
        attached = model.is_attached(cid, channel)
        prior = model.get(channel, client_id, cid) if client_id is not None else []
        try:
            outcome = getattr(model, kind)(cid, channel, data)
        except PresenceError as exc:
            op.model_error = exc
            op.attempted = (kind, client_id, cid, data)
            # refused after the implicit attach (no presence capability: RTP8d, then RTP8h)
            op.fresh_attach = not attached and model.is_attached(cid, channel)
        else:
            op.events = list(outcome.events)
            origin = EventOrigin(kind, step.index, channel, was_present, data is not None)
            for event in outcome.events:
                self.record.origins[event.id] = origin
            alternative = (
                {"enter": "update", "update": "enter"}[kind]
                if (kind in ("enter", "update") and was_present == (kind == "enter"))
                else None
            )
            if alternative and outcome.events:
                outcome = open_action_outcome(model, channel, outcome, alternative)
            self._expect(outcome, step.index, op)
            op.fresh_attach = not attached and model.is_attached(cid, channel)

            def undo() -> ModelOutcome | None:
                now = model.get(channel, client_id, cid)
                if not prior:
                    return model.leave(cid, channel) if now else None
                if not now:
                    return model.enter(cid, channel, prior[0].data)
                return model.update(cid, channel, prior[0].data)

            self._undo[id(op)] = undo
        return self._invoker(op, state, kind, lambda p: getattr(p, kind)(data))

    _plan_enter = _plan_update = _plan_leave = _plan_publish

    # -- get -----------------------------------------------------------------------------------

    def _resolve_client_id(self, value: Any) -> str | None:
        if isinstance(value, dict):
            return self.clients[value["of"]].model_client_id
        return value

    def _resolve_connection_id(self, value: Any) -> str | None:
        if isinstance(value, dict):
            return self.clients[value["of"]].connection_id
        return value

    def _plan_get(self, op: OpRecord, state: ClientState) -> Callable[[], Awaitable[None]]:
        step, model, channel = op.step, self.model, op.step.channel
        client_id = self._resolve_client_id(step.args.get("client_id"))
        connection_id = self._resolve_connection_id(step.args.get("connection_id"))
        wait = step.args.get("wait_for_sync")
        kwargs: dict[str, Any] = {}
        if client_id is not None:
            kwargs["client_id"] = client_id
        if connection_id is not None:
            kwargs["connection_id"] = connection_id
        if wait is not None:
            kwargs["wait_for_sync"] = wait
        op.params = dict(kwargs)
        cid = state.connection_id
        attached = model.is_attached(cid, channel)
        rec = GetRecord(
            "step",
            op,
            state.spec.name,
            channel,
            cid,
            client_id,
            connection_id,
            wait,
            fresh=not attached,
        )
        try:
            model.get(channel, client_id, connection_id)
            outcome = model.attach(cid, channel)  # may be refused: no capability (RTP11e)
        except PresenceError as exc:
            op.model_error = exc
            return self._invoker(op, state, "get", lambda p: p.get(**kwargs))
        self._expect(outcome, step.index)
        op.fresh_attach = not attached
        rec.expected = model.get(channel, client_id, connection_id)
        rec.possible = self._possible_members(channel)
        if "expect" in step.args:
            rec.expect = [
                (
                    self.clients[m["client"]].model_client_id,
                    self.clients[m["client"]].connection_id,
                    "data" in m,
                    m.get("data"),
                )
                for m in step.args["expect"]
            ]
        self.record.gets.append(rec)
        poll = not rec.fresh and wait is not False

        async def call() -> None:
            await self._read_members(op, state, rec, kwargs, poll)

        return call

    def _possible_members(self, channel: str) -> list[PresenceMessage]:
        members = {(m.member_key, repr(m.data)): m for m in self.model.get(channel)}
        for event in self.model.history_all(channel):
            if event.action is not Action.LEAVE:
                members.setdefault((event.member_key, repr(event.data)), event)
        return list(members.values())

    async def _read_members(
        self, op: OpRecord, state: ClientState, rec: GetRecord, kwargs: dict[str, Any], poll: bool
    ) -> None:
        deadline = self.loop.time() + self.op_timeout
        delay = 0.0
        while True:
            rec.attempts += 1
            f = "get" if rec.attempts == 1 else "get (again)"
            result = await self._call(
                op, state, f, lambda p: p.get(**kwargs), record=False, params=kwargs
            )
            if op.status != "ok":
                return
            rec.observed, rec.malformed = self._read_items(result, "get", op.index, rec.channel)
            rec.history_index = op.done_index = self.history.record(
                "ok", state.spec.name, f, items_json(rec.observed, rec.malformed), op.index
            )
            if (
                not poll
                or members_equal(rec.expected, rec.observed)
                or self.loop.time() >= deadline
            ):
                break
            await asyncio.sleep(delay)
            delay = min(max(delay * 2, 0.0005), self.settings.poll_interval)
        self._keep(rec.observed)

    def _read_items(
        self, result: Any, source: str, step: int | None, channel: str
    ) -> tuple[list[Seen] | None, Any]:
        if not isinstance(result, list | tuple):
            return None, jsonable(result)
        index = len(self.history.entries)  # the entry about to be recorded
        return [Seen.read(item, source, index, step, channel) for item in result], None

    def _keep(self, items: list[Seen] | None) -> None:
        if items:
            self.record.seen.extend(items)

    # -- subscribe / unsubscribe ---------------------------------------------------------------

    def _listener(self, state: ClientState, channel: str, name: str) -> ListenerRecord:
        key = (channel, name)
        rec = state.listeners.get(key)
        if rec is None:
            lkey = (state.connection_id, name)
            rec = ListenerRecord(lkey, name, state.spec.name, channel, state.connection_id)
            rec.callback = self._make_callback(rec)
            state.listeners[key] = rec
            self.record.listeners[lkey] = rec
        return rec

    def _make_callback(self, rec: ListenerRecord) -> Callable[[Any], None]:
        process = f"{rec.client}/{rec.name}"

        def listener(message: Any) -> None:
            if threading.get_ident() != self.thread:
                self.loop.call_soon_threadsafe(listener, message)
                return
            if not self.recording:
                return
            index = len(self.history.entries)
            seen = Seen.read(message, "event", index, self.current_step, rec.channel, rec.key)
            self.history.record("event", process, "event", seen.json, self.current_step)
            rec.received.append(seen)
            self.record.seen.append(seen)
            pair = (rec.key, seen.member_key)
            self.got[pair] += 1
            if pair in self.unsatisfied and (
                self.got[pair] + self.waived[pair] >= self.required[pair]
            ):
                self.unsatisfied.discard(pair)
            self.wakeup.set()

        return listener

    def _plan_subscribe(self, op: OpRecord, state: ClientState) -> Callable[[], Awaitable[None]]:
        step, model, channel = op.step, self.model, op.step.channel
        actions = step.args.get("actions")
        name = step.args["listener"]
        op.params = {"listener": name, "actions": actions}
        rec = self._listener(state, channel, name)
        attached = model.is_attached(state.connection_id, channel)
        saved = listener_state(model, state.connection_id, channel)
        try:
            outcome = model.subscribe(state.connection_id, channel, name, actions)
        except PresenceError as exc:
            op.model_error = exc
        else:
            entry = (step.index, tuple(actions) if actions else None)
            rec.subscriptions.append(entry)
            op.fresh_attach = not attached
            if op.fresh_attach:
                rec.attach_step = step.index
            self._expect(outcome, step.index, op)

            def undo() -> None:
                restore_listener_state(model, state.connection_id, channel, saved)
                rec.subscriptions.remove(entry)

            self._undo[id(op)] = undo
        callback = rec.callback
        return self._invoker(
            op,
            state,
            "subscribe",
            lambda p: p.subscribe(callback, list(actions) if actions else None),
        )

    def _plan_unsubscribe(self, op: OpRecord, state: ClientState) -> Callable[[], Awaitable[None]]:
        step, channel = op.step, op.step.channel
        name, actions = step.args.get("listener"), step.args.get("actions")
        op.form = (
            "all"
            if not name and not actions
            else "listener"
            if not actions
            else "action-listener"
            if name
            else "action"
        )
        op.params = {"listener": name, "actions": actions}
        saved = listener_state(self.model, state.connection_id, channel)
        try:
            self.model.unsubscribe(state.connection_id, channel, name, actions)
        except PresenceError as exc:
            op.model_error = exc
        else:
            entry = (step.index, op.form, tuple(actions) if actions else None)
            affected = [
                rec
                for (ch, lname), rec in state.listeners.items()
                if ch == channel and (name is None or lname == name)
            ]
            for rec in affected:
                rec.unsubscriptions.append(entry)

            def undo() -> None:
                restore_listener_state(self.model, state.connection_id, channel, saved)
                for rec in affected:
                    rec.unsubscriptions.remove(entry)

            self._undo[id(op)] = undo
        callback = self._listener(state, channel, name).callback if name else None
        return self._invoker(
            op,
            state,
            "unsubscribe",
            lambda p: p.unsubscribe(callback, list(actions) if actions else None),
        )

    # -- sync_complete -------------------------------------------------------------------------

    def _plan_sync_complete(
        self, op: OpRecord, state: ClientState
    ) -> Callable[[], Awaitable[None]]:
        channel = op.channel
        expected = self.model.sync_complete(state.connection_id, channel)

        def done(value: Any) -> None:
            self.record.syncs.append(
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

        return self._invoker(op, state, "sync_complete", lambda p: p.sync_complete(), done)

    async def _wait_sync(self, op: OpRecord) -> None:
        if not self.settings.sync_wait or not self.adapter.supports(Feature.SYNC_COMPLETE):
            return
        state = self.clients[op.client]
        probe = OpRecord(op.step, op.client, op.channel, op.connection_id)
        deadline = self.loop.time() + self.op_timeout
        delay, value, polls = 0.0, None, 0
        while True:
            polls += 1
            value = (
                await self._call(
                    probe,
                    state,
                    "sync_complete",
                    lambda p: p.sync_complete(),
                    record=False,
                    params={},
                )
                if polls == 1
                else await self._quiet_call(probe, state)
            )
            if value is True or probe.status != "ok" or self.loop.time() >= deadline:
                break
            await asyncio.sleep(delay)
            delay = min(max(delay * 2, 0.0005), self.settings.poll_interval)
        index = self.history.record(
            "info",
            state.spec.name,
            "sync_complete (after attach)",
            {"value": jsonable(value), "polls": polls},
            op.index,
        )
        self.record.syncs.append(
            SyncRecord(
                "wait",
                op.index,
                state.spec.name,
                op.channel,
                op.kind,
                True,
                jsonable(value),
                None,
                index,
            )
        )

    async def _quiet_call(self, probe: OpRecord, state: ClientState) -> Any:
        """A repeated poll: not recorded unless it fails."""
        try:
            async with asyncio.timeout(self.op_timeout):
                return await self._presence(state, probe.channel).sync_complete()
        except TimeoutError:
            raise Abort(
                Outcome.TIMEOUT,
                f"{probe.step.label}: sync_complete did not answer within {self.op_timeout:g}s",
            ) from None
        except PresenceError as exc:
            probe.status = "fail"
            self.history.record(
                "fail", state.spec.name, "sync_complete", {"code": exc.code}, probe.index
            )
            return None
        except Exception as exc:
            raise Abort(
                Outcome.ERROR,
                f"{probe.step.label}: sync_complete raised {type(exc).__name__}: {exc}",
            ) from exc

    # -- waiting -------------------------------------------------------------------------------

    def _expect(self, outcome: ModelOutcome, step: int | None, op: OpRecord | None = None) -> None:
        added = self._op_expected.setdefault(id(op), []) if op is not None else []
        for delivery in outcome.deliveries:
            event = delivery.event
            if event.action is Action.PRESENT:
                origin = EventOrigin("present", step, delivery.channel)
            else:
                origin = self.record.origins.get(event.id) or EventOrigin(
                    event.action.value, step, delivery.channel
                )
            key = (delivery.connection_id, delivery.listener)
            expected = Expected(
                event, origin, key, delivery.channel, delivery.min_count, delivery.max_count, step
            )
            self.record.expected.append(expected)
            added.append(expected)
            listener = self.record.listeners.get(key)
            if listener is not None:
                listener.expected.append(expected)
            if delivery.min_count:
                pair = (key, event.member_key)
                self.required[pair] += delivery.min_count
                if self.got[pair] + self.waived[pair] < self.required[pair]:
                    self.unsatisfied.add(pair)

    async def _wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        if done():
            return True
        deadline = self.loop.time() + timeout
        while True:
            self.wakeup.clear()
            if done():
                return True
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                return done()
            try:
                async with asyncio.timeout(remaining):
                    await self.wakeup.wait()
            except TimeoutError:
                return done()

    async def _wait_deliveries(self, timeout: float) -> None:
        if not self.unsatisfied:
            return
        if await self._wait_until(lambda: not self.unsatisfied, timeout):
            return
        missing = []
        for pair in sorted(self.unsatisfied):
            short = self.required[pair] - self.got[pair] - self.waived[pair]
            self.waived[pair] += short
            missing.append({"listener": list(pair[0]), "member": pair[1], "missing": short})
        self.unsatisfied.clear()
        self.history.record(
            "info",
            "runner",
            "wait",
            {"gave_up_after": timeout, "missing": missing},
            self.current_step,
        )

    async def _expect_events(self, step: Step) -> None:
        name = step.args["listener"]
        # a listener name belongs to one client and channel (a loader rule); one record per
        # connection that client had
        records = [r for r in self.record.listeners.values() if r.name == name]
        wanted = len(step.args["events"])
        await self._wait_until(
            lambda: sum(len(r.received) for r in records) >= wanted, self.op_timeout
        )
        observed = [s for r in records for s in r.received]
        expected = []
        for event in step.args["events"]:
            client = event["client"]
            expected.append(
                (
                    tuple(event["action"]),
                    self.clients[client].model_client_id,
                    frozenset(self.record.client_connections.get(client, [])),
                    "data" in event,
                    event.get("data"),
                )
            )
        index = self.history.record(
            "info",
            "runner",
            "expect_events",
            {"listener": name, "count": len(observed)},
            step.index,
        )
        self.record.expectations.append(ExpectEventsRecord(step, name, expected, observed, index))

    # -- the end -------------------------------------------------------------------------------

    async def _finish(self) -> None:
        await self._wait_deliveries(self.op_timeout)
        quiet = False
        try:
            async with asyncio.timeout(self.op_timeout):
                quiet = bool(await self.adapter.quiesce())
        except Exception:  # an adapter that cannot quiesce gets the quiet period
            quiet = False
        if not quiet:
            period = (
                self.settings.quiet_period
                if self.settings.quiet_period is not None
                else self.adapter.quiet_period
            )
            await asyncio.sleep(period)
        for name, state in self.clients.items():
            if not state.connected or state.refused is not None:
                continue
            for channel in self.scenario.channels:
                if not self.model.is_attached(state.connection_id, channel):
                    continue
                op = OpRecord(
                    Step("converge", len(self.scenario.steps), "(end of case)"),
                    name,
                    channel,
                    state.connection_id,
                )
                rec = GetRecord(
                    "converge",
                    None,
                    name,
                    channel,
                    state.connection_id,
                    expected=self.model.get(channel),
                )
                self.record.gets.append(rec)
                await self._read_members(op, state, rec, {}, poll=True)
        self.recording = False

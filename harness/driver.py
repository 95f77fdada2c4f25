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

from harness.adapter import Adapter, AdapterConnection, AdapterPresence, Feature, PresenceError
from harness.checks.matching import history_consistent, members_equal
from harness.history import History
from harness.record import (
    CanonicalRecord,
    CaseRecord,
    ConnectRecord,
    DropRecord,
    EventOrigin,
    Expected,
    ExpectEventsRecord,
    GetRecord,
    HistoryQueryRecord,
    ListenerKey,
    ListenerRecord,
    OpRecord,
    Seen,
    SyncRecord,
    jsonable,
)
from harness.results import Outcome
from harness.scenario import ClientSpec, Scenario, Step
from reference_impl.model import Outcome as ModelOutcome
from reference_impl.model import PresenceModel, validate_history_params
from reference_impl.types import Action, PresenceMessage

if TYPE_CHECKING:
    from harness.runner import RunSettings

CANONICAL_LIMIT = 1000
MAX_PAGES = 1000


class Abort(Exception):
    """The case cannot go on: `outcome` is TIMEOUT or ERROR, `message` names the step."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message


class Stop(Exception):
    """The case cannot go on, but what was recorded is judged normally (e.g. a reused
    connectionId the model cannot represent)."""


@dataclass(eq=False)
class ClientState:
    """A scenario client: its current connection, in the adapter and in the model."""

    spec: ClientSpec
    conn: AdapterConnection | None = None
    connection_id: str | None = None  # also set for a refused connection (model-only id)
    connected: bool = False
    refused: PresenceError | None = None
    listeners: dict[tuple[str, str], ListenerRecord] = field(default_factory=dict)

    @property
    def model_client_id(self) -> str | None:
        cid = self.spec.client_id
        return None if cid == "*" else cid


class CaseDriver:
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
        self.record = CaseRecord(scenario=scenario, history=self.history, model=self.model,
                                 channels={c: prefix + c for c in scenario.channels})
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
        self._refused_ids = itertools.count(1)
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
                self.history.record("info", state.spec.name, "close",
                                    {"error": f"{type(exc).__name__}: {exc}"})
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
            if op.fresh_attach and op.status == "ok":
                await self._wait_sync(op)
        await self._wait_deliveries(self.op_timeout)

    def _plan(self, step: Step) -> tuple[OpRecord, Callable[[], Awaitable[None]] | None]:
        state = self.clients[step.client]
        op = OpRecord(step=step, client=step.client, channel=step.channel,
                      connection_id=state.connection_id)
        self.record.ops.append(op)
        call = getattr(self, f"_plan_{step.kind}")(op, state)
        if step.expect_error is not None and op.model_error is None and step.kind != "history":
            raise Abort(Outcome.ERROR, f"{step.label}: the scenario expects an error "
                        f"{list(step.expect_error)}, but the reference model accepts the operation "
                        "(a mistake in the scenario)")
        return op, call

    def _presence(self, state: ClientState, channel: str) -> AdapterPresence:
        assert state.conn is not None
        return state.conn.channel(self.record.channels[channel]).presence

    def _invoker(self, op: OpRecord, state: ClientState, f: str,
                 factory: Callable[[AdapterPresence], Awaitable[Any]],
                 done: Callable[[Any], None] | None = None) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            result = await self._call(op, state, f, factory)
            if op.status == "ok" and done is not None:
                done(result)
            elif op.status == "fail" and op.model_error is None:
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
        dropped += [e for e in self.record.expected if e.event.id in void
                    and id(e) not in dropped_ids]
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

    async def _call(self, op: OpRecord, state: ClientState, f: str,
                    factory: Callable[[AdapterPresence], Awaitable[Any]], record: bool = True,
                    params: Any = None) -> Any:
        """One adapter call under the operation timeout, recorded as invoke + ok/fail/timeout."""
        process = state.spec.name
        step = op.index
        op.invoke_index = self.history.record("invoke", process, f,
                                              op.params if params is None else params, step)
        if state.refused is not None:
            err = state.refused
            op.status, op.error_code, op.error_message = "fail", err.code, err.message
            op.done_index = self.history.record("fail", process, f, {
                "code": err.code, "message": f"connection refused: {err.message}"}, step)
            return None
        try:
            async with asyncio.timeout(self.op_timeout):
                result = await factory(self._presence(state, op.channel))
        except TimeoutError:
            op.status = "timeout"
            op.done_index = self.history.record("timeout", process, f, None, step)
            raise Abort(Outcome.TIMEOUT, f"{op.step.label}: {f} did not complete within "
                        f"{self.op_timeout:g}s") from None
        except PresenceError as exc:
            op.status, op.error_code, op.error_message = "fail", exc.code, str(exc)
            op.done_index = self.history.record("fail", process, f,
                                                {"code": jsonable(exc.code), "message": str(exc)},
                                                step)
            return None
        except Exception as exc:
            op.status, op.error_message = "error", f"{type(exc).__name__}: {exc}"
            op.done_index = self.history.record("fail", process, f,
                                                {"exception": op.error_message}, step)
            raise Abort(Outcome.ERROR, f"{op.step.label}: the adapter raised "
                        f"{type(exc).__name__} in {f}: {exc}") from exc
        op.status = "ok"
        if record:
            op.done_index = self.history.record("ok", process, f, _summary(result), step)
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
        else:
            op.events = list(outcome.events)
            origin = EventOrigin(kind, step.index, channel, was_present, data is not None)
            for event in outcome.events:
                self.record.origins[event.id] = origin
            alternative = {"enter": "update", "update": "enter"}[kind] if (
                kind in ("enter", "update") and was_present == (kind == "enter")) else None
            if alternative and outcome.events:
                outcome = _open_action_outcome(model, channel, outcome, alternative)
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
        rec = GetRecord("step", op, state.spec.name, channel, cid, client_id, connection_id, wait,
                        fresh=not attached)
        try:
            model.get(channel, client_id, connection_id)
        except PresenceError as exc:
            op.model_error = exc
            return self._invoker(op, state, "get", lambda p: p.get(**kwargs))
        self._expect(model.attach(cid, channel), step.index)
        op.fresh_attach = not attached
        rec.expected = model.get(channel, client_id, connection_id)
        rec.possible = self._possible_members(channel)
        if "expect" in step.args:
            rec.expect = [(self.clients[m["client"]].model_client_id,
                           self.clients[m["client"]].connection_id, "data" in m, m.get("data"))
                          for m in step.args["expect"]]
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

    async def _read_members(self, op: OpRecord, state: ClientState, rec: GetRecord,
                            kwargs: dict[str, Any], poll: bool) -> None:
        deadline = self.loop.time() + self.op_timeout
        delay = 0.0
        while True:
            rec.attempts += 1
            f = "get" if rec.attempts == 1 else "get (again)"
            result = await self._call(op, state, f, lambda p: p.get(**kwargs), record=False,
                                      params=kwargs)
            if op.status != "ok":
                return
            rec.observed, rec.malformed = self._read_items(result, "get", op.index, rec.channel)
            rec.history_index = op.done_index = self.history.record(
                "ok", state.spec.name, f, _items_json(rec.observed, rec.malformed), op.index)
            if (not poll or members_equal(rec.expected, rec.observed)
                    or self.loop.time() >= deadline):
                break
            await asyncio.sleep(delay)
            delay = min(max(delay * 2, 0.0005), self.settings.poll_interval)
        self._keep(rec.observed)

    def _read_items(self, result: Any, source: str, step: int | None, channel: str
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
            if pair in self.unsatisfied and (self.got[pair] + self.waived[pair]
                                             >= self.required[pair]):
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
        saved = _listener_state(model, state.connection_id, channel)
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
                _restore_listener_state(model, state.connection_id, channel, saved)
                rec.subscriptions.remove(entry)
            self._undo[id(op)] = undo
        callback = rec.callback
        return self._invoker(op, state, "subscribe",
                             lambda p: p.subscribe(callback, list(actions) if actions else None))

    def _plan_unsubscribe(self, op: OpRecord, state: ClientState) -> Callable[[], Awaitable[None]]:
        step, channel = op.step, op.step.channel
        name, actions = step.args.get("listener"), step.args.get("actions")
        op.form = ("all" if not name and not actions else "listener" if not actions
                   else "action-listener" if name else "action")
        op.params = {"listener": name, "actions": actions}
        saved = _listener_state(self.model, state.connection_id, channel)
        try:
            self.model.unsubscribe(state.connection_id, channel, name, actions)
        except PresenceError as exc:
            op.model_error = exc
        else:
            entry = (step.index, op.form, tuple(actions) if actions else None)
            affected = [rec for (ch, lname), rec in state.listeners.items()
                        if ch == channel and (name is None or lname == name)]
            for rec in affected:
                rec.unsubscriptions.append(entry)

            def undo() -> None:
                _restore_listener_state(self.model, state.connection_id, channel, saved)
                for rec in affected:
                    rec.unsubscriptions.remove(entry)
            self._undo[id(op)] = undo
        callback = self._listener(state, channel, name).callback if name else None
        return self._invoker(op, state, "unsubscribe",
                             lambda p: p.unsubscribe(callback, list(actions) if actions else None))

    # -- history -------------------------------------------------------------------------------

    def _plan_history(self, op: OpRecord, state: ClientState) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            await self._history(op, state)
        return call

    async def _history(self, op: OpRecord, state: ClientState) -> None:
        step = op.step
        args = step.args
        needs_refs = any(isinstance(args.get(k), dict) for k in ("start", "end"))
        rec = HistoryQueryRecord(op, None, limit=args.get("limit"),
                                 direction=args.get("direction"),
                                 pages_mode=args.get("pages", 1))
        raw_start = args.get("start") if not isinstance(args.get("start"), dict) else None
        raw_end = args.get("end") if not isinstance(args.get("end"), dict) else None
        static_error = None
        if not needs_refs:
            try:
                validate_history_params(raw_start, raw_end, rec.limit, rec.direction)
            except PresenceError as exc:
                static_error = exc
        if static_error is None:
            rec.canonical = await self._canonical(op, state)
        # resolve {at: STEP_ID, offset: N}
        bounds = {}
        for key in ("start", "end"):
            value = args.get(key)
            if isinstance(value, dict):
                stamp = self._stamp_of(value["at"], rec.canonical)
                if stamp is None:
                    rec.unresolved = (f"{key}: the event of step {value['at']!r} is not in the "
                                      "implementation's history")
                    value = None
                else:
                    value = stamp + value.get("offset", 0)
            bounds[key] = value
        rec.start, rec.end = bounds["start"], bounds["end"]
        try:
            validate_history_params(rec.start, rec.end, rec.limit, rec.direction)
        except PresenceError as exc:
            op.model_error = exc
        if step.expect_error is not None and op.model_error is None and rec.unresolved is None:
            raise Abort(Outcome.ERROR, f"{step.label}: the scenario expects an error "
                        f"{list(step.expect_error)}, but the reference model accepts the query "
                        "(a mistake in the scenario)")
        self.record.queries.append(rec)
        if rec.unresolved:
            op.status = "skipped"
            self.history.record("info", state.spec.name, "history", {"skipped": rec.unresolved},
                                op.index)
            return
        params = {k: v for k, v in (("start", rec.start), ("end", rec.end), ("limit", rec.limit),
                                    ("direction", rec.direction)) if v is not None}
        op.params = params
        page = await self._call(op, state, "history", lambda p: p.history(**params), record=False)
        if op.status != "ok":
            return
        await self._read_pages(op, state, rec, page, all_pages=rec.pages_mode == "all")
        rec.history_index = op.done_index

    async def _read_pages(self, op: OpRecord, state: ClientState, rec: Any, page: Any,
                          all_pages: bool) -> None:
        """Read `page` (and, with `all_pages`, the pages after it) into `rec.pages`."""
        count = 0
        while True:
            items = getattr(page, "items", None)
            observed, malformed = self._read_items(items, "history", op.index, op.channel)
            if observed is None:
                rec.malformed = malformed if items is not None else jsonable(page)
            try:
                has_next = bool(page.has_next())
            except Exception as exc:
                raise Abort(Outcome.ERROR, f"{op.step.label}: has_next() raised "
                            f"{type(exc).__name__}: {exc}") from exc
            entry = self.history.record("ok", state.spec.name,
                                        "history" if count == 0 else "history (next page)",
                                        {"items": _items_json(observed, malformed),
                                         "has_next": has_next}, op.index)
            if count == 0:
                op.done_index = entry
            rec.pages.append(observed or [])
            rec.has_next.append(has_next)
            self._keep(observed)
            count += 1
            if not (all_pages and has_next) or count >= MAX_PAGES or observed is None:
                return
            page = await self._call(op, state, "history.next", lambda p, pg=page: pg.next(),
                                    record=False, params={})
            if op.status != "ok" or page is None:
                return

    async def _canonical(self, op: OpRecord, state: ClientState) -> CanonicalRecord:
        channel = op.channel
        rec = CanonicalRecord(op.index, state.spec.name, channel,
                              [e for e in self.model.history_all(channel)
                               if e.id not in self.record.void])
        self.record.canonicals.append(rec)
        deadline = self.loop.time() + self.op_timeout
        delay = 0.0
        params = {"limit": CANONICAL_LIMIT, "direction": "forwards"}
        while True:
            rec.attempts += 1
            probe = OpRecord(op.step, op.client, op.channel, op.connection_id, params)
            page = await self._call(probe, state, "history (canonical)",
                                    lambda p: p.history(**params), record=False)
            if probe.status != "ok":
                rec.error = f"code {probe.error_code}: {probe.error_message}"
                return rec

            pages = _Pages()
            await self._read_pages(probe, state, pages, page, all_pages=True)
            if probe.status != "ok":
                rec.error = f"code {probe.error_code}: {probe.error_message}"
                return rec
            if pages.malformed is not None:
                rec.error = f"malformed history page: {pages.malformed!r}"
                return rec
            rec.observed = [s for page_items in pages.pages for s in page_items]
            rec.history_index = probe.done_index
            if (history_consistent(rec.expected, self.record.origins, rec.observed)
                    or self.loop.time() >= deadline):
                return rec
            await asyncio.sleep(delay)
            delay = min(max(delay * 2, 0.0005), self.settings.poll_interval)

    def _stamp_of(self, step_id: str, canonical: CanonicalRecord | None) -> int | None:
        """The implementation's timestamp of the first event the step `step_id` produced."""
        if canonical is None or canonical.observed is None:
            return None
        op = next((o for o in self.record.ops if o.step.id == step_id and o.events), None)
        if op is None:
            return None
        target = op.events[0]
        from harness.checks.matching import align, event_slots

        alignment = align(event_slots(canonical.expected, self.record.origins), canonical.observed)
        for seen, slot, _ in alignment.matched:
            if slot.event.id == target.id:
                stamp = seen.timestamp
                return stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else None
        return None

    # -- sync_complete -------------------------------------------------------------------------

    def _plan_sync_complete(self, op: OpRecord, state: ClientState
                            ) -> Callable[[], Awaitable[None]]:
        channel = op.channel
        expected = self.model.sync_complete(state.connection_id, channel)

        def done(value: Any) -> None:
            self.record.syncs.append(SyncRecord("step", op.index, state.spec.name, channel, None,
                                                expected, jsonable(value),
                                                op.step.args.get("expect"), op.done_index,
                                                op.step.requirements))
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
            value = await self._call(probe, state, "sync_complete", lambda p: p.sync_complete(),
                                     record=False, params={}) if polls == 1 else \
                await self._quiet_call(probe, state)
            if value is True or probe.status != "ok" or self.loop.time() >= deadline:
                break
            await asyncio.sleep(delay)
            delay = min(max(delay * 2, 0.0005), self.settings.poll_interval)
        index = self.history.record("info", state.spec.name, "sync_complete (after attach)",
                                    {"value": jsonable(value), "polls": polls}, op.index)
        self.record.syncs.append(SyncRecord("wait", op.index, state.spec.name, op.channel,
                                            op.kind, True, jsonable(value), None, index))

    async def _quiet_call(self, probe: OpRecord, state: ClientState) -> Any:
        """A repeated poll: not recorded unless it fails."""
        try:
            async with asyncio.timeout(self.op_timeout):
                return await self._presence(state, probe.channel).sync_complete()
        except TimeoutError:
            raise Abort(Outcome.TIMEOUT, f"{probe.step.label}: sync_complete did not answer "
                        f"within {self.op_timeout:g}s") from None
        except PresenceError as exc:
            probe.status = "fail"
            self.history.record("fail", state.spec.name, "sync_complete", {"code": exc.code},
                                probe.index)
            return None
        except Exception as exc:
            raise Abort(Outcome.ERROR, f"{probe.step.label}: sync_complete raised "
                        f"{type(exc).__name__}: {exc}") from exc

    # -- connections ---------------------------------------------------------------------------

    async def _connect(self, state: ClientState, step: Step | None) -> None:
        spec = state.spec
        capability = _capability_for(spec.capability, self.prefix)
        index = step.index if step else None
        self.history.record("invoke", spec.name, "connect",
                            {"client_id": spec.client_id, "capability": capability}, index)
        earlier = list(self.record.client_connections.get(spec.name, []))
        others = [c for n, ids in self.record.client_connections.items() if n != spec.name
                  for c in ids]
        state.refused = None
        state.listeners = {}
        try:
            async with asyncio.timeout(self.op_timeout):
                conn = await self.adapter.connect(spec.client_id, capability)
        except TimeoutError:
            self.history.record("timeout", spec.name, "connect", None, index)
            raise Abort(Outcome.TIMEOUT, f"{_where(step, spec.name)}: connect did not complete "
                        f"within {self.op_timeout:g}s") from None
        except PresenceError as exc:
            hi = self.history.record("fail", spec.name, "connect",
                                     {"code": jsonable(exc.code), "message": str(exc)}, index)
            state.refused = exc
            state.conn = None
            state.connection_id = f"refused-{spec.name}-{next(self._refused_ids)}"
            self.model.open_connection(state.model_client_id, spec.capability,
                                       connection_id=state.connection_id)
            state.connected = True
            self.record.connects.append(ConnectRecord(spec.name, index, None, earlier, others, exc,
                                                      hi))
            return
        except Exception as exc:
            self.history.record("fail", spec.name, "connect",
                                {"exception": f"{type(exc).__name__}: {exc}"}, index)
            raise Abort(Outcome.ERROR, f"{_where(step, spec.name)}: connect raised "
                        f"{type(exc).__name__}: {exc}") from exc
        conn_id = getattr(conn, "id", None)
        hi = self.history.record("ok", spec.name, "connect", {"connection_id": jsonable(conn_id)},
                                 index)
        if not isinstance(conn_id, str) or not conn_id:
            raise Abort(Outcome.ERROR, f"{_where(step, spec.name)}: the connection has no id "
                        f"(got {conn_id!r}); AdapterConnection.id must be the connectionId")
        self.record.connects.append(ConnectRecord(spec.name, index, conn_id, earlier, others, None,
                                                  hi))
        state.conn, state.connection_id, state.connected = conn, conn_id, True
        self.record.client_connections.setdefault(spec.name, []).append(conn_id)
        if conn_id in earlier or conn_id in others:
            state.connected = True
            raise Stop(f"connection id {conn_id!r} was given to an earlier connection")
        self.model.open_connection(state.model_client_id, spec.capability,
                                   connection_id=conn_id)

    async def _step_connect(self, step: Step) -> None:
        await self._connect(self.clients[step.client], step)

    async def _disconnect(self, step: Step, kind: str) -> None:
        state = self.clients[step.client]
        cid = state.connection_id
        op = OpRecord(step=step, client=step.client, channel=None, connection_id=cid)
        self.record.ops.append(op)
        if kind == "close":
            outcome = self.model.close_connection(cid)
        else:
            self.model.drop_connection(cid)
            outcome = self.model.expire_connection(cid)
            self.record.synthesized.update(e.id for e in outcome.events)
        op.events = list(outcome.events)
        channel_of = self._channels_of(outcome.events)
        for event in outcome.events:
            self.record.origins[event.id] = EventOrigin(kind, step.index, channel_of[event.id],
                                                        True, False)
        self._expect(outcome, step.index)
        if state.refused is None:
            self.history.record("invoke", state.spec.name, kind, None, step.index)
            try:
                async with asyncio.timeout(self.op_timeout):
                    await getattr(state.conn, kind)()
            except TimeoutError:
                self.history.record("timeout", state.spec.name, kind, None, step.index)
                raise Abort(Outcome.TIMEOUT, f"{step.label}: {kind} did not complete within "
                            f"{self.op_timeout:g}s") from None
            except Exception as exc:
                self.history.record("fail", state.spec.name, kind,
                                    {"exception": f"{type(exc).__name__}: {exc}"}, step.index)
                raise Abort(Outcome.ERROR, f"{step.label}: {kind} raised "
                            f"{type(exc).__name__}: {exc}") from exc
            op.status = "ok"
            self.history.record("ok", state.spec.name, kind, None, step.index)
        state.connected = False
        if kind == "drop":
            await self._settle_drop(step, state, cid, outcome)
        else:
            await self._wait_deliveries(self.op_timeout)

    def _channels_of(self, events: list[PresenceMessage]) -> dict[str, str]:
        """Model event id -> channel, for events just appended to the channels' logs."""
        out: dict[str, str] = {}
        if not events:
            return out
        for channel in self.scenario.channels:
            for event in self.model.history_all(channel)[-len(events):]:
                out[event.id] = channel
        return out

    async def _step_close(self, step: Step) -> None:
        await self._disconnect(step, "close")

    async def _step_drop(self, step: Step) -> None:
        await self._disconnect(step, "drop")

    def _observer(self, channel: str, exclude: str) -> ClientState | None:
        for state in self.clients.values():
            if (state.connected and state.refused is None and state.connection_id != exclude
                    and self.model.is_attached(state.connection_id, channel)):
                return state
        return None

    async def _settle_drop(self, step: Step, state: ClientState, cid: str,
                           outcome: ModelOutcome) -> None:
        """Wait for a drop's synthesized leaves: by listener where someone listens, else by
        watching get() from another attached connection, else by waiting the grace period."""
        channels = {self.record.origins[e.id].channel for e in outcome.events}
        observed = {d.channel for d in outcome.deliveries if d.min_count}
        if self.leave_grace > 0:
            for channel in sorted(channels):
                observer = self._observer(channel, cid)
                if observer is not None:
                    gone = await self._member_gone(observer, channel, cid, step)
                    self.record.drops.append(DropRecord(state.spec.name, step.index, channel,
                                                        gone, len(self.history.entries) - 1))
        await self._wait_deliveries(self.leave_grace + self.op_timeout)
        unobserved = sorted(channels - observed)
        if not unobserved:
            return
        await asyncio.sleep(self.leave_grace)
        deadline = self.loop.time() + self.op_timeout
        for channel in unobserved:
            observer = self._observer(channel, cid)
            delay = 0.0
            while observer is not None and self.loop.time() < deadline:
                if await self._member_gone(observer, channel, cid, step):
                    break
                await asyncio.sleep(delay)
                delay = min(max(delay * 2, 0.0005), self.settings.poll_interval)

    async def _member_gone(self, observer: ClientState, channel: str, cid: str, step: Step
                           ) -> bool:
        probe = OpRecord(step, observer.spec.name, channel, observer.connection_id)
        result = await self._call(probe, observer, "get (watch drop)",
                                  lambda p: p.get(connection_id=cid), params={"connection_id": cid})
        if probe.status != "ok" or not isinstance(result, list | tuple):
            return True
        return not any(Seen.read(m, "get", 0, None, channel).connection_id == cid for m in result)

    # -- waiting -------------------------------------------------------------------------------

    def _expect(self, outcome: ModelOutcome, step: int | None, op: OpRecord | None = None
                ) -> None:
        added = self._op_expected.setdefault(id(op), []) if op is not None else []
        for delivery in outcome.deliveries:
            event = delivery.event
            if event.action is Action.PRESENT:
                origin = EventOrigin("present", step, delivery.channel)
            else:
                origin = self.record.origins.get(event.id) or EventOrigin(
                    event.action.value, step, delivery.channel)
            key = (delivery.connection_id, delivery.listener)
            expected = Expected(event, origin, key, delivery.channel, delivery.min_count,
                                delivery.max_count, step)
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
        self.history.record("info", "runner", "wait", {"gave_up_after": timeout,
                                                       "missing": missing}, self.current_step)

    async def _expect_events(self, step: Step) -> None:
        name = step.args["listener"]
        # a listener name belongs to one client and channel (a loader rule); one record per
        # connection that client had
        records = [r for r in self.record.listeners.values() if r.name == name]
        wanted = len(step.args["events"])
        await self._wait_until(lambda: sum(len(r.received) for r in records) >= wanted,
                               self.op_timeout)
        observed = [s for r in records for s in r.received]
        expected = []
        for event in step.args["events"]:
            client = event["client"]
            expected.append((tuple(event["action"]), self.clients[client].model_client_id,
                             frozenset(self.record.client_connections.get(client, [])),
                             "data" in event, event.get("data")))
        index = self.history.record("info", "runner", "expect_events",
                                    {"listener": name, "count": len(observed)}, step.index)
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
            period = (self.settings.quiet_period if self.settings.quiet_period is not None
                      else self.adapter.quiet_period)
            await asyncio.sleep(period)
        for name, state in self.clients.items():
            if not state.connected or state.refused is not None:
                continue
            for channel in self.scenario.channels:
                if not self.model.is_attached(state.connection_id, channel):
                    continue
                op = OpRecord(Step("converge", len(self.scenario.steps), "(end of case)"), name,
                              channel, state.connection_id)
                rec = GetRecord("converge", None, name, channel, state.connection_id,
                                expected=self.model.get(channel))
                self.record.gets.append(rec)
                await self._read_members(op, state, rec, {}, poll=True)
        self.recording = False


def _open_action_outcome(model: PresenceModel, channel: str, outcome: ModelOutcome,
                         alternative: str) -> ModelOutcome:
    """The deliveries of an event the implementation may report with either of two actions
    (enter while present, update while absent): a listener whose filter takes only one of them
    may or may not get it (min 0); one that takes both must get it once."""
    import dataclasses

    event = outcome.events[-1]
    mine = {(d.connection_id, d.listener): d for d in outcome.deliveries if d.event.id == event.id}
    other: dict[tuple[str, str], Any] = {}
    try:  # the model has no public "who would receive this" query
        alt_event = event.with_action(Action(alternative))
        ch = model._channels[channel]
        for cid in sorted(ch.attached):
            for d in model._deliveries_to(model._connections[cid], channel, alt_event):
                other[(d.connection_id, d.listener)] = dataclasses.replace(d, event=event)
    except (AttributeError, KeyError):
        other = {}
    deliveries = [d for d in outcome.deliveries if d.event.id != event.id]
    for key in sorted(mine.keys() | other.keys()):
        a, b = mine.get(key), other.get(key)
        base = a or b
        deliveries.append(dataclasses.replace(
            base, min_count=min(a.min_count if a else 0, b.min_count if b else 0),
            max_count=max(a.max_count if a else 0, b.max_count if b else 0)))
    return ModelOutcome(events=list(outcome.events), deliveries=deliveries)


def _listener_state(model: PresenceModel, connection_id: str, channel: str) -> Any:
    """A copy of the model's listener registrations of one connection on one channel.
    (The model has no public API for this; only the driver's refusal-following uses it.)"""
    import copy

    conn = model._connections[connection_id]
    return copy.deepcopy(conn.listeners.get(channel, {}))


def _restore_listener_state(model: PresenceModel, connection_id: str, channel: str,
                            saved: Any) -> None:
    conn = model._connections[connection_id]
    conn.listeners[channel] = saved
    ch = model._channels.get(channel)
    if ch is not None and hasattr(ch, "listening"):
        if saved:
            ch.listening.add(connection_id)
        else:
            ch.listening.discard(connection_id)


@dataclass
class _Pages:
    """Pages read for the canonical history."""

    pages: list[list[Seen]] = field(default_factory=list)
    has_next: list[bool] = field(default_factory=list)
    malformed: Any = None


def _capability_for(capability: dict[str, list[str]] | None, prefix: str
                    ) -> dict[str, list[str]] | None:
    """The capability with logical channel names replaced by the names used in this run."""
    if capability is None:
        return None
    return {pattern if pattern == "*" else prefix + pattern: list(ops)
            for pattern, ops in capability.items()}


def _where(step: Step | None, client: str) -> str:
    return step.label if step else f"connecting client {client!r}"


def _summary(result: Any) -> Any:
    return None if result is None else jsonable(result)


def _items_json(items: list[Seen] | None, malformed: Any) -> Any:
    if items is None:
        return {"malformed": malformed}
    return [s.json for s in items]

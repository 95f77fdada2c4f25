"""Channel-lifecycle steps of the case driver: `attach`, `detach`, `channel_state`, and the
presence operations that a channel's state refuses (needs `Feature.CHANNEL_LIFECYCLE`).

The driver follows each client's channel states as the specification has them:
- `detach` (RTL5): the client's members on the channel leave (the service removes the members
  of a connection no longer attached; other clients hear a LEAVE each), and the client's own
  presence map is cleared silently (RTP5a): its listeners hear nothing until it attaches again,
  and its members are not re-entered then. Its listeners stay registered (they are local).
- `attach` (RTL4), or an implicit attach by `get` (RTP11e) or `subscribe` (RTP6d) of a detached
  channel: attached again; listeners hear PRESENT for the members the sync brings (RTP2d).
- an attach the service refuses (no capability on the channel) fails the channel (RTL14), and a
  presence operation queued behind that attach fails with it (RTL11).
- `enter`, `update`, `leave` (and on behalf of others) on a detached or failed channel are
  refused at once (RTP8g, RTP9e, RTP10e, RTP16c), and `get` on a failed one (RTP11e): the
  sentences name no code, so any code is accepted. Such an operation is planned here, not by its
  family, and recorded as a `LifecycleRecord` (`checks/lifecycle.py` judges them).
- a SUSPENDED channel (an `interrupt` with `suspend`, `fault_steps.py`, marks it with
  `suspend()`): `get` fails with 91005 (RTP11d), `get` without waiting for the sync returns the
  members the map held when it was suspended (RTP11d, RTP5f), and presence operations are
  refused (RTP16c); an operation issued while the transport is cut, on a channel not attached
  yet, waits behind the attach (RTP16b) and fails once the channel is SUSPENDED (RTL11,
  `plan_queued`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from presence_conformance.harness.adapter import AdapterChannel, PresenceError
from presence_conformance.harness.record.records import (
    EventOrigin,
    LifecycleRecord,
    OpRecord,
    jsonable,
)
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.calls import Call
from presence_conformance.harness.run.clients import ClientState
from presence_conformance.harness.run.deliveries import Deliveries
from presence_conformance.harness.run.state import CaseState, channel_of, ref_value
from presence_conformance.harness.run.stops import Abort, Stop, adapter_raised, raised
from presence_conformance.harness.scenario import Step
from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.model import ListenerState
from presence_conformance.reference_impl.types import PresenceMessage

__all__ = ["LifecycleSteps"]

_PUBLISH = frozenset({"enter", "update", "leave", "enter_client", "update_client", "leave_client"})
_REATTACH = frozenset({"get", "subscribe"})  # attach a detached channel implicitly
_REFUSED = frozenset({"detached", "failed"})

Key = tuple[str, str]  # (client, channel)


class LifecycleSteps:
    """The `attach`, `detach` and `channel_state` steps, and the state-refused operations."""

    def __init__(
        self,
        case: CaseState,
        deliveries: Deliveries,
        before_attach: Callable[[Sequence[Step]], Awaitable[None]],
    ) -> None:
        self.case = case
        self.deliveries = deliveries
        self.before_attach = before_attach  # the driver's wait before a connection attaches
        self.states: dict[Key, str] = {}  # states the steps set (else: derived from the model)
        self.saved: dict[Key, ListenerState] = {}  # listener registrations across a detach
        self.open_windows: dict[Key, LifecycleRecord] = {}  # detached, not attached again
        self.suspended: dict[Key, list[PresenceMessage]] = {}  # the members held when suspended

    def suspend(self, client: str, channel: str, members: list[PresenceMessage]) -> None:
        """The client's channel is SUSPENDED (RTL3c) holding `members` (RTP5f)."""
        self.suspended[(client, channel)] = members

    def unsuspend(self, client: str) -> None:
        """The client is back: its channels attach again (RTL3d)."""
        for key in [k for k in self.suspended if k[0] == client]:
            del self.suspended[key]

    def new_connection(self, client: str) -> None:
        """`client` connects again: the states its steps set belonged to the old connection."""
        for key in [k for k in self.states if k[0] == client]:
            del self.states[key]
        for key in [k for k in self.open_windows if k[0] == client]:
            self._close_window(key)

    # -- the state the model expects -----------------------------------------------------------

    def expected_state(self, state: ClientState, channel: str) -> str:
        if state.connection_id is not None and self.case.model.is_attached(state.cid, channel):
            return "attached"
        return self.states.get((state.spec.name, channel), "initialized")

    def _attached_again(self, state: ClientState, channel: str) -> None:
        key = (state.spec.name, channel)
        self.states[key] = "attached"
        self._close_window(key)

    def _close_window(self, key: Key) -> None:
        """The detached channel is being attached again: its listeners may hear it from now."""
        window = self.open_windows.pop(key, None)
        if window is not None and window.window is not None:
            window.window = (window.window[0], len(self.case.history))

    def _restore(self, state: ClientState, channel: str) -> None:
        saved = self.saved.pop((state.spec.name, channel), None)
        if saved is not None and not self.case.model.is_attached(state.cid, channel):
            self.case.model.restore_listener_state(state.cid, channel, saved)

    # -- hooks of the driver ----------------------------------------------------------------------

    def intercept(self, step: Step) -> tuple[OpRecord, Call] | None:
        """The plan of an operation the channel's state refuses, or None (the usual plan).
        Before a `get`/`subscribe` of a detached channel, puts back the model's listeners."""
        if step.channel is None or step.client is None:
            return None
        state = self.case.client(step)
        if state.connection_id is None or state.refused is not None:
            return None
        held = self.suspended.get((state.spec.name, step.channel))
        if held is not None:
            if step.kind == "get":
                return self._plan_suspended_get(step, state, held)
            if step.kind in _PUBLISH:
                return self._plan_refused(
                    step, state, "channel.publish-when-suspended", "suspended"
                )
            return None
        current = self.expected_state(state, step.channel)
        if step.kind in _REATTACH and current == "detached":
            self._restore(state, step.channel)
            self._close_window((state.spec.name, step.channel))
            return None
        if step.kind == "unsubscribe" and current == "detached":
            # RTP7: an unsubscribe removes listeners whatever the channel's state: it applies
            # to the registrations the detach put aside (put back first, the channel staying
            # detached), or a later attach would hand back the listeners it removed
            self._restore(state, step.channel)
            return None
        if step.kind == "get" and current != "failed" and not self._subscribes(state, step.channel):
            return self._plan_get_without_mode(step, state)
        if current not in _REFUSED:
            return None
        if step.kind in _PUBLISH:
            requirement = (
                "channel.enter-when-detached-or-failed"
                if step.kind in ("enter", "enter_client")
                else "channel.update-leave-when-detached-or-failed"
            )
        elif step.kind == "get" and current == "failed":
            requirement = "channel.get-when-failed"
        else:
            return None
        return self._plan_refused(step, state, requirement, current)

    def after_ops(self, ops: list[OpRecord]) -> None:
        """After planned operations ran: an implicit attach refused by the service failed the
        channel, and the operation queued behind it failed with it (RTL11); an implicit attach
        of a detached channel attached it again."""
        model = self.case.model
        for op in ops:
            if op.channel is None or op.client is None or op.kind == "converge":
                continue
            state = self.case.clients[op.client]
            if state.connection_id is None or state.refused is not None:
                continue
            key = (op.client, op.channel)
            if model.is_attached(state.cid, op.channel):
                if self.states.get(key) == "detached":
                    self._attached_again(state, op.channel)
                continue
            error = op.model_error
            if error is None or error.code != errors.CAPABILITY_DENIED:
                continue
            if op.kind not in _PUBLISH and op.kind not in ("get", "subscribe"):
                continue
            self.states[key] = "failed"
            if op.kind in _PUBLISH:
                self.case.record.lifecycle.append(
                    LifecycleRecord(
                        "queued",
                        op.index,
                        op.step.label,
                        op.client,
                        op.channel,
                        "channel.queued-fail-on-failed-attach",
                        "error",
                        _status(op.status),
                        op.error_code,
                        op.error_message,
                        op.done_index,
                    )
                )

    # -- steps --------------------------------------------------------------------------------

    async def step_attach(self, step: Step) -> None:
        case, model = self.case, self.case.model
        state = case.client(step)
        channel = channel_of(step)
        self._restore(state, channel)
        await self.before_attach([step])
        self._close_window((state.spec.name, channel))
        rec = self._record(step, state, "attach", "channel.reattach-no-reenter")
        try:
            outcome = model.attach(state.cid, channel)
        except PresenceError:
            rec.expected, rec.requirement = "error", "channel.failed-on-refused-attach"
            self.states[(state.spec.name, channel)] = "failed"
        else:
            self.deliveries.expect(outcome, step.index)
            self._attached_again(state, channel)
        await self._call(step, state, rec, "attach", lambda ch: ch.attach())
        await self.deliveries.wait(case.wait_budget)

    async def step_detach(self, step: Step) -> None:
        case, model, record = self.case, self.case.model, self.case.record
        state = case.client(step)
        channel = channel_of(step)
        key = (state.spec.name, channel)
        current = self.expected_state(state, channel)
        rec = self._record(step, state, "detach", "channel.detach-clears-silently")
        if current == "failed":
            rec.expected = "error"  # RTL5b
        elif current in ("initialized", "detached"):
            rec.requirement = "channel.detach-when-not-attached"  # RTL5a: nothing is done
        elif current == "attached":
            self.saved[key] = model.listener_state(state.cid, channel)
            outcome = model.detach_channel(state.cid, channel)
            for event in outcome.events:
                if event.id is not None:
                    record.origins[event.id] = EventOrigin("detach", step.index, channel)
            self.deliveries.expect(outcome, step.index)
            self.states[key] = "detached"
            rec.window = (len(case.history), None)
            self.open_windows[key] = rec
        await self._call(step, state, rec, "detach", lambda ch: ch.detach())
        await self.deliveries.wait(case.wait_budget)

    async def step_channel_state(self, step: Step) -> None:
        state = self.case.client(step)
        channel = channel_of(step)
        expected = self.expected_state(state, channel)
        written = step.args.get("expect")
        if written is not None and written != expected:
            raise Abort(
                Outcome.ERROR,
                f"{step.label}: the scenario expects the channel {written}, but the reference "
                f"model has it {expected} (a mistake in the scenario)",
            )
        rec = self._record(step, state, "state", _STATE_RULE[expected])
        rec.expected = expected
        await self._call(step, state, rec, "channel_state", lambda ch: ch.state())

    # -- get without the PRESENCE_SUBSCRIBE mode (RTP11f) ----------------------------------------

    def _subscribes(self, state: ClientState, channel: str) -> bool:
        """Whether the connection's capability grants subscribe on `channel` (so its attach is
        granted the PRESENCE_SUBSCRIBE mode: CHM2d, RTL4m)."""
        return self.case.model.receives_presence(state.cid, channel)

    def _plan_get_without_mode(
        self, step: Step, state: ClientState
    ) -> tuple[OpRecord, Call] | None:
        """A get() on a channel attached without PRESENCE_SUBSCRIBE: the members were never
        delivered, so it fails with 91008 (strictMode, RTP11f1) or proceeds, returning what the
        map holds (RTP11f2). The runner does not know strictMode: either is accepted, and
        nothing is demanded of the list. An attach the capability refuses: the usual plan."""
        case, model = self.case, self.case.model
        channel = channel_of(step)
        attached = model.is_attached(state.cid, channel)
        try:
            outcome = model.attach(state.cid, channel)
        except PresenceError:
            return None
        self.deliveries.expect(outcome, step.index)
        op = OpRecord(step, step.client, step.channel, state.connection_id)
        op.fresh_attach = not attached
        rec = self._record(step, state, "get-no-mode", "channel.get-without-presence-subscribe")
        rec.expected = "ok or 91008"
        case.history.record(
            "info",
            "runner",
            "get without PRESENCE_SUBSCRIBE",
            {"channel": channel, "accepted": "a list, or error 91008 (RTP11f)"},
            step.index,
        )

        async def call() -> None:
            await self._call(step, state, rec, "get", lambda ch: ch.presence.get())
            op.status = "fail" if rec.observed == "error" else "ok"
            if rec.observed == "ok" or rec.code == errors.PRESENCE_NOT_SUBSCRIBED:
                rec.expected = rec.observed or rec.expected

        return op, call

    def plan_queued(self, step: Step) -> tuple[OpRecord, Call]:
        """An operation of a client whose transport was just cut, on a channel it has not
        attached: it waits behind the channel's attach (RTP16b) and must fail once the channel
        is SUSPENDED (RTL11); the model does not apply it."""
        state = self.case.client(step)
        return self._plan_refused(
            step, state, "channel.queued-fail-on-suspended", "attaching", kind="queued-suspended"
        )

    # -- a SUSPENDED channel (RTP11d) -----------------------------------------------------------

    def _plan_suspended_get(
        self, step: Step, state: ClientState, held: list[PresenceMessage]
    ) -> tuple[OpRecord, Call]:
        """get() on a SUSPENDED channel: error 91005, or without waiting for the sync the
        members held when the channel was suspended (RTP11d)."""
        op = OpRecord(step, step.client, step.channel, state.connection_id)
        wait = step.args.get("wait_for_sync", True) is not False
        filters = {k: step.args[k] for k in ("client_id", "connection_id") if k in step.args}
        for key, value in list(filters.items()):
            if isinstance(value, dict) and "of" in value:  # a reference to a client
                other = self.case.clients[value["of"]]
                filters[key] = ref_value(
                    value, other.model_client_id if key == "client_id" else other.cid
                )
        if wait:
            rec = self._record(step, state, "suspended-get", "channel.get-when-suspended")
            rec.expected = f"error {errors.OUT_OF_SYNC}"
        else:
            rec = self._record(
                step, state, "suspended-members", "channel.get-when-suspended-no-wait"
            )
            rec.expected = _members(
                m
                for m in held
                if filters.get("client_id") in (None, m.client_id)
                and filters.get("connection_id") in (None, m.connection_id)
            )
        self.case.history.record(
            "info",
            "runner",
            "channel state",
            {"channel": step.channel, "state": "suspended", "expected": rec.expected},
            step.index,
        )

        async def call() -> None:
            result: dict[str, Any] = {}

            async def get(presence: Any) -> Any:
                result["members"] = await presence.get(wait_for_sync=wait, **filters)
                return result["members"]

            await self._call(step, state, rec, "get", lambda ch: get(ch.presence))
            op.status = "fail" if rec.observed == "error" else "ok"
            if rec.observed == "error":
                rec.observed = f"error {rec.code}"
            elif rec.observed == "ok":
                members = result.get("members")
                rec.observed = _members(members) if isinstance(members, list) else repr(members)

        return op, call

    # -- internals ------------------------------------------------------------------------------

    def _record(
        self, step: Step, state: ClientState, kind: str, requirement: str
    ) -> LifecycleRecord:
        rec = LifecycleRecord(
            kind, step.index, step.label, state.spec.name, channel_of(step), requirement, "ok"
        )
        self.case.record.lifecycle.append(rec)
        return rec

    def _plan_refused(
        self,
        step: Step,
        state: ClientState,
        requirement: str,
        current: str,
        kind: str = "refused",
    ) -> tuple[OpRecord, Call]:
        op = OpRecord(step, step.client, step.channel, state.connection_id)
        rec = self._record(step, state, kind, requirement)
        rec.expected = "error"
        data = step.args.get("data")
        calls: dict[str, Callable[[Any], Awaitable[Any]]] = {
            "enter": lambda p: p.enter(data),
            "update": lambda p: p.update(data),
            "leave": lambda p: p.leave(data),
            "enter_client": lambda p: p.enter_client(step.args["client_id"], data),
            "update_client": lambda p: p.update_client(step.args["client_id"], data),
            "leave_client": lambda p: p.leave_client(step.args["client_id"], data),
            "get": lambda p: p.get(),
        }
        factory = calls[step.kind]
        self.case.history.record(
            "info",
            "runner",
            "channel state",
            {"channel": step.channel, "state": current},
            step.index,
        )

        async def call() -> None:
            await self._call(step, state, rec, step.kind, lambda ch: factory(ch.presence))
            op.status = "fail" if rec.observed == "error" else "ok"

        return op, call

    async def _call(
        self,
        step: Step,
        state: ClientState,
        rec: LifecycleRecord,
        f: str,
        factory: Callable[[AdapterChannel], Awaitable[Any]],
    ) -> None:
        case = self.case
        name = state.spec.name
        if state.conn is None:
            raise Stop(f"{step.label}: client {name!r} has no connection")
        channel = state.conn.channel(case.record.channels[rec.channel])
        case.history.record("invoke", name, f, None, step.index)
        try:
            async with asyncio.timeout(case.op_timeout):
                result = await factory(channel)
        except TimeoutError:
            case.history.record("timeout", name, f, None, step.index)
            raise Abort(
                Outcome.TIMEOUT, f"{step.label}: {f} did not complete within {case.op_timeout:g}s"
            ) from None
        except PresenceError as exc:
            rec.observed, rec.code, rec.message = "error", exc.code, str(exc)
            rec.history_index = case.history.record(
                "fail", name, f, {"code": exc.code, "message": str(exc)}, step.index, bound_now=True
            )
            return
        except BaseException as exc:
            if not adapter_raised(exc):
                raise
            case.history.record("fail", name, f, {"exception": raised(exc)}, step.index)
            raise Abort(
                Outcome.ERROR, f"{step.label}: the adapter raised {raised(exc)} in {f}"
            ) from exc
        if rec.kind == "state":
            rec.observed = result if isinstance(result, str) else repr(result)
        else:
            rec.observed = "ok"
        rec.history_index = case.history.record(
            "ok", name, f, rec.observed if rec.kind == "state" else None, step.index
        )


def _members(members: Any) -> str:
    """A list of members as a comparable text: sorted (clientId, data)."""
    return repr(
        sorted(
            repr((getattr(m, "client_id", None), jsonable(getattr(m, "data", None))))
            for m in members
        )
    )


def _status(status: str) -> str | None:
    return {"ok": "ok", "fail": "error"}.get(status)


_STATE_RULE = {
    "attached": "channel.reattach-no-reenter",
    "detached": "channel.detach-clears-silently",
    "failed": "channel.failed-on-refused-attach",
    "initialized": "channel.detach-when-not-attached",
}

"""`server:` steps of the case driver: commands to the server the client under test talks to
(Feature.SERVER_CONTROL), and the observation of that client afterwards.

The first server step for a (client, channel) subscribes a watching listener on that client's
channel (all actions) and notes how many frames the server had sent it there. Each step then
issues its command through the adapter's `server_control` (`harness/adapters/control.py`),
records it in the history with the frames it sent, and waits (bounded, model-free) until the
client shows what the client-side oracle computes from every frame sent so far: as many events,
the same members from `get()` (without waiting for a sync when the adapter can, otherwise only
once no sync is in flight), then lets the client settle and takes the observation (`Mark`). At
the end of the case each staged pair is observed once more (the frames of later steps).

The driver never judges: `harness/checks/client_oracle.py` replays the frames through the oracle
and compares. The reference model (server side) does not know what a server step staged; the
scenario loader keeps the pair out of its listener and `get` expectations (`server-staged`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from presence_conformance.harness.adapter import Feature
from presence_conformance.harness.adapters.control import ControlError
from presence_conformance.harness.record.records import OpRecord, Seen, jsonable
from presence_conformance.harness.record.staged import (
    Mark,
    StagedRecord,
    client_oracle,
    same_members,
)
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.calls import Calls
from presence_conformance.harness.run.clients import ClientState
from presence_conformance.harness.run.poll import poll_until
from presence_conformance.harness.run.state import CaseState, channel_of
from presence_conformance.harness.run.stops import Abort
from presence_conformance.harness.scenario import Step
from presence_conformance.reference_impl.client_presence import ClientPresence
from presence_conformance.reference_impl.protocol import HAS_PRESENCE, ProtocolAction

__all__ = ["ServerSteps"]

_ITEM_KEYS = ("action", "serial", "index", "timestamp", "data", "synthesized", "omit")


def reattaching(frames: list[dict[str, Any]], oracle: ClientPresence) -> bool:
    """True while a client told DETACHED (RTL13a: it re-attaches at once) has not been sent the
    ATTACHED of its re-attach, or the sync that ATTACHED announced has not ended."""
    last_detached = max(
        (i for i, f in enumerate(frames) if f.get("action") == ProtocolAction.DETACHED), default=-1
    )
    if last_detached < 0:
        return False
    attached = [
        f for f in frames[last_detached + 1 :] if f.get("action") == ProtocolAction.ATTACHED
    ]
    if not attached:
        return True
    flags = attached[-1].get("flags")
    return bool(isinstance(flags, int) and flags & HAS_PRESENCE) and oracle.sync_in_progress


def _where(state: ClientState, channel: str) -> tuple[str, str, str | None]:
    return state.spec.name, channel, state.connection_id


class ServerSteps:
    """The `server:` step and the end-of-case observation of the staged pairs."""

    def __init__(self, case: CaseState, calls: Calls) -> None:
        self.case = case
        self.calls = calls

    @property
    def control(self) -> Any:
        control = getattr(self.case.adapter, "server_control", None)
        if control is None:
            raise Abort(
                Outcome.ERROR,
                f"adapter {self.case.adapter.name!r} declares server-control but has no "
                "server_control",
            )
        return control

    async def step_server(self, step: Step) -> None:
        case = self.case
        state = case.client(step)
        staged = await self._staged(state, step)
        command = self._command(step, state, staged)
        oracle = client_oracle()
        oracle.feed(await self.control.sent(staged.connection_id, staged.wire_channel))
        staged.own[step.index] = [
            {"client_id": m.client_id, "id": m.id, "data": jsonable(m.data)}
            for m in oracle.members()
            if m.connection_id == staged.connection_id
        ]
        name = f"server {command['do']}"
        case.history.record("invoke", state.spec.name, name, jsonable(command), step.index)
        try:
            frames = await self.control.run(command)
        except ControlError as exc:
            raise Abort(Outcome.ERROR, f"{step.label}: the server refused: {exc}") from None
        case.history.record("ok", state.spec.name, name, {"frames": jsonable(frames)}, step.index)
        staged.commands.append((step.index, command, frames))
        await self.observe(staged, state, step)

    async def finish(self) -> None:
        """The end of the case: observe every staged pair whose client is still connected."""
        for (client, _), staged in self.case.record.staged.items():
            state = self.case.clients[client]
            if state.connected and state.connection_id == staged.connection_id:
                await self.observe(staged, state, None)
                await self._channel_events(staged, state)
            staged.frames = await self.control.sent(staged.connection_id, staged.wire_channel)

    async def _channel_events(self, staged: StagedRecord, state: ClientState) -> None:
        """The channel's state changes (Feature.CHANNEL_EVENTS); after a refused re-entry,
        waited for (bounded) until an UPDATE came (RTP17e)."""
        case = self.case
        if not case.adapter.supports(Feature.CHANNEL_EVENTS) or state.conn is None:
            return
        channel = state.conn.channel(staged.wire_channel)
        refused = any(c.get("refuse_reentry") for _, c, _ in staged.commands)

        async def attempt() -> bool:
            async with asyncio.timeout(case.op_timeout):
                staged.channel_events = list(await channel.state_changes())
            return not refused or any(e.get("event") == "update" for e in staged.channel_events)

        await poll_until(
            attempt,
            case.deadline(case.wait_budget),
            case.settings.poll_interval,
            case.settled,
            lambda: len(staged.channel_events or ()),
        )
        case.history.record(
            "info",
            state.spec.name,
            "channel events",
            {"channel": staged.channel, "events": jsonable(staged.channel_events)},
            None,
        )

    # -- internals ------------------------------------------------------------------------------

    async def _staged(self, state: ClientState, step: Step) -> StagedRecord:
        case = self.case
        channel = channel_of(step)
        key = (state.spec.name, channel)
        staged = case.record.staged.get(key)
        if staged is not None and staged.connection_id == state.cid:
            return staged
        wire_channel = case.record.channels[channel]
        staged = StagedRecord(state.spec.name, channel, wire_channel, state.cid)
        case.record.staged[key] = staged
        process = f"{state.spec.name}/server-watch"

        def listener(message: Any) -> None:
            if threading.get_ident() != case.thread:
                case.loop.call_soon_threadsafe(listener, message)
                return
            if not case.recording:
                return
            index = len(case.history)
            seen = Seen.read(message, "event", index, case.current_step, channel)
            case.history.record("event", process, "event", seen.json, case.current_step)
            staged.events.append(seen)

        await self._caught_up(state, staged, OpRecord(step, *_where(state, channel)))
        probe = OpRecord(step, state.spec.name, channel, state.connection_id)
        if not case.model.is_attached(state.cid, channel):
            # not attached yet: attach it (a get, which waits for the attach's sync) before the
            # watching listener exists, whose events count only from the first command; and
            # tell the model, or a later detach or channel_state is judged against a channel
            # never attached
            case.model.attach(state.cid, channel)
            await self.calls.quiet_call(probe, state, "get (attach)", lambda p: p.get())
        await self.calls.call(
            probe, state, "subscribe", lambda p: p.subscribe(listener, None), params={"watch": True}
        )
        if probe.status != "ok":
            raise Abort(Outcome.ERROR, f"{step.label}: the watching subscribe failed")
        staged.start = len(await self.control.sent(state.cid, wire_channel))
        return staged

    async def _caught_up(self, state: ClientState, staged: StagedRecord, probe: OpRecord) -> None:
        """Before the watch starts: wait (bounded, not judged) until the client's members are
        those of every frame the server has sent it on the channel. A frame is sent before it
        arrives, and nothing promises when it arrives (a server may hold frames to one
        connection longer than to another): one sent before the watch but received after it
        would be an event the oracle does not count."""
        case = self.case
        can_wait_false = case.adapter.supports(Feature.WAIT_FOR_SYNC_OPTION)

        async def attempt() -> bool:
            frames = await self.control.sent(staged.connection_id, staged.wire_channel)
            oracle = client_oracle()
            oracle.feed(frames)
            if oracle.sync_in_progress and not can_wait_false:
                return False
            result = await self._read_members(probe, state)
            if not isinstance(result, list):
                return True  # the observation will tell
            return same_members(result, oracle.members())

        await poll_until(
            attempt, case.deadline(case.wait_budget), case.settings.poll_interval, case.settled
        )

    async def _read_members(self, probe: OpRecord, state: ClientState) -> Any:
        """The client's members, unrecorded: `get(waitForSync=false)` where the adapter offers
        it, else `get()` (callers only make it when no sync is in flight)."""
        can_wait_false = self.case.adapter.supports(Feature.WAIT_FOR_SYNC_OPTION)
        probe.status = "ok"
        return await self.calls.quiet_call(
            probe,
            state,
            "get",
            lambda p: p.get(wait_for_sync=False) if can_wait_false else p.get(),
            record=False,
        )

    def _command(self, step: Step, state: ClientState, staged: StagedRecord) -> dict[str, Any]:
        args = dict(step.args)
        name = args.pop("command")
        command: dict[str, Any] = {
            "do": name,
            "connection": staged.connection_id,
            "channel": staged.wire_channel,
        }
        if "omit" in args:
            command["omit"] = [
                self.case.scenario.clients[c].client_id for c in args.pop("omit") or ()
            ]
        for key in ("add", "frames", "between"):
            if key not in args:
                continue
            value = args.pop(key)
            if key == "add":
                command[key] = [self._item(i) for i in value]
            else:
                command[key] = [[self._item(i) for i in frame] for frame in value]
        command.update(args)
        return command

    def _item(self, item: dict[str, Any]) -> dict[str, Any]:
        out = {k: item[k] for k in (*_ITEM_KEYS, "client_id", "connection_id", "id") if k in item}
        if "of" in item:
            other = self.case.clients[item["of"]]
            out.setdefault("client_id", other.spec.client_id)
            out.setdefault("connection_id", other.connection_id)
        return out

    async def _mark(
        self,
        staged: StagedRecord,
        state: ClientState,
        step: Step | None,
        probe: OpRecord,
        attempt: Callable[[], Awaitable[bool]],
        snapshot: dict[str, Any],
        deadline: float,
    ) -> Mark:
        """Poll `attempt` until the client caught up, let it settle, and read the observation."""
        case = self.case
        adapter = case.adapter
        can_wait_false = adapter.supports(Feature.WAIT_FOR_SYNC_OPTION)
        await poll_until(
            attempt,
            deadline,
            case.settings.poll_interval,
            case.settled,
            lambda: (snapshot.get("get"), len(staged.events), snapshot.get("frames")),
        )
        if not await case.settled():
            await asyncio.sleep(case.settings.quiet_period or adapter.quiet_period)
        frames = await self.control.sent(staged.connection_id, staged.wire_channel)
        mark = Mark(
            step.index if step is not None else None,
            step.requirements if step is not None else (),
            len(frames),
            len(staged.events),
            None,
            label=step.label if step is not None else "(end of case)",
        )
        oracle = client_oracle()
        oracle.feed(frames)
        if can_wait_false or not oracle.sync_in_progress:
            result = await self._read_members(probe, state)
            if probe.status == "ok" and isinstance(result, list):
                index = len(case.history)
                mark.get = [
                    Seen.read(m, "get", index, case.current_step, staged.channel) for m in result
                ]
            else:
                mark.get_error = jsonable(result)
        if adapter.supports(Feature.SYNC_COMPLETE):
            probe.status = "ok"
            mark.sync_complete = await self.calls.quiet_call(
                probe, state, "sync_complete", lambda p: p.sync_complete(), record=False
            )
        return mark

    async def observe(self, staged: StagedRecord, state: ClientState, step: Step | None) -> None:
        """Wait until the client shows what the oracle computes from the frames sent so far
        (bounded), let it settle, and record the observation."""
        case = self.case
        adapter = case.adapter
        can_wait_false = adapter.supports(Feature.WAIT_FOR_SYNC_OPTION)
        probe = OpRecord(
            step or Step("server-watch", len(case.scenario.steps), "(end of case)"),
            state.spec.name,
            staged.channel,
            state.connection_id,
        )
        snapshot: dict[str, Any] = {}

        async def attempt() -> bool:
            frames = await self.control.sent(staged.connection_id, staged.wire_channel)
            oracle = client_oracle()
            oracle.feed(frames[: staged.start])
            wanted = len(oracle.feed(frames[staged.start :]))
            snapshot["frames"] = len(frames)
            snapshot["syncing"] = oracle.sync_in_progress
            members = None
            if can_wait_false or not oracle.sync_in_progress:
                result = await self._read_members(probe, state)
                members = result if isinstance(result, list) else None
            snapshot["get"] = None if members is None else jsonable(members)
            if reattaching(frames, oracle):
                return False
            return len(staged.events) >= wanted and (
                members is None or same_members(members, oracle.members())
            )

        deadline = case.deadline(case.wait_budget)
        while True:
            mark = await self._mark(staged, state, step, probe, attempt, snapshot, deadline)
            # A server may send frames of its own accord (a sync at any point, RTP18): the
            # observation holds only if no frame was sent between the caught-up read and the
            # end of the observation; otherwise it is taken again (bounded)
            after = await self.control.sent(staged.connection_id, staged.wire_channel)
            stable = snapshot.get("frames") == mark.frames == len(after)
            if stable or case.loop.time() >= deadline:
                break
        mark.history_index = case.history.record(
            "info",
            state.spec.name,
            "server-watch",
            {
                "frames": mark.frames,
                "events": mark.events,
                "get": None if mark.get is None else [s.json for s in mark.get],
                "sync_complete": jsonable(mark.sync_complete),
            },
            mark.step,
        )
        staged.marks.append(mark)
        staged.frames = after

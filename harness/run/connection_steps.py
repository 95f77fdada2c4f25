"""Connection steps for the case driver: connect, close and drop (with the wait for a drop's
synthesized leaves: by listener where someone listens, else by watching get() from another
attached connection, else by waiting the grace period)."""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

from presence_conformance.harness.adapter import PresenceError
from presence_conformance.harness.record.records import (
    ConnectRecord,
    DropRecord,
    EventOrigin,
    OpRecord,
    Seen,
    jsonable,
)
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.stops import Abort, Stop
from presence_conformance.harness.scenario import Step
from presence_conformance.reference_impl.model import Outcome as ModelOutcome
from presence_conformance.reference_impl.model import PresenceModel
from presence_conformance.reference_impl.types import PresenceMessage

if TYPE_CHECKING:
    from presence_conformance.harness.run.driver import ClientState


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


class ConnectionSteps:
    """Mixed into `CaseDriver`: the `connect`, `close` and `drop` steps."""

    _refused_ids = itertools.count(1)

    async def _connect(self, state: ClientState, step: Step | None) -> None:
        spec = state.spec
        capability = _capability_for(spec.capability, self.prefix)
        index = step.index if step else None
        self.history.record(
            "invoke",
            spec.name,
            "connect",
            {"client_id": spec.client_id, "capability": capability},
            index,
        )
        earlier = list(self.record.client_connections.get(spec.name, []))
        others = [
            c for n, ids in self.record.client_connections.items() if n != spec.name for c in ids
        ]
        state.refused = None
        state.listeners = {}
        try:
            async with asyncio.timeout(self.op_timeout):
                conn = await self.adapter.connect(spec.client_id, capability)
        except TimeoutError:
            self.history.record("timeout", spec.name, "connect", None, index)
            raise Abort(
                Outcome.TIMEOUT,
                f"{_where(step, spec.name)}: connect did not complete within {self.op_timeout:g}s",
            ) from None
        except PresenceError as exc:
            hi = self.history.record(
                "fail",
                spec.name,
                "connect",
                {"code": jsonable(exc.code), "message": str(exc)},
                index,
            )
            state.refused = exc
            state.refusal_allowed = _model_refuses(spec.client_id)
            state.conn = None
            state.connection_id = f"refused-{spec.name}-{next(self._refused_ids)}"
            self.model.open_connection(
                state.model_client_id, spec.capability, connection_id=state.connection_id
            )
            state.connected = True
            self.record.connects.append(
                ConnectRecord(spec.name, index, None, earlier, others, exc, hi)
            )
            return
        except Exception as exc:
            self.history.record(
                "fail", spec.name, "connect", {"exception": f"{type(exc).__name__}: {exc}"}, index
            )
            raise Abort(
                Outcome.ERROR,
                f"{_where(step, spec.name)}: connect raised {type(exc).__name__}: {exc}",
            ) from exc
        conn_id = getattr(conn, "id", None)
        hi = self.history.record(
            "ok", spec.name, "connect", {"connection_id": jsonable(conn_id)}, index
        )
        if not isinstance(conn_id, str) or not conn_id:
            raise Abort(
                Outcome.ERROR,
                f"{_where(step, spec.name)}: the connection has no id "
                f"(got {conn_id!r}); AdapterConnection.id must be the connectionId",
            )
        self.record.connects.append(
            ConnectRecord(spec.name, index, conn_id, earlier, others, None, hi)
        )
        state.conn, state.connection_id, state.connected = conn, conn_id, True
        self.record.client_connections.setdefault(spec.name, []).append(conn_id)
        if conn_id in earlier or conn_id in others:
            state.connected = True
            raise Stop(f"connection id {conn_id!r} was given to an earlier connection")
        self.model.open_connection(state.model_client_id, spec.capability, connection_id=conn_id)

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
            self.record.origins[event.id] = EventOrigin(
                kind, step.index, channel_of[event.id], True, False
            )
        self._expect(outcome, step.index)
        if state.refused is None:
            self.history.record("invoke", state.spec.name, kind, None, step.index)
            try:
                async with asyncio.timeout(self.op_timeout):
                    await getattr(state.conn, kind)()
            except TimeoutError:
                self.history.record("timeout", state.spec.name, kind, None, step.index)
                raise Abort(
                    Outcome.TIMEOUT,
                    f"{step.label}: {kind} did not complete within {self.op_timeout:g}s",
                ) from None
            except Exception as exc:
                self.history.record(
                    "fail",
                    state.spec.name,
                    kind,
                    {"exception": f"{type(exc).__name__}: {exc}"},
                    step.index,
                )
                raise Abort(
                    Outcome.ERROR, f"{step.label}: {kind} raised {type(exc).__name__}: {exc}"
                ) from exc
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
            for event in self.model.history_all(channel)[-len(events) :]:
                out[event.id] = channel
        return out

    async def _step_close(self, step: Step) -> None:
        await self._disconnect(step, "close")

    async def _step_drop(self, step: Step) -> None:
        await self._disconnect(step, "drop")

    def _observer(self, channel: str, exclude: str) -> ClientState | None:
        for state in self.clients.values():
            if (
                state.connected
                and state.refused is None
                and state.connection_id != exclude
                and self.model.is_attached(state.connection_id, channel)
            ):
                return state
        return None

    async def _settle_drop(
        self, step: Step, state: ClientState, cid: str, outcome: ModelOutcome
    ) -> None:
        """Wait for a drop's synthesized leaves: by listener where someone listens, else by
        watching get() from another attached connection, else by waiting the grace period."""
        channels = {self.record.origins[e.id].channel for e in outcome.events}
        observed = {d.channel for d in outcome.deliveries if d.min_count}
        if self.leave_grace > 0:
            for channel in sorted(channels):
                observer = self._observer(channel, cid)
                if observer is not None:
                    gone = await self._member_gone(observer, channel, cid, step)
                    self.record.drops.append(
                        DropRecord(
                            state.spec.name,
                            step.index,
                            channel,
                            gone,
                            len(self.history.entries) - 1,
                        )
                    )
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

    async def _member_gone(self, observer: ClientState, channel: str, cid: str, step: Step) -> bool:
        probe = OpRecord(step, observer.spec.name, channel, observer.connection_id)
        result = await self._call(
            probe,
            observer,
            "get (watch drop)",
            lambda p: p.get(connection_id=cid),
            params={"connection_id": cid},
        )
        if probe.status != "ok" or not isinstance(result, list | tuple):
            return True
        return not any(Seen.read(m, "get", 0, None, channel).connection_id == cid for m in result)

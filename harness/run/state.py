"""`CaseState`: what every part of the case driver shares for one case (the scenario, the
adapter, the settings, the reference model, the history and record, the clients, the loop and
the timeouts), built once per case and handed to each collaborator."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import threading

from presence_conformance.harness.adapter import Adapter, AdapterPresence
from presence_conformance.harness.record.history import History
from presence_conformance.harness.record.records import CaseRecord
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run import clock
from presence_conformance.harness.run.clients import ClientState
from presence_conformance.harness.run.settings import RunSettings
from presence_conformance.harness.run.stops import Abort, adapter_raised, raised
from presence_conformance.harness.scenario import Scenario, Step
from presence_conformance.reference_impl.model import PresenceModel

__all__ = ["CaseState", "channel_of", "ref_value"]


class CaseState:
    """The shared state of one case. Built inside the running event loop (`loop` and `thread`
    are where listener callbacks are brought back to)."""

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
        self.wait_budget = settings.wait_budget
        self.can_quiesce: bool | None = None  # unknown until the adapter's quiesce() answers
        # loop time until which timers may still produce events (a drop's leaves, after the
        # grace): quiesce() only covers events already produced, so no settling before then
        self.timers_due = 0.0
        grace = settings.leave_grace if settings.leave_grace is not None else adapter.leave_grace
        self.leave_grace = float(grace or 0.0)
        self.recording = True  # listener callbacks record events until the case is over
        self.current_step: int | None = None

    def client(self, step: Step) -> ClientState:
        """The client a step acts as (the loader gives every operation step one)."""
        if step.client is None:
            raise RuntimeError(f"{step.label}: the step has no client")
        return self.clients[step.client]

    def presence(self, state: ClientState, channel: str) -> AdapterPresence:
        """The adapter's presence object of `state`'s connection on the logical `channel`."""
        assert state.conn is not None
        return state.conn.channel(self.record.channels[channel]).presence

    async def quiesce(self) -> bool:
        """The adapter's `quiesce()` under the operation timeout: True once every event the
        implementation produced so far has reached its listeners. False when the adapter cannot
        tell (then it is not asked again in this case) or raised an `Exception`; any other
        exception it raises stops the case (`Abort`)."""
        if self.can_quiesce is False:
            return False
        try:
            async with clock.timeout(self.op_timeout):
                quiet = bool(await self.adapter.quiesce())
        except Exception:  # an adapter that cannot quiesce is watched for its quiet period
            quiet = False
        except BaseException as exc:
            if not adapter_raised(exc):
                raise
            raise Abort(Outcome.ERROR, f"quiesce raised {raised(exc)}") from exc
        if quiet:
            self.can_quiesce = True
        elif self.can_quiesce is None:
            self.can_quiesce = False
        return quiet

    async def settled(self) -> bool:
        """`quiesce()` when the settings allow settling on it (`RunSettings.settle`) and no
        timer of the implementation may still produce events (`timers_due`)."""
        if not self.settings.settle or self.loop.time() < self.timers_due:
            return False
        return await self.quiesce()

    def timer_started(self, seconds: float) -> None:
        """The implementation started a timer that produces events after `seconds` (a drop's
        grace period): no settling until then, with a margin for the timer's own lateness."""
        self.timers_due = max(self.timers_due, self.due(self.loop.time(), seconds))

    def due(self, started: float, seconds: float) -> float:
        """The loop time by which a timer of the implementation started at `started` for
        `seconds` has fired, give or take its lateness: 10% and 50 ms; for an implementation
        that starts its timers within the call on this loop (`drops_noticed_at_once`), 2% and
        1 ms (its timer and the runner's wake-up run on one loop: a stalled loop delays both,
        the earlier first; `started` is read once the call has returned, so the timer was
        started by then)."""
        share, fixed = (
            (0.02, 0.001) if getattr(self.adapter, "drops_noticed_at_once", False) else (0.1, 0.05)
        )
        return started + seconds * (1 + share) + fixed

    def deadline(self, timeout: float) -> float:
        """The loop time `timeout` seconds from now."""
        return self.loop.time() + timeout


def channel_of(step: Step) -> str:
    """The channel a step acts on (the loader gives every channel operation one)."""
    if step.channel is None:
        raise RuntimeError(f"{step.label}: the step has no channel")
    return step.channel


def ref_value(ref: dict, resolved: str | None) -> str | None:
    """The filter a `{of: CLIENT}` reference stands for: `resolved` (that client's clientId or
    connectionId), without its last character with `prefix: true` (a strict prefix of a real id:
    an exact-match filter finds nothing by it)."""
    if ref.get("prefix") and resolved:
        return resolved[:-1] or resolved
    return resolved

"""`Calls`: the adapter calls of a case, each under the operation timeout and recorded in the
history (invoke, then ok / fail / timeout), and `Refusals`: how the model follows an
implementation that refused an operation the model accepted.

A timeout or an exception other than `PresenceError` stops the case (`Abort`); a
`PresenceError` is recorded on the operation (`status` "fail") and the case goes on. "An
exception" is any `BaseException` the adapter raises (SystemExit, KeyboardInterrupt,
GeneratorExit, a CancelledError of its own): only a cancellation of the run itself propagates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from presence_conformance.harness.adapter import AdapterPresence, PresenceError
from presence_conformance.harness.record.records import OpRecord, Seen, jsonable
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run import clock
from presence_conformance.harness.run.clients import ClientState
from presence_conformance.harness.run.deliveries import Deliveries
from presence_conformance.harness.run.state import CaseState
from presence_conformance.harness.run.stops import Abort, adapter_raised, raised, summary
from presence_conformance.reference_impl.model import Outcome as ModelOutcome

__all__ = ["Call", "Calls", "Refusals", "Undo"]

Call = Callable[[], Awaitable[None]]  # a planned step's adapter call, run by the driver
Undo = Callable[[], ModelOutcome | None]  # puts the model back as before an operation


class Refusals:
    """What the model must undo when the implementation refuses an operation it accepted."""

    def __init__(self, case: CaseState, deliveries: Deliveries) -> None:
        self.case = case
        self.deliveries = deliveries
        self._undo: dict[int, Undo] = {}  # id(op) -> puts the model back

    def on_refusal(self, op: OpRecord, undo: Undo) -> None:
        """How to put the model back should the implementation refuse `op`."""
        self._undo[id(op)] = undo

    def follow(self, op: OpRecord) -> None:
        """The implementation refused what the model accepted: put the model back as it was, so
        that one refusal is reported once (unexpected_errors) and does not cascade. The events
        involved are voided: no check expects them anywhere."""
        undo = self._undo.pop(id(op), None)
        void = {e.model_id for e in op.events}
        if undo is not None:
            compensation = undo()
            if compensation is not None:
                void.update(e.model_id for e in compensation.events)
        self.case.record.void.update(void)
        self.deliveries.withdraw(op, void)


class Calls:
    """Adapter calls under the operation timeout, recorded in the history."""

    def __init__(self, case: CaseState, refusals: Refusals) -> None:
        self.case = case
        self.refusals = refusals

    def invoker(
        self,
        op: OpRecord,
        state: ClientState,
        f: str,
        factory: Callable[[AdapterPresence], Awaitable[Any]],
        done: Callable[[Any], None] | None = None,
    ) -> Call:
        """The call of a planned operation: `done(result)` once it succeeded; a refusal the
        model did not predict is followed (`Refusals.follow`)."""

        async def call() -> None:
            result = await self.call(op, state, f, factory)
            if op.status == "ok" and done is not None:
                done(result)
            elif op.status in ("fail", "skipped") and op.model_error is None:
                self.refusals.follow(op)

        return call

    async def call(
        self,
        op: OpRecord,
        state: ClientState,
        f: str,
        factory: Callable[[AdapterPresence], Awaitable[Any]],
        record: bool = True,
        params: Any = None,
    ) -> Any:
        """One adapter call under the operation timeout, recorded as invoke + ok/fail/timeout."""
        history, timeout = self.case.history, self.case.op_timeout
        process = state.spec.name
        step = op.index
        op.invoke_index = history.record(
            "invoke", process, f, op.params if params is None else params, step
        )
        if state.refused is not None:
            err = state.refused
            if op.model_error is None and state.refusal_allowed:
                op.status = "skipped"
                op.done_index = history.record(
                    "info",
                    process,
                    f,
                    {"skipped": f"the connection was refused ({err.code}), as the model allows"},
                    step,
                )
                return None
            op.status, op.error_code, op.error_message = "fail", err.code, err.message
            op.done_index = history.record(
                "fail",
                process,
                f,
                {"code": err.code, "message": f"connection refused: {err.message}"},
                step,
                bound_now=True,
            )
            return None
        try:
            async with clock.timeout(timeout):
                result = await factory(self.case.presence(state, _channel(op)))
        except TimeoutError:
            op.status = "timeout"
            op.done_index = history.record("timeout", process, f, None, step)
            raise Abort(
                Outcome.TIMEOUT,
                f"{op.step.label}: {f} did not complete within {timeout:g}s",
            ) from None
        except PresenceError as exc:
            op.status, op.error_code, op.error_message = "fail", exc.code, str(exc)
            op.done_index = history.record(
                "fail", process, f, {"code": jsonable(exc.code), "message": str(exc)}, step
            )
            return None
        except BaseException as exc:
            if not adapter_raised(exc):
                raise  # the run itself is being cancelled
            op.status, op.error_message = "error", raised(exc)
            op.done_index = history.record(
                "fail", process, f, {"exception": op.error_message}, step
            )
            raise Abort(
                Outcome.ERROR,
                f"{op.step.label}: the adapter raised {raised(exc)} in {f}",
            ) from exc
        op.status = "ok"
        if record:
            op.done_index = history.record("ok", process, f, summary(result), step)
        return result

    async def quiet_call(
        self,
        probe: OpRecord,
        state: ClientState,
        f: str,
        factory: Callable[[AdapterPresence], Awaitable[Any]],
        record: bool = True,
    ) -> Any:
        """A repeated poll: not recorded unless it fails (`record` False: not even then; the
        probe's status says so)."""
        timeout = self.case.op_timeout
        try:
            async with clock.timeout(timeout):
                return await factory(self.case.presence(state, _channel(probe)))
        except TimeoutError:
            raise Abort(
                Outcome.TIMEOUT,
                f"{probe.step.label}: {f} did not answer within {timeout:g}s",
            ) from None
        except PresenceError as exc:
            probe.status = "fail"
            if record:
                self.case.history.record(
                    "fail", state.spec.name, f, {"code": exc.code}, probe.index, bound_now=True
                )
            return None
        except BaseException as exc:
            if not adapter_raised(exc):
                raise
            raise Abort(Outcome.ERROR, f"{probe.step.label}: {f} raised {raised(exc)}") from exc

    def read_items(
        self, result: Any, source: str, step: int | None, channel: str
    ) -> tuple[list[Seen] | None, Any]:
        """The members or events of a result (None and the result's JSON form when it is not a
        list), read as the history entry about to be recorded."""
        if not isinstance(result, list | tuple):
            return None, jsonable(result)
        index = len(self.case.history)  # the entry about to be recorded
        return [Seen.read(item, source, index, step, channel) for item in result], None

    def keep(self, items: list[Seen] | None) -> None:
        """Add what a read returned to everything seen in the case."""
        if items:
            self.case.record.seen.extend(items)


def _channel(op: OpRecord) -> str:
    if op.channel is None:
        raise RuntimeError(f"{op.step.label}: the operation has no channel")
    return op.channel

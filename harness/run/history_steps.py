"""History steps for the case driver: the canonical read and the step's own query.

Before a history step the driver reads the implementation's whole history of the channel
(forwards, no bounds, limit 1000, every page), polling until it holds the model's log (bounded by
the wait budget, and ended early once a read after a quiesce repeats unchanged); `{at: STEP_ID, offset: N}` bounds resolve against it. Then it runs the
step's query, following the pages with `pages: all`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from presence_conformance.harness.adapter import AdapterPresence, PresenceError
from presence_conformance.harness.record.matching import (
    canonical_alignment,
    canonical_consistent,
)
from presence_conformance.harness.record.records import (
    CanonicalRecord,
    HistoryQueryRecord,
    OpRecord,
    Seen,
    jsonable,
)
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.calls import Call, Calls
from presence_conformance.harness.run.clients import ClientState
from presence_conformance.harness.run.poll import poll_until
from presence_conformance.harness.run.state import CaseState, channel_of
from presence_conformance.harness.run.stops import Abort, adapter_raised, items_json, raised
from presence_conformance.reference_impl.model import validate_history_params

__all__ = ["CANONICAL_LIMIT", "MAX_PAGES", "HistorySteps"]

CANONICAL_LIMIT = 1000
MAX_PAGES = 1000


@dataclass
class _Pages:
    """Pages read for the canonical history."""

    pages: list[list[Seen]] = field(default_factory=list)
    has_next: list[bool] = field(default_factory=list)
    malformed: Any = None


class HistorySteps:
    """The `history` step."""

    def __init__(self, case: CaseState, calls: Calls) -> None:
        self.case = case
        self.calls = calls

    def plan_history(self, op: OpRecord, state: ClientState) -> Call:
        async def call() -> None:
            await self._history(op, state)

        return call

    async def _history(self, op: OpRecord, state: ClientState) -> None:
        step = op.step
        args = step.args
        needs_refs = any(isinstance(args.get(k), dict) for k in ("start", "end"))
        rec = HistoryQueryRecord(
            op,
            None,
            limit=args.get("limit"),
            direction=args.get("direction"),
            pages_mode=args.get("pages", 1),
        )
        raw_start = args.get("start") if not isinstance(args.get("start"), dict) else None
        raw_end = args.get("end") if not isinstance(args.get("end"), dict) else None
        static_error = None
        try:  # the history capability is judged before anything else
            self.case.model.check_capability(state.cid, channel_of(step), "history")
        except PresenceError as exc:  # kept in a local: without the traceback that holds it
            static_error = op.model_error = exc.with_traceback(None)
        if static_error is None and not needs_refs:
            try:
                validate_history_params(raw_start, raw_end, rec.limit, rec.direction)
            except PresenceError as exc:
                static_error = exc.with_traceback(None)
        if static_error is None:
            rec.canonical = await self._canonical(op, state)
        # resolve {at: STEP_ID, offset: N}
        bounds = {}
        for key in ("start", "end"):
            value = args.get(key)
            if isinstance(value, dict) and static_error is not None:
                value = None  # refused before any bound matters
            elif isinstance(value, dict):
                stamp = self._stamp_of(value["at"], rec.canonical)
                if stamp is None:
                    rec.unresolved = (
                        f"{key}: the event of step {value['at']!r} is not in the "
                        "implementation's history"
                    )
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
            raise Abort(
                Outcome.ERROR,
                f"{step.label}: the scenario expects an error "
                f"{list(step.expect_error)}, but the reference model accepts the query "
                "(a mistake in the scenario)",
            )
        self.case.record.queries.append(rec)
        if rec.unresolved:
            op.status = "skipped"
            self.case.history.record(
                "info", state.spec.name, "history", {"skipped": rec.unresolved}, op.index
            )
            return
        params = {
            k: v
            for k, v in (
                ("start", rec.start),
                ("end", rec.end),
                ("limit", rec.limit),
                ("direction", rec.direction),
            )
            if v is not None
        }
        op.params = params
        page = await self.calls.call(
            op, state, "history", lambda p: p.history(**params), record=False
        )
        if op.status != "ok":
            return
        await self._read_pages(op, state, rec, page, all_pages=rec.pages_mode == "all")
        rec.history_index = op.done_index

    async def _read_pages(
        self,
        op: OpRecord,
        state: ClientState,
        rec: HistoryQueryRecord | _Pages,
        page: Any,
        all_pages: bool,
    ) -> None:
        """Read `page` (and, with `all_pages`, the pages after it) into `rec.pages`."""
        count = 0
        while True:
            items = getattr(page, "items", None)
            observed, malformed = self.calls.read_items(
                items, "history", op.index, channel_of(op.step)
            )
            if observed is None:
                rec.malformed = malformed if items is not None else jsonable(page)
            try:
                has_next = bool(page.has_next())
            except BaseException as exc:
                if not adapter_raised(exc):
                    raise
                raise Abort(
                    Outcome.ERROR, f"{op.step.label}: has_next() raised {raised(exc)}"
                ) from exc
            entry = self.case.history.record(
                "ok",
                state.spec.name,
                "history" if count == 0 else "history (next page)",
                {"items": items_json(observed, malformed), "has_next": has_next},
                op.index,
            )
            if count == 0:
                op.done_index = entry
            rec.pages.append(observed or [])
            rec.has_next.append(has_next)
            self.calls.keep(observed)
            count += 1
            if not (all_pages and has_next) or count >= MAX_PAGES or observed is None:
                return
            page = await self.calls.call(
                op, state, "history.next", _next_page(page), record=False, params={}
            )
            if op.status != "ok" or page is None:
                return

    async def _canonical(self, op: OpRecord, state: ClientState) -> CanonicalRecord:
        """Read the implementation's whole history of the channel, again (bounded) until it
        holds the model's log."""
        case = self.case
        channel = channel_of(op.step)
        rec = CanonicalRecord(
            op.index,
            state.spec.name,
            channel,
            [e for e in case.model.history_all(channel) if e.id not in case.record.void],
        )
        case.record.canonicals.append(rec)
        params: dict[str, Any] = {"limit": CANONICAL_LIMIT, "direction": "forwards"}

        async def attempt() -> bool:
            rec.attempts += 1
            probe = OpRecord(op.step, op.client, op.channel, op.connection_id, params)
            page = await self.calls.call(
                probe, state, "history (canonical)", lambda p: p.history(**params), record=False
            )
            if probe.status == "skipped":
                return True
            if probe.status != "ok":
                rec.error = f"code {probe.error_code}: {probe.error_message}"
                return True
            pages = _Pages()
            await self._read_pages(probe, state, pages, page, all_pages=True)
            if probe.status != "ok":
                rec.error = f"code {probe.error_code}: {probe.error_message}"
                return True
            if pages.malformed is not None:
                rec.error = f"malformed history page: {pages.malformed!r}"
                return True
            rec.observed = [s for page_items in pages.pages for s in page_items]
            rec.history_index = probe.done_index
            noop_leaves = [
                o.connection_id
                for o in case.record.ops
                if o.kind == "leave"
                and o.channel == channel
                and o.status == "ok"
                and not o.events
                and o.model_error is None
            ]
            return canonical_consistent(rec, case.record.origins, noop_leaves)

        await poll_until(
            attempt,
            case.deadline(case.wait_budget),
            case.settings.poll_interval,
            case.settled,
            lambda: [s.json for s in rec.observed or ()],
        )
        return rec

    def _stamp_of(self, step_id: str, canonical: CanonicalRecord | None) -> int | None:
        """The implementation's timestamp of the first event the step `step_id` produced (the
        canonical's alignment, made once: `canonical_alignment`)."""
        if canonical is None or canonical.observed is None:
            return None
        op = next((o for o in self.case.record.ops if o.step.id == step_id and o.events), None)
        if op is None:
            return None
        target = op.events[0]

        for seen, slot, _ in canonical_alignment(canonical, self.case.record.origins).matched:
            if slot.event.id == target.id:
                stamp = seen.timestamp
                return stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else None
        return None


def _next_page(page: Any) -> Callable[[AdapterPresence], Awaitable[Any]]:
    """The call that fetches the page after `page` (the presence object is not needed)."""

    def fetch(_presence: AdapterPresence) -> Awaitable[Any]:
        return page.next()

    return fetch

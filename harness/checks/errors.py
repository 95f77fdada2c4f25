"""Error checks: an operation the model refuses must be refused, with an accepted Ably code, and
leave nothing behind; an operation the model accepts must not be refused.

Accepted codes for a refusal: the model's code, the codes the catalogue lists for the requirement
the refusal concerns, and the step's `expect_error`.
"""

from __future__ import annotations

from collections.abc import Iterator

from presence_conformance.harness.checks.analysis import (
    canonical_alignments,
    listener_alignments,
    refused_effect,
)
from presence_conformance.harness.checks.base import CheckContext, check
from presence_conformance.harness.record.records import OpRecord, Seen
from presence_conformance.harness.results import Violation
from presence_conformance.reference_impl import errors

REFUSALS = (
    "enter.requires-client-id",
    "enter.requires-presence-capability",
    "data.size-limit",
    "data.unsupported-type",
    "subscribe.invalid-action",
    "history.limit-max-1000",
    "history.limit-positive",
    "history.start-after-end",
    "history.direction-invalid",
    "error.has-code",
    "error.capability-denied",
    "enter.client-id-mismatch",
)
_CLIENT_PUBLISH = ("enter_client", "update_client", "leave_client")


def refusal_requirement(op: OpRecord) -> str:
    """The requirement a refusal of `op` by the model concerns."""
    error = op.model_error
    assert error is not None
    code, argument = error.code, error.argument
    if code == errors.INVALID_CLIENT_ID and op.step.kind in _CLIENT_PUBLISH:
        return "enter.client-id-mismatch"  # RTP15f
    if code in (errors.NO_CLIENT_ID, errors.INVALID_CLIENT_ID):
        return "enter.requires-client-id"
    if code == errors.CAPABILITY_DENIED:
        return (
            "enter.requires-presence-capability"
            if op.step.kind in ("enter", "update", "leave")
            else "error.capability-denied"
        )
    if code == errors.MESSAGE_TOO_LARGE:
        return "data.size-limit"
    if code == errors.INVALID_DATA:
        return "data.unsupported-type"
    if argument == "action":
        return "subscribe.invalid-action"
    if argument == "limit":
        limit = op.step.args.get("limit")
        return (
            "history.limit-max-1000"
            if isinstance(limit, int) and limit > 1000
            else "history.limit-positive"
        )
    if argument == "direction":
        return "history.direction-invalid"
    if argument in ("start", "end"):
        return "history.start-after-end"
    return "error.has-code"


def accepted_codes(ctx: CheckContext, op: OpRecord) -> set[int]:
    assert op.model_error is not None
    codes = {op.model_error.code, *ctx.catalogue.by_id(refusal_requirement(op)).codes}
    codes.update(op.step.expect_error or ())
    return codes


@check(*REFUSALS)
def refusals(ctx: CheckContext) -> Iterator[Violation]:
    """An operation the model refuses is refused, with an accepted error code."""
    for op in ctx.record.ops:
        if op.model_error is None or op.status not in ("ok", "fail"):
            continue
        requirement = refusal_requirement(op)
        codes = sorted(accepted_codes(ctx, op))
        if op.status == "ok":
            yield ctx.violation(
                requirement,
                f"{op.step.label} succeeded; it must be refused ({op.model_error.message})",
                expected={"codes": codes},
                observed="ok",
                step=op.index,
                history_index=op.done_index,
            )
        elif isinstance(op.error_code, bool) or not isinstance(op.error_code, int):
            yield ctx.violation(
                "error.has-code",
                f"{op.step.label} was refused without a "
                f"numeric error code (code {op.error_code!r})",
                expected={"codes": codes},
                observed=op.error_code,
                step=op.index,
                history_index=op.done_index,
            )
        elif op.error_code not in codes:
            yield ctx.violation(
                requirement,
                f"{op.step.label} was refused with code {op.error_code}, not one of {codes}",
                expected={"codes": codes},
                observed=op.error_code,
                step=op.index,
                history_index=op.done_index,
            )


def _data_requirement(data: object) -> str | None:
    if isinstance(data, bytes):
        return "data.binary"
    if isinstance(data, list):
        return "data.json-array"
    if isinstance(data, str) and any(ord(c) > 127 for c in data):
        return "data.unicode"
    return None


def unexpected_requirement(op: OpRecord) -> str:
    """The requirement broken when the implementation refuses `op`, which the model accepts."""
    kind, args = op.kind, op.step.args
    data = args.get("data")
    if kind in _CLIENT_PUBLISH:
        return "enter.client-on-behalf"
    if kind == "rest_get":
        return "get.rest-members"
    if kind in ("enter", "update", "leave"):
        special = _data_requirement(data) if data is not None else None
        if kind == "leave" and not op.was_present:
            return "leave.when-not-present"  # RTP10d, attached or not
        if op.fresh_attach:
            return special or "enter.implicit-attach"
        if kind == "enter":
            return special or "enter.adds-member"
        if kind == "update":
            if not op.was_present:
                return "update.when-not-present-enters"
            return special or ("update.null-data" if data is None else "update.changes-data")
        if not op.was_present:
            return "leave.when-not-present"
        return "leave.data-given" if data is not None else "leave.removes-member"
    if kind == "get":
        if op.fresh_attach:
            return "get.implicit-attach"
        if args.get("wait_for_sync") is False:
            return "get.wait-for-sync-false"
        has_client, has_conn = "client_id" in args, "connection_id" in args
        return (
            "get.filter-both"
            if has_client and has_conn
            else "get.filter-client-id"
            if has_client
            else "get.filter-connection-id"
            if has_conn
            else "get.returns-members"
        )
    if kind == "subscribe":
        actions = args.get("actions")
        if op.fresh_attach:
            return "subscribe.implicit-attach"
        return (
            "subscribe.all-actions"
            if not actions
            else "subscribe.single-action"
            if len(actions) == 1
            else "subscribe.action-list"
        )
    if kind == "unsubscribe":
        return f"unsubscribe.{op.form or 'all'}"
    if kind == "history":
        if args.get("limit") == 1000:
            return "history.limit-max-1000"
        if args.get("direction") == "forwards":
            return "history.direction-forwards"
        if "start" in args or "end" in args:
            return "history.start-end-inclusive"
        return "history.returns-events"
    return "sync.complete-after-attach"


@check(
    "enter.implicit-attach",
    "enter.adds-member",
    "update.when-not-present-enters",
    "update.null-data",
    "update.changes-data",
    "leave.when-not-present",
    "leave.data-given",
    "leave.removes-member",
    "get.implicit-attach",
    "get.wait-for-sync-false",
    "get.filter-both",
    "get.filter-client-id",
    "get.filter-connection-id",
    "get.returns-members",
    "subscribe.implicit-attach",
    "subscribe.all-actions",
    "subscribe.single-action",
    "subscribe.action-list",
    "unsubscribe.all",
    "unsubscribe.listener",
    "unsubscribe.action-listener",
    "unsubscribe.action",
    "history.limit-max-1000",
    "history.direction-forwards",
    "history.start-end-inclusive",
    "history.returns-events",
    "sync.complete-after-attach",
    "data.binary",
    "data.json-array",
    "data.unicode",
    "enter.client-on-behalf",
    "get.rest-members",
)
def unexpected_errors(ctx: CheckContext) -> Iterator[Violation]:
    """An operation the model accepts is not refused."""
    for op in ctx.record.ops:
        if op.model_error is not None or op.status != "fail":
            continue
        yield ctx.violation(
            unexpected_requirement(op),
            f"{op.step.label} was refused with code {op.error_code!r}: {op.error_message}",
            expected="ok",
            observed={"code": op.error_code, "message": op.error_message},
            step=op.index,
            history_index=op.done_index,
        )


def _unexplained(ctx: CheckContext) -> Iterator[Seen]:
    """Messages no expectation accounts for: extra events, extra members, extra history items."""
    for analysis in listener_alignments(ctx).values():
        yield from analysis.alignment.extras
    for rec in ctx.record.gets:
        keys = {m.member_key for m in rec.expected}
        yield from (s for s in rec.observed or () if s.member_key not in keys)
    for _, alignment in canonical_alignments(ctx):
        yield from alignment.extras


@check("error.state-unchanged")
def refused_left_no_trace(ctx: CheckContext) -> Iterator[Violation]:
    """A refused operation changes neither the presence set nor the history and emits nothing."""
    for seen in _unexplained(ctx):
        op = refused_effect(ctx, seen)
        if op is not None and op.status == "fail":
            yield ctx.violation(
                "error.state-unchanged",
                f"{op.step.label} was refused, yet {_origin(seen)} shows its "
                f"effect: {seen.action} of {seen.client_id!r}",
                observed=seen.json,
                step=op.index,
                history_index=seen.history_index,
            )


def _origin(seen: Seen) -> str:
    return {"event": "an event", "get": "get()", "history": "history"}.get(seen.source, seen.source)

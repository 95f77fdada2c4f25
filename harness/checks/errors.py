"""Error checks: an operation the model refuses must be refused, with an accepted Ably code, and
leave nothing behind; an operation the model accepts must not be refused.

Accepted codes for a refusal: the model's code, the codes the catalogue lists for the requirement
the refusal concerns, and the step's `expect_error`. The refusal itself is judged under the
requirement it concerns; a refusal with another code breaks that requirement only where a spec
sentence names the code (`CODE_NAMED_BY_SPEC`) or the requirement is itself a SHOULD or INFO.
Otherwise the code is reported under `error.documented-code` (SHOULD): the seed and RTP8h, RTP8i,
RTP8j, RTP15f and RSP4b name no code, so a correct implementation may answer with another one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from presence_conformance.harness.checks.analysis import (
    canonical_alignments,
    listener_alignments,
    refused_effect,
)
from presence_conformance.harness.checks.base import CheckContext, check
from presence_conformance.harness.record.records import OpRecord, Seen
from presence_conformance.harness.results import Violation
from presence_conformance.reference_impl import errors

Rule = tuple[str, Callable[[OpRecord], bool]]
"""A row of a requirement table: the requirement, and when an operation concerns it."""

MEMBER_OPS = ("enter", "update", "leave")
CLIENT_PUBLISH = ("enter_client", "update_client", "leave_client")  # RTP15


def requirements_of(table: Sequence[Rule]) -> tuple[str, ...]:
    """The requirement IDs of a table, in order, each once (the IDs its check may report)."""
    return tuple(dict.fromkeys(requirement for requirement, _ in table))


def first_rule(table: Sequence[Rule], op: OpRecord) -> str:
    """The requirement of the first row of `table` that applies to `op` (the last row always
    applies)."""
    return next(requirement for requirement, applies in table if applies(op))


def _code(op: OpRecord) -> int:
    assert op.model_error is not None
    return op.model_error.code


def _argument(op: OpRecord) -> str | None:
    assert op.model_error is not None
    return op.model_error.argument


def _limit_over_1000(op: OpRecord) -> bool:
    limit = op.step.args.get("limit")
    return isinstance(limit, int) and limit > 1000


REFUSAL_TABLE: tuple[Rule, ...] = (
    # by the model's error code
    (
        "enter.client-id-mismatch",  # RTP15f
        lambda op: _code(op) == errors.INVALID_CLIENT_ID and op.step.kind in CLIENT_PUBLISH,
    ),
    (
        # RTP10e ("identical to enter") with RTP8j says refuse, RTP10d ("the request will
        # succeed" when not entered) says succeed: either is accepted (INFO)
        "leave.without-client-id",
        lambda op: (
            op.step.kind == "leave" and _code(op) in (errors.NO_CLIENT_ID, errors.INVALID_CLIENT_ID)
        ),
    ),
    (
        "enter.requires-client-id",
        lambda op: _code(op) in (errors.NO_CLIENT_ID, errors.INVALID_CLIENT_ID),
    ),
    (
        "enter.requires-presence-capability",
        lambda op: _code(op) == errors.CAPABILITY_DENIED and op.step.kind in MEMBER_OPS,
    ),
    ("error.capability-denied", lambda op: _code(op) == errors.CAPABILITY_DENIED),
    ("data.size-limit", lambda op: _code(op) == errors.MESSAGE_TOO_LARGE),
    ("data.unsupported-type", lambda op: _code(op) == errors.INVALID_DATA),
    # by the argument the model refused
    ("subscribe.invalid-action", lambda op: _argument(op) == "action"),
    ("history.limit-max-1000", lambda op: _argument(op) == "limit" and _limit_over_1000(op)),
    ("history.limit-positive", lambda op: _argument(op) == "limit"),
    ("history.direction-invalid", lambda op: _argument(op) == "direction"),
    ("history.start-after-end", lambda op: _argument(op) in ("start", "end")),
    # anything else (and a refusal without a numeric code, see `refusals`)
    ("error.has-code", lambda op: True),
)
"""The requirement a refusal by the model concerns: the first row that applies."""


CODE_NAMED_BY_SPEC: frozenset[str] = frozenset()
"""MUST requirements whose spec sentence names the error code, so that another code breaks the
requirement itself. None of the refusals the model makes today: the codes the features spec names
near presence (RTP11d 91005 for a get on a SUSPENDED channel, RTL33c 90001) concern states no
scenario reaches; RSL1i's 40009 (data.size-limit) and RTP6e's 40000 are on SHOULDs already."""


IDENTITY = "member.identity-from-credential"


def refusal_requirement(op: OpRecord, ctx: CheckContext | None = None) -> str:
    """The requirement a refusal of `op` by the model concerns: the identity requirement for
    every operation of a client whose connection claims a clientId its token does not allow
    (the model gives it none: TK2c, TD6), else the first row of the table that applies."""
    assert op.model_error is not None
    if ctx is not None:
        spec = ctx.record.scenario.clients.get(op.client) if op.client else None
        if spec is not None and spec.claims_other_identity:
            return IDENTITY
    return first_rule(REFUSAL_TABLE, op)


def accepted_codes(ctx: CheckContext, op: OpRecord) -> set[int]:
    assert op.model_error is not None
    codes = {op.model_error.code, *ctx.catalogue.by_id(refusal_requirement(op, ctx)).codes}
    codes.update(op.step.expect_error or ())
    return codes


def code_requirement(ctx: CheckContext, requirement: str) -> str:
    """The requirement a refusal with an unexpected code breaks, for a refusal that concerns
    `requirement`: the requirement itself where its spec sentence names the code or where it is
    not a MUST, else `error.documented-code`."""
    if requirement in CODE_NAMED_BY_SPEC or ctx.catalogue.by_id(requirement).level != "MUST":
        return requirement
    return "error.documented-code"


@check(IDENTITY, *requirements_of(REFUSAL_TABLE), "error.documented-code")
def refusals(ctx: CheckContext) -> Iterator[Violation]:
    """An operation the model refuses is refused, with an accepted error code."""
    for op in ctx.record.ops:
        if op.model_error is None or op.status not in ("ok", "fail"):
            continue
        requirement = refusal_requirement(op, ctx)
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
                code_requirement(ctx, requirement),
                f"{op.step.label} was refused with code {op.error_code}, not one of {codes} "
                f"({requirement})",
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


def _data_is(requirement: str) -> Callable[[OpRecord], bool]:
    """A member operation whose data is of the kind `requirement` names, where the data's kind
    decides (an implicit attach, enter, update of a present member; not a plain leave)."""

    def applies(op: OpRecord) -> bool:
        return (
            op.kind in MEMBER_OPS
            and (op.fresh_attach or op.kind != "leave")
            and _data_requirement(op.step.args.get("data")) == requirement
        )

    return applies


def _get_filter(op: OpRecord) -> tuple[bool, bool]:
    return "client_id" in op.step.args, "connection_id" in op.step.args


def _kind(*kinds: str) -> Callable[[OpRecord], bool]:
    return lambda op: op.kind in kinds


ANONYMOUS_ON_BEHALF = "enter.client-on-anonymous-connection"

UNEXPECTED_TABLE: tuple[Rule, ...] = (
    # on behalf of other clients (RTP15): from an anonymous connection a refusal is the
    # server's choice (INFO), REST presence (RSP3)
    (ANONYMOUS_ON_BEHALF, lambda op: op.kind in CLIENT_PUBLISH and op.anonymous),
    ("enter.client-on-behalf", _kind(*CLIENT_PUBLISH)),
    ("get.rest-members", _kind("rest_get")),
    # enter, update, leave
    ("leave.when-not-present", lambda op: op.kind == "leave" and not op.was_present),  # RTP10d
    (
        "update.when-not-present-enters",
        lambda op: op.kind == "update" and not op.was_present and not op.fresh_attach,
    ),
    ("data.binary", _data_is("data.binary")),
    ("data.json-array", _data_is("data.json-array")),
    ("data.unicode", _data_is("data.unicode")),
    ("enter.implicit-attach", lambda op: op.kind in MEMBER_OPS and op.fresh_attach),
    ("enter.adds-member", _kind("enter")),
    ("update.null-data", lambda op: op.kind == "update" and op.step.args.get("data") is None),
    ("update.changes-data", _kind("update")),
    ("leave.data-given", lambda op: op.kind == "leave" and op.step.args.get("data") is not None),
    ("leave.removes-member", _kind("leave")),
    # get
    ("get.implicit-attach", lambda op: op.kind == "get" and op.fresh_attach),
    (
        "get.wait-for-sync-false",
        lambda op: op.kind == "get" and op.step.args.get("wait_for_sync") is False,
    ),
    ("get.filter-both", lambda op: op.kind == "get" and _get_filter(op) == (True, True)),
    ("get.filter-client-id", lambda op: op.kind == "get" and _get_filter(op)[0]),
    ("get.filter-connection-id", lambda op: op.kind == "get" and _get_filter(op)[1]),
    ("get.returns-members", _kind("get")),
    # subscribe, unsubscribe
    ("subscribe.implicit-attach", lambda op: op.kind == "subscribe" and op.fresh_attach),
    (
        "subscribe.all-actions",
        lambda op: op.kind == "subscribe" and not op.step.args.get("actions"),
    ),
    (
        "subscribe.single-action",
        lambda op: op.kind == "subscribe" and len(op.step.args["actions"]) == 1,
    ),
    ("subscribe.action-list", _kind("subscribe")),
    *(
        (
            f"unsubscribe.{form}",
            lambda op, form=form: op.kind == "unsubscribe" and (op.form or "all") == form,
        )
        for form in ("all", "listener", "action-listener", "action")
    ),
    # history
    (
        "history.limit-max-1000",
        lambda op: op.kind == "history" and op.step.args.get("limit") == 1000,
    ),
    (
        "history.direction-forwards",
        lambda op: op.kind == "history" and op.step.args.get("direction") == "forwards",
    ),
    (
        "history.start-end-inclusive",
        lambda op: op.kind == "history" and ("start" in op.step.args or "end" in op.step.args),
    ),
    ("history.returns-events", _kind("history")),
    # anything else: sync_complete
    ("sync.complete-after-attach", lambda op: True),
)
"""The requirement broken when the implementation refuses an operation the model accepts: the
first row that applies."""


def unexpected_requirement(op: OpRecord) -> str:
    """The requirement broken when the implementation refuses `op`, which the model accepts."""
    return first_rule(UNEXPECTED_TABLE, op)


@check(*requirements_of(UNEXPECTED_TABLE))
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

"""Sync checks: syncComplete after an attach, every client's get() converging to the model at
the end of a case, and the grace period after an abrupt disconnect (noted)."""

from __future__ import annotations

from collections.abc import Iterator

from presence_conformance.harness.checks.base import CheckContext, check
from presence_conformance.harness.checks.filtering import diagnose, members_json
from presence_conformance.harness.record.matching import members_equal
from presence_conformance.harness.record.records import SyncRecord
from presence_conformance.harness.results import Violation
from presence_conformance.reference_impl.types import data_equal

_AFTER_ATTACH = {
    "get": "sync.complete-after-attach",
    "subscribe": "subscribe.implicit-attach",
    "enter": "enter.implicit-attach",
    "update": "enter.implicit-attach",
    "leave": "enter.implicit-attach",
}


# the operations that attach a client's channel when they succeed (RTP6c, RTP8d, RTP11b, RTL4)
_ATTACHING = frozenset(
    {
        "get",
        "subscribe",
        "enter",
        "update",
        "leave",
        "enter_client",
        "update_client",
        "leave_client",
        "attach",
    }
)


def _attached_only_by_a_refusal(ctx: CheckContext, rec: SyncRecord) -> bool:
    """The model holds `rec.channel` attached for `rec.client` only because of an operation the
    implementation refused where the model accepted it (and attached the channel), with no
    attaching operation of the client there succeeding since: the implementation's channel need
    not be attached, so its syncComplete is not judged; the refusal itself is reported once,
    under the operation's own requirement (`unexpected_errors`)."""
    refused = False
    for op in ctx.record.ops:
        if op.index == rec.step and op.kind == "sync_complete":
            break
        if op.client != rec.client or op.channel != rec.channel:
            continue
        if op.fresh_attach:
            refused = op.status == "fail" and op.model_error is None
        elif op.kind in _ATTACHING and op.status == "ok":
            refused = False
    return refused


@check("sync.complete-after-attach", "enter.implicit-attach", "subscribe.implicit-attach")
def sync_complete(ctx: CheckContext) -> Iterator[Violation]:
    """syncComplete becomes true once a step attached the channel, and stays true."""
    for rec in ctx.record.syncs:
        if rec.observed is True:
            continue
        if rec.kind == "wait":
            requirement = _AFTER_ATTACH.get(rec.trigger or "", "sync.complete-after-attach")
            message = (
                f"syncComplete of {rec.client!r} on {rec.channel!r} was still "
                f"{rec.observed!r} after the {rec.trigger} that attached the channel"
            )
        elif rec.expected is True:
            if _attached_only_by_a_refusal(ctx, rec):
                continue
            requirement = "sync.complete-after-attach"
            message = (
                f"syncComplete of {rec.client!r} on the attached channel {rec.channel!r} "
                f"is {rec.observed!r}"
            )
        else:
            continue
        yield ctx.violation(
            requirement,
            message,
            expected=True,
            observed=rec.observed,
            step=rec.step,
            history_index=rec.history_index,
        )


@check("sync.complete-before-attach")
def sync_before_attach(ctx: CheckContext) -> Iterator[Violation]:
    """syncComplete before the channel is attached: either value is fine; note a difference."""
    for rec in ctx.record.syncs:
        if rec.kind == "step" and rec.expected is False and rec.observed is not False:
            yield ctx.violation(
                "sync.complete-before-attach",
                f"syncComplete of {rec.client!r} on {rec.channel!r} before any "
                f"attach is {rec.observed!r}; the reference says false",
                expected=False,
                observed=rec.observed,
                step=rec.step,
                history_index=rec.history_index,
            )


@check("sync.converges")
def convergence(ctx: CheckContext) -> Iterator[Violation]:
    """At the end of the case, every attached client's get() equals the model's members."""
    for rec in ctx.record.gets:
        if rec.kind != "converge":
            continue
        if rec.observed is not None and members_equal(rec.expected, rec.observed):
            continue
        if rec.observed is None:
            detail = f"the final get() failed or returned {rec.malformed!r}"
        else:
            problems = [message for _, message, _ in diagnose(ctx, rec)]
            by_key = {m.member_key: m for m in rec.expected}
            problems += [
                f"member {s.client_id!r} has data {s.data!r}, expected "
                f"{by_key[s.member_key].data!r}"
                for s in rec.observed
                if s.member_key in by_key and not data_equal(s.data, by_key[s.member_key].data)
            ]
            detail = "; ".join(problems) or "the members differ"
        yield ctx.violation(
            "sync.converges",
            f"at the end, get() by {rec.client!r} on {rec.channel!r}: {detail}",
            expected=members_json(rec.expected),
            observed=[s.json for s in rec.observed or ()],
            history_index=rec.history_index,
        )


@check("disconnect.grace-period")
def grace_period(ctx: CheckContext) -> Iterator[Violation]:
    """After an abrupt disconnect the member may stay for a grace period: note when it left at
    once (the period's length is not checked)."""
    for rec in ctx.record.drops:
        if rec.member_gone_at_once:
            yield ctx.violation(
                "disconnect.grace-period",
                f"the members of {rec.client!r} left {rec.channel!r} as soon as it "
                "dropped (no grace period)",
                step=rec.step,
                history_index=rec.history_index,
            )


@check("disconnect.close-leaves-promptly")
def close_leaves_promptly(ctx: CheckContext) -> Iterator[Violation]:
    """The members of a closed connection leave at once, not when the grace period of an
    abrupt disconnect ends (whether they left at all is disconnect.close-leaves)."""
    for rec in ctx.record.closes:
        yield ctx.violation(
            "disconnect.close-leaves-promptly",
            f"the members of {rec.client!r} had not left {', '.join(map(repr, rec.channels))} "
            f"within {rec.waited:g}s of the close",
            step=rec.step,
            history_index=rec.history_index,
        )


@check(explicit=True)
def sync_expect(ctx: CheckContext) -> Iterator[Violation]:
    """A sync_complete step's `expect`."""
    for rec in ctx.record.syncs:
        if rec.kind != "step" or rec.explicit is None or rec.observed == rec.explicit:
            continue
        step = next(
            (
                op.step
                for op in ctx.record.ops
                if op.index == rec.step and op.kind == "sync_complete" and op.client == rec.client
            ),
            None,
        )
        for requirement in ctx.record.step_requirements(step):
            yield ctx.violation(
                requirement,
                f"syncComplete of {rec.client!r} on {rec.channel!r} "
                f"is {rec.observed!r}, the scenario expects {rec.explicit!r}",
                expected=rec.explicit,
                observed=rec.observed,
                step=rec.step,
                history_index=rec.history_index,
            )

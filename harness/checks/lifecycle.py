"""Channel-lifecycle checks (`LifecycleRecord`s from `harness/run/lifecycle_steps.py`): attach,
detach and the channel states they lead to, presence operations a channel's state refuses, and
the silence of a detached channel's listeners (RTP5a).

The specification names no error code for these refusals (RTP8g, RTP16c, RTL11: "results in an
error"), so any code is accepted: only whether the call was refused is judged. A get() on a
channel attached without PRESENCE_SUBSCRIBE may fail with 91008 or return a list (RTP11f1 or
RTP11f2: the harness does not know strictMode); any other error breaks both. On a SUSPENDED
channel RTP11d does name one: get() fails with 91005, and without waiting for the sync it
returns the members held when the channel was suspended; and its map is maintained (RTP5f):
no LEAVE while suspended, and after the re-attach events only for what changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator

from presence_conformance.harness.checks.base import CheckContext, check
from presence_conformance.harness.record.records import LifecycleRecord
from presence_conformance.harness.results import Violation

REQUIREMENTS = (
    "channel.detach-clears-silently",
    "channel.reattach-no-reenter",
    "channel.failed-on-refused-attach",
    "channel.detach-when-not-attached",
    "channel.enter-when-detached-or-failed",
    "channel.update-leave-when-detached-or-failed",
    "channel.get-when-failed",
    "channel.queued-fail-on-failed-attach",
    "channel.get-without-presence-subscribe",
    "channel.suspended-with-connection",
    "channel.get-when-suspended",
    "channel.get-when-suspended-no-wait",
    "channel.publish-when-suspended",
    "channel.queued-fail-on-suspended",
)
SUSPEND_REQUIREMENT = "channel.suspended-map-maintained"

_WHAT = {
    "attach": "attach()",
    "detach": "detach()",
    "refused": "the operation",
    "queued": "the operation queued behind the attach",
    "queued-suspended": "the operation queued behind the attach when the channel became SUSPENDED",
    "get-no-mode": "get() on a channel attached without PRESENCE_SUBSCRIBE",
}


@check(*REQUIREMENTS)
def channel_lifecycle(ctx: CheckContext) -> Iterator[Violation]:
    """attach()/detach() complete or fail as the model says, the channel is in the state the
    model has, and an operation the channel's state refuses is refused (with any code)."""
    for rec in ctx.record.lifecycle:
        if rec.observed is None:
            continue  # the call did not complete: the case stopped
        if rec.kind == "state":
            if rec.observed != rec.expected:
                yield ctx.violation(
                    rec.requirement,
                    f"{rec.label}: the channel is {rec.observed!r}; it must be {rec.expected!r}",
                    expected=rec.expected,
                    observed=rec.observed,
                    step=rec.step,
                    history_index=rec.history_index,
                )
            continue
        if rec.observed == rec.expected:
            continue
        if rec.kind in ("suspended-get", "suspended-members"):
            yield ctx.violation(
                rec.requirement,
                f"{rec.label}: get() on the SUSPENDED channel gave {rec.observed}"
                + (f" ({rec.message})" if rec.message else "")
                + f"; it must give {rec.expected}"
                + (
                    " (the members held when the channel was suspended)"
                    if rec.kind == "suspended-members"
                    else ""
                ),
                expected=rec.expected,
                observed=rec.observed,
                step=rec.step,
                history_index=rec.history_index,
            )
            continue
        what = _WHAT.get(rec.kind, rec.kind)
        if rec.expected == "error":
            message = f"{rec.label}: {what} succeeded; the channel's state must refuse it"
        else:
            message = f"{rec.label}: {what} was refused with code {rec.code!r}: {rec.message}"
        yield ctx.violation(
            rec.requirement,
            message,
            expected=rec.expected,
            observed={"code": rec.code, "message": rec.message} if rec.code else rec.observed,
            step=rec.step,
            history_index=rec.history_index,
        )


@check(SUSPEND_REQUIREMENT)
def suspended_map_maintained(ctx: CheckContext) -> Iterator[Violation]:
    """RTP5f: a SUSPENDED channel keeps its presence map, so its listeners hear no LEAVE while
    it is suspended, and once it is attached again the sync emits no event for a member
    present before and after with the same message, and one for each change meanwhile (seen by
    the runner's watching listener, `SuspendWatch`)."""
    for watch in ctx.record.suspends:
        if watch.end is None:
            continue  # the client never came back: the case stopped
        for kind, message, expected, seen in watch.problems():
            when = (
                "while it was suspended" if kind == "suspended" else "after it was attached again"
            )
            yield ctx.violation(
                SUSPEND_REQUIREMENT,
                f"{watch.label}: {watch.client}'s listener on {watch.channel!r} {when}: "
                f"{message}; the presence map is maintained while suspended, and the sync "
                "after the re-attach emits events only for what changed",
                expected=expected,
                observed=None if seen is None else seen.json,
                step=watch.step if seen is None else seen.step,
                history_index=None if seen is None else seen.history_index,
            )


@check("channel.detach-clears-silently")
def detached_listeners_silent(ctx: CheckContext) -> Iterator[Violation]:
    """A client that detached a channel emits no presence event there until it attaches again:
    the presence map is cleared without LEAVE events (RTP5a)."""
    for rec in ctx.record.lifecycle:
        if rec.kind != "detach" or rec.window is None or rec.observed != "ok":
            continue
        yield from _heard(ctx, rec)


def _heard(ctx: CheckContext, rec: LifecycleRecord) -> Iterator[Violation]:
    assert rec.window is not None
    start, end = rec.window
    for listener in ctx.record.listeners.values():
        if listener.client != rec.client or listener.channel != rec.channel:
            continue
        for seen in listener.received:
            if seen.history_index < start or (end is not None and seen.history_index >= end):
                continue
            yield ctx.violation(
                "channel.detach-clears-silently",
                f"{rec.label}: listener {listener.name!r} received {seen.action} of "
                f"{seen.client_id!r} on the detached channel (its presence map is cleared "
                "without events)",
                observed=seen.json,
                step=seen.step,
                history_index=seen.history_index,
            )

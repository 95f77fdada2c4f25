"""Automatic re-entry after a server-initiated re-attach (RTP17i, RTP17g) and its failure
(RTP17e), for the (client, channel) pairs that `server:` steps targeted.

A `detached` server step makes the client re-attach at once (RTL13a); the ATTACHED that
follows must make it re-enter each member its connection had entered (RTP17i), publishing an
ENTER with the member's clientId, data and id (RTP17g: the connectionId is unchanged, so the id
stays, RTP17g1). The members are those the frames sent to the connection gave it when the
command was sent (`StagedRecord.own`); the ENTERs are read from the client's frames as the
reference server received them (`Feature.WIRE_FRAMES`). A normal enter carries no id, so an
ENTER with the member's id is its re-entry.

With `refuse_reentry` the server NACKs that ENTER; the channel must then emit an UPDATE whose
reason has code 91004 and whose `resumed` is true (RTP17e), read from the adapter's channel
events (`Feature.CHANNEL_EVENTS`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from presence_conformance.harness.checks.base import CheckContext, check
from presence_conformance.harness.checks.wire import wire_frames_of
from presence_conformance.harness.results import Violation
from presence_conformance.reference_impl.protocol import ProtocolAction
from presence_conformance.reference_impl.types import Action

__all__ = ["REENTRY_FAILED"]

REENTRY_FAILED = 91004


def _entered_ids(frames: list[Any], channel: str) -> set[tuple[Any, Any]]:
    """(id, clientId) of every ENTER item the client sent on `channel`."""
    out: set[tuple[Any, Any]] = set()
    for frame in frames:
        if not isinstance(frame, dict) or frame.get("action") != ProtocolAction.PRESENCE:
            continue
        if frame.get("channel") != channel or not isinstance(frame.get("presence"), list):
            continue
        for item in frame["presence"]:
            if isinstance(item, dict) and item.get("action") == Action.ENTER.wire:
                out.add((item.get("id"), item.get("clientId")))
    return out


@check("client.reenter-after-reattach")
def reentered_after_reattach(ctx: CheckContext) -> Iterator[Violation]:
    """After a server DETACHED, the client re-enters each of its members with its id."""
    logs = {log.connection_id: log for log in wire_frames_of(ctx.record)}
    for staged in ctx.record.staged.values():
        log = logs.get(staged.connection_id)
        if log is None:
            continue  # no client frames to read (a foreign server, or no WIRE_FRAMES)
        sent = _entered_ids(log.frames, staged.wire_channel)
        for index, command, _ in staged.commands:
            if command.get("do") != "detached":
                continue
            for member in staged.own.get(index, ()):
                if (member["id"], member["client_id"]) in sent:
                    continue
                named = sorted(i for i, c in sent if c == member["client_id"] and i is not None)
                yield ctx.violation(
                    "client.reenter-after-reattach",
                    f"{staged.client} on {staged.channel!r}: after the server's DETACHED and the "
                    f"re-attach, no ENTER re-entered member {member['client_id']!r} with its id "
                    f"{member['id']!r} (RTP17i, RTP17g: clientId, data and id of the member)",
                    expected={"action": "enter", **member},
                    observed={"enter ids with that clientId": named} if named else None,
                    step=index,
                )


@check("channel.reentry-failure-update")
def reentry_failure_update(ctx: CheckContext) -> Iterator[Violation]:
    """A refused automatic re-entry emits an UPDATE with reason 91004, resumed true."""
    for staged in ctx.record.staged.values():
        if staged.channel_events is None:
            continue
        for index, command, _ in staged.commands:
            if not command.get("refuse_reentry") or not staged.own.get(index):
                continue
            updates = [e for e in staged.channel_events if e.get("event") == "update"]
            good = [
                e for e in updates if e.get("reason_code") == REENTRY_FAILED and e.get("resumed")
            ]
            if good:
                continue
            if not updates:
                problem = "the channel emitted no UPDATE"
            else:
                problem = "its UPDATE events have " + ", ".join(
                    f"reason code {e.get('reason_code')!r} and resumed {e.get('resumed')!r}"
                    for e in updates
                )
            yield ctx.violation(
                "channel.reentry-failure-update",
                f"{staged.client} on {staged.channel!r}: the server refused the automatic "
                f"re-entry; {problem}; RTP17e: an UPDATE with resumed true and a reason with "
                f"code {REENTRY_FAILED}",
                expected={"event": "update", "reason_code": REENTRY_FAILED, "resumed": True},
                observed=updates or staged.channel_events,
                step=index,
            )

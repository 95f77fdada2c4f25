"""Transient-disconnect checks (the `interrupt` step, RTN15): the connectionId a resume keeps or
a refused resume replaces, and the id of the re-entry published on a new connection.

The members that stay, the events delivered after a resume, the re-entries and the old members'
leaves are the model's expectations like any other and are judged by the event and get checks;
these checks judge what only an interrupt has:

- `disconnect.resume-keeps-members` (RTN15c6): a resume the server accepted keeps the
  connectionId;
- `disconnect.reenter-after-failed-resume` (RTN15c7): a refused resume gives a new connectionId;
- `disconnect.reenter-id-omitted` (RTP17g1), for adapters that expose the client's frames: no
  ENTER item sent on the new connection carries an id of the old connection.
"""

from __future__ import annotations

from collections.abc import Iterator

from presence_conformance.harness.checks.base import CheckContext, check
from presence_conformance.harness.checks.wire import shown, wire_frames_of
from presence_conformance.harness.results import Violation

PRESENCE_FRAME, ENTER_ITEM = 14, 2


@check("disconnect.resume-keeps-members", "disconnect.reenter-after-failed-resume")
def interrupt_connection_id(ctx: CheckContext) -> Iterator[Violation]:
    """A resumed connection keeps its connectionId; a refused resume gives a new one."""
    for rec in ctx.record.interrupts:
        if rec.new_id is None:
            continue
        if rec.resume and rec.new_id != rec.old_id:
            yield ctx.violation(
                "disconnect.resume-keeps-members",
                f"client {rec.client!r} was to be resumed after its transient disconnect, but "
                f"its connectionId changed from {rec.old_id!r} to {rec.new_id!r}",
                expected=rec.old_id,
                observed=rec.new_id,
                step=rec.step,
                history_index=rec.history_index,
            )
        elif not rec.resume and rec.new_id == rec.old_id:
            yield ctx.violation(
                "disconnect.reenter-after-failed-resume",
                f"the resume of client {rec.client!r} was refused, but it kept connectionId "
                f"{rec.old_id!r}",
                expected="a new connectionId",
                observed=rec.new_id,
                step=rec.step,
                history_index=rec.history_index,
            )


@check("disconnect.reenter-id-omitted")
def reentry_id_omitted(ctx: CheckContext) -> Iterator[Violation]:
    """The re-entry on a new connection carries no id of the old one (RTP17g1)."""
    logs = {log.connection_id: log for log in wire_frames_of(ctx.record)}
    for rec in ctx.record.interrupts:
        if rec.resume or rec.new_id is None or rec.new_id == rec.old_id:
            continue
        log = logs.get(rec.new_id)
        if log is None:
            continue
        for index, frame in enumerate(log.frames):
            if not isinstance(frame, dict) or frame.get("action") != PRESENCE_FRAME:
                continue
            items = frame.get("presence")
            for position, item in enumerate(items if isinstance(items, list) else ()):
                if not isinstance(item, dict) or item.get("action") != ENTER_ITEM:
                    continue
                item_id = item.get("id")
                if isinstance(item_id, str) and item_id.startswith(rec.old_id + ":"):
                    yield ctx.violation(
                        "disconnect.reenter-id-omitted",
                        f"{log.label}, frame #{index}: the ENTER item presence[{position}] sent "
                        f"on the new connection {rec.new_id!r} carries id {item_id!r} of the "
                        f"old connection {rec.old_id!r}; RTP17g1: it must have no id",
                        expected=f"presence[{position}] without id",
                        observed=shown(frame),
                        step=rec.step,
                    )

"""Transient-disconnect checks (the `interrupt` step, RTN15): the connectionId a resume keeps or
a refused resume replaces, and the id of the re-entry published on a new connection.

The members that stay, the events delivered after a resume, the re-entries and the old members'
leaves are the model's expectations like any other and are judged by the event and get checks;
these checks judge what only an interrupt has:

- `disconnect.resume-keeps-members` (RTN15c6): a resume the server accepted keeps the
  connectionId;
- `disconnect.reenter-after-failed-resume` (RTN15c7): a refused resume gives a new connectionId;
(`wire.reenter-no-old-id`, RTP17g1, is judged on the client's frames: `checks/wire.py`.)
"""

from __future__ import annotations

from collections.abc import Iterator

from presence_conformance.harness.checks.base import CheckContext, check
from presence_conformance.harness.results import Violation


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

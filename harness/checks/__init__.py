"""Checks: small named functions that judge one case's record, each bound to the requirement IDs
it enforces.

Families: `events` (deliveries, order, extras), `sync` (syncComplete, convergence), `filtering`
(get and its filters), `history` (contents, order, bounds, limit, pages), `messages` (schema,
fields, ids, data round trip), `lifecycle` (attach, detach, channel states),
`errors` (refusals and their codes), `reentry` (re-entry after a server DETACHED, RTP17e), `wire` (client frames seen by
the reference server, for adapters with `Feature.WIRE_FRAMES`), `server_frames` (the frames a
server sent to the harness's own client, for adapters with `Feature.SERVER_FRAMES`). `CHECKS`
maps each check's name to its requirement IDs; `run_checks(record)` runs them all and returns
(violations, infos).
"""

from presence_conformance.harness.checks import (
    client_oracle,
    errors,
    events,
    filtering,
    history,
    lifecycle,
    messages,
    reentry,
    rest,
    resume,
    server_frames,
    sync,
    wire,
)
from presence_conformance.harness.checks.base import (
    CHECKS,
    REGISTRY,
    CheckContext,
    CheckInfo,
    check,
    run_checks,
)

__all__ = [
    "CHECKS",
    "REGISTRY",
    "CheckContext",
    "CheckInfo",
    "check",
    "client_oracle",
    "errors",
    "events",
    "filtering",
    "history",
    "lifecycle",
    "messages",
    "reentry",
    "rest",
    "resume",
    "run_checks",
    "server_frames",
    "sync",
    "wire",
]

"""The normalised form of a scenario: `Scenario`, `Step`, `ClientSpec`, and `ScenarioError`
with its `Problem`s (file, line, field path, message, rule)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from presence_conformance.harness.adapter import Feature
from presence_conformance.reference_impl.model import DEFAULT_MAX_MESSAGE_SIZE, message_size

__all__ = [
    "ACTIONS",
    "CLIENT_PUBLISH_STEPS",
    "CONNECTION_STEPS",
    "EVENT_STEPS",
    "LIFECYCLE_STEPS",
    "OPERATION_STEPS",
    "PUBLISH_STEPS",
    "READ_STEPS",
    "SERVER_COMMANDS",
    "ClientSpec",
    "Problem",
    "Scenario",
    "ScenarioError",
    "Step",
    "format_path",
]

ACTIONS = ("enter", "leave", "update", "present")
CLIENT_PUBLISH_STEPS = ("enter_client", "update_client", "leave_client")
"""enterClient, updateClient, leaveClient (RTP14, RTP15): a publish for another clientId."""
PUBLISH_STEPS = ("enter", "update", "leave", *CLIENT_PUBLISH_STEPS)
OPERATION_STEPS = (
    *PUBLISH_STEPS,
    "get",
    "rest_get",
    "subscribe",
    "unsubscribe",
    "history",
    "sync_complete",
)
"""Steps that call the presence API of one client on one channel (allowed in `concurrently`)."""
EVENT_STEPS = (*PUBLISH_STEPS, "drop", "close", "interrupt")
"""Steps that can produce an event, so that a history bound may refer to them (`{at: ID}`)."""
READ_STEPS = ("get", "rest_get", "history", "sync_complete", "subscribe", "unsubscribe")
CONNECTION_STEPS = ("drop", "close", "connect", "interrupt")
LIFECYCLE_STEPS = ("attach", "detach", "channel_state")
"""RealtimeChannel#attach, #detach and the channel's state (needs channel-lifecycle)."""

SERVER_COMMANDS = ("sync", "attached", "presence", "detached", "error")
"""The commands of a `server:` step (reference_impl/server/control.py)."""
_COMMON = ("id", "requirements", "expect_error")


# -- errors ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario file."""

    file: str
    line: int | None
    field: str
    message: str
    rule: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message} (rule: {self.rule})"


class ScenarioError(ValueError):
    """One or more malformed scenario files; `problems` lists each problem, first by line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    @property
    def first(self) -> Problem:
        return self.problems[0]

    # shortcuts to the first problem, the usual case of one problem
    @property
    def file(self) -> str:
        return self.first.file

    @property
    def line(self) -> int | None:
        return self.first.line

    @property
    def field(self) -> str:
        return self.first.field

    @property
    def rule(self) -> str:
        return self.first.rule


def format_path(path: Sequence[str | int]) -> str:
    """`("steps", 3, "enter", "data")` -> `steps[3].enter.data`; `()` -> `(root)`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


# -- the normalised form ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSpec:
    """A named connection: its clientId (None: anonymous), capability and when it connects."""

    name: str
    client_id: str | None
    capability: dict[str, list[str]] | None = None
    connect: str = "start"  # start | later
    client_id_given: bool = True  # False when the file left it to default to the name
    token_client_id: str | None = None  # the clientId of its token (TK2c), if `token_given`
    token_given: bool = False  # connects with a token of its own identity (token-identity)

    @property
    def claims_other_identity(self) -> bool:
        """True if its connection claims a clientId its token does not allow: a token without
        a clientId, or with another one than the claimed (TK2c, TD6; only '*' may be narrowed)."""
        return (
            self.token_given
            and self.token_client_id != "*"
            and self.client_id is not None
            and self.client_id != self.token_client_id
        )

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        if self.client_id_given or self.client_id != self.name:
            out["client_id"] = self.client_id
        if self.capability is not None:
            out["capability"] = self.capability
        if self.connect != "start":
            out["connect"] = self.connect
        if self.token_given:
            out["token_client_id"] = self.token_client_id
        return out


@dataclass(frozen=True)
class Step:
    """One normalised step.

    `kind` is the step kind, `index` its position in `steps` (for a step inside `concurrently`,
    the block's position, with `sub` its position in the block), `path` its field path and `line`
    its line in the file (0 when built from a dict). `args` holds the kind's own fields, with data
    decoded (`{$binary: ...}` -> bytes) and `actions` always a list (`actions_list` says whether
    the file wrote a list). `steps` holds the operations of a `concurrently` block, or of an
    `interrupt`: its `queued` steps first (`args["queued"]` of them), then its `during` steps.
    """

    kind: str
    index: int
    path: str
    line: int = 0
    sub: int | None = None
    client: str | None = None
    channel: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    requirements: tuple[str, ...] = ()
    expect_error: tuple[int, ...] | None = None
    steps: tuple[Step, ...] = ()

    @property
    def label(self) -> str:
        """`steps[3] (enter alice room)`: how reports name the step."""
        parts = [self.kind] + [p for p in (self.client, self.channel) if p]
        return f"{self.path} ({' '.join(parts)})"

    def to_dict(self) -> dict:
        """The step as written in a file (`{kind: {fields}}`)."""
        if self.kind == "concurrently":
            return {"concurrently": [s.to_dict() for s in self.steps]}
        body: dict[str, Any] = {}
        if self.kind == "interrupt" and self.steps:
            queued = int(self.args.get("queued", 0))
            if queued:
                body["queued"] = [s.to_dict() for s in self.steps[:queued]]
            if self.steps[queued:]:
                body["during"] = [s.to_dict() for s in self.steps[queued:]]
        if self.client is not None:
            body["client"] = self.client
        if self.channel is not None:
            body["channel"] = self.channel
        for key, value in self.args.items():
            if key == "actions_list" or (key == "queued" and self.kind == "interrupt"):
                continue
            if key == "actions" and value is not None and not self.args.get("actions_list"):
                value = value[0]
            if key == "events":
                value = [
                    {**e, "action": e["action"] if len(e["action"]) > 1 else e["action"][0]}
                    for e in value
                ]
            body[key] = value
        if self.id is not None:
            body["id"] = self.id
        if self.requirements:
            body["requirements"] = list(self.requirements)
        if self.expect_error is not None:
            body["expect_error"] = (
                self.expect_error[0] if len(self.expect_error) == 1 else list(self.expect_error)
            )
        return {self.kind: body}


@dataclass
class Scenario:
    """A loaded, validated scenario.

    `case_id` is the file's path under the scenarios root without `.yaml`
    (`history/limit-default-100`); `source` the file (None for a scenario built in memory).
    """

    case_id: str
    name: str
    description: str
    requirements: list[str]
    requires: list[str]
    clients: dict[str, ClientSpec]
    channels: list[str]
    steps: list[Step]
    source: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def iter_steps(self) -> list[Step]:
        """Every step, the operations of `concurrently` blocks in place of the block."""
        out: list[Step] = []
        for step in self.steps:
            out.extend(step.steps if step.kind == "concurrently" else (step, *step.steps))
        return out

    def needed_features(self) -> frozenset[Feature]:
        """`requires` plus the features the steps imply (binary data -> binary-data, ...)."""
        return frozenset(Feature(f) for f in self.requires) | _implied_features(self)

    def to_dict(self) -> dict:
        """The scenario as written in a file."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["requirements"] = list(self.requirements)
        if self.requires:
            out["requires"] = list(self.requires)
        out["clients"] = {name: c.to_dict() for name, c in self.clients.items()}
        out["channels"] = list(self.channels)
        out["steps"] = [s.to_dict() for s in self.steps]
        if self.meta:
            out["meta"] = self.meta
        return out


# -- features --------------------------------------------------------------------------------------


def _all_data(scenario: Scenario) -> list[tuple[str | None, Any]]:
    out = []
    for step in scenario.iter_steps():
        client = scenario.clients.get(step.client or "")
        client_id = client.client_id if client else None
        if "data" in step.args:
            out.append((client_id, step.args["data"]))
        for item in (
            step.args.get("expect", ()) if isinstance(step.args.get("expect"), list) else ()
        ):
            if "data" in item:
                out.append((client_id, item["data"]))
        for event in step.args.get("events", ()):
            if "data" in event:
                out.append((client_id, event["data"]))
    return out


def _implied_features(scenario: Scenario) -> frozenset[Feature]:
    needed: set[Feature] = set()
    if len(scenario.clients) > 1:
        needed.add(Feature.MULTIPLE_CONNECTIONS)
    for client in scenario.clients.values():
        if client.client_id is None or client.client_id == "*":
            needed.add(Feature.ANONYMOUS_CLIENTS)
        if client.capability is not None:
            needed.add(Feature.CAPABILITIES)
        if client.token_given:
            needed.add(Feature.TOKEN_IDENTITY)
    for client_id, data in _all_data(scenario):
        if isinstance(data, bytes):
            needed.add(Feature.BINARY_DATA)
        try:
            if message_size(client_id, data) > DEFAULT_MAX_MESSAGE_SIZE:
                needed.add(Feature.LARGE_MESSAGES)
        except (TypeError, ValueError):
            pass
    for step in scenario.iter_steps():
        kind, args = step.kind, step.args
        if kind == "drop":
            needed.add(Feature.ABRUPT_DISCONNECT)
        elif kind == "interrupt":
            needed.add(Feature.TRANSIENT_DISCONNECT)
            if args.get("suspend"):  # a short connectionStateTtl, the channel's state
                needed.update((Feature.SERVER_CONTROL, Feature.CHANNEL_LIFECYCLE))
        elif kind in LIFECYCLE_STEPS:
            needed.add(Feature.CHANNEL_LIFECYCLE)
        elif kind in CLIENT_PUBLISH_STEPS:
            needed.add(Feature.ENTER_CLIENT)
        elif kind == "rest_get":
            needed.add(Feature.REST_PRESENCE)
            limit = args.get("limit")
            if limit is not None and not 1 <= limit <= 1000:
                needed.add(Feature.ARGUMENT_VALIDATION)
        elif kind == "history":
            needed.add(Feature.HISTORY)
            limit, direction = args.get("limit"), args.get("direction")
            start, end = args.get("start"), args.get("end")
            if (
                (limit is not None and not 1 <= limit <= 1000)
                or (direction is not None and direction not in ("forwards", "backwards"))
                or (isinstance(start, int) and isinstance(end, int) and start > end)
                or (isinstance(start, int) and start < 0)
                or (isinstance(end, int) and end < 0)
            ):
                needed.add(Feature.ARGUMENT_VALIDATION)
        elif kind == "get" and args.get("wait_for_sync") is False:
            needed.add(Feature.WAIT_FOR_SYNC_OPTION)
        elif kind == "sync_complete":
            needed.add(Feature.SYNC_COMPLETE)
        elif kind == "server":
            needed.add(Feature.SERVER_CONTROL)
            if args.get("refuse_reentry"):  # RTP17e: the channel's UPDATE event
                needed.add(Feature.CHANNEL_EVENTS)
        elif kind in ("subscribe", "unsubscribe") and "actions" in args:
            if kind == "unsubscribe":
                needed.add(Feature.UNSUBSCRIBE_BY_ACTION)
            elif len(args["actions"]) > 1:
                needed.add(Feature.SUBSCRIBE_ACTION_LIST)
            if any(a not in ACTIONS for a in args["actions"]):
                needed.add(Feature.ARGUMENT_VALIDATION)
    return frozenset(needed)

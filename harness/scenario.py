"""Scenario files: load, validate, normalise and write them (format: docs/scenarios.md).

A scenario file is YAML checked in two passes, and every problem is reported as a
`ScenarioError` naming the file, the line, the field path and the rule broken, e.g.

    scenarios/get/x.yaml:12: steps[3].enter.data: not valid base64 (rule: binary)

1. the JSON Schema `spec/schemas/scenario.json` (shape, types, known step kinds and fields);
2. semantic rules: references to undeclared clients, channels, listeners and step ids;
   operations by a client that is not connected at that point; `concurrently` blocks (no nested
   block, only operations, no two operations on the same member, no read or listener change racing
   a write on the same channel); requirement IDs unknown to the catalogue; unknown feature names;
   action names that are not presence actions.

`Scenario` is the normalised form the runner executes; `dump_scenario` writes one back (binary
data as `!!binary`) so that `load_scenario` reads an equal scenario: generation saves failures
this way.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from harness.adapter import Feature
from harness.scenario_yaml import Path as FieldPath
from harness.scenario_yaml import YamlProblem, dump_yaml, load_yaml
from reference_impl.model import DEFAULT_MAX_MESSAGE_SIZE, message_size

__all__ = [
    "ACTIONS",
    "EVENT_STEPS",
    "OPERATION_STEPS",
    "ClientSpec",
    "Problem",
    "Scenario",
    "ScenarioError",
    "Step",
    "dump_scenario",
    "load_scenario",
    "load_scenarios",
    "scenario_from_dict",
    "scenario_to_yaml",
]

ACTIONS = ("enter", "leave", "update", "present")
PUBLISH_STEPS = ("enter", "update", "leave")
OPERATION_STEPS = (*PUBLISH_STEPS, "get", "subscribe", "unsubscribe", "history", "sync_complete")
"""Steps that call the presence API of one client on one channel (allowed in `concurrently`)."""
EVENT_STEPS = (*PUBLISH_STEPS, "drop", "close")
"""Steps that can produce an event, so that a history bound may refer to them (`{at: ID}`)."""
READ_STEPS = ("get", "history", "sync_complete", "subscribe", "unsubscribe")
CONNECTION_STEPS = ("drop", "close", "connect")
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


def format_path(path: FieldPath) -> str:
    """`("steps", 3, "enter", "data")` -> `steps[3].enter.data`; `()` -> `(root)`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


class _Reporter:
    """Collects problems for one file, finding the line of each field path."""

    def __init__(self, file: str, lines: Mapping[FieldPath, int] | None) -> None:
        self.file = file
        self.lines = lines or {}
        self.problems: list[Problem] = []

    def line_of(self, path: FieldPath) -> int | None:
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def add(self, path: FieldPath, message: str, rule: str) -> None:
        self.problems.append(Problem(self.file, self.line_of(path), format_path(path), message,
                                     rule))

    def raise_if_any(self) -> None:
        if self.problems:
            self.problems.sort(key=lambda p: (p.line or 0))
            raise ScenarioError(list(self.problems))


# -- the normalised form ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSpec:
    """A named connection: its clientId (None: anonymous), capability and when it connects."""

    name: str
    client_id: str | None
    capability: dict[str, list[str]] | None = None
    connect: str = "start"  # start | later
    client_id_given: bool = True  # False when the file left it to default to the name

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        if self.client_id_given or self.client_id != self.name:
            out["client_id"] = self.client_id
        if self.capability is not None:
            out["capability"] = self.capability
        if self.connect != "start":
            out["connect"] = self.connect
        return out


@dataclass(frozen=True)
class Step:
    """One normalised step.

    `kind` is the step kind, `index` its position in `steps` (for a step inside `concurrently`,
    the block's position, with `sub` its position in the block), `path` its field path and `line`
    its line in the file (0 when built from a dict). `args` holds the kind's own fields, with data
    decoded (`{$binary: ...}` -> bytes) and `actions` always a list (`actions_list` says whether
    the file wrote a list). `steps` holds the operations of a `concurrently` block.
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
        if self.client is not None:
            body["client"] = self.client
        if self.channel is not None:
            body["channel"] = self.channel
        for key, value in self.args.items():
            if key == "actions_list":
                continue
            if key == "actions" and value is not None and not self.args.get("actions_list"):
                value = value[0]
            if key == "events":
                value = [{**e, "action": e["action"] if len(e["action"]) > 1 else e["action"][0]}
                         for e in value]
            body[key] = value
        if self.id is not None:
            body["id"] = self.id
        if self.requirements:
            body["requirements"] = list(self.requirements)
        if self.expect_error is not None:
            body["expect_error"] = (self.expect_error[0] if len(self.expect_error) == 1
                                    else list(self.expect_error))
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
            out.extend(step.steps if step.kind == "concurrently" else (step,))
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


# -- loading ---------------------------------------------------------------------------------------


def load_scenario(path: str | Path, root: str | Path | None = None) -> Scenario:
    """Load and validate one file; `root` (default: its parent's parent) gives the case_id."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent.parent
    try:
        case_id = path.relative_to(root).with_suffix("").as_posix()
    except ValueError:
        case_id = path.stem
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([Problem(file, None, "(root)", f"cannot read the file: {exc}",
                                     "file")]) from None
    try:
        obj, lines = load_yaml(text)
    except YamlProblem as exc:
        raise ScenarioError([Problem(file, exc.line, format_path(exc.path), exc.message,
                                     exc.rule)]) from None
    return scenario_from_dict(obj, case_id=case_id, source=path, lines=lines, file=file,
                              default_name=path.stem)


def load_scenarios(root: str | Path) -> list[Scenario]:
    """Every `*.yaml` under `root`, sorted by case_id. Problems in any file are collected and
    raised together as one `ScenarioError`."""
    root = Path(root)
    scenarios: list[Scenario] = []
    problems: list[Problem] = []
    for path in sorted(root.rglob("*.yaml")):
        try:
            scenarios.append(load_scenario(path, root))
        except ScenarioError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ScenarioError(problems)
    return sorted(scenarios, key=lambda s: s.case_id)


def scenario_from_dict(obj: Any, case_id: str = "inline", source: Path | None = None,
                       lines: Mapping[FieldPath, int] | None = None, file: str | None = None,
                       default_name: str | None = None) -> Scenario:
    """Validate and normalise a scenario given as a dict (the parsed YAML)."""
    report = _Reporter(file or (str(source) if source else f"<{case_id}>"), lines)
    _schema_problems(obj, report)
    report.raise_if_any()
    scenario = _Normaliser(obj, report, case_id, source, default_name or case_id.rsplit("/")[-1]
                           ).run()
    report.raise_if_any()
    return scenario


# -- pass 1: the schema ----------------------------------------------------------------------------


@cache
def _validator() -> Any:
    import spec

    return spec.validator("scenario")


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null", bytes: "binary data"}.get(type(value),
                                                                            type(value).__name__)


def _schema_problems(obj: Any, report: _Reporter) -> None:
    from jsonschema.exceptions import best_match

    for error in _validator().iter_errors(obj):
        if error.validator == "oneOf" and error.context:
            sub = best_match(error.context)
            if sub is not None and list(sub.absolute_path) != list(error.absolute_path):
                error = sub
        path = tuple(error.absolute_path)
        value = error.instance
        validator = error.validator
        if "propertyNames" in error.schema_path:
            report.add((*path, value), _property_name_message(path, value), "step-kind"
                       if path and path[0] == "steps" else "name")
        elif validator == "required":
            missing = [k for k in error.validator_value if k not in value]
            report.add(path, f"missing required field {', '.join(map(repr, missing))}", "required")
        elif validator == "additionalProperties":
            allowed = list(error.schema.get("properties", {}))
            for key in value:
                if key not in allowed:
                    hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
                    report.add((*path, key), f"unknown field {key!r}{hint}", "unknown-field")
        elif validator == "maxProperties" and path and path[0] == "steps":
            report.add(path, f"a step has exactly one kind, found {', '.join(value)}", "step-kind")
        elif validator == "minProperties" and path and path[0] == "steps":
            report.add(path, "empty step: expected one kind, e.g. {enter: {...}}", "step-kind")
        elif validator == "type":
            expected = error.validator_value
            expected = " or ".join(expected) if isinstance(expected, list) else expected
            report.add(path, f"expected {expected}, got {_type_name(value)} {value!r}", "type")
        elif validator == "pattern":
            report.add(path, f"{value!r} is not a valid {_pattern_name(path)}", "pattern")
        elif validator == "enum":
            report.add(path, f"{value!r} is not one of {', '.join(map(str, error.validator_value))}",
                       "enum")
        elif validator == "uniqueItems":
            report.add(path, "has duplicate items", "unique")
        elif validator == "minItems":
            report.add(path, f"needs at least {error.validator_value} item(s)", "min-items")
        else:
            report.add(path, error.message, validator)


def _property_name_message(path: FieldPath, key: Any) -> str:
    if path and path[0] == "steps":
        kinds = ", ".join((*OPERATION_STEPS, "concurrently", *CONNECTION_STEPS, "expect_events"))
        return f"unknown step kind {key!r} (expected one of {kinds})"
    return f"{key!r} is not a valid name (letters, digits, '_' and '-', not starting with a digit)"


def _pattern_name(path: FieldPath) -> str:
    last = next((p for p in reversed(path) if isinstance(p, str)), "")
    return {"requirements": "requirement ID (area.kebab-slug)", "requires": "feature name",
            "channels": "channel name", "channel": "channel name", "id": "step id",
            "at": "step id"}.get(last, "name")


# -- pass 2: semantics and normalisation -----------------------------------------------------------


@cache
def _catalogue() -> Any:
    import spec

    return spec.load_requirements()


def _suggest(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Normaliser:
    """Pass 2: builds the `Scenario`, checking every cross-reference as it goes (in step order,
    so that 'not connected here' and 'listener not subscribed yet' are decided where they occur)."""

    def __init__(self, obj: dict, report: _Reporter, case_id: str, source: Path | None,
                 default_name: str) -> None:
        self.obj = obj
        self.report = report
        self.case_id = case_id
        self.source = source
        self.default_name = default_name
        self.clients: dict[str, ClientSpec] = {}
        self.channels: list[str] = list(obj["channels"])
        self.connected: dict[str, bool] = {}
        self.listeners: dict[str, tuple[str, str]] = {}  # name -> (client, channel)
        self.step_ids: dict[str, str] = {}  # id -> kind

    def run(self) -> Scenario:
        obj = self.obj
        requirements = list(obj["requirements"])
        for i, rid in enumerate(requirements):
            self._check_requirement(("requirements", i), rid)
        requires = list(obj.get("requires", []))
        features = [f.value for f in Feature]
        for i, name in enumerate(requires):
            if name not in features:
                self.report.add(("requires", i), f"unknown feature {name!r} (known: "
                                f"{', '.join(features)}){_suggest(name, features)}",
                                "unknown-feature")
        for name, raw in obj["clients"].items():
            self.clients[name] = self._client(name, raw)
        steps = [self._step(("steps", i), raw, i) for i, raw in enumerate(obj["steps"])]
        return Scenario(case_id=self.case_id, name=obj.get("name", self.default_name),
                        description=obj.get("description", ""), requirements=requirements,
                        requires=requires, clients=self.clients, channels=self.channels,
                        steps=steps, source=self.source, meta=dict(obj.get("meta", {})))

    # clients

    def _client(self, name: str, raw: dict) -> ClientSpec:
        given = "client_id" in raw
        client_id = raw.get("client_id") if given else name
        connect = raw.get("connect", "start")
        self.connected[name] = connect == "start"
        capability = raw.get("capability")
        if capability is not None:
            for pattern in capability:
                base = pattern[:-2] if pattern.endswith(":*") else pattern
                if pattern != "*" and base not in self.channels and not any(
                        c.startswith(base + ":") for c in self.channels):
                    self.report.add(("clients", name, "capability", pattern),
                                    f"pattern {pattern!r} matches none of the channels "
                                    f"({', '.join(self.channels)})", "unknown-channel")
        return ClientSpec(name, client_id, capability, connect, given)

    # steps

    def _step(self, path: FieldPath, raw: dict, index: int, sub: int | None = None) -> Step:
        (kind, body), = raw.items()
        line = self.report.line_of(path) or 0
        where = format_path(path)
        if kind == "concurrently":
            if sub is not None:
                self.report.add((*path, kind), "a concurrently block cannot contain another one",
                                "concurrent-nested")
                return Step(kind, index, where, line, sub)
            inner = [self._step((*path, kind, j), item, index, j) for j, item in enumerate(body)]
            self._check_block(path, inner)
            return Step(kind, index, where, line, sub, steps=tuple(inner))
        if sub is not None and kind not in OPERATION_STEPS:
            self.report.add((*path, kind), f"{kind!r} cannot run inside concurrently (only "
                            f"{', '.join(OPERATION_STEPS)})", "concurrent-kind")
        bpath = (*path, kind)
        client = body.get("client")
        channel = body.get("channel")
        if client is not None:
            self._check_client(bpath, client, kind)
        if channel is not None and channel not in self.channels:
            self.report.add((*bpath, "channel"), f"unknown channel {channel!r} (declared: "
                            f"{', '.join(self.channels)}){_suggest(channel, self.channels)}",
                            "unknown-channel")
        requirements = tuple(body.get("requirements", ()))
        for i, rid in enumerate(requirements):
            self._check_requirement((*bpath, "requirements", i), rid)
        expect_error = body.get("expect_error")
        if expect_error is not None:
            expect_error = tuple(expect_error) if isinstance(expect_error, list) else (expect_error,)
        step_id = body.get("id")
        if step_id is not None:
            if step_id in self.step_ids:
                self.report.add((*bpath, "id"), f"step id {step_id!r} is used twice",
                                "duplicate-step-id")
            self.step_ids[step_id] = kind
        args = getattr(self, f"_args_{kind}")(bpath, body, client, channel, expect_error)
        return Step(kind, index, where, line, sub, client, channel, args, step_id, requirements,
                    expect_error)

    def _check_requirement(self, path: FieldPath, rid: str) -> None:
        catalogue = _catalogue()
        if rid not in catalogue:
            try:
                catalogue.by_id(rid)
            except KeyError as exc:
                message = str(exc.args[0])
            self.report.add(path, message, "unknown-requirement")

    def _check_client(self, path: FieldPath, client: str, kind: str) -> None:
        if client not in self.clients:
            self.report.add((*path, "client"), f"unknown client {client!r} (declared: "
                            f"{', '.join(self.clients)}){_suggest(client, list(self.clients))}",
                            "unknown-client")
            return
        connected = self.connected[client]
        if kind == "connect":
            if connected:
                self.report.add((*path, "client"), f"client {client!r} is already connected here",
                                "client-connected")
            self.connected[client] = True
        elif not connected:
            self.report.add((*path, "client"), f"client {client!r} is not connected at this step "
                            "(declare it `connect: later` and add a connect step, or reconnect "
                            "it after drop/close)", "client-not-connected")
        elif kind in ("drop", "close"):
            self.connected[client] = False

    def _check_ref(self, path: FieldPath, value: Any) -> None:
        if isinstance(value, dict) and value.get("of") not in self.clients:
            self.report.add((*path, "of"), f"unknown client {value.get('of')!r}", "unknown-client")

    def _check_actions(self, path: FieldPath, actions: list[str], may_fail: bool) -> None:
        for i, action in enumerate(actions):
            if action not in ACTIONS and not may_fail:
                self.report.add((*path, i) if len(actions) > 1 or path[-1] == "events" else path,
                                f"{action!r} is not a presence action ({', '.join(ACTIONS)}); "
                                "a step that tests an invalid action needs expect_error",
                                "invalid-action")

    def _data(self, path: FieldPath, value: Any, top: bool = True) -> Any:
        if isinstance(value, dict) and "$binary" in value and top:
            if set(value) != {"$binary"} or not isinstance(value["$binary"], str):
                self.report.add(path, "{$binary: BASE64} takes exactly one string", "binary")
                return None
            try:
                return base64.b64decode(value["$binary"], validate=True)
            except (binascii.Error, ValueError):
                self.report.add((*path, "$binary"), "not valid base64", "binary")
                return None
        if isinstance(value, dict) and "$repeat" in value and top:
            if (set(value) != {"$repeat", "times"} or not isinstance(value["$repeat"], str)
                    or isinstance(value.get("times"), bool) or not isinstance(value.get("times"), int)
                    or value["times"] < 0):
                self.report.add(path, "{$repeat: STRING, times: N} takes a string and a count >= 0",
                                "repeat")
                return None
            return value["$repeat"] * value["times"]
        if isinstance(value, bytes):
            if not top:
                self.report.add(path, "binary data is only allowed as the whole data value",
                                "data-type")
            return value
        if isinstance(value, (datetime.date, datetime.datetime)):
            self.report.add(path, f"{value!r} is read by YAML as a date; quote it to make it a "
                            "string", "data-type")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.report.add(path, f"{value!r} is not a JSON number", "data-type")
            return None
        if isinstance(value, dict):
            return {k: self._data((*path, k), v, False) for k, v in value.items()}
        if isinstance(value, list):
            return [self._data((*path, i), v, False) for i, v in enumerate(value)]
        return value

    # per kind: return the normalised args

    def _args_publish(self, path: FieldPath, body: dict, *_: Any) -> dict:
        return {"data": self._data((*path, "data"), body["data"])} if "data" in body else {}

    _args_enter = _args_update = _args_leave = _args_publish

    def _args_get(self, path: FieldPath, body: dict, *_: Any) -> dict:
        args: dict[str, Any] = {}
        for key in ("client_id", "connection_id"):
            if key in body:
                self._check_ref((*path, key), body[key])
                args[key] = body[key]
        if "wait_for_sync" in body:
            args["wait_for_sync"] = body["wait_for_sync"]
        if "expect" in body:
            expect = []
            for i, member in enumerate(body["expect"]):
                if member["client"] not in self.clients:
                    self.report.add((*path, "expect", i, "client"),
                                    f"unknown client {member['client']!r}", "unknown-client")
                item = {"client": member["client"]}
                if "data" in member:
                    item["data"] = self._data((*path, "expect", i, "data"), member["data"])
                expect.append(item)
            args["expect"] = expect
        return args

    def _bind_listener(self, path: FieldPath, name: str, client: str, channel: str) -> None:
        bound = self.listeners.setdefault(name, (client, channel))
        if bound != (client, channel):
            self.report.add(path, f"listener {name!r} belongs to client {bound[0]!r} on channel "
                            f"{bound[1]!r}; use another name here", "listener-binding")

    def _actions(self, path: FieldPath, body: dict, may_fail: bool) -> dict:
        if "actions" not in body:
            return {}
        raw = body["actions"]
        actions = list(raw) if isinstance(raw, list) else [raw]
        self._check_actions((*path, "actions"), actions, may_fail)
        return {"actions": actions, "actions_list": isinstance(raw, list)}

    def _args_subscribe(self, path: FieldPath, body: dict, client: str, channel: str,
                        expect_error: Any) -> dict:
        self._bind_listener((*path, "listener"), body["listener"], client, channel)
        return {"listener": body["listener"], **self._actions(path, body, expect_error is not None)}

    def _args_unsubscribe(self, path: FieldPath, body: dict, client: str, channel: str,
                          expect_error: Any) -> dict:
        args: dict[str, Any] = {}
        if "listener" in body:
            name = body["listener"]
            if name not in self.listeners:
                self.report.add((*path, "listener"), f"listener {name!r} was never subscribed "
                                "before this step", "unknown-listener")
            else:
                self._bind_listener((*path, "listener"), name, client, channel)
            args["listener"] = name
        args.update(self._actions(path, body, expect_error is not None))
        return args

    def _args_history(self, path: FieldPath, body: dict, *_: Any) -> dict:
        args: dict[str, Any] = {}
        for key in ("start", "end"):
            if key not in body:
                continue
            bound = body[key]
            if isinstance(bound, dict):
                ref = bound["at"]
                if ref not in self.step_ids:
                    self.report.add((*path, key, "at"), f"no earlier step has id {ref!r}",
                                    "unknown-step-id")
                elif self.step_ids[ref] not in EVENT_STEPS:
                    self.report.add((*path, key, "at"), f"step {ref!r} is a "
                                    f"{self.step_ids[ref]} step, which produces no event "
                                    f"(use one of {', '.join(EVENT_STEPS)})", "step-id-not-event")
                bound = {"at": ref, "offset": bound.get("offset", 0)}
            args[key] = bound
        for key in ("limit", "direction", "pages", "expect_count"):
            if key in body:
                args[key] = body[key]
        return args

    def _args_sync_complete(self, path: FieldPath, body: dict, *_: Any) -> dict:
        return {"expect": body["expect"]} if "expect" in body else {}

    def _args_connection(self, *_: Any) -> dict:
        return {}

    _args_drop = _args_close = _args_connect = _args_connection

    def _args_expect_events(self, path: FieldPath, body: dict, *_: Any) -> dict:
        name = body["listener"]
        if name not in self.listeners:
            self.report.add((*path, "listener"), f"listener {name!r} was never subscribed before "
                            "this step", "unknown-listener")
        events = []
        for i, raw in enumerate(body["events"]):
            epath = (*path, "events", i)
            actions = list(raw["action"]) if isinstance(raw["action"], list) else [raw["action"]]
            self._check_actions((*epath, "action"), actions, False)
            if raw["client"] not in self.clients:
                self.report.add((*epath, "client"), f"unknown client {raw['client']!r}",
                                "unknown-client")
            event: dict[str, Any] = {"action": actions, "client": raw["client"]}
            if "data" in raw:
                event["data"] = self._data((*epath, "data"), raw["data"])
            events.append(event)
        return {"listener": name, "events": events}

    # concurrency rules

    def _check_block(self, path: FieldPath, inner: list[Step]) -> None:
        seen: dict[tuple[str | None, str | None], Step] = {}
        writes = {s.channel for s in inner if s.kind in PUBLISH_STEPS}
        for step in inner:
            if step.kind not in OPERATION_STEPS:
                continue
            key = (step.client, step.channel)
            spath = (*path, "concurrently", step.sub or 0, step.kind)
            if key in seen:
                self.report.add(spath, f"{seen[key].path} and this step both act on client "
                                f"{step.client!r} on channel {step.channel!r}: operations on one "
                                "member must be separate steps", "concurrent-same-member")
            seen[key] = step
            if step.kind in READ_STEPS and step.channel in writes:
                self.report.add(spath, f"a {step.kind} racing an enter/update/leave on channel "
                                f"{step.channel!r} has no defined outcome: make it a separate step",
                                "concurrent-read-write")


# -- features --------------------------------------------------------------------------------------


def _all_data(scenario: Scenario) -> list[tuple[str | None, Any]]:
    out = []
    for step in scenario.iter_steps():
        client = scenario.clients.get(step.client or "")
        client_id = client.client_id if client else None
        if "data" in step.args:
            out.append((client_id, step.args["data"]))
        for item in step.args.get("expect", ()) if isinstance(step.args.get("expect"), list) else ():
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
        elif kind == "history":
            needed.add(Feature.HISTORY)
            limit, direction = args.get("limit"), args.get("direction")
            start, end = args.get("start"), args.get("end")
            if ((limit is not None and not 1 <= limit <= 1000)
                    or (direction is not None and direction not in ("forwards", "backwards"))
                    or (isinstance(start, int) and isinstance(end, int) and start > end)
                    or (isinstance(start, int) and start < 0) or (isinstance(end, int) and end < 0)):
                needed.add(Feature.ARGUMENT_VALIDATION)
        elif kind == "get" and args.get("wait_for_sync") is False:
            needed.add(Feature.WAIT_FOR_SYNC_OPTION)
        elif kind == "sync_complete":
            needed.add(Feature.SYNC_COMPLETE)
        elif kind in ("subscribe", "unsubscribe") and "actions" in args:
            if kind == "unsubscribe":
                needed.add(Feature.UNSUBSCRIBE_BY_ACTION)
            elif len(args["actions"]) > 1:
                needed.add(Feature.SUBSCRIBE_ACTION_LIST)
            if any(a not in ACTIONS for a in args["actions"]):
                needed.add(Feature.ARGUMENT_VALIDATION)
    return frozenset(needed)


# -- writing ---------------------------------------------------------------------------------------


def scenario_to_yaml(obj: Scenario | Mapping[str, Any]) -> str:
    """The YAML text of a scenario (a `Scenario` or its dict form)."""
    data = obj.to_dict() if isinstance(obj, Scenario) else dict(obj)
    return dump_yaml(data)


def dump_scenario(obj: Scenario | Mapping[str, Any], path: str | Path) -> Path:
    """Write a scenario file that `load_scenario` reads back to an equal scenario (binary data as
    `!!binary`); the folders are created. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(scenario_to_yaml(obj), encoding="utf-8")
    return path

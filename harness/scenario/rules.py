"""Validating a parsed scenario file and building its normalised form.

Two passes, every problem reported with file, line, field path and rule:

1. the JSON Schema `spec/schemas/scenario.json` (shape, types, step kinds and fields);
2. semantic rules, in step order: references to undeclared clients, channels, listeners and
   step ids; operations by a client not connected at that point; `concurrently` blocks (no nested
   block, only operations, no two operations on one member except enters and updates, no read
   or listener change racing a write on the same channel); requirement IDs unknown to the
   catalogue; unknown feature names; action names that are not presence actions; data YAML
   reads as something else (a date).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import difflib
import math
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, cast

from presence_conformance.harness.adapter import Feature
from presence_conformance.harness.scenario.model import (
    ACTIONS,
    CLIENT_PUBLISH_STEPS,
    CONNECTION_STEPS,
    EVENT_STEPS,
    OPERATION_STEPS,
    PUBLISH_STEPS,
    READ_STEPS,
    SERVER_COMMANDS,
    ClientSpec,
    Problem,
    Scenario,
    ScenarioError,
    Step,
    format_path,
)
from presence_conformance.harness.scenario.yaml_source import Path as FieldPath

__all__ = [
    "MAX_CLIENTS",
    "MAX_STEPS",
    "build_scenario",
    "compiled_validator",
    "valid_compiled",
]

MAX_CLIENTS = 256  # the shipped scenarios use at most a dozen
MAX_STEPS = 5_000  # top-level steps plus the operations of `concurrently` blocks
# operations that may race on one member in a `concurrently` block: their outcomes differ only
# in the order the server applies them (harness/run/contention.py resolves it)
_RACING_STEPS = frozenset(
    {"enter", "update", "leave", "enter_client", "update_client", "leave_client"}
)


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
        self.problems.append(
            Problem(self.file, self.line_of(path), format_path(path), message, rule)
        )

    def raise_if_any(self) -> None:
        if self.problems:
            self.problems.sort(key=lambda p: p.line or 0)
            raise ScenarioError(list(self.problems))


# -- pass 1: the schema ----------------------------------------------------------------------------


@cache
def _validator() -> Any:
    from presence_conformance import spec

    return spec.validator("scenario")


@cache
def compiled_validator() -> Callable[[Any], Any]:
    """The scenario schema compiled by fastjsonschema: about ten times faster than jsonschema,
    for documents the generator built (which are valid but for a harness bug). Its error
    messages are terse, so a document it refuses is validated again by jsonschema, whose errors
    are worded for people. The schema uses only draft-07 keywords; fastjsonschema knows drafts
    4 to 7, so it is compiled as draft 7."""
    import fastjsonschema

    from presence_conformance import spec

    schema = dict(spec.schema("scenario"))
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return cast(Callable[[Any], Any], fastjsonschema.compile(schema))


def valid_compiled(obj: Any) -> bool:
    """Whether the compiled validator accepts `obj` (`compiled_validator`)."""
    from fastjsonschema import JsonSchemaException

    try:
        compiled_validator()(obj)
    except JsonSchemaException:
        return False
    return True


def _type_name(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
        bytes: "binary data",
    }.get(type(value), type(value).__name__)


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
            report.add(
                (*path, value),
                _property_name_message(path, value),
                "step-kind" if path and path[0] == "steps" else "name",
            )
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
            report.add(
                path,
                f"{value!r} is not one of {', '.join(map(str, error.validator_value))}",
                "enum",
            )
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
    return {
        "requirements": "requirement ID (area.kebab-slug)",
        "requires": "feature name",
        "channels": "channel name",
        "channel": "channel name",
        "id": "step id",
        "at": "step id",
    }.get(last, "name")


# -- pass 2: semantics and normalisation -----------------------------------------------------------


@cache
def _catalogue() -> Any:
    from presence_conformance import spec

    return spec.load_requirements()


def _suggest(name: str, known: list[str]) -> str:

    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Normaliser:
    """Pass 2: builds the `Scenario`, checking every cross-reference as it goes (in step order,
    so that 'not connected here' and 'listener not subscribed yet' are decided where they occur)."""

    def __init__(
        self, obj: dict, report: _Reporter, case_id: str, source: Path | None, default_name: str
    ) -> None:
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
        self.staged: set[tuple[str, str]] = set()  # (client, channel) of server steps
        self.used: set[tuple[str, str]] = set()  # (client, channel) of the steps so far

    def run(self) -> Scenario:
        obj = self.obj
        requirements = list(obj["requirements"])
        for i, rid in enumerate(requirements):
            self._check_requirement(("requirements", i), rid)
        requires = list(obj.get("requires", []))
        features = [f.value for f in Feature]
        for i, name in enumerate(requires):
            if name not in features:
                self.report.add(
                    ("requires", i),
                    f"unknown feature {name!r} (known: "
                    f"{', '.join(features)}){_suggest(name, features)}",
                    "unknown-feature",
                )
        for name, raw in obj["clients"].items():
            self.clients[name] = self._client(name, raw)
        steps = [self._step(("steps", i), raw, i) for i, raw in enumerate(obj["steps"])]
        self._check_staged(steps)
        return Scenario(
            case_id=self.case_id,
            name=obj.get("name", self.default_name),
            description=obj.get("description", ""),
            requirements=requirements,
            requires=requires,
            clients=self.clients,
            channels=self.channels,
            steps=steps,
            source=self.source,
            meta=dict(obj.get("meta", {})),
        )

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
                if (
                    pattern != "*"
                    and base not in self.channels
                    and not any(c.startswith(base + ":") for c in self.channels)
                ):
                    self.report.add(
                        ("clients", name, "capability", pattern),
                        f"pattern {pattern!r} matches none of the channels "
                        f"({', '.join(self.channels)})",
                        "unknown-channel",
                    )
        return ClientSpec(
            name,
            client_id,
            capability,
            connect,
            given,
            raw.get("token_client_id"),
            "token_client_id" in raw,
        )

    # steps

    def _step(self, path: FieldPath, raw: dict, index: int, sub: int | None = None) -> Step:
        ((kind, body),) = raw.items()
        line = self.report.line_of(path) or 0
        where = format_path(path)
        if kind == "concurrently":
            if sub is not None:
                self.report.add(
                    (*path, kind),
                    "a concurrently block cannot contain another one",
                    "concurrent-nested",
                )
                return Step(kind, index, where, line, sub)
            inner = [self._step((*path, kind, j), item, index, j) for j, item in enumerate(body)]
            self._check_block(path, inner)
            return Step(kind, index, where, line, sub, steps=tuple(inner))
        if sub is not None and kind not in OPERATION_STEPS:
            self.report.add(
                (*path, kind),
                f"{kind!r} cannot run inside concurrently (only {', '.join(OPERATION_STEPS)})",
                "concurrent-kind",
            )
        bpath = (*path, kind)
        client = body.get("client")
        channel = body.get("channel")
        if client is not None:
            self._check_client(bpath, client, kind)
        if channel is not None and channel not in self.channels:
            self.report.add(
                (*bpath, "channel"),
                f"unknown channel {channel!r} (declared: "
                f"{', '.join(self.channels)}){_suggest(channel, self.channels)}",
                "unknown-channel",
            )
        if isinstance(client, str) and isinstance(channel, str):
            self.used.add((client, channel))
        requirements = tuple(body.get("requirements", ()))
        for i, rid in enumerate(requirements):
            self._check_requirement((*bpath, "requirements", i), rid)
        expect_error = body.get("expect_error")
        if expect_error is not None:
            expect_error = (
                tuple(expect_error) if isinstance(expect_error, list) else (expect_error,)
            )
        step_id = body.get("id")
        if step_id is not None:
            if step_id in self.step_ids:
                self.report.add(
                    (*bpath, "id"), f"step id {step_id!r} is used twice", "duplicate-step-id"
                )
            self.step_ids[step_id] = kind
        args = getattr(self, f"_args_{kind}")(bpath, body, client, channel, expect_error)
        during: tuple[Step, ...] = ()
        if kind == "interrupt":
            during = self._during(bpath, body, client, args, index)
        return Step(
            kind,
            index,
            where,
            line,
            sub,
            client,
            channel,
            args,
            step_id,
            requirements,
            expect_error,
            during,
        )

    def _during(
        self, path: FieldPath, body: dict, client: str, args: dict, index: int
    ) -> tuple[Step, ...]:
        """The operations run while `client` is disconnected (an interrupt's `during`)."""
        if not args["resume"] and client in self.clients:
            # after a failed resume the client's listeners get a fresh sync (present events,
            # and RTP19 leaves) that the model does not predict: observe it from other clients
            bound = sorted(n for n, (c, _) in self.listeners.items() if c == client)
            if bound:
                self.report.add(
                    (*path, "resume"),
                    f"client {client!r} has listeners ({', '.join(bound)}): a failed resume "
                    "re-syncs them in ways the model does not predict; observe the re-entry "
                    "from another client",
                    "interrupt-listeners",
                )
        inner: list[Step] = self._queued(path, body, client, args, index)
        for j, raw in enumerate(body.get("during", ())):
            step = self._step((*path, "during", j), raw, index, j)
            if step.client == client and not args["resume"] and not args.get("suspend"):
                self.report.add(
                    (*path, "during", j),
                    f"client {client!r} cannot act during its own interrupt without resume "
                    "(the order of its queued operations and its re-entry is open)",
                    "interrupt-during",
                )
            inner.append(step)
        if not args.get("suspend"):  # a suspended client's `during` runs step by step
            self._check_block(path, inner, "during")
        return tuple(inner)

    def _queued(
        self, path: FieldPath, body: dict, client: str, args: dict, index: int
    ) -> list[Step]:
        """A suspended client's operations issued as soon as its transport is cut, on channels it
        has not used yet (so they wait behind the channel's attach, RTP16b, until it is SUSPENDED,
        RTL11): enter/update/leave (and on behalf of others) of that client only."""
        raw_steps = body.get("queued") or []
        if raw_steps and not args.get("suspend"):
            self.report.add(
                (*path, "queued"), "queued steps need suspend: true", "interrupt-queued"
            )
            return []
        out: list[Step] = []
        for j, raw in enumerate(raw_steps):
            ((kind, inner_body),) = raw.items()
            pair = (inner_body.get("client"), inner_body.get("channel"))
            fresh = pair not in self.used
            step = self._step((*path, "queued", j), raw, index, j)
            if kind not in PUBLISH_STEPS or step.client != client or not fresh:
                self.report.add(
                    (*path, "queued", j),
                    f"a queued step is an enter, update or leave of {client!r} on a channel it "
                    "has not used before (so that it waits behind the channel's attach)",
                    "interrupt-queued",
                )
            out.append(step)
        if out:
            args["queued"] = len(out)
        return out

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
            self.report.add(
                (*path, "client"),
                f"unknown client {client!r} (declared: "
                f"{', '.join(self.clients)}){_suggest(client, list(self.clients))}",
                "unknown-client",
            )
            return
        connected = self.connected[client]
        if kind == "connect":
            if connected:
                self.report.add(
                    (*path, "client"),
                    f"client {client!r} is already connected here",
                    "client-connected",
                )
            self.connected[client] = True
        elif not connected:
            self.report.add(
                (*path, "client"),
                f"client {client!r} is not connected at this step "
                "(declare it `connect: later` and add a connect step, or reconnect "
                "it after drop/close)",
                "client-not-connected",
            )
        elif kind in ("drop", "close"):
            self.connected[client] = False

    def _check_ref(self, path: FieldPath, value: Any) -> None:
        if isinstance(value, dict) and value.get("of") not in self.clients:
            self.report.add((*path, "of"), f"unknown client {value.get('of')!r}", "unknown-client")

    def _check_actions(self, path: FieldPath, actions: list[str], may_fail: bool) -> None:
        for i, action in enumerate(actions):
            if action not in ACTIONS and not may_fail:
                self.report.add(
                    (*path, i) if len(actions) > 1 or path[-1] == "events" else path,
                    f"{action!r} is not a presence action ({', '.join(ACTIONS)}); "
                    "a step that tests an invalid action needs expect_error",
                    "invalid-action",
                )

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
            if (
                set(value) != {"$repeat", "times"}
                or not isinstance(value["$repeat"], str)
                or isinstance(value.get("times"), bool)
                or not isinstance(value.get("times"), int)
                or value["times"] < 0
            ):
                self.report.add(
                    path, "{$repeat: STRING, times: N} takes a string and a count >= 0", "repeat"
                )
                return None
            return value["$repeat"] * value["times"]
        if isinstance(value, bytes):
            if not top:
                self.report.add(
                    path, "binary data is only allowed as the whole data value", "data-type"
                )
            return value
        if isinstance(value, (datetime.date, datetime.datetime)):
            self.report.add(
                path,
                f"{value!r} is read by YAML as a date; quote it to make it a string",
                "data-type",
            )
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

    def _check_staged(self, steps: list[Step]) -> None:
        """A client a server step targets is observed on that channel by the server steps
        (`harness/run/server_steps.py`): it may not subscribe there, nor read it after the
        first server step (the reference model does not know what the server staged)."""
        seen: set[tuple[str, str]] = set()
        for step in [s for top in steps for s in (top.steps or (top,))]:
            pair = (step.client or "", step.channel or "")
            if step.kind == "server":
                seen.add(pair)
            elif pair in self.staged and (
                step.kind in ("subscribe", "unsubscribe")
                or (pair in seen and step.kind in ("get", "sync_complete"))
            ):
                where: FieldPath = ("steps", step.index)
                if step.sub is not None:
                    where = (*where, "concurrently", step.sub)
                self.report.add(
                    (*where, step.kind),
                    f"client {step.client!r} is the target of server steps on channel "
                    f"{step.channel!r}: the server steps observe it there (its events, get, "
                    "sync_complete); a subscribe, or a read after the first server step, "
                    "is not allowed",
                    "server-staged",
                )

    def _args_server(self, path: FieldPath, body: dict, client: Any, channel: Any, *_: Any) -> dict:
        """A `server:` step: one command (`SERVER_COMMANDS`); items' `of` must name clients."""
        commands = [name for name in SERVER_COMMANDS if name in body]
        if len(commands) != 1:
            self.report.add(
                path,
                f"a server step has exactly one command of {', '.join(SERVER_COMMANDS)}, "
                f"found {', '.join(commands) or 'none'}",
                "server-command",
            )
            return {}
        (command,) = commands
        args = dict(body[command] or {})
        lists = [("add", args.get("add") or [])] + [
            (f"{key}[{i}]", frame)
            for key in ("between", "frames")
            for i, frame in enumerate(args.get(key) or [])
        ]
        for where, items in lists:
            for j, item in enumerate(items):
                if "of" in item:
                    self._check_ref((*path, command, where, j), item)
                    if item["of"] not in self.clients:
                        continue
                elif "client_id" not in item:
                    self.report.add(
                        (*path, command, where, j),
                        "a server item needs client_id or of (a client's connection)",
                        "server-item",
                    )
                if "data" in item:
                    item["data"] = self._data((*path, command, where, j, "data"), item["data"])
                    if isinstance(item["data"], bool | int | float):
                        self.report.add(
                            (*path, command, where, j, "data"),
                            "a server item's data is a string, a JSON object or array, or binary "
                            "(TP3e): numbers and booleans go inside an object or array",
                            "server-item",
                        )
        for name in args.get("omit") or []:
            if name not in self.clients:
                self.report.add(
                    (*path, command, "omit"), f"unknown client {name!r}", "unknown-client"
                )
        if client is not None and channel is not None:
            self.staged.add((client, channel))
        return {"command": command, **args}

    def _args_publish(self, path: FieldPath, body: dict, *_: Any) -> dict:
        args = {"data": self._data((*path, "data"), body["data"])} if "data" in body else {}
        if "wait" in body:
            args["wait"] = body["wait"]
        return args

    _args_enter = _args_update = _args_leave = _args_publish

    def _args_client_publish(self, path: FieldPath, body: dict, *_: Any) -> dict:
        return {"client_id": body["client_id"], **self._args_publish(path, body)}

    _args_enter_client = _args_update_client = _args_leave_client = _args_client_publish

    def _args_rest_get(self, path: FieldPath, body: dict, *_: Any) -> dict:
        args: dict[str, Any] = {}
        for key in ("client_id", "connection_id"):
            if key in body:
                self._check_ref((*path, key), body[key])
                args[key] = body[key]
        if "limit" in body:
            args["limit"] = body["limit"]
        return args

    def _args_interrupt(self, path: FieldPath, body: dict, *_: Any) -> dict:
        if not body.get("suspend", False):
            return {"seconds": body.get("seconds", 0.3), "resume": body.get("resume", True)}
        # SUSPENDED (RTN14e): the client comes back on a fresh connection (RTN15g)
        if body.get("resume", False):
            self.report.add(
                (*path, "resume"),
                "a suspended client does not resume (RTN15g): drop `resume` or make it false",
                "interrupt-suspend-resume",
            )
        return {"seconds": body.get("seconds", 4), "resume": False, "suspend": True}

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
                    self.report.add(
                        (*path, "expect", i, "client"),
                        f"unknown client {member['client']!r}",
                        "unknown-client",
                    )
                item = {"client": member["client"]}
                if "data" in member:
                    item["data"] = self._data((*path, "expect", i, "data"), member["data"])
                expect.append(item)
            args["expect"] = expect
        return args

    def _bind_listener(self, path: FieldPath, name: str, client: str, channel: str) -> None:
        bound = self.listeners.setdefault(name, (client, channel))
        if bound != (client, channel):
            self.report.add(
                path,
                f"listener {name!r} belongs to client {bound[0]!r} on channel "
                f"{bound[1]!r}; use another name here",
                "listener-binding",
            )

    def _actions(self, path: FieldPath, body: dict, may_fail: bool) -> dict:
        if "actions" not in body:
            return {}
        raw = body["actions"]
        actions = list(raw) if isinstance(raw, list) else [raw]
        self._check_actions((*path, "actions"), actions, may_fail)
        return {"actions": actions, "actions_list": isinstance(raw, list)}

    def _args_subscribe(
        self, path: FieldPath, body: dict, client: str, channel: str, expect_error: Any
    ) -> dict:
        self._bind_listener((*path, "listener"), body["listener"], client, channel)
        return {"listener": body["listener"], **self._actions(path, body, expect_error is not None)}

    def _args_unsubscribe(
        self, path: FieldPath, body: dict, client: str, channel: str, expect_error: Any
    ) -> dict:
        args: dict[str, Any] = {}
        if "listener" in body:
            name = body["listener"]
            if name not in self.listeners:
                self.report.add(
                    (*path, "listener"),
                    f"listener {name!r} was never subscribed before this step",
                    "unknown-listener",
                )
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
                    self.report.add(
                        (*path, key, "at"), f"no earlier step has id {ref!r}", "unknown-step-id"
                    )
                elif self.step_ids[ref] not in EVENT_STEPS:
                    self.report.add(
                        (*path, key, "at"),
                        f"step {ref!r} is a "
                        f"{self.step_ids[ref]} step, which produces no event "
                        f"(use one of {', '.join(EVENT_STEPS)})",
                        "step-id-not-event",
                    )
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

    _args_close = _args_connect = _args_connection

    def _args_drop(self, path: FieldPath, body: dict, *_: Any) -> dict:
        return {"wait": body["wait"]} if "wait" in body else {}

    _args_attach = _args_detach = _args_connection

    def _args_channel_state(self, path: FieldPath, body: dict, *_: Any) -> dict:
        return {"expect": body["expect"]} if "expect" in body else {}

    def _args_expect_events(self, path: FieldPath, body: dict, *_: Any) -> dict:
        name = body["listener"]
        if name not in self.listeners:
            self.report.add(
                (*path, "listener"),
                f"listener {name!r} was never subscribed before this step",
                "unknown-listener",
            )
        events = []
        for i, raw in enumerate(body["events"]):
            epath = (*path, "events", i)
            actions = list(raw["action"]) if isinstance(raw["action"], list) else [raw["action"]]
            self._check_actions((*epath, "action"), actions, False)
            if raw["client"] not in self.clients:
                self.report.add(
                    (*epath, "client"), f"unknown client {raw['client']!r}", "unknown-client"
                )
            event: dict[str, Any] = {"action": actions, "client": raw["client"]}
            if "data" in raw:
                event["data"] = self._data((*epath, "data"), raw["data"])
            events.append(event)
        return {"listener": name, "events": events}

    # concurrency rules

    def _check_block(self, path: FieldPath, inner: list[Step], name: str = "concurrently") -> None:
        seen: dict[tuple[str | None, str | None, str | None], Step] = {}
        writes = {s.channel for s in inner if s.kind in PUBLISH_STEPS}
        for step in inner:
            if step.kind not in OPERATION_STEPS:
                continue
            # enterClient for distinct clientIds on one connection: distinct members
            member = step.args.get("client_id") if step.kind in CLIENT_PUBLISH_STEPS else None
            key = (step.client, step.channel, member)
            spath = (*path, name, step.sub or 0, step.kind)
            racing = name == "concurrently" and step.kind in _RACING_STEPS
            if key in seen and not (racing and seen[key].kind in _RACING_STEPS):
                self.report.add(
                    spath,
                    f"{seen[key].path} and this step both act on client "
                    f"{step.client!r} on channel {step.channel!r}: only enters, updates and "
                    "leaves may race on one member (see docs/scenarios.md, Interleavings); make "
                    "the others separate steps",
                    "concurrent-same-member",
                )
            if key not in seen or not racing:
                seen[key] = step
            if step.kind in READ_STEPS and step.channel in writes:
                self.report.add(
                    spath,
                    f"a {step.kind} racing an enter/update/leave on channel "
                    f"{step.channel!r} has no defined outcome: make it a separate step",
                    "concurrent-read-write",
                )


def _size_problems(obj: Any, report: _Reporter) -> None:
    """Clients and steps within MAX_CLIENTS and MAX_STEPS (before the schema walks them all)."""
    if not isinstance(obj, Mapping):
        return
    clients = obj.get("clients")
    if isinstance(clients, Mapping) and len(clients) > MAX_CLIENTS:
        report.add(
            ("clients",),
            f"{len(clients)} clients: more than {MAX_CLIENTS} (limit MAX_CLIENTS)",
            "limit",
        )
    steps = obj.get("steps")
    if isinstance(steps, list):
        count = 0
        for raw in steps:
            inner = raw.get("concurrently") if isinstance(raw, Mapping) else None
            count += len(inner) if isinstance(inner, list) else 1
        if count > MAX_STEPS:
            report.add(
                ("steps",),
                f"{count} steps (blocks counted by their operations): more than {MAX_STEPS} "
                "(limit MAX_STEPS)",
                "limit",
            )


def build_scenario(
    obj: Any,
    case_id: str,
    source: Path | None,
    lines: Mapping[FieldPath, int] | None,
    file: str,
    default_name: str,
    compiled: bool = False,
) -> Scenario:
    """Validate a parsed scenario (both passes) and return its normalised form; raise
    `ScenarioError` listing every problem, first by line. With `compiled`, the schema pass runs
    the compiled validator first and jsonschema only for a document it refuses (to word the
    errors): for generated documents."""
    report = _Reporter(file, lines)
    _size_problems(obj, report)
    report.raise_if_any()
    if not (compiled and valid_compiled(obj)):
        _schema_problems(obj, report)
    report.raise_if_any()
    scenario = _Normaliser(obj, report, case_id, source, default_name).run()
    report.raise_if_any()
    return scenario

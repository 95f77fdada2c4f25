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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from presence_conformance.harness.scenario.model import (
    ACTIONS,
    CONNECTION_STEPS,
    EVENT_STEPS,
    OPERATION_STEPS,
    PUBLISH_STEPS,
    READ_STEPS,
    ClientSpec,
    Problem,
    Scenario,
    ScenarioError,
    Step,
    format_path,
)
from presence_conformance.harness.scenario.rules import build_scenario
from presence_conformance.harness.scenario.yaml_source import Path as FieldPath
from presence_conformance.harness.scenario.yaml_source import YamlProblem, dump_yaml, load_yaml

__all__ = [
    "ACTIONS",
    "CONNECTION_STEPS",
    "EVENT_STEPS",
    "MAX_FILE_BYTES",
    "OPERATION_STEPS",
    "PUBLISH_STEPS",
    "READ_STEPS",
    "ClientSpec",
    "Problem",
    "Scenario",
    "ScenarioError",
    "Step",
    "dump_scenario",
    "format_path",
    "load_scenario",
    "load_scenarios",
    "scenario_from_dict",
    "scenario_to_yaml",
]


# -- loading ---------------------------------------------------------------------------------------

MAX_FILE_BYTES = 1 << 20  # a scenario or replay file; the shipped ones are a few KB


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
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise ScenarioError(
                [
                    Problem(
                        file,
                        None,
                        "(root)",
                        f"the file is larger than {MAX_FILE_BYTES} bytes (limit MAX_FILE_BYTES)",
                        "limit",
                    )
                ]
            )
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(
            [Problem(file, None, "(root)", f"cannot read the file: {exc}", "file")]
        ) from None
    try:
        obj, lines = load_yaml(text)
    except YamlProblem as exc:
        raise ScenarioError(
            [Problem(file, exc.line, format_path(exc.path), exc.message, exc.rule)]
        ) from None
    return scenario_from_dict(
        obj, case_id=case_id, source=path, lines=lines, file=file, default_name=path.stem
    )


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


def scenario_from_dict(
    obj: Any,
    case_id: str = "inline",
    source: Path | None = None,
    lines: Mapping[FieldPath, int] | None = None,
    file: str | None = None,
    default_name: str | None = None,
    compiled: bool = False,
) -> Scenario:
    """Validate and normalise a scenario given as a dict (the parsed YAML). `compiled`: validate
    with the compiled schema (fastjsonschema), falling back to jsonschema to word the errors of
    a document it refuses; for documents a program built (the generator), not for files."""
    return build_scenario(
        obj,
        case_id,
        source,
        lines,
        file or (str(source) if source else f"<{case_id}>"),
        default_name or case_id.rsplit("/")[-1],
        compiled,
    )


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

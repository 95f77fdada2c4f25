"""The compiled scenario validator (fastjsonschema) agrees with jsonschema: on generated
programs, on the shipped scenario files, and on documents broken on purpose (a key removed, a
value of the wrong type, an unknown key). The generator's path uses the compiled one; a document
it refuses is still worded by jsonschema."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from presence_conformance.harness.generation import programs
from presence_conformance.harness.scenario import ScenarioError, scenario_from_dict
from presence_conformance.harness.scenario.rules import valid_compiled

from presence_conformance import spec

ROOT = Path(__file__).resolve().parents[3] / "scenarios"


def _jsonschema_valid(doc: Any) -> bool:
    return not any(True for _ in spec.validator("scenario").iter_errors(doc))


def _broken(doc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """`doc` with one thing wrong in a step (or at the top)."""
    out = copy.deepcopy(doc)
    target: dict[str, Any] = out
    if out.get("steps") and rng.random() < 0.8:
        step = rng.choice(out["steps"])
        ((_, target),) = step.items()
        if not isinstance(target, dict):
            target = out
    how = rng.choice(["drop", "type", "unknown", "empty"])
    keys = list(target)
    if how == "drop" and keys:
        target.pop(rng.choice(keys))
    elif how == "type" and keys:
        target[rng.choice(keys)] = rng.choice([17, True, [], "x", None, {"z": 1}])
    elif how == "unknown":
        target["no_such_key"] = 1
    elif keys:
        target[rng.choice(keys)] = ""
    return out


def _shipped() -> list[Any]:
    docs = []
    for path in sorted(ROOT.rglob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        docs.append(yaml.load(text, Loader=yaml.SafeLoader))
    return docs


def test_they_agree_on_generated_and_broken_documents() -> None:
    rng = random.Random(11)
    compared = {"valid": 0, "invalid": 0}

    @settings(
        max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(programs())
    def agree(doc: dict[str, Any]) -> None:
        for candidate in (doc, _broken(doc, rng), _broken(doc, rng)):
            expected = _jsonschema_valid(candidate)
            assert valid_compiled(candidate) == expected, candidate
            compared["valid" if expected else "invalid"] += 1

    agree()
    assert compared["valid"] >= 200 and compared["invalid"] >= 100, compared


def test_they_agree_on_the_shipped_files() -> None:
    docs = _shipped()
    assert len(docs) > 50
    rng = random.Random(7)
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        for candidate in (doc, _broken(doc, rng)):
            assert valid_compiled(candidate) == _jsonschema_valid(candidate), candidate


def test_a_refused_generated_document_is_worded_by_jsonschema() -> None:
    doc = {
        "name": "x",
        "clients": {"alice": {}},
        "channels": ["room"],
        "steps": [{"enter": {"client": "alice", "channel": "room", "limit": 3}}],
    }
    assert not valid_compiled(doc)
    with pytest.raises(ScenarioError) as raised:
        scenario_from_dict(doc, compiled=True)
    assert "limit" in str(raised.value)

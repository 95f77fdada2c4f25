"""The packaged scenario suite as a whole: it loads, it is large enough, and together with the
registered checks it covers the requirement catalogue.

- every file under `scenarios/` loads (shape and semantic rules, `presence_conformance.harness.scenario`);
- there are at least `MIN_SCENARIOS` of them;
- every catalogue requirement outside `wire.*` is tagged by at least one scenario (the
  scenarios are what exercises it: a check alone never runs without a case that provokes it);
  a `wire.*` requirement is tagged by a scenario or enforced by a registered check (the wire
  checks judge the frames of any case on an adapter that exposes them);
- case ids are unique, also ignoring case (two files differing only in case collide on
  case-insensitive file systems);
- every scenario sits in an area folder named after a catalogue area, or in a folder of
  regression scenarios.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from presence_conformance.harness.checks import CHECKS
from presence_conformance.harness.scenario import Scenario
from presence_conformance.scenarios import scenarios_root

from presence_conformance import spec

MIN_SCENARIOS = 80

WIRE_AREA = "wire"

REGRESSION_FOLDERS = frozenset(
    {
        "regressions",  # scenarios from real presence bugs of other systems; each names its issue
        "generated-regressions",  # failures found by `presence-conformance generate`, promoted
        "interleave",  # operations in flight together across areas (docs/scenarios.md)
    }
)
"""Folders that hold regression or cross-cutting scenarios rather than one area's scenarios."""


def _area(requirement_id: str) -> str:
    return requirement_id.split(".", 1)[0]


def test_every_scenario_loads(suite: list[Scenario]) -> None:
    files = sorted(Path(scenarios_root()).rglob("*.yaml"))
    assert len(suite) == len(files), "some scenario files were not loaded"
    for scenario in suite:
        assert scenario.requirements, f"{scenario.case_id}: no requirement tagged"
        assert scenario.steps, f"{scenario.case_id}: no steps"


def test_enough_scenarios(suite: list[Scenario]) -> None:
    assert len(suite) >= MIN_SCENARIOS, (
        f"{len(suite)} scenarios under scenarios/, expected at least {MIN_SCENARIOS}"
    )


def test_every_requirement_is_covered(suite: list[Scenario], catalogue: spec.Catalogue) -> None:
    tagged: set[str] = set()
    for scenario in suite:
        tagged.update(scenario.requirements)
    enforced = {requirement for ids in CHECKS.values() for requirement in ids}
    uncovered = []
    for requirement in catalogue.requirements:
        rid = requirement.id
        if rid in tagged:
            continue
        if _area(rid) == WIRE_AREA and rid in enforced:
            continue
        uncovered.append(rid)
    assert not uncovered, (
        f"{len(uncovered)} requirement(s) tagged by no scenario (nor, for wire.*, enforced by a "
        "registered check): " + ", ".join(uncovered)
    )


def test_tags_are_catalogue_ids(suite: list[Scenario], catalogue: spec.Catalogue) -> None:
    known = {r.id for r in catalogue.requirements}
    unknown = sorted(
        {(s.case_id, rid) for s in suite for rid in s.requirements if rid not in known}
    )
    assert not unknown, f"scenarios tag IDs not in the catalogue: {unknown}"


def test_case_ids_are_unique(suite: list[Scenario]) -> None:
    counts = Counter(s.case_id for s in suite)
    duplicates = sorted(case_id for case_id, n in counts.items() if n > 1)
    assert not duplicates, f"duplicate case ids: {duplicates}"
    folded = Counter(s.case_id.casefold() for s in suite)
    clashes = sorted(s.case_id for s in suite if folded[s.case_id.casefold()] > 1)
    assert not clashes, f"case ids that differ only in letter case: {clashes}"


def test_area_folders_match_the_catalogue(suite: list[Scenario], catalogue: spec.Catalogue) -> None:
    areas = set(catalogue.areas)
    misplaced = []
    for scenario in suite:
        folder, sep, _ = scenario.case_id.partition("/")
        if not sep:
            misplaced.append(f"{scenario.case_id} (not in an area folder)")
        elif "/" in scenario.case_id[len(folder) + 1 :]:
            misplaced.append(f"{scenario.case_id} (nested below its area folder)")
        elif folder not in areas and folder not in REGRESSION_FOLDERS:
            misplaced.append(f"{scenario.case_id} (folder {folder!r} is no catalogue area)")
    assert not misplaced, (
        "scenarios outside an area folder (areas: "
        + ", ".join(sorted(areas))
        + "; or "
        + ", ".join(sorted(REGRESSION_FOLDERS))
        + "): "
        + "; ".join(misplaced)
    )


def test_every_area_but_wire_has_scenarios(
    suite: list[Scenario], catalogue: spec.Catalogue
) -> None:
    folders = {s.case_id.partition("/")[0] for s in suite}
    empty = sorted(set(catalogue.areas) - folders - {WIRE_AREA})
    assert not empty, f"catalogue areas without a scenario folder: {empty}"

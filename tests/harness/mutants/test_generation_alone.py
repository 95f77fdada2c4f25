"""Generation alone: the published figure is true, and it does not fall below its floor.

For each mutant (one test each), generated programs alone, without any scenario file (the
`dev` profile: 200 programs from the fixed seed `GENERATION_SEED`), run until one fails. The
mutants it misses are listed in `GENERATION_MISSES` and published in docs/generation.md: a
mutant caught that the list says is missed, or missed that it says is caught, fails here, so the
list, and the figure computed from it, stay exact. The reference passes the same programs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.generation import GenerationOptions, run_generation
from presence_conformance.harness.generation.profiles import PROFILES
from presence_conformance.harness.mutant_detection import (
    ADAPTER_OPTIONS,
    DETECTION_SETTINGS,
    GENERATION_MISSES,
    GENERATION_PROFILE,
    GENERATION_SEED,
    GENERATION_TIMING_DEPENDENT,
    generation_alone,
)
from presence_conformance.harness.mutants import MUTANTS
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.session import ConformanceSession

DOCS = Path(__file__).resolve().parents[3] / "docs" / "generation.md"
# The share generation alone has reached (116 of 123): a change that lowers it fails here. The
# goal is 90%; raise FLOOR as the figure rises.
FLOOR = 0.94


def published_figure() -> tuple[int, int]:
    """(caught, all) as docs/generation.md states them."""
    match = re.search(
        r"generation alone .*?catches \*\*(\d+) of (\d+)\*\* mutants",
        DOCS.read_text("utf-8"),
        re.IGNORECASE | re.DOTALL,
    )
    assert match, "docs/generation.md does not state the generation-alone figure"
    return int(match.group(1)), int(match.group(2))


def test_the_misses_are_mutants_and_the_share_keeps_its_floor() -> None:
    assert GENERATION_MISSES <= set(MUTANTS)
    assert GENERATION_TIMING_DEPENDENT <= GENERATION_MISSES
    caught = len(MUTANTS) - len(GENERATION_MISSES)
    assert caught / len(MUTANTS) >= FLOOR, (caught, len(MUTANTS))


def test_the_docs_publish_the_figure_and_every_miss() -> None:
    assert published_figure() == (len(MUTANTS) - len(GENERATION_MISSES), len(MUTANTS))
    text = DOCS.read_text("utf-8")
    for name in GENERATION_MISSES:
        assert f"`{name}`" in text, name


def test_the_reference_passes_the_same_programs() -> None:
    session = ConformanceSession(
        ReferenceAdapter(dict(ADAPTER_OPTIONS)),
        "reference",
        options=dict(ADAPTER_OPTIONS),
        settings=DETECTION_SETTINGS,
    )
    try:
        result = run_generation(
            session,
            GenerationOptions(
                profile=GENERATION_PROFILE,
                seed=GENERATION_SEED,
                strict=True,
                failures_dir=None,
                use_database=False,
            ),
        )
    finally:
        session.stop()
    assert result.programs == PROFILES[GENERATION_PROFILE].max_examples
    assert result.failure is None, result.case.violations


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_generation_alone(name: str) -> None:
    if name in GENERATION_TIMING_DEPENDENT:
        pytest.skip(
            "caught by generation alone only on a slow machine (GENERATION_TIMING_DEPENDENT)"
        )
    found = generation_alone(name)
    assert found.scenarios_run == 0
    if name in GENERATION_MISSES:
        assert not found.detected, (
            f"generation alone now catches {name!r} (after {found.programs_run} programs): "
            "remove it from GENERATION_MISSES and update the figure in docs/generation.md"
        )
        assert found.programs_run == PROFILES[GENERATION_PROFILE].max_examples
    else:
        assert found.detected, (
            f"generation alone ({GENERATION_PROFILE}, seed {GENERATION_SEED}) no longer catches "
            f"{name!r} ({MUTANTS[name]}): {found.programs_run} programs, {found.outcomes}"
        )
        assert found.case is not None and found.case.outcome is not Outcome.PASS

"""Generation alone against the client-map mutants (`ably-wire` whose client keeps its presence
map in a broken client-side oracle, `harness/mutants/client_map.py`): programs with `server:`
steps, no scenario file, `WIRE_EXAMPLES` programs of the `dev` profile from `GENERATION_SEED`.

The unbroken client passes them all; each mutant is caught unless `CLIENT_MAP_GENERATION_MISSES`
lists it, and a listed mutant that is caught fails here too, so the list and the figure in
docs/generation.md ("Server steps") stay exact. One case per mutant (parallel under xdist).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from presence_conformance.harness.mutant_detection import (
    CLIENT_MAP_GENERATION_MISSES,
    WIRE_EXAMPLES,
    generation_alone_client_map,
)
from presence_conformance.harness.mutants.client_map import CLIENT_MAP_MUTANTS

DOCS = Path(__file__).resolve().parents[3] / "docs" / "generation.md"


def test_the_docs_publish_the_client_map_figure_and_every_miss() -> None:
    assert CLIENT_MAP_GENERATION_MISSES <= set(CLIENT_MAP_MUTANTS)
    text = DOCS.read_text("utf-8")
    match = re.search(r"catches \*\*(\d+) of (\d+) client-map mutants\*\*", text)
    assert match, "docs/generation.md does not state the client-map figure"
    caught = len(CLIENT_MAP_MUTANTS) - len(CLIENT_MAP_GENERATION_MISSES)
    assert (int(match.group(1)), int(match.group(2))) == (caught, len(CLIENT_MAP_MUTANTS))
    for name in CLIENT_MAP_GENERATION_MISSES:
        assert f"`{name}`" in text, name


def test_the_unbroken_client_passes_every_program() -> None:
    found = generation_alone_client_map("oracle")
    assert found.programs_run == WIRE_EXAMPLES, found.outcomes
    assert not found.generation.failed, (
        found.generation.case.error,
        [v.message for v in found.generation.case.violations][:3],
    )


@pytest.mark.parametrize("name", sorted(CLIENT_MAP_MUTANTS))
def test_generation_alone_client_map(name: str) -> None:
    found = generation_alone_client_map(name)
    if name in CLIENT_MAP_GENERATION_MISSES:
        assert not found.detected, (
            f"generation alone now catches {name!r} (after {found.programs_run} programs): "
            "remove it from CLIENT_MAP_GENERATION_MISSES and update docs/generation.md"
        )
        assert found.programs_run == WIRE_EXAMPLES, found.outcomes
    else:
        assert found.detected, (
            f"generation alone no longer catches the client-map mutant {name!r} "
            f"({found.programs_run} programs, {found.outcomes})"
        )

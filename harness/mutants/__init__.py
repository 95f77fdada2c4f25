"""A catalogue of deliberately broken presence implementations that the harness must catch.

Each mutant is the reference adapter with one realistic presence bug (`presence_conformance.harness.mutants.base`),
or, in `server`, `ably-wire` against the embedded reference server with one bug in the frames it
sends,
documented by its docstring and tagged with the requirement IDs it violates. Select one with
`--adapter mutant:NAME`; `presence-conformance list adapters` lists them.

    MUTANTS                      # name -> one-line description of the bug
    get_mutant(name)             # the adapter class (KeyError for an unknown name)
    mutant_requirements(name)    # the requirement IDs it violates
    list_mutants()               # the same as MUTANTS (what presence_conformance.harness.adapters.registry calls)

`tests/harness/mutants/test_mutants.py` runs the scenarios and the `ci` generation profile
against every mutant and requires each to be detected; `bench/bench_generation.py` measures how fast generation
alone finds each one.
"""

from __future__ import annotations

from presence_conformance.harness.mutants import (  # noqa: F401 (registers)
    connections,
    data,
    events,
    faults,
    history,
    interleavings,
    lifecycle,
    members,
    redteam,
    server,
    varied,
)
from presence_conformance.harness.mutants.base import (
    REGISTRY,
    MutantAdapter,
    MutantPresence,
    ServerMutantAdapter,
    mutant,
)

__all__ = [
    "MUTANTS",
    "MutantAdapter",
    "MutantPresence",
    "ServerMutantAdapter",
    "get_mutant",
    "list_mutants",
    "mutant",
    "mutant_requirements",
]


def _summary(cls: type[MutantAdapter] | type[ServerMutantAdapter]) -> str:
    doc = " ".join((cls.__doc__ or "").split())
    first = doc.split(". ")[0].rstrip(".")
    return first + "."


MUTANTS: dict[str, str] = {name: _summary(cls) for name, cls in sorted(REGISTRY.items())}
"""Mutant name -> the bug it has, in one sentence."""


def get_mutant(name: str) -> type[MutantAdapter] | type[ServerMutantAdapter]:
    """The mutant adapter class registered as `name` (KeyError if there is none)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown mutant {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def mutant_requirements(name: str) -> tuple[str, ...]:
    """The requirement IDs the mutant `name` violates."""
    return get_mutant(name).requirements


def list_mutants() -> dict[str, str]:
    """Mutant name -> description (`presence_conformance.harness.adapters.registry` lists them as `mutant:NAME`)."""
    return dict(MUTANTS)

"""Interleavings: steps issued without waiting (`wait: false`), enters and updates of one
member racing in a `concurrently` block, drops whose leaves stay pending, and reconnection of
the same clientId within the grace. A conforming implementation that applies racing operations
in an order other than the block's, or keeps a dropped member longer, is never failed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.mutants.base import MutantAdapter, MutantPresence
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.harness.scenario import load_scenario
from support import ROOT, run_case

INTERLEAVE = sorted((ROOT / "scenarios" / "interleave").glob("*.yaml"))
SETTINGS = RunSettings(op_timeout=5.0)


class LateEnter(MutantAdapter):
    """Not a bug: an implementation whose enter() reaches the server a little after an update()
    called together with it (the server applies the update first)."""

    class Presence(MutantPresence):
        async def enter(self, data: Any = None) -> None:
            await asyncio.sleep(0.03)
            await super().enter(data)


class LateFirstUpdate(MutantAdapter):
    """Not a bug: racing updates reach the server in reverse order of the calls."""

    calls = 0

    class Presence(MutantPresence):
        async def update(self, data: Any = None) -> None:
            type(self.adapter).calls += 1
            await asyncio.sleep(max(0.0, 0.06 - 0.02 * type(self.adapter).calls))
            await super().update(data)


def _load(path: Path) -> Any:
    return load_scenario(path, root=ROOT / "scenarios")


CONFORMING: dict[str, Callable[[], Any]] = {
    "reference": ReferenceAdapter,
    "late-enter": LateEnter,
    "late-first-update": LateFirstUpdate,
    "no-grace": lambda: ReferenceAdapter({"leave_grace": "0"}),
    "long-grace": lambda: ReferenceAdapter({"leave_grace": "0.6"}),
    "slow-ops": lambda: ReferenceAdapter({"op_delay": "0.01"}),
}


@pytest.mark.parametrize("path", INTERLEAVE, ids=lambda p: p.stem)
@pytest.mark.parametrize("adapter", sorted(CONFORMING))
def test_interleaving_scenarios_pass_conforming_orders(path: Path, adapter: str) -> None:
    """Every order and grace the specification allows passes: the reference, racing operations
    applied in another order than the block's, no grace or a long one, slow operations."""
    result = asyncio.run(run_case(_load(path), CONFORMING[adapter](), SETTINGS))
    assert result.outcome is Outcome.PASS, [v.message for v in result.violations]

"""A close's leaves may come at once or when the grace period ends (disconnect.close-leaves, a
MUST bounded by the grace; disconnect.close-leaves-promptly, the SHOULD): a server that treats
a close like a drop passes every scenario with only the SHOULD, one that never removes a closed
connection's members fails the MUST, and the reference (at once) waits no longer than before."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from presence_conformance.harness.adapters.reference import ReferenceAdapter, ReferenceConnection
from presence_conformance.harness.mutants import get_mutant
from presence_conformance.harness.mutants.base import MutantAdapter
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.harness.scenario import load_scenario
from support import ROOT, run_case

SETTINGS = RunSettings(op_timeout=5.0)
# a leave is "at once" when it comes within the wait budget: the grace must be longer
LATE = RunSettings(op_timeout=5.0, wait_timeout=0.3)
GRACE = {"leave_grace": "0.8"}
CLOSING = sorted(p for p in (ROOT / "scenarios").rglob("*.yaml") if "close:" in p.read_text())
PROMPTLY = "disconnect.close-leaves-promptly"


class CloseLikeDrop(MutantAdapter):
    """Not a MUST violation: a server that handles a graceful close like an abrupt disconnect,
    its members leaving with synthesized leaves when the grace period ends (RTP2b1)."""

    class Connection(ReferenceConnection):
        async def close(self) -> None:
            await self.service_connection.drop()


def _load(path: Path):  # type: ignore[no-untyped-def]
    return load_scenario(path, root=ROOT / "scenarios")


def test_scenarios_that_close_are_found() -> None:
    assert len(CLOSING) >= 10
    assert ROOT / "scenarios" / "disconnect" / "close-leaves.yaml" in CLOSING


@pytest.mark.parametrize("path", CLOSING, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_leaves_after_the_grace_break_only_the_should(path: Path) -> None:
    result = asyncio.run(run_case(_load(path), CloseLikeDrop(GRACE), LATE))
    assert result.outcome in (Outcome.PASS, Outcome.NON_STRICT), [
        (v.requirement, v.message) for v in result.violations
    ]
    assert {v.requirement for v in result.violations} <= {PROMPTLY}


def test_a_late_close_is_reported_under_the_should() -> None:
    path = ROOT / "scenarios" / "disconnect" / "close-leaves.yaml"
    result = asyncio.run(run_case(_load(path), CloseLikeDrop(GRACE), LATE))
    assert result.outcome is Outcome.NON_STRICT
    assert [v.requirement for v in result.violations] == [PROMPTLY]


@pytest.mark.parametrize("path", CLOSING, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_reference_leaves_at_once(path: Path) -> None:
    started = time.monotonic()
    result = asyncio.run(run_case(_load(path), ReferenceAdapter(), SETTINGS))
    assert result.outcome is Outcome.PASS, [v.message for v in result.violations]
    # no close waited out the grace: a close's leaves came at once
    closes = sum(1 for s in _load(path).steps if s.kind == "close")
    assert time.monotonic() - started < 2.0 + 0.2 * closes


def test_members_that_never_leave_fail_the_must() -> None:
    path = ROOT / "scenarios" / "disconnect" / "close-leaves.yaml"
    adapter = get_mutant("close-keeps-members")()
    result = asyncio.run(run_case(_load(path), adapter, SETTINGS))
    assert result.outcome is Outcome.FAIL
    assert "disconnect.close-leaves" in {v.requirement for v in result.violations}

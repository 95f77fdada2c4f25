"""A refused resume leaves the old connection's members pending (RTN15c7, RTP17i, RTP2b1):
reads between the re-entry and the old members' synthesized leave may show them or not, but the
leave must come: an implementation whose old member never leaves still fails."""

from __future__ import annotations

import asyncio

import pytest
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.results import CaseResult, Outcome
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.reference_impl.service import PresenceService
from support import packaged_suite, run_case

SETTINGS = RunSettings(op_timeout=2.0, quiet_period=0.02)


def _run() -> CaseResult:
    by_id = {s.case_id: s for s in packaged_suite()}
    case = by_id["disconnect/refused-resume-within-grace"]
    adapter = ReferenceAdapter({"leave_grace": "0.4", "op_delay": "0.002"})
    return asyncio.run(run_case(case, adapter, SETTINGS))


def test_the_reference_passes_with_reads_inside_the_grace() -> None:
    result = _run()
    assert result.outcome is Outcome.PASS, [(v.requirement, v.message) for v in result.violations]
    # the reads right after the step came before the old member's leave: both were listed
    gets = [e for e in result.history if e["f"] == "get" and e["type"] == "ok"]
    assert any(len(e["value"]) == 2 for e in gets), gets


def test_an_old_member_that_never_leaves_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PresenceService, "_schedule_expiry", lambda self, connection_id: None)
    result = _run()
    assert result.outcome is Outcome.FAIL, result.outcome
    assert any("alice" in v.message for v in result.violations if v.level == "MUST")

"""The two tightened checks are what catches their mutants: run every scenario against
`timestamps-integer-seconds` and `get-no-sync-returns-departed` and every violation is of the
tightened part of the check (a timestamp outside the case's wall-clock window; a member that left
before a get(waitForSync=false) that attached the channel). The old checks (any integer >= 0;
any member the channel ever had) would have passed them all. The reference passes the new
scenarios."""

from __future__ import annotations

from typing import Any

import pytest
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.checks.messages import CLOCK_SKEW_TOLERANCE_MS, timestamp_window
from presence_conformance.harness.mutant_detection import ADAPTER_OPTIONS, DETECTION_SETTINGS
from presence_conformance.harness.mutants import get_mutant
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.session import ConformanceSession

NEW_SCENARIOS = (
    "get/filter-client-id-shared-prefix",
    "get/wait-for-sync-false-departed",
    "message/client-id-unicode-and-long",
    "unsubscribe/all-one-channel-only",
    "data/edges",
)


def _violations(name: str, suite: list[Any]) -> list[Any]:
    session = ConformanceSession(
        get_mutant(name)(dict(ADAPTER_OPTIONS)),
        adapter_name=f"mutant:{name}",
        options=dict(ADAPTER_OPTIONS),
        settings=DETECTION_SETTINGS,
    )
    try:
        return [v for s in suite for v in session.run_case(s).violations]
    finally:
        session.stop()


def test_the_window_is_the_case_plus_the_skew_tolerance() -> None:
    low, high = timestamp_window(1_000.0, 2_000.0)
    assert low == 1_000_000 - CLOCK_SKEW_TOLERANCE_MS
    assert high == 2_000_000 + CLOCK_SKEW_TOLERANCE_MS
    assert CLOCK_SKEW_TOLERANCE_MS >= 60_000  # a minute of skew is never a violation


@pytest.mark.parametrize(
    ("mutant", "requirement", "marker"),
    [
        ("timestamps-integer-seconds", "message.timestamp", "outside the case's wall-clock window"),
        ("get-no-sync-returns-departed", "get.wait-for-sync-false", "attached the channel"),
    ],
)
def test_only_the_tightened_check_catches(
    mutant: str, requirement: str, marker: str, suite: list[Any]
) -> None:
    found = _violations(mutant, suite)
    assert found, f"{mutant} passed every scenario"
    assert {v.requirement for v in found} == {requirement}
    shown = [v.message for v in found if not v.message.startswith("... and ")]  # summaries
    assert shown and all(marker in m for m in shown), [m for m in shown if marker not in m]


def test_reference_passes_the_new_scenarios(suite: list[Any]) -> None:
    chosen = [s for s in suite if s.case_id in NEW_SCENARIOS]
    assert len(chosen) == len(NEW_SCENARIOS)
    session = ConformanceSession(
        ReferenceAdapter(dict(ADAPTER_OPTIONS)),
        adapter_name="reference",
        options=dict(ADAPTER_OPTIONS),
        settings=DETECTION_SETTINGS,
    )
    try:
        outcomes = {s.case_id: session.run_case(s).outcome for s in chosen}
    finally:
        session.stop()
    assert all(o is Outcome.PASS for o in outcomes.values()), outcomes

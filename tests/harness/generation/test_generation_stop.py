"""Stopping a generation run: `GenerationOptions.stop` and a cancelled session end the run before
the next program, never as a failure (nothing shrunk, nothing saved in the example database);
a failure found before the stop is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.generation import GenerationOptions, run_generation
from presence_conformance.harness.mutant_detection import ADAPTER_OPTIONS, DETECTION_SETTINGS
from presence_conformance.harness.mutants import get_mutant
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.session import ConformanceSession

FAST_MUTANT = "get-action-not-present"  # found within the ci profile's first programs


def session(adapter: Any, name: str) -> ConformanceSession:
    return ConformanceSession(
        adapter, adapter_name=name, options=dict(ADAPTER_OPTIONS), settings=DETECTION_SETTINGS
    )


def test_stop_ends_the_run_before_the_next_program_and_saves_nothing(tmp_path: Path) -> None:
    ran: list[int] = []
    db = tmp_path / "db"
    s = session(ReferenceAdapter(dict(ADAPTER_OPTIONS)), "reference")
    try:
        result = run_generation(
            s,
            GenerationOptions(
                profile="dev",
                examples=50,
                seed=1,
                database=db,
                use_database=True,
                failures_dir=None,
                stop=lambda: len(ran) >= 3,
            ),
            on_program=lambda n, doc, case: ran.append(n),
        )
    finally:
        s.stop()
    assert result.stopped == "stopped"
    assert result.programs == 3 == len(ran)
    assert result.failure is None and result.case.outcome is Outcome.PASS
    # a stop is no failing example: Hypothesis saved nothing
    assert not db.exists() or not any(p.is_file() for p in db.rglob("*"))


def test_a_cancelled_session_stops_the_run_without_a_failure() -> None:
    s = session(ReferenceAdapter(dict(ADAPTER_OPTIONS)), "reference")

    def cancel_after_two(number: int, document: Any, case: Any) -> None:
        if number == 2:
            s.cancel("interrupted")

    try:
        result = run_generation(
            s,
            GenerationOptions(
                profile="dev", examples=50, seed=1, use_database=False, failures_dir=None
            ),
            on_program=cancel_after_two,
        )
    finally:
        s.stop()
    assert result.stopped == "interrupted"
    assert result.programs == 2
    assert result.failure is None


def test_a_failure_found_before_the_stop_is_kept_and_written(tmp_path: Path) -> None:
    found: list[int] = []

    def note(number: int, document: Any, case: Any) -> None:
        if case.outcome.is_failure:
            found.append(number)

    s = session(get_mutant(FAST_MUTANT)(dict(ADAPTER_OPTIONS)), f"mutant:{FAST_MUTANT}")
    try:
        result = run_generation(
            s,
            GenerationOptions(
                profile="ci",
                use_database=False,
                failures_dir=tmp_path,
                stop=lambda: bool(found),  # stop at once, while shrinking
            ),
            on_program=note,
        )
    finally:
        s.stop()
    assert found and result.failure is not None
    assert result.stopped == "stopped"
    assert result.case.outcome is Outcome.FAIL
    assert result.failure.path is not None and result.failure.path.is_file()
    assert result.failure.replay_confirmed is True  # the session was not cancelled: replayed

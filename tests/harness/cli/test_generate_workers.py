"""`generate --workers N`: the budget split over worker processes, one result; a failure found
by one worker stops the others; a dying worker is reported; SIGTERM stops every worker and the
command exits 3 with the programs run so far reported as a partial run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from presence_conformance.harness.cli.workers import (
    WorkerAdapter,
    run_generation_workers,
    worker_examples,
    worker_seed,
)
from presence_conformance.harness.generation import GenerationOptions
from presence_conformance.harness.mutant_detection import ADAPTER_OPTIONS, DETECTION_SETTINGS
from presence_conformance.harness.results import Outcome

FAST_MUTANT = "get-action-not-present"


def test_the_budget_and_the_seeds_are_split_between_workers() -> None:
    assert [worker_examples(10, 3, i) for i in range(3)] == [4, 3, 3]
    assert sum(worker_examples(201, 4, i) for i in range(4)) == 201
    assert [worker_seed(7, i) for i in range(3)] == [7, 8, 9]
    assert worker_seed(None, 2) is None
    with pytest.raises(ValueError, match="workers"):
        run_generation_workers(WorkerAdapter("reference"), GenerationOptions(), 0, 10)


def options(**more: object) -> GenerationOptions:
    chosen: dict[str, object] = {"failures_dir": None, **more}
    return GenerationOptions(profile="dev", seed=1, use_database=False, **chosen)  # type: ignore[arg-type]


def test_two_workers_run_the_whole_budget_against_the_reference() -> None:
    adapter = WorkerAdapter("reference", dict(ADAPTER_OPTIONS), DETECTION_SETTINGS)
    result = run_generation_workers(adapter, options(), 2, 12)
    assert result.programs == 12
    assert result.outcomes == {"pass": 12}
    assert result.failure is None and result.stopped is None
    assert result.case.outcome is Outcome.PASS


def test_a_failure_in_one_worker_is_the_result_shrunk_and_written(tmp_path: Path) -> None:
    adapter = WorkerAdapter(f"mutant:{FAST_MUTANT}", dict(ADAPTER_OPTIONS), DETECTION_SETTINGS)
    result = run_generation_workers(adapter, options(failures_dir=tmp_path), 2, 400)
    assert result.failure is not None
    assert result.case.outcome is Outcome.FAIL
    assert "get.action-present" in result.failure.requirements
    assert result.failure.path is not None and result.failure.path.is_file()
    assert result.failure.replay_confirmed is True
    assert result.programs < 400  # the other worker stopped early


def test_a_worker_that_dies_is_an_error_naming_it(tmp_path: Path) -> None:
    module = tmp_path / "dying_adapter.py"
    module.write_text(
        "import os\n"
        "from presence_conformance.harness.adapters.reference import ReferenceAdapter\n"
        "class Dying(ReferenceAdapter):\n"
        "    async def start(self):\n"
        "        os._exit(7)\n"
    )
    adapter = WorkerAdapter(f"{module}:Dying", {}, DETECTION_SETTINGS)
    result = run_generation_workers(adapter, options(), 2, 4)
    assert result.case.outcome is Outcome.ERROR
    assert "exit code 7" in (result.case.error or "")


def test_sigterm_stops_every_worker_and_reports_a_partial_run(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "presence_conformance.harness.cli",
            "generate",
            "--adapter",
            "reference",
            "--examples",
            "100000",
            "--no-database",
            "--workers",
            "2",
            "--report-dir",
            str(tmp_path / "reports"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(6)  # the workers have started and run programs
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 3, (out, err)
    assert "INTERRUPTED after" in out
    results = json.loads((tmp_path / "reports" / "results.json").read_text())
    assert results["partial"] is True
    assert "generated program" in results["partial_reason"]


def test_an_unseeded_run_gets_a_base_seed_and_keeps_its_database(tmp_path: Path) -> None:
    from presence_conformance.harness.cli.workers import seeded
    from presence_conformance.harness.generation.profiles import CI_SEED

    # forked workers inherit one random state: the parent picks distinct seeds for them
    dev = seeded(GenerationOptions(profile="dev", database=tmp_path / "db"), "reference")
    assert dev.seed is not None and dev.use_database is True
    assert seeded(GenerationOptions(profile="dev", use_database=False), "x").use_database is False
    ci = seeded(GenerationOptions(profile="ci"), "reference")
    assert ci.seed == CI_SEED and ci.use_database is False  # ci reads a database only if given
    assert seeded(GenerationOptions(profile="dev", seed=5), "x").seed == 5
    adapter = WorkerAdapter("reference", dict(ADAPTER_OPTIONS), DETECTION_SETTINGS)
    result = run_generation_workers(
        adapter, GenerationOptions(profile="dev", use_database=False, failures_dir=None), 2, 4
    )
    assert result.seed is not None and result.programs == 4

"""Fast verdicts: operations keep `op_timeout`, but waiting for events, convergence re-reads and
end-of-case reads are bounded by `RunSettings.wait_timeout`, and end as soon as a read after a
`quiesce()` repeats unchanged; `run --maxfail N` / `-x` stop a run early."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.cli import main
from presence_conformance.harness.mutants import get_mutant
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.runner import RunSettings, run_scenario
from presence_conformance.harness.run.settings import RunSettings as Settings
from presence_conformance.harness.scenario import scenario_from_dict
from support import ROOT, packaged

STALE_GET = scenario_from_dict(
    {
        "requirements": ["update.changes-data"],
        "clients": {"alice": {}, "bob": {}},
        "channels": ["room"],
        "steps": [
            {"enter": {"client": "alice", "channel": "room", "data": "one"}},
            {"get": {"client": "bob", "channel": "room"}},
            {"update": {"client": "alice", "channel": "room", "data": "two"}},
            {"get": {"client": "bob", "channel": "room"}},
            {"history": {"client": "bob", "channel": "room"}},
        ],
    },
    case_id="fast/stale-get",
)

NOT_ECHOED = scenario_from_dict(
    {
        "requirements": ["enter.echoed-to-own-connection"],
        "clients": {"alice": {}},
        "channels": ["room"],
        "steps": [
            {"subscribe": {"client": "alice", "channel": "room", "listener": "mine"}},
            {"enter": {"client": "alice", "channel": "room", "data": "a"}},
            {"update": {"client": "alice", "channel": "room", "data": "b"}},
            {"update": {"client": "alice", "channel": "room", "data": "c"}},
        ],
    },
    case_id="fast/not-echoed",
)


async def _run(scenario: Any, adapter: Any, settings: RunSettings) -> Any:
    await adapter.start()
    try:
        started = time.monotonic()
        result = await run_scenario(scenario, adapter, settings)
        return result, time.monotonic() - started
    finally:
        await adapter.stop()


def test_wait_budget() -> None:
    assert Settings().wait_budget == 1.0
    assert Settings(op_timeout=0.3).wait_budget == 0.3  # never more than an operation may take
    assert Settings(wait_timeout=None).wait_budget == 5.0
    legacy = Settings.legacy_budgets(op_timeout=2.0)
    assert legacy.wait_budget == 2.0 and not legacy.settle


def test_a_read_that_never_converges_ends_once_it_repeats_after_quiesce() -> None:
    """get() keeps returning stale data: with an adapter that can quiesce, the re-reads end as
    soon as two reads after a quiesce agree, far within op_timeout and the wait budget."""
    adapter = get_mutant("stale-data-after-update")({"leave_grace": "0.02"})
    result, seconds = asyncio.run(_run(STALE_GET, adapter, RunSettings(op_timeout=5.0)))
    assert result.outcome is Outcome.FAIL
    assert "update.changes-data" in {v.requirement for v in result.violations}
    assert seconds < 0.5, seconds


def test_missing_events_are_waited_for_until_quiet() -> None:
    adapter = get_mutant("own-events-not-echoed")({"leave_grace": "0.02"})
    result, seconds = asyncio.run(_run(NOT_ECHOED, adapter, RunSettings(op_timeout=5.0)))
    assert result.outcome is not Outcome.PASS
    assert seconds < 0.5, seconds


def test_without_quiesce_waits_are_bounded_by_the_wait_budget() -> None:
    """An adapter that cannot quiesce: each wait for the missing echo ends after wait_timeout,
    not op_timeout."""

    class NoQuiesce(get_mutant("own-events-not-echoed")):  # type: ignore[misc]
        async def quiesce(self) -> bool:
            return False

    settings = RunSettings(op_timeout=5.0, wait_timeout=0.2, quiet_period=0.01)
    result, seconds = asyncio.run(_run(NOT_ECHOED, NoQuiesce({"leave_grace": "0.02"}), settings))
    assert result.outcome is not Outcome.PASS
    assert 0.5 <= seconds < 2.0, seconds  # three waits of 0.2 s (and a little), not 5 s each


def test_legacy_budgets_wait_op_timeout() -> None:
    """The old behaviour, kept for comparisons: the same verdict, each wait the full op_timeout."""
    adapter = get_mutant("own-events-not-echoed")({"leave_grace": "0.02"})
    settings = RunSettings.legacy_budgets(op_timeout=0.3, quiet_period=0.01)
    result, seconds = asyncio.run(_run(NOT_ECHOED, adapter, settings))
    fast, _ = asyncio.run(
        _run(NOT_ECHOED, get_mutant("own-events-not-echoed")({"leave_grace": "0.02"}), FAST)
    )
    assert seconds >= 0.9  # three waits of 0.3 s
    assert result.outcome is fast.outcome
    assert {v.requirement for v in result.violations} == {v.requirement for v in fast.violations}


FAST = RunSettings(op_timeout=0.3, quiet_period=0.01)


def test_the_reference_still_passes_with_settling() -> None:
    for scenario in (STALE_GET, NOT_ECHOED):
        result, _ = asyncio.run(_run(scenario, ReferenceAdapter({"leave_grace": "0.02"}), FAST))
        assert result.outcome is Outcome.PASS, [v.to_json() for v in result.violations]


@pytest.mark.parametrize(("flag", "ran"), [(["-x"], 1), (["--maxfail", "2"], 2)])
def test_maxfail_stops_the_run(
    flag: list[str], ran: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "--adapter",
            "mutant:update-as-enter",
            "--select",
            "update/*",
            "--report-dir",
            str(out),
            *flag,
        ]
    )
    assert code == 1
    results = json.loads((out / "results.json").read_text())
    outcomes = [c["outcome"] for c in results["cases"]]
    assert outcomes.count("fail") == ran and outcomes[-1] == "fail", outcomes
    assert len(outcomes) < 7  # update/* has 7 cases: the run stopped
    assert results["partial"] and "--maxfail" in results["partial_reason"]
    assert "NOT CONFORMING" in capsys.readouterr().out


def test_maxfail_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--adapter", "reference", "--maxfail", "0"]) == 2
    assert "--maxfail" in capsys.readouterr().err


def test_maxfail_does_not_stop_a_passing_run(tmp_path: Path) -> None:
    code = main(
        [
            *("run", "--adapter", "reference", "--select", "update/*", "-x"),
            *("--report-dir", str(tmp_path)),
        ]
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert code == 0 and not results["partial"] and len(results["cases"]) > 1


def test_bench_verdict_compares_before_and_after() -> None:
    """bench/bench_verdict.py on one quick mutant: both budgets, the same verdicts."""
    import subprocess
    import sys

    root = ROOT
    result = subprocess.run(
        [
            sys.executable,
            str(root / "bench" / "bench_verdict.py"),
            *("--adapters", "mutant:sync-complete-too-early"),
            *("--before-timeout", "120"),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    row = next(line for line in result.stdout.splitlines() if "sync-complete-too-early" in line)
    assert row.rstrip().endswith("same"), result.stdout
    assert "TARGETS MET" in result.stdout


def test_no_settling_while_a_drop_s_leaves_are_due() -> None:
    """quiesce() covers the events produced so far, not those a timer produces later: while a
    dropped connection's grace runs, the re-reads go on (the filter-ignoring listener's extra
    enter satisfies the drop's wait, so only the history and convergence reads see the leave)."""

    scenario = packaged("regressions/leave-on-transport-drop")
    adapter = get_mutant("subscribe-filter-ignored")({"leave_grace": "0.2"})
    result, _ = asyncio.run(_run(scenario, adapter, RunSettings()))
    found = {v.requirement for v in result.violations}
    assert "subscribe.single-action" in found
    assert not found & {"history.includes-synthesized-leave", "sync.converges"}, found

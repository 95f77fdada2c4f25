"""Smoke tests of the benchmarks: `bench/bench_reference.py --quick` prints its table,
`bench/bench_runner.py --quick` its ratios, `bench/bench_generation.py` its summary,
`bench/bench_interleavings.py` its counts of runs and false failures.

No timing is asserted: the figures depend on the machine.
"""

from __future__ import annotations

from support import run_bench

FAST_MUTANT = "get-action-not-present"  # the generation tests' quickly detected mutant


def test_bench_quick_runs_and_prints_the_table() -> None:
    result = run_bench("bench_reference.py", "--quick")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    header = next((line for line in lines if line.startswith("impl")), None)
    assert header is not None, result.stdout
    for column in ("operation", "size", "ops/s", "baseline ops/s", "slowdown", "growth"):
        assert column in header
    table = "\n".join(lines)
    for operation in (
        "enter",
        "update",
        "leave",
        "get (all)",
        "get (clientId)",
        "get (connectionId)",
        "history page",
    ):
        assert f"model   {operation}" in table and f"service {operation}" in table
    assert any(line.startswith("verdict:") for line in lines)


def test_runner_bench_quick_runs_and_prints_ratios() -> None:
    result = run_bench("bench_runner.py", "--quick")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "harness ms" in result.stdout and "ratio" in result.stdout
    assert "whole suite against reference:" in result.stdout
    assert "(pass " in result.stdout  # the bench's own scenario and the suite ran


def test_bench_generation_runs_and_prints_its_summary() -> None:
    result = run_bench(
        "bench_generation.py", "--mutants", FAST_MUTANT, "--budget", "50", "--examples", "20"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert f"{FAST_MUTANT}" in out and "programs/s" in out
    for line in (
        "mutants detected",
        "median time to detect",
        "shrunk to <= 8 steps",
        "20-step programs/s against reference",
        "time to a shrunk failure, median",
        "time to a shrunk failure, max",
        "caught by generation alone",
        "with 2 worker processes",
    ):
        assert line in out
    assert "2 workers" in out and "their start included" in out


def test_bench_interleavings_counts_runs_and_false_failures() -> None:
    result = run_bench("bench_interleavings.py", "--runs", "2", "--adapter", "reference")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("reference"))
    assert "2 runs x" in line and "false failures 0" in line
    assert "false failures in all: 0" in result.stdout


def test_bench_interleavings_reports_a_failure_it_cannot_explain() -> None:
    """A broken implementation has failures no known-failing list explains: counted, exit 1."""
    result = run_bench(
        "bench_interleavings.py", "--runs", "1", "--adapter", "mutant:update-before-enter-lost"
    )
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "update.event-emitted" in result.stdout
    assert "false failures in all: 0" not in result.stdout

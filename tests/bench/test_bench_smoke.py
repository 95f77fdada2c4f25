"""Smoke test of the benchmark: `bench/bench_reference.py --quick` runs and prints its table.

No timing is asserted: the figures depend on the machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_runs_and_prints_the_table() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_reference.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
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
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_runner.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "harness ms" in result.stdout and "ratio" in result.stdout
    assert "whole suite against reference:" in result.stdout
    assert "(pass " in result.stdout  # the bench's own scenario and the suite ran

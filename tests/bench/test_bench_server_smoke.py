"""Smoke test of the server benchmark: `bench/bench_server.py --quick` runs and prints its table.

No timing is asserted: the figures depend on the machine (and on what else it is running).
"""

from __future__ import annotations

import pytest
from support import run_bench


def test_bench_server_quick_runs_and_prints_the_table() -> None:
    result = run_bench("bench_server.py", "--quick", timeout=600)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    lines = result.stdout.splitlines()
    assert "== summary (asyncio) ==" in lines, result.stdout
    summary = lines[lines.index("== summary (asyncio) ==") :]
    header = summary[1]
    for column in ("bench", "measure", "presence", "baseline", "ratio", "target", "verdict"):
        assert column in header
    table = "\n".join(summary)
    for bench in (
        "(a) enter->ACK RTT",
        "(b) fan-out x200",
        "(c) SYNC 100",
        "(c) SYNC 1,000",
        "(c) SYNC growth",
        "(d) crowd x100",
    ):
        assert bench in table, table
    assert "bytes/member" in result.stdout and "REST history holds 100 enters" in result.stdout


def test_bench_server_compares_the_loops() -> None:
    """`--loop both`: each bench on asyncio and on uvloop, then what uvloop changes."""
    pytest.importorskip("uvloop", reason="uvloop is the [fast] extra")
    result = run_bench("bench_server.py", "--quick", "--only", "a", "--loop", "both", timeout=600)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    out = result.stdout
    assert "== summary (asyncio) ==" in out and "== summary (uvloop) ==" in out
    comparison = out[out.index("== what uvloop changes") :]
    for figure in ("enter->ACK p50 ms", "bare echo p50 ms", "ratio enter->ACK / echo"):
        assert figure in comparison, comparison

"""`bench/soak_server.py` runs a short soak end to end and reports flat figures."""

from __future__ import annotations

from support import run_bench


def test_soak_server_runs_and_reports_ratios() -> None:
    # a smoke test: the ratios are the bench's to judge (on a quiet machine), not a timed test's,
    # so the bound here is wide enough that only a broken soak fails it
    done = run_bench("soak_server.py", "--cycles", "400", "--workers", "4", "--max-ratio", "1000")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "last/first block: RSS" in done.stdout and "CLOSE p50" in done.stdout


def test_soak_server_refuses_a_bad_option() -> None:
    done = run_bench("soak_server.py", "--cycles", "3")
    assert done.returncode == 2 and "--cycles" in done.stderr

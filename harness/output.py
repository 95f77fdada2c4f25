"""The one seam between a finished (or interrupted) run and the report writers.

`write_run` hands the run to `presence_conformance.harness.reports.write_reports` (JSON, JUnit,
Markdown, HTML; each file written atomically). `write_unfinished` marks a report folder as a run
in progress. `merge_worker_runs` combines the results of pytest-xdist workers
(`presence_conformance.harness.reports.merge_worker_results`).
"""

from __future__ import annotations

from pathlib import Path

from presence_conformance.harness.reports import merge_worker_results, write_reports
from presence_conformance.harness.results import RunResult

__all__ = ["RESULTS_FILE", "UNFINISHED", "merge_worker_runs", "write_run", "write_unfinished"]

RESULTS_FILE = "results.json"
UNFINISHED = (
    "unfinished: the run has not ended; if this stays, its process ended before the harness "
    "wrote the report (the adapter ended the process? out of memory?)"
)


def write_run(
    run: RunResult,
    out_dir: Path | str,
    *,
    strict: bool = False,
    stale_errors: list[str] | None = None,
) -> list[Path]:
    """Write the reports of `run` into `out_dir` (created if needed); return the files written.

    `strict` and `stale_errors` (from a known-failing list) only shape the verdict the reports
    state; they do not change `run`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return list(write_reports(run, out_dir, strict=strict, stale_errors=list(stale_errors or [])))


def write_unfinished(started: RunResult, out_dir: Path | str) -> list[Path]:
    """Replace the reports in `out_dir` by an empty run marked partial ("unfinished: ...").

    Written before the first case; the run's own report overwrites it at the end. A process
    that ends before that (an adapter calling `os._exit`, the out-of-memory killer) leaves this
    instead of an earlier run's verdict (docs/ci.md, *Unfinished runs*).
    """
    placeholder = RunResult(
        adapter=started.adapter,
        started=started.started,
        partial=True,
        partial_reason=UNFINISHED,
        harness_version=started.harness_version,
        adapter_options=dict(started.adapter_options),
    )
    return write_run(placeholder, out_dir)


def merge_worker_runs(runs: list[RunResult]) -> RunResult:
    """One run from the parts several workers of one adapter ran (worst result per case)."""
    return merge_worker_results(runs)

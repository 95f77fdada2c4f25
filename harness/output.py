"""The one seam between a finished (or interrupted) run and the report writers.

`write_run` hands the run to `harness.reports.write_reports` (JSON, JUnit, Markdown, HTML) when
that package is installed, and otherwise writes `results.json` itself, so a run always leaves a
machine-readable result behind.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from harness.results import RunResult

__all__ = ["RESULTS_FILE", "write_run"]

RESULTS_FILE = "results.json"


def write_run(run: RunResult, out_dir: Path | str) -> list[Path]:
    """Write the reports of `run` into `out_dir` (created if needed); return the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        reports = importlib.import_module("harness.reports")
    except ModuleNotFoundError as exc:
        if exc.name not in ("harness.reports", "harness"):
            raise  # harness.reports exists but is broken: say so, do not hide it
        reports = None
    if reports is not None and hasattr(reports, "write_reports"):
        return list(reports.write_reports(run, out_dir))
    path = out_dir / RESULTS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(run.to_json(), indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return [path]

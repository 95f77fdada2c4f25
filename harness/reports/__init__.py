"""Conformance reports for CI and for humans, written from one `RunResult`.

    paths = write_reports(run, Path("reports/ci"), strict=False,
                          known_failing=KnownFailing.for_adapter(run.adapter))

writes, atomically (temporary file + rename):

| format     | file           | for                                                              |
|------------|----------------|------------------------------------------------------------------|
| `json`     | `results.json` | machines; schema `spec/schemas/results.json`; `report --from`    |
| `junit`    | `junit.xml`    | CI test views: one `<testsuite>` per area                         |
| `markdown` | `summary.md`   | `$GITHUB_STEP_SUMMARY` (kept under GitHub's 1 MiB limit)          |
| `html`     | `report.html`  | humans: one self-contained page with filters and failure details |

Across adapters: `write_matrix(runs, out_dir)` (`matrix.html`, `matrix.md`); across pytest-xdist
workers of one adapter: `merge_worker_results(runs)`. Known-failing lists:
`presence_conformance.harness.reports.expectations`; exit codes: `presence_conformance.harness.reports.exit_codes`; the `report` CLI
subcommand: `presence_conformance.harness.cli.report.report_main`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from presence_conformance.harness.reports.common import CatalogueView, Verdict, load_catalogue, verdict
from presence_conformance.harness.reports.exit_codes import (
    CONFORMING,
    FLAKY,
    HARNESS_FAILURE,
    NOT_CONFORMING,
    USAGE,
    exit_code,
)
from presence_conformance.harness.reports.expectations import KnownFailing
from presence_conformance.harness.reports.html_report import write_html
from presence_conformance.harness.reports.json_report import load_results, write_json
from presence_conformance.harness.reports.junit import write_junit
from presence_conformance.harness.reports.markdown import write_markdown
from presence_conformance.harness.reports.matrix import Matrix, merge, merge_worker_results, write_matrix
from presence_conformance.harness.results import RunResult

__all__ = [
    "CONFORMING",
    "FILENAMES",
    "FLAKY",
    "HARNESS_FAILURE",
    "NOT_CONFORMING",
    "USAGE",
    "KnownFailing",
    "Matrix",
    "ReportError",
    "Verdict",
    "exit_code",
    "load_results",
    "merge",
    "merge_worker_results",
    "verdict",
    "write_matrix",
    "write_reports",
]

FILENAMES: dict[str, str] = {
    "json": "results.json",
    "junit": "junit.xml",
    "markdown": "summary.md",
    "html": "report.html",
}


class ReportError(RuntimeError):
    """A report could not be written (the others were still written)."""


def write_reports(
    run: RunResult,
    out_dir: Path,
    formats: Iterable[str] = ("json", "junit", "markdown", "html"),
    known_failing: KnownFailing | str | Path | None = None,
    *,
    strict: bool = False,
    catalogue: Any = None,
    stale_errors: list[str] | None = None,
) -> list[Path]:
    """Write the reports of `run` into `out_dir` (created if needed); return the paths written.

    `known_failing` (a `KnownFailing` or the path of a list) is applied to `run` first: matching
    failing cases are marked `known_failing`, and stale entries are reported (they fail the run).
    Apply it yourself to get the stale errors for the exit code; applying twice is harmless:

        stale = known.apply(run)
        write_reports(run, out, strict=strict, stale_errors=stale)
        return exit_code(run, strict, stale)

    `strict` makes SHOULD violations failures (JUnit `<failure>`, verdict). `catalogue` defaults
    to `spec.load_requirements()`; the reports list every requirement in it. Each report is
    written atomically; if one writer fails the others are still written, then ReportError.
    """
    formats = list(formats)
    unknown = [f for f in formats if f not in FILENAMES]
    if unknown:
        raise ValueError(f"unknown report format(s) {unknown}; choose from {sorted(FILENAMES)}")
    stale = list(stale_errors or [])
    if known_failing is not None:
        kf = known_failing if isinstance(known_failing, KnownFailing) \
            else KnownFailing.load(known_failing)
        stale += [e for e in kf.apply(run) if e not in stale]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    view: CatalogueView | None = None
    v = verdict(run, strict=strict, stale_errors=stale)
    written: list[Path] = []
    failed: list[str] = []
    for fmt in formats:
        path = out / FILENAMES[fmt]
        try:
            if fmt == "json":
                written.append(write_json(run, path))
            elif fmt == "junit":
                written.append(write_junit(run, path, strict=strict, stale_errors=stale))
            else:
                if view is None:
                    view = load_catalogue(catalogue, [run])
                writer = write_markdown if fmt == "markdown" else write_html
                written.append(writer(run, path, view, v))
        except Exception as exc:
            failed.append(f"{path}: {type(exc).__name__}: {exc}")
    if failed:
        raise ReportError("could not write " + "; ".join(failed))
    return written

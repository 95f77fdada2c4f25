"""`presence-conformance report`: re-render reports from results files, or build a matrix.

    presence-conformance report --from reports/ci/results.json --out reports/again
    presence-conformance report --from w1/results.json w2/results.json --out reports/all
    presence-conformance report --merge ably.json reference.json mine.json --out reports/matrix

`--from` with several files merges them as workers of ONE adapter (pytest-xdist), then writes
results.json, junit.xml, summary.md and report.html, and exits with the run's exit code (0
conforming, 1 not conforming, 3 partial). `--merge` writes matrix.html and matrix.md across
adapters and exits 0. Unreadable or invalid input exits 2; a crash while writing exits 3.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from presence_conformance.harness.reports import FILENAMES, ReportError, write_reports
from presence_conformance.harness.reports.exit_codes import (
    CONFORMING,
    HARNESS_FAILURE,
    USAGE,
    exit_code,
)
from presence_conformance.harness.reports.expectations import KnownFailing
from presence_conformance.harness.reports.json_report import ResultsFileError, load_results
from presence_conformance.harness.reports.matrix import merge_worker_results, write_matrix


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `report` subcommand."""
    p = argparse.ArgumentParser(
        prog="presence-conformance report",
        description="Re-render conformance reports from results.json files, or merge the results "
        "of several adapters into a matrix.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--from",
        dest="from_",
        nargs="+",
        metavar="RESULTS_JSON",
        type=Path,
        help="results.json of one adapter (several: workers of that adapter, merged)",
    )
    src.add_argument(
        "--merge",
        nargs="+",
        metavar="RESULTS_JSON",
        type=Path,
        help="results.json of several adapters: write matrix.html and matrix.md",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write into")
    p.add_argument(
        "--format",
        dest="formats",
        default=",".join(FILENAMES),
        help=f"comma-separated formats for --from (default: {','.join(FILENAMES)})",
    )
    p.add_argument(
        "--strict", action="store_true", help="SHOULD violations (non-strict) fail the run"
    )
    kf = p.add_mutually_exclusive_group()
    kf.add_argument(
        "--known-failing",
        type=Path,
        metavar="FILE",
        help="apply this known-failing list (stale entries fail the run)",
    )
    kf.add_argument(
        "--adapter-known-failing",
        action="store_true",
        help="apply the list shipped for the adapter (harness/expectations/<adapter>.txt)",
    )
    return p


def _err(msg: str) -> None:
    print(f"presence-conformance report: {msg}", file=sys.stderr)


def report_main(argv: Sequence[str] | None = None) -> int:
    """Run `presence-conformance report ARGV`; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return CONFORMING if exc.code in (0, None) else USAGE
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in FILENAMES]
    if bad:
        _err(f"unknown format(s) {', '.join(bad)}; choose from {', '.join(FILENAMES)}")
        return USAGE
    try:
        runs = [load_results(p) for p in (args.from_ or args.merge)]
    except ResultsFileError as exc:
        _err(str(exc))
        return USAGE
    try:
        if args.merge:
            paths = write_matrix(runs, args.out, strict=args.strict)
            for path in paths:
                print(path)
            return CONFORMING
        try:
            run = runs[0] if len(runs) == 1 else merge_worker_results(runs)
        except ValueError as exc:
            _err(f"{exc}")
            return USAGE
        stale: list[str] = []
        if args.known_failing or args.adapter_known_failing:
            try:
                known = (
                    KnownFailing.load(args.known_failing)
                    if args.known_failing
                    else KnownFailing.for_adapter(run.adapter)
                )
            except OSError as exc:
                _err(f"cannot read the known-failing list: {exc}")
                return USAGE
            stale = known.apply(run)
        paths = write_reports(run, args.out, formats, strict=args.strict, stale_errors=stale)
    except (ReportError, OSError) as exc:
        _err(f"harness failure: {exc}")
        return HARNESS_FAILURE
    for path in paths:
        print(path)
    for s in stale:
        _err(s)
    return exit_code(run, args.strict, stale)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(report_main())

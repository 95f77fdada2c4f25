"""`presence-conformance`: run the suite, replay a failure, list what exists, serve the reference.

    presence-conformance run --adapter NAME [--adapter-option K=V]... [--report-dir DIR]
                             [--select PATTERN]... [--op-timeout S] [--strict] [--scenarios DIR]
                             [--known-failing FILE]
    presence-conformance replay FILE --adapter NAME [--adapter-option K=V]...
    presence-conformance list adapters|scenarios|requirements
    presence-conformance generate ...     (generated programs; see `generate --help`)
    presence-conformance report ...       (re-render reports, matrix; see `report --help`)
    presence-conformance serve ...        (the reference server; see `serve --help`)
    presence-conformance --version

Exit codes (`run`; the same as the reports' and the pytest route's, see docs/ci.md):
0 conforming, 1 not conforming, 2 usage or configuration error (unknown adapter or option,
malformed scenario file), 3 the harness itself failed, or the run is partial (interrupted) and
found no failure so far. A report is written by every `run` that got as far as running cases,
also after Ctrl-C (or SIGTERM) and when the adapter crashes.

The CLI is a thin front end over `presence_conformance.harness.session.ConformanceSession`, the core the pytest plugin
uses too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from presence_conformance.harness.adapter import UsageError
from presence_conformance.harness.results import CaseResult, Outcome, RunResult

__all__ = ["main"]

EXIT_CONFORMING = 0
EXIT_NOT_CONFORMING = 1
EXIT_USAGE = 2
EXIT_HARNESS = 3

OUTCOME_ORDER = [
    Outcome.PASS,
    Outcome.NON_STRICT,
    Outcome.FAIL,
    Outcome.UNSUPPORTED,
    Outcome.TIMEOUT,
    Outcome.ERROR,
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: `sys.argv[1:]`) and return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return _serve(argv[1:])
    if argv[:1] == ["report"]:
        return _report(argv[1:])
    if argv[:1] == ["generate"]:
        from presence_conformance.harness.cli.generate import generate_main

        return generate_main(argv[1:])
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an argparse error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except UsageError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_HARNESS
    except Exception as exc:
        if _is_scenario_error(exc):
            _err(f"error: malformed scenario: {exc}")
            return EXIT_USAGE
        _err(
            "presence-conformance: internal error (please report it):\n"
            + "".join(traceback.format_exception(exc))
        )
        return EXIT_HARNESS


# -- argument parsing -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from presence_conformance.harness.session import harness_version

    parser = argparse.ArgumentParser(
        prog="presence-conformance",
        description="Conformance test harness for realtime presence.",
        epilog="Exit codes: 0 conforming, 1 not conforming, 2 usage error, 3 harness failure "
        "or partial run.",
    )
    parser.add_argument(
        "--version", action="version", version=f"presence-conformance {harness_version()}"
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the conformance suite against an adapter",
        description="Run the scenarios against an adapter, print a summary, write the reports.",
    )
    _adapter_arguments(run)
    run.add_argument(
        "--report-dir",
        metavar="DIR",
        type=Path,
        default=None,
        help="where to write the reports (default: reports/<adapter>)",
    )
    run.add_argument(
        "--select",
        metavar="PATTERN",
        action="append",
        default=[],
        help="only cases whose ID or one of whose requirement IDs matches this "
        "fnmatch pattern (repeatable: the union), e.g. 'history/*' or "
        "'leave.*'",
    )
    run.add_argument(
        "--known-failing",
        metavar="FILE",
        type=Path,
        default=None,
        help="known-failing list (default: the list shipped for the adapter, if any)",
    )
    run.add_argument(
        "--maxfail",
        metavar="N",
        type=int,
        default=None,
        help="stop after N failing cases (known-failing ones not counted; with --strict a "
        "SHOULD-only failure counts); the run is reported as partial",
    )
    run.add_argument(
        "-x",
        "--exitfirst",
        dest="maxfail",
        action="store_const",
        const=1,
        help="stop at the first failing case (--maxfail 1)",
    )
    run.set_defaults(func=_cmd_run)

    replay = sub.add_parser(
        "replay",
        help="run one scenario file (e.g. a saved failure)",
        description="Run one scenario file; print FIXED if it passes now, "
        "FAILED with the violations otherwise.",
    )
    replay.add_argument("file", type=Path, help="the scenario file")
    _adapter_arguments(replay, scenarios=False)
    replay.set_defaults(func=_cmd_replay)

    lst = sub.add_parser("list", help="list adapters, scenarios or requirements")
    lst.add_argument("what", choices=["adapters", "scenarios", "requirements"])
    lst.add_argument(
        "--scenarios",
        metavar="DIR",
        type=Path,
        default=None,
        help="folder of scenario files (default: the packaged scenarios)",
    )
    lst.set_defaults(func=_cmd_list)

    sub.add_parser(
        "report",
        add_help=False,
        help="re-render reports from results.json, or build a matrix across adapters "
        "(see `report --help`)",
    )
    sub.add_parser(
        "serve", add_help=False, help="run the reference presence server (see `serve --help`)"
    )
    sub.add_parser(
        "generate",
        add_help=False,
        help="run generated programs, shrink a failure to a replayable scenario "
        "(see `generate --help`)",
    )
    return parser


def _adapter_arguments(p: argparse.ArgumentParser, scenarios: bool = True) -> None:
    p.add_argument(
        "--adapter",
        metavar="NAME",
        required=True,
        help="adapter name (see `list adapters`), module:Class, path/file.py:Class or mutant:NAME",
    )
    p.add_argument(
        "--adapter-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="an option for the adapter (repeatable)",
    )
    p.add_argument(
        "--op-timeout",
        metavar="S",
        type=float,
        default=None,
        help="seconds an adapter operation may take (default: the runner's)",
    )
    p.add_argument(
        "--wait-timeout",
        metavar="S",
        type=float,
        default=None,
        help="seconds the runner waits for events and for reads to converge (default 1; never "
        "more than --op-timeout); raise it for a deployment whose events take longer",
    )
    p.add_argument(
        "--strict", action="store_true", help="SHOULD violations (non-strict) fail the run too"
    )
    if scenarios:
        p.add_argument(
            "--scenarios",
            metavar="DIR",
            type=Path,
            default=None,
            help="folder of scenario files (default: the packaged scenarios)",
        )


# -- commands -------------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    from presence_conformance.harness.output import write_run
    from presence_conformance.harness.session import load_suite, select_scenarios

    session = _open_session(args)
    scenarios = select_scenarios(load_suite(args.scenarios), args.select)
    if not scenarios:
        raise UsageError(
            f"--select {' '.join(args.select)}: no scenario matches "
            "(see `presence-conformance list scenarios`)"
        )
    known_failing = _known_failing(args)
    report_dir = args.report_dir or Path("reports") / _safe(args.adapter)
    out = sys.stdout
    print(
        f"presence-conformance {session.run_result.harness_version}: {len(scenarios)} "
        f"case(s) against adapter {args.adapter!r}",
        file=out,
        flush=True,
    )

    width = len(str(len(scenarios)))

    def progress(index: int, total: int, case: CaseResult) -> None:
        print(
            f"[{index:>{width}}/{total}] {case.outcome.value:<11} {case.case_id}  "
            f"({case.duration:.2f}s)",
            file=out,
            flush=True,
        )

    if args.maxfail is not None and args.maxfail < 1:
        raise UsageError(f"--maxfail {args.maxfail}: must be at least 1")
    failures = 0

    def stop(case: CaseResult) -> str | None:
        nonlocal failures
        if args.maxfail is None:
            return None
        failing = case.outcome.is_failure or (args.strict and case.outcome is Outcome.NON_STRICT)
        if failing and not (known_failing is not None and known_failing.reason_for(case)):
            failures += 1
        if failures >= args.maxfail:
            return f"stopped after {failures} failing case(s) (--maxfail {args.maxfail})"
        return None

    with _sigterm_as_interrupt():
        try:
            run = session.run_all(scenarios, on_result=progress, stop=stop)
        finally:
            session.stop()
    complete = not getattr(args, "select", None) and not run.partial
    stale = known_failing.apply(run, complete=complete) if known_failing is not None else []
    try:
        written = write_run(run, report_dir, strict=args.strict, stale_errors=stale)
    except Exception as exc:
        _err(f"error: the report could not be written to {report_dir}: {type(exc).__name__}: {exc}")
        written = []
    _print_summary(run, args.strict, stale, out)
    for path in written:
        print(f"report: {path}", file=out)
    code = _exit_code(run, args.strict, stale)
    if session.harness_error is not None:
        _err(
            "presence-conformance: the harness itself failed (please report it):\n"
            + str(session.harness_error)
        )
        code = EXIT_HARNESS
    elif session.internal_errors:
        _err(
            "presence-conformance: the harness itself failed on "
            f"{', '.join(session.internal_errors)} (an internal error in the runner, not the "
            "adapter's fault; please report it)"
        )
        code = EXIT_HARNESS
    elif not written and code == EXIT_CONFORMING:
        code = EXIT_HARNESS  # a run without its report is not a verdict anyone can use
    if code == EXIT_CONFORMING:
        verdict = "CONFORMING"
    elif code == EXIT_NOT_CONFORMING:
        verdict = "NOT CONFORMING"
    elif run.partial:
        verdict = f"INCOMPLETE ({run.partial_reason})"
    else:
        verdict = "HARNESS FAILURE"
    print(f"\n{verdict}", file=out)
    return code


def _cmd_replay(args: argparse.Namespace) -> int:
    from presence_conformance.harness.scenario import load_scenario
    from presence_conformance.harness.session import HarnessError, describe_case

    if not args.file.is_file():
        raise UsageError(f"replay: no such scenario file {args.file}")
    scenario = load_scenario(args.file)
    session = _open_session(args)
    with _sigterm_as_interrupt():
        try:
            case = session.run_case(scenario)
        except HarnessError as exc:
            _err(f"presence-conformance: the harness itself failed:\n{exc}")
            return EXIT_HARNESS
        finally:
            session.stop()
    if session.internal_errors:
        _err(f"presence-conformance: the harness itself failed (please report it):\n{case.error}")
        return EXIT_HARNESS
    if case.outcome is Outcome.PASS or (case.outcome is Outcome.NON_STRICT and not args.strict):
        print(f"FIXED: {case.case_id} passes now ({case.duration:.2f}s)")
        if case.outcome is Outcome.NON_STRICT:
            print("  (SHOULD requirements are still violated; --strict would fail it)")
            print(describe_case(case, history=False))
        return EXIT_CONFORMING
    if case.outcome is Outcome.UNSUPPORTED:
        print(
            f"UNSUPPORTED: {case.case_id} cannot run on adapter {args.adapter!r}: "
            f"{case.error or 'a required feature is missing'}"
        )
        return EXIT_NOT_CONFORMING
    print(f"FAILED: {case.case_id}")
    print(describe_case(case))
    return EXIT_NOT_CONFORMING


def _cmd_list(args: argparse.Namespace) -> int:
    if args.what == "adapters":
        from presence_conformance.harness.adapters.registry import available_adapters

        _table(
            [(name, desc) for name, desc in available_adapters().items()],
            ("ADAPTER", "DESCRIPTION"),
        )
    elif args.what == "scenarios":
        from presence_conformance.harness.session import load_suite

        _table(
            [(s.case_id, ", ".join(s.requirements)) for s in load_suite(args.scenarios)],
            ("SCENARIO", "REQUIREMENTS"),
        )
    else:
        from presence_conformance.spec import load_requirements

        _table(
            [(r.id, r.level, r.text) for r in load_requirements().requirements],
            ("REQUIREMENT", "LEVEL", "TEXT"),
        )
    return EXIT_CONFORMING


def _report(argv: list[str]) -> int:
    from presence_conformance.harness.cli.report import report_main

    return int(report_main(argv))


def _serve(argv: list[str]) -> int:
    try:
        server = importlib.import_module("presence_conformance.reference_impl.server")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("reference_impl"):
            _err(
                "presence-conformance serve: the reference server (presence_conformance.reference_impl.server) "
                "is not installed"
            )
            return EXIT_HARNESS
        raise
    try:
        result = server.serve_main(argv)
    except KeyboardInterrupt:
        return EXIT_CONFORMING
    return int(result or 0)


# -- helpers --------------------------------------------------------------------------------------


def _open_session(args: argparse.Namespace) -> Any:
    """Resolve the adapter and settings into a (not yet started) ConformanceSession."""
    from presence_conformance.harness.adapters.registry import parse_options, resolve_adapter
    from presence_conformance.harness.run.runner import RunSettings
    from presence_conformance.harness.session import ConformanceSession

    options = parse_options(args.adapter_option)
    adapter = resolve_adapter(args.adapter, options)
    values: dict[str, Any] = {}
    for name in ("op_timeout", "wait_timeout"):
        value = getattr(args, name, None)
        if value is None:
            continue
        if value <= 0:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} {value}: must be a positive number of seconds")
        values[name] = value
    settings = RunSettings(**values)
    return ConformanceSession(
        adapter, adapter_name=args.adapter, options=options, settings=settings
    )


def _known_failing(args: argparse.Namespace) -> Any | None:
    """The known-failing list to apply (None when the reports package is not installed)."""
    try:
        from presence_conformance.harness.reports.expectations import KnownFailing
    except ModuleNotFoundError:
        if args.known_failing is not None:
            raise UsageError(
                "--known-failing needs presence_conformance.harness.reports, which is not installed"
            ) from None
        return None
    if args.known_failing is not None:
        try:
            return KnownFailing.load(args.known_failing)
        except OSError as exc:
            raise UsageError(
                f"--known-failing {args.known_failing}: {exc.strerror or exc}"
            ) from None
    return KnownFailing.for_adapter(args.adapter)


def _exit_code(run: RunResult, strict: bool, stale: list[str]) -> int:
    try:
        from presence_conformance.harness.reports.exit_codes import exit_code
    except ModuleNotFoundError:
        if not run.conforming(strict=strict) or stale:
            return EXIT_NOT_CONFORMING
        return EXIT_HARNESS if run.partial else EXIT_CONFORMING
    return exit_code(run, strict=strict, stale_errors=stale)


def _print_summary(run: RunResult, strict: bool, stale: list[str], out: TextIO) -> None:
    from presence_conformance.harness.session import area_of, describe_case

    counts = run.counts()
    print("\nOutcomes", file=out)
    _table(
        [(o.value, str(counts.get(o.value, 0))) for o in OUTCOME_ORDER],
        ("OUTCOME", "CASES"),
        out=out,
        right={1},
    )
    areas: dict[str, dict[str, int]] = {}
    for case in run.cases:
        row = areas.setdefault(area_of(case.case_id), {o.value: 0 for o in OUTCOME_ORDER})
        row[case.outcome.value] += 1
    if areas:
        print("\nBy area", file=out)
        _table(
            [
                (area, *(str(row[o.value]) for o in OUTCOME_ORDER))
                for area, row in sorted(areas.items())
            ],
            ("AREA", *(o.value for o in OUTCOME_ORDER)),
            out=out,
            right=set(range(1, len(OUTCOME_ORDER) + 1)),
        )
    failing = [c for c in run.cases if c.outcome.is_failure or (c.outcome is Outcome.NON_STRICT)]
    if failing:
        print(f"\nFailures ({len(failing)})", file=out)
        for case in failing:
            tag = " [known failing]" if case.known_failing else ""
            if case.outcome is Outcome.NON_STRICT and not strict:
                tag += " [SHOULD only: does not fail the run without --strict]"
            print("\n" + describe_case(case, history=False) + tag, file=out)
    for problem in stale:
        print(f"\n{problem}", file=out)
    if run.partial:
        print(f"\nPARTIAL RUN: {run.partial_reason} ({len(run.cases)} case(s) ran)", file=out)


def _table(
    rows: list[tuple[str, ...]],
    header: tuple[str, ...],
    out: TextIO | None = None,
    right: set[int] | None = None,
) -> None:
    out = out or sys.stdout
    right = right or set()
    all_rows = [header, *rows]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header) - 1)]
    for row in all_rows:
        cells = [row[i].rjust(w) if i in right else row[i].ljust(w) for i, w in enumerate(widths)]
        last = row[-1].rjust(len(header[-1])) if len(header) - 1 in right else row[-1]
        print("  ".join([*cells, last]).rstrip(), file=out)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "adapter"


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _is_scenario_error(exc: BaseException) -> bool:
    try:
        from presence_conformance.harness.scenario import ScenarioError
    except ImportError:
        return False
    return isinstance(exc, ScenarioError)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a cancelled CI job) like Ctrl-C, so the partial report is still written."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())

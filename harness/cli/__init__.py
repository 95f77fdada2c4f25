"""`presence-conformance`: run the suite, replay a failure, list what exists, serve the reference.

    presence-conformance run --adapter NAME [--adapter-option K=V]... [--report-dir DIR]
                             [--select PATTERN]... [--op-timeout S] [--strict] [--scenarios DIR]
                             [--known-failing FILE]
    presence-conformance replay FILE --adapter NAME [--adapter-option K=V]... [--repeat N]
                                [--conftest PATH]
    presence-conformance list adapters|scenarios|requirements|checks
    presence-conformance generate ...     (generated programs; see `generate --help`)
    presence-conformance report ...       (re-render reports, matrix; see `report --help`)
    presence-conformance serve ...        (the reference server; see `serve --help`)
    presence-conformance --version

Exit codes (`run`; the same as the reports' and the pytest route's, see docs/ci.md):
0 conforming, 1 not conforming, 2 usage or configuration error (unknown adapter or option,
malformed scenario file), 3 the harness itself failed, or the run is partial (interrupted) and
found no failure so far. `replay` runs a file `--repeat` times (default 5) and exits 0 FIXED
(every run passed), 1 FAILED (every run failed), 4 FLAKY (some passed, some failed). A report
is written by every `run` that got as far as running cases, also after Ctrl-C (or SIGTERM) and
when the adapter crashes. A run whose failing cases are all on the known-failing list exits 0
and ends with CONFORMING EXCEPT KNOWN DEVIATIONS (n requirements).

The CLI is a thin front end over `presence_conformance.harness.session.ConformanceSession`, the core the pytest plugin
uses too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from presence_conformance.harness.adapter import UsageError
from presence_conformance.harness.cli import supervise
from presence_conformance.harness.cli.cancellation import Cancellation, cancel_on_signals
from presence_conformance.harness.results import CaseResult, Outcome, RunResult

__all__ = ["main"]

EXIT_CONFORMING = 0
EXIT_NOT_CONFORMING = 1
EXIT_USAGE = 2
EXIT_HARNESS = 3
EXIT_FLAKY = 4  # replay only: some runs passed, some failed

DEFAULT_REPLAY_REPEAT = 5

OUTCOME_ORDER = [
    Outcome.PASS,
    Outcome.NON_STRICT,
    Outcome.FAIL,
    Outcome.UNSUPPORTED,
    Outcome.TIMEOUT,
    Outcome.ERROR,
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: `sys.argv[1:]`) and return the exit code.

    Without `argv` the command line is the process's own (the console script, `python -m`):
    then `run`, `replay` and `generate` run in a child process whose verdict this process
    returns, so adapter code that ends the process cannot make it exit 0
    (`presence_conformance.harness.cli.supervise`).
    """
    verdict_file = None
    if argv is None:
        argv = sys.argv[1:]
        verdict_file = os.environ.pop(supervise.VERDICT_ENV, None)
        if verdict_file is None and supervise.wants_supervisor(argv):
            return supervise.supervise(argv)
        if verdict_file is not None:
            supervise.watch_parent()
    code = _main(list(argv))
    if verdict_file is not None:
        supervise.write_verdict(verdict_file, code)
    return code


def _main(argv: list[str]) -> int:
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
    except (SystemExit, GeneratorExit) as exc:
        # outside a case (the adapter's module or constructor): never a verdict, never exit 0
        _err(
            f"presence-conformance: {type(exc).__name__}{_args(exc)} was raised outside a case "
            "(by the adapter's module or constructor?); the command did not finish"
        )
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
        "or partial run, 4 (replay) flaky.",
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
        help="run one scenario file (e.g. a saved failure) several times",
        description="Run one scenario file --repeat times and print each run's outcome; then "
        "FIXED (exit 0) when every run passes, FAILED (exit 1) when every run fails, FLAKY "
        f"(exit {EXIT_FLAKY}) when some runs pass and some fail.",
    )
    replay.add_argument("file", type=Path, help="the scenario file")
    _adapter_arguments(replay, scenarios=False)
    replay.add_argument(
        "--repeat",
        metavar="N",
        type=int,
        default=DEFAULT_REPLAY_REPEAT,
        help=f"how many times to run it (default: {DEFAULT_REPLAY_REPEAT})",
    )
    replay.add_argument(
        "--conftest",
        metavar="PATH",
        type=Path,
        default=None,
        help="a conftest.py that registers the adapter (register_adapter or the hook "
        "pytest_presence_conformance_adapters): import it first",
    )
    replay.set_defaults(func=_cmd_replay)

    lst = sub.add_parser("list", help="list adapters, scenarios, requirements or checks")
    lst.add_argument("what", choices=["adapters", "scenarios", "requirements", "checks"])
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
    with cancel_on_signals() as cancellation:
        return _run(args, cancellation)


def _run(args: argparse.Namespace, cancellation: Cancellation) -> int:
    from presence_conformance.harness.output import write_run
    from presence_conformance.harness.session import load_suite, printable, select_scenarios

    session = _open_session(args)
    cancellation.attach(session)
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
            printable(
                f"[{index:>{width}}/{total}] {case.outcome.value:<11} {case.case_id}  "
                f"({case.duration:.2f}s)"
            ),
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

    _write_unfinished(session.run_result, report_dir)
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
        verdict = _conforming_headline(run, args.strict, stale)
    elif code == EXIT_NOT_CONFORMING:
        verdict = "NOT CONFORMING"
    elif run.partial:
        verdict = f"INCOMPLETE ({printable(run.partial_reason or '')})"
    else:
        verdict = "HARNESS FAILURE"
    print(f"\n{verdict}", file=out)
    return code


def _write_unfinished(started: RunResult, report_dir: Path) -> None:
    """Mark the reports in `report_dir` unfinished until the run writes its own (docs/ci.md)."""
    from presence_conformance.harness.output import write_unfinished

    try:
        write_unfinished(started, report_dir)
    except Exception as exc:
        raise UsageError(
            f"--report-dir {report_dir}: cannot write there: {type(exc).__name__}: {exc}"
        ) from exc


def _cmd_replay(args: argparse.Namespace) -> int:
    with cancel_on_signals() as cancellation:
        return _replay(args, cancellation)


def _replay(args: argparse.Namespace, cancellation: Cancellation) -> int:
    from presence_conformance.harness.scenario import load_scenario
    from presence_conformance.harness.session import (
        HarnessError,
        RunCancelled,
        describe_case,
        printable,
    )

    if not args.file.is_file():
        raise UsageError(f"replay: no such scenario file {args.file}")
    if args.repeat < 1:
        raise UsageError(f"--repeat {args.repeat}: must be at least 1")
    _load_conftest_for(args)
    scenario = load_scenario(args.file)
    session = _open_session(args)
    cancellation.attach(session)
    cases: list[CaseResult] = []
    width = len(str(args.repeat))
    try:
        for n in range(1, args.repeat + 1):
            if session.cancelled is not None:
                raise RunCancelled(session.cancelled)
            began = time.monotonic()
            case = session.run_case(scenario)
            took = time.monotonic() - began
            cases.append(case)
            if session.internal_errors:
                break
            first = case.violations[0] if case.violations else None
            why = f"  {first.requirement}: {first.message}" if first else ""
            if not why and case.error and case.outcome is not Outcome.PASS:
                why = f"  {case.error.splitlines()[0] if case.error.strip() else ''}"
            print(
                printable(
                    f"run {n:>{width}}/{args.repeat}: {case.outcome.value:<11} ({took:.2f}s){why}"
                ),
                flush=True,
            )
            if case.outcome is Outcome.UNSUPPORTED:
                break  # the same on every run: nothing to repeat
    except HarnessError as exc:
        _err(printable(f"presence-conformance: the harness itself failed:\n{exc}"))
        return EXIT_HARNESS
    except RunCancelled:
        _err(f"interrupted after {len(cases)} run(s)")
        return EXIT_HARNESS
    finally:
        session.stop()
    if session.internal_errors:
        _err(
            "presence-conformance: the harness itself failed (please report it):\n"
            f"{cases[-1].error}"
        )
        return EXIT_HARNESS
    case_id = cases[0].case_id
    if cases[-1].outcome is Outcome.UNSUPPORTED:
        print(
            printable(
                f"UNSUPPORTED: {case_id} cannot run on adapter {args.adapter!r}: "
                f"{cases[-1].error or 'a required feature is missing'}"
            )
        )
        return EXIT_NOT_CONFORMING
    failed = [c for c in cases if not _replay_passes(c, args.strict)]
    total = len(cases)
    if not failed:
        print(printable(f"FIXED: {case_id} passes now ({total} of {total} runs passed)"))
        should = next((c for c in cases if c.outcome is Outcome.NON_STRICT), None)
        if should is not None:
            print("  (SHOULD requirements are still violated; --strict would fail it)")
            print(describe_case(should, history=False))
        return EXIT_CONFORMING
    if len(failed) == total:
        print(printable(f"FAILED: {case_id} ({total} of {total} runs failed)"))
        print(describe_case(failed[0]))
        return EXIT_NOT_CONFORMING
    print(
        printable(
            f"FLAKY: {case_id} failed {len(failed)} of {total} runs and passed the others; "
            "the bug is not fixed, and its failure depends on timing"
        )
    )
    print(describe_case(failed[0]))
    return EXIT_FLAKY


def _load_conftest_for(args: argparse.Namespace) -> None:
    """Import `--conftest PATH`; without it, when the adapter name resolves nowhere else, the
    `conftest.py` of the current directory (the name may be registered there, as for pytest)."""
    from presence_conformance.harness.adapters.registry import adapter_factory, load_conftest

    if args.conftest is not None:
        load_conftest(args.conftest)
        return
    local = Path("conftest.py")
    if ":" in args.adapter or not local.is_file():
        return
    try:
        adapter_factory(args.adapter)
    except UsageError:
        load_conftest(local)
        _err(f"note: adapter {args.adapter!r} taken from {local.resolve()} (as pytest would)")


def _replay_passes(case: CaseResult, strict: bool) -> bool:
    return case.outcome is Outcome.PASS or (case.outcome is Outcome.NON_STRICT and not strict)


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
    elif args.what == "checks":
        _list_checks(sys.stdout)
    else:
        from presence_conformance.spec import load_requirements

        _table(
            [(r.id, r.level, r.text) for r in load_requirements().requirements],
            ("REQUIREMENT", "LEVEL", "TEXT"),
        )
    return EXIT_CONFORMING


def _list_checks(out: TextIO) -> None:
    """Each registered check: its family, the sentence it enforces (its docstring) and the
    requirement IDs it may report, with their levels from the catalogue."""
    import textwrap

    from presence_conformance.harness.checks import REGISTRY
    from presence_conformance.spec import load_requirements

    catalogue = load_requirements()
    levels = {r.id: r.level for r in catalogue.requirements}
    for index, info in enumerate(REGISTRY.values()):
        if index:
            print(file=out)
        print(f"{info.name} ({info.family})", file=out)
        sentence = " ".join(info.doc.split()) or "(no description)"
        print(textwrap.fill(sentence, 100, initial_indent="  ", subsequent_indent="  "), file=out)
        if info.explicit:
            items = ["the requirements the scenario or step is tagged with (explicit expectations)"]
        else:
            items = [f"{r} ({levels.get(r, '?')})" for r in info.requirements]
        line = "  may report:"
        for n, item in enumerate(items):
            item += "," if n < len(items) - 1 else ""
            if len(line) + 1 + len(item) > 100:
                print(line, file=out)
                line = "   "
            line += " " + item
        print(line, file=out)


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


def _conforming_headline(run: RunResult, strict: bool, stale: list[str]) -> str:
    """CONFORMING, or CONFORMING EXCEPT KNOWN DEVIATIONS (n requirements) when cases failed
    that the known-failing list excuses (the exit code is 0 either way)."""
    from presence_conformance.harness.reports.common import verdict

    return verdict(run, strict=strict, stale_errors=stale).headline


def _print_summary(run: RunResult, strict: bool, stale: list[str], out: TextIO) -> None:
    from presence_conformance.harness.session import area_of, describe_case, printable

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
        print(printable(f"\n{problem}"), file=out)
    if run.partial:
        print(
            printable(f"\nPARTIAL RUN: {run.partial_reason} ({len(run.cases)} case(s) ran)"),
            file=out,
        )


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
        print(_printable("  ".join([*cells, last]).rstrip()), file=out)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "adapter"


def _err(message: str) -> None:
    print(_printable(message), file=sys.stderr, flush=True)


def _printable(text: str) -> str:
    from presence_conformance.harness.session import printable

    return printable(text)


def _args(exc: BaseException) -> str:
    return "(" + ", ".join(repr(a)[:200] for a in exc.args) + ")"


def _is_scenario_error(exc: BaseException) -> bool:
    try:
        from presence_conformance.harness.scenario import ScenarioError
    except ImportError:
        return False
    return isinstance(exc, ScenarioError)


if __name__ == "__main__":
    sys.exit(main())

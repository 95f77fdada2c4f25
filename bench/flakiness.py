"""Flakiness run: the whole suite against `ably-wire`, N times in a row, counting unstable runs.

Run `python bench/flakiness.py [--runs 20] [--adapter ably-wire] [--adapter-option K=V]...
[--keep DIR] [--select PAT]`. The adapter options go to every run's adapter, e.g. the embedded
server of `ably-wire` made to ACK before it broadcasts, with two members per SYNC page (issue 14's
proof that no scenario assumes delivery when the sender's call returns):
`python bench/flakiness.py --runs 20 --adapter-option ack_first=true --adapter-option sync_page_size=2`.
Each run opens a fresh `ConformanceSession` (the same path as `presence-conformance run`: the
adapter on its own loop thread, every case bounded), runs every packaged scenario and, when the
harness has generation (`presence_conformance.harness.generation.run_generation`), the `ci` generation profile too
(one more case, `generated/ci`). Per run it prints the outcome counts and the cases that did not
pass; at the end, the number of runs with any failure (target: zero) and, for each unstable case,
in which runs it failed and how. `--keep DIR` writes every non-passing case's full result
(violations and history) as JSON there, and shrunk generated failures under DIR/generated, as
evidence for the analysis.

`--faults` runs only the transient-disconnect scenarios (those with an `interrupt` step), without
generation: `python bench/flakiness.py --faults --runs 20 --adapter reference`. With an adapter
that has a known-failing list (`harness/expectations/<adapter>.txt`), a case failing as the list
says is expected, not a false failure; a case whose violated requirements differ from one run to
the next is unstable, which is a false failure too.

Exit status: 0 when no run had a false failure, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from presence_conformance.harness.adapters.registry import parse_options, resolve_adapter
from presence_conformance.harness.reports.expectations import KnownFailing
from presence_conformance.harness.results import CaseResult, Outcome, RunResult
from presence_conformance.harness.session import ConformanceSession, load_suite, select_scenarios

BAD = (Outcome.FAIL, Outcome.NON_STRICT, Outcome.ERROR, Outcome.TIMEOUT)


def generation_runner(keep: Path | None) -> Callable[[ConformanceSession], list[CaseResult]] | None:
    """The `ci` generation run (`presence_conformance.harness.generation.run_generation`), or None when the harness
    has no generation. A failing program is shrunk and, with `keep`, saved there."""
    try:
        generation = importlib.import_module("presence_conformance.harness.generation")
    except ImportError:
        return None
    run_generation = getattr(generation, "run_generation", None)
    options_class = getattr(generation, "GenerationOptions", None)
    if run_generation is None or options_class is None:
        return None

    def run(session: ConformanceSession) -> list[CaseResult]:
        options = options_class(profile="ci", failures_dir=keep / "generated" if keep else None)
        result = run_generation(session, options)
        return [result.case]

    return run


def one_run(
    adapter_name: str,
    options: dict[str, str],
    scenarios: list[Any],
    generation: Callable[[ConformanceSession], list[CaseResult]] | None,
) -> RunResult:
    adapter = resolve_adapter(adapter_name, options)
    session = ConformanceSession(adapter, adapter_name, options)
    try:
        run = session.run_all(scenarios)
        if generation is not None and not run.partial:
            run.cases.extend(generation(session))
    finally:
        session.stop()
    return run


def counts(run: RunResult) -> dict[str, int]:
    found = collections.Counter(case.outcome.value for case in run.cases)
    return {
        outcome.value: found.get(outcome.value, 0)
        for outcome in Outcome
        if found.get(outcome.value)
    }


def describe(case: CaseResult) -> str:
    parts = [f"{case.outcome.value} {case.case_id} ({case.duration:.2f}s)"]
    if case.error:
        parts.append(f"error: {case.error.splitlines()[0][:200]}")
    for v in case.violations[:3]:
        parts.append(f"{v.requirement} [{v.check}]: {v.message[:200]}")
    return "\n      ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs in a row (default 20)")
    parser.add_argument("--adapter", default="ably-wire", help="adapter name (default ably-wire)")
    parser.add_argument("--adapter-option", action="append", default=[], metavar="K=V")
    parser.add_argument(
        "--select",
        nargs="*",
        default=None,
        metavar="PATTERN",
        help="only the scenarios matching these patterns",
    )
    parser.add_argument(
        "--faults",
        action="store_true",
        help="only the transient-disconnect scenarios (an `interrupt` step), no generation",
    )
    parser.add_argument(
        "--no-generation",
        action="store_true",
        help="scenarios only, even when generation is available",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="write every non-passing case's result (with history) here",
    )
    args = parser.parse_args(argv)
    options = parse_options(args.adapter_option)
    scenarios = select_scenarios(load_suite(), args.select)
    if args.faults:
        scenarios = [
            s for s in scenarios if any(step.kind == "interrupt" for step in s.iter_steps())
        ]
    known = KnownFailing.for_adapter(args.adapter)
    signatures: dict[str, tuple[str, frozenset[str]]] = {}
    generation = None if (args.no_generation or args.faults) else generation_runner(args.keep)
    print(
        f"flakiness: {args.runs} run(s) of {len(scenarios)} scenario(s)"
        f"{' + ci generation' if generation else ' (no generation available)'} against "
        f"{args.adapter!r}",
        flush=True,
    )
    failed_runs: list[int] = []
    unstable: dict[str, list[tuple[int, CaseResult]]] = collections.defaultdict(list)
    started = time.monotonic()
    for number in range(1, args.runs + 1):
        t0 = time.monotonic()
        run = one_run(args.adapter, options, scenarios, generation)
        bad = []
        for case in run.cases:
            signature = (case.outcome.value, frozenset(v.requirement for v in case.violations))
            first = signatures.setdefault(case.case_id, signature)
            expected = case.outcome in BAD and known.reason_for(case) is not None
            if (case.outcome in BAD and not expected) or signature != first:
                bad.append(case)
        summary = ", ".join(f"{k} {v}" for k, v in counts(run).items())
        print(
            f"run {number:>3}: {len(run.cases)} cases: {summary}"
            f"{' PARTIAL: ' + str(run.partial_reason) if run.partial else ''} "
            f"({time.monotonic() - t0:.1f}s)",
            flush=True,
        )
        for case in bad:
            print(f"    {describe(case)}", flush=True)
            unstable[case.case_id].append((number, case))
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                name = case.case_id.replace("/", "_") + f".run{number}.json"
                (args.keep / name).write_text(json.dumps(case.to_json(), indent=1, default=str))
        if bad or run.partial:
            failed_runs.append(number)
    print(
        f"\n{len(failed_runs)} of {args.runs} run(s) had a false failure"
        f"{': runs ' + ', '.join(map(str, failed_runs)) if failed_runs else ''} "
        f"(target 0; {time.monotonic() - started:.0f}s in all)"
    )
    for case_id, seen in sorted(unstable.items()):
        outcomes = collections.Counter(case.outcome.value for _, case in seen)
        print(
            f"  {case_id}: failed in {len(seen)} run(s) "
            f"({', '.join(f'{k} x{v}' for k, v in outcomes.items())}): runs "
            f"{', '.join(str(n) for n, _ in seen)}"
        )
    return 1 if failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())

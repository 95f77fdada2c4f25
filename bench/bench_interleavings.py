"""Interleavings raise no false alarm: the scenarios under `scenarios/interleave/` (steps issued
without waiting, enters and updates racing on one member, drops whose leaves stay pending,
reconnection of the same clientId within the grace), N times against several adapters.

Run `python bench/bench_interleavings.py [--runs 20] [--adapter NAME]... [--keep DIR]`. The
default adapters are the reference (in-process), `ably-wire` (the harness's own Ably client
against the embedded reference server), `ably-js` and `ably-python` (the official SDKs against
the embedded reference server). Each adapter runs in one `ConformanceSession` (the path of
`presence-conformance run`), the interleaving scenarios `--runs` times in a row, each case on
fresh connections and channels.

A case is a false failure when it does not pass and one of its MUST or SHOULD violations is not
explained by the adapter's known-failing list (`harness/expectations/<adapter>.txt`: a pattern
matching the case ID or the violation's requirement), or when its outcome or the requirements it
violates change from one run to the next. A case failing only with known deviations is counted
apart (`known`). Per adapter it prints runs x cases, the outcomes, the known deviations and the
false failures, each with its first violations; `--keep DIR` writes each false failure's result
(violations and history) as JSON there.

Exit status: 0 when no adapter had a false failure, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from presence_conformance.harness.adapters.registry import parse_options, resolve_adapter
from presence_conformance.harness.reports.expectations import KnownFailing
from presence_conformance.harness.results import CaseResult, Outcome
from presence_conformance.harness.session import ConformanceSession, load_suite, select_scenarios

ADAPTERS = ("reference", "ably-wire", "ably-js", "ably-python")
SELECT = ("interleave/*",)


def unexplained(case: CaseResult, known: KnownFailing) -> list[str]:
    """The MUST/SHOULD requirements `case` violates that the known-failing list does not name
    (the case's outcome when it is an error or a timeout: nothing explains those)."""
    if case.outcome is Outcome.PASS:
        return []
    if case.outcome in (Outcome.ERROR, Outcome.TIMEOUT):
        return [case.outcome.value]
    patterns = [e.pattern for e in known.entries]
    if any(fnmatch.fnmatchcase(case.case_id, p) for p in patterns):
        return []
    return sorted(
        {
            v.requirement
            for v in case.violations
            if v.level != "INFO"
            and not any(fnmatch.fnmatchcase(v.requirement, p) for p in patterns)
        }
    )


def describe(case: CaseResult) -> str:
    parts = [f"{case.outcome.value} {case.case_id} ({case.duration:.2f}s)"]
    if case.error:
        parts.append(f"error: {case.error.splitlines()[0][:200]}")
    for v in [v for v in case.violations if v.level != "INFO"][:4]:
        parts.append(f"{v.requirement} [{v.check}]: {v.message[:240]}")
    return "\n      ".join(parts)


def bench(adapter_name: str, options: dict[str, str], runs: int, keep: Path | None) -> int:
    """Run the interleaving scenarios `runs` times on one adapter; print; return the number of
    false failures."""
    scenarios = select_scenarios(load_suite(), list(SELECT))
    known = KnownFailing.for_adapter(adapter_name)
    adapter = resolve_adapter(adapter_name, options)
    session = ConformanceSession(adapter, adapter_name, options)
    outcomes: collections.Counter[str] = collections.Counter()
    signatures: dict[str, tuple[str, frozenset[str]]] = {}
    false: list[tuple[int, CaseResult, list[str]]] = []
    known_cases = 0
    started = time.monotonic()
    try:
        for number in range(1, runs + 1):
            before = len(session.run_result.cases)  # the session keeps every run's cases
            run = session.run_all(scenarios)
            for case in run.cases[before:]:
                outcomes[case.outcome.value] += 1
                signature = (
                    case.outcome.value,
                    frozenset(v.requirement for v in case.violations if v.level != "INFO"),
                )
                first = signatures.setdefault(case.case_id, signature)
                reasons = unexplained(case, known)
                if signature != first and not reasons:
                    reasons = ["unstable: " + ", ".join(sorted(signature[1])) or signature[0]]
                if reasons:
                    false.append((number, case, reasons))
                    if keep is not None:
                        keep.mkdir(parents=True, exist_ok=True)
                        name = f"{adapter_name}.{case.case_id.replace('/', '_')}.run{number}.json"
                        (keep / name).write_text(json.dumps(case.to_json(), indent=1, default=str))
                elif case.outcome is not Outcome.PASS:
                    known_cases += 1
            if run.partial:
                print(f"  {adapter_name}: run {number} partial: {run.partial_reason}")
                break
    finally:
        session.stop()
    total = sum(outcomes.values())
    summary = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    print(
        f"{adapter_name:<12} {runs} runs x {len(scenarios)} cases = {total}: {summary}; "
        f"known deviations {known_cases}; false failures {len(false)} "
        f"({time.monotonic() - started:.0f}s)",
        flush=True,
    )
    for number, case, reasons in false:
        print(f"    run {number}: {', '.join(reasons)}\n      {describe(case)}", flush=True)
    return len(false)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per adapter (default 20)")
    parser.add_argument(
        "--adapter",
        action="append",
        default=None,
        help=f"adapter (repeatable; default: {', '.join(ADAPTERS)})",
    )
    parser.add_argument("--adapter-option", action="append", default=[], metavar="K=V")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write false failures here")
    args = parser.parse_args(argv)
    options = parse_options(args.adapter_option)
    adapters = args.adapter or list(ADAPTERS)
    cases = len(select_scenarios(load_suite(), list(SELECT)))
    print(f"interleavings: {args.runs} run(s) of {cases} scenario(s) on {', '.join(adapters)}")
    false = sum(bench(name, options, args.runs, args.keep) for name in adapters)
    print(f"\nfalse failures in all: {false} (target 0)")
    return 1 if false else 0


if __name__ == "__main__":
    sys.exit(main())

"""False alarms on other correct servers: the packaged suite against each conforming variant of
the embedded reference server (`reference_impl/server/variants.py`), singly and all at once,
N times each with a different seed.

Run `python bench/server_variants.py [--runs 3] [--adapter ably-wire] [--variant NAME]...
[--leave-grace S]... [--select PAT]... [--adapter-option K=V]...`. Each configuration is one
`ConformanceSession` per run (the path of `presence-conformance run`), with
`server_variants=<names>` and `variant_seed=<run number>`; `--leave-grace` adds
configurations with no variant and another leave grace (the harness is told it). A case that
fails, errs or times out (and is not on the adapter's known-failing list) is a false failure:
every variant is behaviour the Ably specification allows. Non-strict cases (SHOULDs only) are
listed apart: `history-pages` makes `history.full-pages` non-strict by design (a short page is
allowed, RSP4b3, but not expected).

Exit status: 0 when no configuration had a false failure, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from presence_conformance.harness.adapters.registry import parse_options, resolve_adapter
from presence_conformance.harness.reports.expectations import KnownFailing
from presence_conformance.harness.results import CaseResult, Outcome, RunResult
from presence_conformance.harness.session import ConformanceSession, load_suite, select_scenarios
from presence_conformance.reference_impl.server.variants import VARIANTS

BAD = (Outcome.FAIL, Outcome.ERROR, Outcome.TIMEOUT)


def one_run(adapter_name: str, options: dict[str, str], scenarios: list) -> RunResult:
    adapter = resolve_adapter(adapter_name, options)
    session = ConformanceSession(adapter, adapter_name, options)
    try:
        return session.run_all(scenarios)
    finally:
        session.stop()


def describe(case: CaseResult) -> str:
    parts = [f"{case.outcome.value} {case.case_id} ({case.duration:.2f}s)"]
    if case.error:
        parts.append(f"error: {case.error.splitlines()[0][:200]}")
    for v in case.violations[:3]:
        parts.append(f"{v.requirement} [{v.check}]: {v.message[:200]}")
    return "\n      ".join(parts)


def configurations(
    variants: list[str], graces: list[str], combined: bool
) -> list[tuple[str, dict[str, str]]]:
    """(label, adapter options without the seed) for each configuration to run."""
    out = [(name, {"server_variants": name}) for name in variants]
    if combined and len(variants) > 1:
        out.append(("all:" + ",".join(variants), {"server_variants": ",".join(variants)}))
    out.extend((f"leave_grace={g}", {"leave_grace": g}) for g in graces)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration (default 3)")
    parser.add_argument("--adapter", default="ably-wire", help="adapter (default ably-wire)")
    parser.add_argument("--adapter-option", action="append", default=[], metavar="K=V")
    parser.add_argument(
        "--variant",
        action="append",
        choices=sorted(VARIANTS),
        help="only these variants (repeatable; default: every one)",
    )
    parser.add_argument(
        "--no-combined", action="store_true", help="skip the run with all variants at once"
    )
    parser.add_argument(
        "--leave-grace",
        action="append",
        default=[],
        metavar="S",
        help="also run with no variant and this leave grace (repeatable), e.g. 0.5 1.0",
    )
    parser.add_argument("--select", nargs="*", default=None, metavar="PATTERN")
    args = parser.parse_args(argv)
    base = parse_options(args.adapter_option)
    scenarios = select_scenarios(load_suite(), args.select)
    known = KnownFailing.for_adapter(args.adapter)
    variants = args.variant or sorted(VARIANTS)
    configs = configurations(variants, args.leave_grace, not args.no_combined)
    print(
        f"server variants: {len(configs)} configuration(s) x {args.runs} run(s) of "
        f"{len(scenarios)} scenario(s) against {args.adapter!r}",
        flush=True,
    )
    started = time.monotonic()
    false_failures: dict[str, list[tuple[int, CaseResult]]] = collections.defaultdict(list)
    non_strict: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for label, config in configs:
        for number in range(1, args.runs + 1):
            options = {**base, **config}
            if "server_variants" in config:
                options["variant_seed"] = str(number)
            t0 = time.monotonic()
            run = one_run(args.adapter, options, scenarios)
            bad = [c for c in run.cases if c.outcome in BAD and known.reason_for(c) is None]
            for case in run.cases:
                if case.outcome is Outcome.NON_STRICT:
                    for v in case.violations:
                        non_strict[label][v.requirement] += 1
            found = collections.Counter(c.outcome.value for c in run.cases)
            print(
                f"{label:<40} seed {number}: "
                + ", ".join(f"{k} {v}" for k, v in sorted(found.items()))
                + (f" PARTIAL: {run.partial_reason}" if run.partial else "")
                + f" ({time.monotonic() - t0:.1f}s)",
                flush=True,
            )
            for case in bad:
                print(f"    {describe(case)}", flush=True)
                false_failures[label].append((number, case))
            if run.partial and not bad:
                false_failures[label].append((number, run.cases[-1] if run.cases else None))  # type: ignore[arg-type]
    total = sum(len(v) for v in false_failures.values())
    print(
        f"\n{total} false failure(s) in {len(configs) * args.runs} run(s) "
        f"(target 0; {time.monotonic() - started:.0f}s in all)"
    )
    for label, seen in sorted(false_failures.items()):
        print(
            f"  {label}: " + ", ".join(f"seed {n} {c.case_id if c else 'partial'}" for n, c in seen)
        )
    for label, requirements in sorted(non_strict.items()):
        print(
            f"  non-strict under {label}: "
            + ", ".join(f"{r} x{n}" for r, n in requirements.items())
        )
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())

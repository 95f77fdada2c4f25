"""Benchmark of the time to verdict: every shipped mutant and the reference, with the waiting
budgets of harness 0.1 ("before": every wait bounded by `op_timeout`) and with the current ones
("after": `RunSettings.wait_timeout`, settling on `quiesce()`), side by side, and proof that the
verdicts did not change.

Run `python bench/bench_verdict.py [--adapters GLOB ...] [--jobs N] [--no-before]
[--baseline DIR] [--json FILE]`.

Each (adapter, budgets) pair is a full run of the packaged scenarios, as `presence-conformance run
--adapter NAME` does it (default settings and adapter options), in a process of its own: first
the runs with the current budgets, `--after-jobs` at a time (their time is the measurement), then
the runs with the old budgets, `--jobs` at a time (they mostly wait, so more jobs than CPUs is
fine). Printed per adapter: the seconds
of the run before and after, their ratio, and whether every case has the same outcome and the
same violated requirement IDs in both runs. Adapters given with `--baseline DIR` (ably-wire,
ably-js, ably-python: runs too slow to repeat "before") are compared with `DIR/NAME/results.json`,
a run of theirs made with the old budgets.

Targets: no mutant's run over 30 s after; the reference's run not slower; no verdict changed.
Exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_MUTANT_SECONDS = 30.0


def _verdicts(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """case id -> [outcome, sorted violated requirement IDs (MUST and SHOULD)]."""
    return {
        c["case_id"]: [c["outcome"], sorted({v["requirement"] for v in c.get("violations", [])})]
        for c in cases
    }


def run_one(adapter: str, mode: str) -> dict[str, Any]:
    """One full run (in this process): seconds and verdicts."""
    from presence_conformance.harness.adapters.registry import resolve_adapter
    from presence_conformance.harness.run.settings import RunSettings
    from presence_conformance.harness.session import ConformanceSession, load_suite

    settings = RunSettings.legacy_budgets() if mode == "before" else RunSettings()
    session = ConformanceSession(
        resolve_adapter(adapter, {}), adapter_name=adapter, options={}, settings=settings
    )
    suite = load_suite()
    started = time.monotonic()
    try:
        cases = [session.run_case(s).to_json() for s in suite]
    finally:
        session.stop()
    return {"seconds": time.monotonic() - started, "verdicts": _verdicts(cases)}


def _child(adapter: str, mode: str, timeout: float | None = None) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", adapter, "--mode", mode],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:g}s", "over": timeout}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-2000:] or f"exit {proc.returncode}"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _baseline(directory: Path, adapter: str) -> dict[str, Any] | None:
    path = directory / adapter / "results.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    seconds = (data.get("finished") or 0) - (data.get("started") or 0)
    return {"seconds": seconds, "verdicts": _verdicts(data["cases"]), "from": str(path)}


def _differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    out = []
    for case_id in sorted(before.keys() | after.keys()):
        a, b = before.get(case_id), after.get(case_id)
        if a != b:
            out.append(f"{case_id}: {a} -> {b}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapters", nargs="*", default=None, help="fnmatch patterns")
    parser.add_argument("--jobs", type=int, default=16, help="parallel runs with the old budgets")
    parser.add_argument("--after-jobs", type=int, default=2, help="parallel runs, new budgets")
    parser.add_argument(
        "--before-timeout",
        type=float,
        default=None,
        help="give up on a run with the old budgets after S seconds (reported as > S; its "
        "verdicts are then not compared)",
    )
    parser.add_argument("--no-before", action="store_true", help="only the current budgets")
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--baseline-adapters", nargs="*", default=[])
    parser.add_argument(
        "--also", nargs="*", default=[], help="more adapters to run before and after"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="after", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.mode)))
        return 0

    from presence_conformance.harness.mutants import MUTANTS

    names = ["reference"] + [f"mutant:{m}" for m in sorted(MUTANTS)]
    if args.adapters:
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in args.adapters)]
    names += list(args.also)
    started = time.monotonic()
    done: dict[tuple[str, str], dict[str, Any]] = {}
    # the short "after" runs first, few at a time (their seconds are the measurement), then the
    # long "before" runs, which mostly wait, many at a time
    after = [(n, "after") for n in names + list(args.baseline_adapters)]
    before = [] if args.no_before else [(n, "before") for n in names]
    phases = ((after, args.after_jobs, None), (before, args.jobs, args.before_timeout))
    for jobs, width, limit in phases:
        with ThreadPoolExecutor(max(1, width)) as pool:
            results = pool.map(lambda j, limit=limit: _child(*j, timeout=limit), jobs)
            done.update(zip(jobs, results, strict=True))
    rows = []
    failed = False
    for name in names + list(args.baseline_adapters):
        after = done[(name, "after")]
        if name in args.baseline_adapters:
            before = _baseline(args.baseline, name) if args.baseline else None
        else:
            before = done.get((name, "before"))
        row: dict[str, Any] = {"adapter": name, "after": after, "before": before}
        if before is not None and "over" in before:
            row["before"] = before = None
            row["before_over"] = after.get("over") or args.before_timeout
        if "error" in after or (before and "error" in before):
            row["problem"] = (after.get("error") or before.get("error") or "")[-300:]  # type: ignore[union-attr]
            failed = True
        else:
            if before is not None:
                row["differences"] = _differences(before["verdicts"], after["verdicts"])
                failed |= bool(row["differences"])
            slow = name.startswith("mutant:") and after["seconds"] > TARGET_MUTANT_SECONDS
            failed |= slow
        rows.append(row)
    print(f"{'ADAPTER':44} {'BEFORE s':>9} {'AFTER s':>8} {'RATIO':>7}  VERDICTS")
    for row in rows:
        after, before = row["after"], row["before"]
        if "problem" in row:
            print(f"{row['adapter']:44} ERROR {row['problem']}")
            continue
        over = row.get("before_over")
        b = (
            f"{before['seconds']:9.1f}"
            if before
            else f"{'>' + format(over, 'g'):>9}"
            if over
            else f"{'-':>9}"
        )
        ratio = (
            f"{before['seconds'] / after['seconds']:6.1f}x"
            if before and after["seconds"] > 0
            else f"{'>' + format(over / after['seconds'], '.0f'):>6}x"
            if over and after["seconds"] > 0
            else f"{'-':>7}"
        )
        same = (
            "unchecked"
            if before is None
            else "same"
            if not row["differences"]
            else f"CHANGED ({len(row['differences'])})"
        )
        print(f"{row['adapter']:44} {b} {after['seconds']:8.1f} {ratio}  {same}")
        for line in row.get("differences", [])[:10]:
            print(f"    {line}")
    mutants = [r for r in rows if r["adapter"].startswith("mutant:") and "problem" not in r]
    if mutants:
        slowest = max(mutants, key=lambda r: r["after"]["seconds"])
        print(
            f"\nslowest mutant after: {slowest['adapter']} {slowest['after']['seconds']:.1f}s "
            f"(target <= {TARGET_MUTANT_SECONDS:g}s); "
            f"total before {sum((r['before'] or {}).get('seconds', 0) for r in mutants):.0f}s, "
            f"after {sum(r['after']['seconds'] for r in mutants):.0f}s; "
            f"wall {time.monotonic() - started:.0f}s"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print("TARGETS MET" if not failed else "TARGETS MISSED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

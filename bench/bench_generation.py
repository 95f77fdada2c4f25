"""Benchmark of generation: how fast generated programs find each mutant, how short the shrunk
failure is, and how many generated programs per second run against the reference.

Run `python bench/bench_generation.py [--quick] [--mutants GLOB] [--budget N] [--profile]`.

Part 1, per mutant (`presence_conformance.harness.mutants`): generation alone (no scenario
files), the `dev` profile's 200 programs of up to 20 steps from the seed the mutant test uses
(`GENERATION_SEED`; reproducible), until the first failing program; then Hypothesis shrinks it
(bounded: docs/generation.md, "Shrinking that stays fast"; `--legacy-shrink` shrinks as
before) and the minimal program is written and replayed from its file. Printed: the programs
and seconds to the first detection, the violated requirements, the steps of the first failing
program and of the shrunk one, the shrink time, the time from the start to the shrunk failure,
the shrink candidates cut short by the program budget, and whether the saved file replayed to
the same failure.

Part 2, against `reference`: generated programs of exactly 20 steps per second, end to end
(Hypothesis draws, `scenario_from_dict` validates, the runner runs and the checks judge), and
beside it the same work split into its parts, each measured alone: drawing programs, loading
them, running them (driver and checks).

Part 2 also runs the same end-to-end generation split over `--workers` processes
(`generate --workers N`, default 2: one process uses one CPU core), the processes' start
included, side by side with the one-process figure.

Part 2 also measures the validator of generated documents: end to end with the compiled
validator (fastjsonschema, what generation uses) and with jsonschema alone (before it), and the
schema pass alone per program with each.

The summary line sets the measurements beside the targets: every mutant detected; median time
to detect < 5 s; shrunk program <= 8 steps for >= 90% of mutants; time from the start to a
shrunk failure: median < 5 s and max < 60 s; >= 80 programs/s; >= 90% of all mutants, old and
new (marked `(new)`), caught by generation alone (with the default budget and seed, the figure
`tests/harness/mutants/test_generation_alone.py` checks). Nothing is asserted: this prints
ratios and measurements only.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import fnmatch
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.generation import (
    GenerationConfig,
    GenerationOptions,
    programs,
    run_generation,
)
from presence_conformance.harness.generation.profiles import PROFILES
from presence_conformance.harness.mutant_detection import (
    ADAPTER_OPTIONS,
    GENERATION_PROFILE,
    GENERATION_SEED,
    detect,
)
from presence_conformance.harness.mutants import MUTANTS, REGISTRY
from presence_conformance.harness.run.runner import RunSettings, run_scenario
from presence_conformance.harness.scenario import scenario_from_dict
from presence_conformance.harness.session import ConformanceSession

TARGET_MEDIAN_SECONDS = 5.0
TARGET_SHORT_STEPS = 8
TARGET_SHORT_SHARE = 0.9
TARGET_PROGRAMS_PER_SECOND = 80.0
TARGET_GENERATION_SHARE = 0.9  # of all mutants, old and new, found by generation alone
TARGET_SHRUNK_MEDIAN = 5.0  # seconds from the start to a shrunk failure, median over mutants
TARGET_SHRUNK_MAX = 60.0  # ... and the slowest mutant


def _settings(op_timeout: float) -> RunSettings:
    return RunSettings(op_timeout=op_timeout, quiet_period=0.02)


def bench_mutants(
    names: list[str],
    budget: int,
    seed: int,
    op_timeout: float,
    out_dir: Path,
    shrink: bool = True,
    legacy_shrink: bool = False,
) -> list[dict[str, Any]]:
    rows = []
    header = (
        f"{'mutant':<44}{'found':>6}{'programs':>9}{'detect s':>9}{'first':>6}"
        f"{'shrunk':>7}{'shrink s':>9}{'to min s':>9}{'cut':>5}{'replay':>7}  requirements"
    )
    extra: dict[str, Any] = (
        {"shrink_seconds": None, "program_budget": float("inf"), "reuse": False}
        if legacy_shrink
        else {}
    )
    print(header)
    print("-" * len(header))
    for name in names:
        found = detect(
            name,
            (),
            profile="dev",
            examples=budget,
            shrink=shrink,
            seed=seed,
            failures_dir=out_dir / name if shrink else None,
            settings=_settings(op_timeout),
            generation_options=extra,
        )
        gen = found.generation
        failure = gen.failure if gen is not None else None
        row = {
            "mutant": name,
            "detected": found.detected,
            "programs": gen.programs_to_first_failure if gen else None,
            "seconds": gen.time_to_first_failure if gen else None,
            "first_steps": failure.first_steps if failure else None,
            "steps": failure.steps if failure else None,
            "shrink_seconds": gen.shrink_seconds if failure else None,
            # from the start of generation to the shrunk failure (before saving and replaying)
            "to_shrunk": gen.time_to_first_failure + gen.shrink_seconds
            if failure and gen.time_to_first_failure is not None and gen.shrink_seconds
            else None,
            "cut_short": gen.cut_short if gen else 0,
            "replayed": failure.replay_confirmed if failure else None,
            "requirements": failure.requirements if failure else [],
            "total_programs": gen.programs if gen else 0,
        }
        rows.append(row)

        def cell(value: Any, fmt: str) -> str:
            return "-" if value is None else format(value, fmt)

        replay = {True: "same", False: "DIFF", None: "-"}[row["replayed"]]
        print(
            f"{name + (' (new)' if name in NEW_MUTANTS else ''):<44}"
            f"{'yes' if row['detected'] else 'NO':>6}"
            f"{cell(row['programs'], 'd'):>9}{cell(row['seconds'], '.2f'):>9}"
            f"{cell(row['first_steps'], 'd'):>6}{cell(row['steps'], 'd'):>7}"
            f"{cell(row['shrink_seconds'], '.1f'):>9}{cell(row['to_shrunk'], '.1f'):>9}"
            f"{row['cut_short']:>5}{replay:>7}  "
            f"{', '.join(row['requirements'][:3]) or '-'}",
            flush=True,
        )
    return rows


NEW_MUTANTS = frozenset(
    name for name, cls in REGISTRY.items() if cls.__module__.endswith(".mutants.varied")
)
"""The mutants of varied-data bugs (ids, filters across members, timestamps, data edges),
marked `(new)` in the table."""

THROUGHPUT_OPTIONS = {"leave_grace": "0.001"}
"""The reference for the throughput: a dropped connection's members leave after 1 ms, so a drop
costs the harness's own work, not a grace period (the default 0.2 s would dominate)."""


def _throughput_config() -> GenerationConfig:
    """The shape `run_generation` gives the throughput's programs (the reference's features and
    grace): the parts measured alone are measured on the same kind of programs."""
    adapter = ReferenceAdapter(dict(THROUGHPUT_OPTIONS))
    return GenerationConfig(
        min_steps=20,
        max_steps=20,
        features=frozenset(adapter.features),
        leave_grace=float(THROUGHPUT_OPTIONS["leave_grace"]),
    )


def _generation_per_second(examples: int, op_timeout: float) -> tuple[int, float]:
    """(programs, seconds) of one end-to-end generation run of 20-step programs."""
    options = GenerationOptions(
        profile="dev",
        examples=examples,
        seed=1,
        min_steps=20,
        max_steps=20,
        use_database=False,
        failures_dir=None,
    )
    session = ConformanceSession(
        ReferenceAdapter(dict(THROUGHPUT_OPTIONS)),
        "reference",
        options=dict(THROUGHPUT_OPTIONS),
        settings=_settings(op_timeout),
    )
    started = time.perf_counter()
    result = run_generation(session, options)
    elapsed = time.perf_counter() - started
    session.stop()
    return result.programs, elapsed


def bench_workers(examples: int, op_timeout: float, workers: int) -> dict[str, float]:
    """Programs/s end to end with the budget split over `workers` processes (their start
    included), and the one-process rate measured just before it, side by side."""
    from presence_conformance.harness.cli.workers import WorkerAdapter, run_generation_workers

    programs_run, elapsed = _generation_per_second(examples, op_timeout)
    out = {"one": programs_run / elapsed}
    options = GenerationOptions(
        profile="dev",
        seed=1,
        min_steps=20,
        max_steps=20,
        use_database=False,
        failures_dir=None,
    )
    adapter = WorkerAdapter("reference", dict(THROUGHPUT_OPTIONS), _settings(op_timeout))
    started = time.perf_counter()
    result = run_generation_workers(adapter, options, workers, examples)
    out["workers"] = result.programs / (time.perf_counter() - started)
    return out


def bench_validators(examples: int, op_timeout: float) -> dict[str, float]:
    """Programs/s end to end with the compiled validator (what generation uses) and with
    jsonschema alone (before it: the compiled one switched off), and the schema pass alone per
    program with each."""
    from presence_conformance.harness.scenario import rules

    out: dict[str, float] = {}
    programs_run, elapsed = _generation_per_second(examples, op_timeout)
    out["compiled"] = programs_run / elapsed
    original = rules.valid_compiled
    rules.valid_compiled = lambda obj: False  # type: ignore[assignment] # every document to jsonschema
    try:
        programs_run, elapsed = _generation_per_second(examples, op_timeout)
    finally:
        rules.valid_compiled = original  # type: ignore[assignment]
    out["jsonschema"] = programs_run / elapsed

    from hypothesis import HealthCheck, given, settings

    docs: list[dict[str, Any]] = []

    @settings(
        max_examples=examples, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(programs(_throughput_config()))
    def draw(doc: dict[str, Any]) -> None:
        docs.append(doc)

    draw()
    validator = rules._validator()
    rules.compiled_validator()  # compiled once, outside the measurement
    started = time.perf_counter()
    for doc in docs:
        rules.valid_compiled(doc)
    out["compiled_ms"] = 1000 * (time.perf_counter() - started) / max(len(docs), 1)
    started = time.perf_counter()
    for doc in docs:
        any(True for _ in validator.iter_errors(doc))
    out["jsonschema_ms"] = 1000 * (time.perf_counter() - started) / max(len(docs), 1)
    return out


def bench_throughput(examples: int, op_timeout: float, profile_run: bool) -> dict[str, float]:
    """Generated 20-step programs per second against reference, end to end and by part."""
    config = _throughput_config()
    options = GenerationOptions(
        profile="dev",
        examples=examples,
        seed=1,
        min_steps=20,
        max_steps=20,
        use_database=False,
        failures_dir=None,
    )
    session = ConformanceSession(
        ReferenceAdapter(dict(THROUGHPUT_OPTIONS)),
        "reference",
        options=dict(THROUGHPUT_OPTIONS),
        settings=_settings(op_timeout),
    )
    profiler = cProfile.Profile() if profile_run else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    result = run_generation(session, options)
    if profiler:
        profiler.disable()
    end_to_end = time.perf_counter() - started
    session.stop()
    out = {
        "programs": result.programs,
        "end_to_end": end_to_end,
        "per_second": result.programs / end_to_end,
        "failures": float(result.failed),
    }

    # the parts, each alone, on programs drawn the same way
    from hypothesis import HealthCheck, given, settings

    docs: list[dict[str, Any]] = []

    @settings(
        max_examples=examples, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(programs(config))
    def draw(doc: dict[str, Any]) -> None:
        docs.append(doc)

    started = time.perf_counter()
    draw()
    out["draw"] = (time.perf_counter() - started) / max(len(docs), 1)
    started = time.perf_counter()
    scenarios = [scenario_from_dict(d, case_id="generated/bench", compiled=True) for d in docs]
    out["load"] = (time.perf_counter() - started) / max(len(docs), 1)

    async def run_all() -> float:
        adapter = ReferenceAdapter(dict(THROUGHPUT_OPTIONS))
        await adapter.start()
        begun = time.perf_counter()
        for scenario in scenarios:
            await run_scenario(scenario, adapter, _settings(op_timeout))
        elapsed = time.perf_counter() - begun
        await adapter.stop()
        return elapsed

    out["run"] = asyncio.run(run_all()) / max(len(scenarios), 1)
    out["steps"] = statistics.mean(len(d["steps"]) for d in docs) if docs else 0.0
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        out["profile"] = text.getvalue()  # type: ignore[assignment]
    return out


def bench_wire(globs: list[str]) -> int:
    """Generation alone over ably-wire, per family: the client-map mutants
    (`generation_alone_client_map`, `WIRE_EXAMPLES` programs each, the unbroken client first)
    and the server-frame mutants (`generation_alone`, the dev profile's 200 programs, as in
    `tests/harness/mutants/test_generation_alone.py`). Prints the figure per family."""
    from presence_conformance.harness.mutant_detection import (
        generation_alone,
        generation_alone_client_map,
    )
    from presence_conformance.harness.mutants import get_mutant
    from presence_conformance.harness.mutants.base import ServerMutantAdapter
    from presence_conformance.harness.mutants.client_map import CLIENT_MAP_MUTANTS

    def wanted(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, g) for g in globs)

    families = {
        "client-map": [n for n in sorted(CLIENT_MAP_MUTANTS) if wanted(n)],
        "server-frame": [
            n for n in MUTANTS if issubclass(get_mutant(n), ServerMutantAdapter) and wanted(n)
        ],
    }
    unbroken = generation_alone_client_map("oracle")
    print(
        f"unbroken client (ably-wire, client-side oracle): {unbroken.programs_run} programs, "
        f"{unbroken.outcomes} ({unbroken.elapsed:.1f}s)",
        flush=True,
    )
    for family, names in families.items():
        caught = 0
        for name in names:
            if family == "client-map":
                found = generation_alone_client_map(name)
            else:
                found = generation_alone(name)
            caught += found.detected
            why = sorted({v.requirement for v in found.case.violations}) if found.case else []
            print(
                f"  {family:<12} {name:<36} {'caught' if found.detected else 'MISSED':<7}"
                f" after {found.programs_run:>3} programs ({found.elapsed:5.1f}s) {why[:3]}",
                flush=True,
            )
        print(f"{family}: generation alone catches {caught} of {len(names)}\n", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 5 mutants, 60 programs for the throughput",
    )
    parser.add_argument(
        "--mutants",
        metavar="GLOB[,GLOB...]",
        default="*",
        help="only mutants whose name matches one of these (fnmatch)",
    )
    parser.add_argument(
        "--budget",
        metavar="N",
        type=int,
        default=PROFILES[GENERATION_PROFILE].max_examples,
        help="most programs to try per mutant (default: the dev profile's "
        f"{PROFILES[GENERATION_PROFILE].max_examples})",
    )
    parser.add_argument(
        "--seed",
        metavar="N",
        type=int,
        default=GENERATION_SEED,
        help=f"seed of the generated programs (default {GENERATION_SEED}, the mutant test's)",
    )
    parser.add_argument(
        "--op-timeout",
        metavar="S",
        type=float,
        default=0.5,
        help="seconds an operation may take (default 0.5)",
    )
    parser.add_argument(
        "--examples",
        metavar="N",
        type=int,
        default=300,
        help="20-step programs for the throughput (default 300)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of the end-to-end throughput run"
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=2,
        help="worker processes for the split throughput run (default 2; 1: skip it)",
    )
    parser.add_argument(
        "--no-shrink",
        action="store_true",
        help="stop at each mutant's first failing program (whether generation catches it)",
    )
    parser.add_argument(
        "--legacy-shrink",
        action="store_true",
        help="shrink as before: no shrink time limit, no program budget, every candidate run "
        "(to compare shrink times)",
    )
    parser.add_argument(
        "--wire",
        action="store_true",
        help="only the ably-wire families, generation alone with server steps: the client-map "
        "mutants (and the unbroken client, which must pass) and the server-frame mutants",
    )
    parser.add_argument(
        "--no-validators",
        action="store_true",
        help="skip the compiled-versus-jsonschema throughput comparison",
    )
    args = parser.parse_args(argv)
    if args.wire:
        return bench_wire(args.mutants.split(","))
    globs = args.mutants.split(",")
    names = [n for n in MUTANTS if any(fnmatch.fnmatchcase(n, g) for g in globs)]
    examples = args.examples
    if args.quick:
        names, examples = names[:5], min(examples, 60)
    print(
        f"generation benchmark: {len(names)} mutant(s), budget {args.budget} programs each, "
        f"seed {args.seed}, op timeout {args.op_timeout:g}s; adapter options {ADAPTER_OPTIONS}\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench-generation-") as tmp:
        rows = bench_mutants(
            names,
            args.budget,
            args.seed,
            args.op_timeout,
            Path(tmp),
            not args.no_shrink,
            args.legacy_shrink,
        )
    print(
        f"\nthroughput against reference {THROUGHPUT_OPTIONS} (programs of exactly 20 steps):",
        flush=True,
    )
    speed = bench_throughput(examples, args.op_timeout, args.profile)
    parts = speed["draw"] + speed["load"] + speed["run"]
    print(
        f"  end to end : {speed['per_second']:7.1f} programs/s  "
        f"({speed['programs']:.0f} programs in {speed['end_to_end']:.2f}s, "
        f"{1000 * speed['end_to_end'] / max(speed['programs'], 1):.1f} ms each)"
    )
    for part, label in (
        ("draw", "draw (Hypothesis + compile)"),
        ("load", "load (scenario_from_dict)"),
        ("run", "run (driver + checks)"),
    ):
        print(
            f"  {label:<28}: {1000 * speed[part]:6.1f} ms/program "
            f"({100 * speed[part] / parts:4.1f}% of the parts)"
        )
    print(f"  mean steps per program: {speed['steps']:.1f}")
    split: dict[str, float] = {}
    if args.workers > 1:
        split = bench_workers(examples, args.op_timeout, args.workers)
        print(
            f"  split over {args.workers} worker processes (generate --workers), side by side:\n"
            f"    one process        : {split['one']:7.1f} programs/s\n"
            f"    {args.workers} workers          : {split['workers']:7.1f} programs/s "
            f"(their start included; {split['workers'] / split['one']:.2f}x)"
        )
    validators: dict[str, float] = {}
    if not args.no_validators:
        validators = bench_validators(examples, args.op_timeout)
        print(
            "  validator of generated documents (end to end, programs/s; schema pass alone):\n"
            f"    before, jsonschema : {validators['jsonschema']:7.1f} programs/s  "
            f"({validators['jsonschema_ms']:.2f} ms/program)\n"
            f"    after, compiled    : {validators['compiled']:7.1f} programs/s  "
            f"({validators['compiled_ms']:.2f} ms/program)"
        )
    if "profile" in speed:
        print(speed["profile"])

    detected = [r for r in rows if r["detected"]]
    times = [r["seconds"] for r in detected if r["seconds"] is not None]
    median = statistics.median(times) if times else float("nan")
    short = [r for r in detected if r["steps"] is not None and r["steps"] <= TARGET_SHORT_STEPS]
    share = len(short) / len(rows) if rows else 0.0
    steps = [r["steps"] for r in detected if r["steps"] is not None]
    replayed = sum(1 for r in detected if r["replayed"])

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print("\nsummary                                   measured        target")
    print(
        f"  mutants detected                        {len(detected):>3}/{len(rows):<3}"
        f"          all        {verdict(len(detected) == len(rows))}"
    )
    print(
        f"  median time to detect                   {median:7.2f} s       < "
        f"{TARGET_MEDIAN_SECONDS:g} s      {verdict(median < TARGET_MEDIAN_SECONDS)}"
    )
    if args.no_shrink:
        print("  shrunk to <= 8 steps: not measured (--no-shrink)")
    else:
        print(
            f"  shrunk to <= {TARGET_SHORT_STEPS} steps                    {100 * share:6.1f} %"
            f"        >= {100 * TARGET_SHORT_SHARE:g} %     {verdict(share >= TARGET_SHORT_SHARE)}"
        )
    print(
        f"  20-step programs/s against reference    {speed['per_second']:7.1f}         >= "
        f"{TARGET_PROGRAMS_PER_SECOND:g}       "
        f"{verdict(speed['per_second'] >= TARGET_PROGRAMS_PER_SECOND)}"
    )
    if split:
        print(
            f"  ... with {args.workers} worker processes           {split['workers']:7.1f}         >= "
            f"{TARGET_PROGRAMS_PER_SECOND:g}       "
            f"{verdict(split['workers'] >= TARGET_PROGRAMS_PER_SECOND)}"
        )
    share_found = len(detected) / len(rows) if rows else 0.0
    new_rows = [r for r in rows if r["mutant"] in NEW_MUTANTS]
    print(
        f"  caught by generation alone              {100 * share_found:6.1f} %"
        f"        >= {100 * TARGET_GENERATION_SHARE:g} %     "
        f"{verdict(share_found >= TARGET_GENERATION_SHARE)}"
        f"  (new mutants: {sum(1 for r in new_rows if r['detected'])}/{len(new_rows)})"
    )
    to_shrunk = [r["to_shrunk"] for r in detected if r["to_shrunk"] is not None]
    if to_shrunk and not args.no_shrink:
        median_shrunk, max_shrunk = statistics.median(to_shrunk), max(to_shrunk)
        print(
            f"  time to a shrunk failure, median         {median_shrunk:7.2f} s       < "
            f"{TARGET_SHRUNK_MEDIAN:g} s      {verdict(median_shrunk < TARGET_SHRUNK_MEDIAN)}"
        )
        print(
            f"  time to a shrunk failure, max            {max_shrunk:7.2f} s       < "
            f"{TARGET_SHRUNK_MAX:g} s     {verdict(max_shrunk < TARGET_SHRUNK_MAX)}"
            f"  ({sum(r['cut_short'] for r in rows)} candidate(s) cut short by the budget)"
        )
    if steps and not args.no_shrink:
        print(
            f"  shrunk steps: median {statistics.median(steps):g}, max {max(steps)}; "
            f"saved files replaying to the same failure: {replayed}/{len(detected)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

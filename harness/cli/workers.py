"""Generation split across worker processes on one machine (`generate --workers N`).

Hypothesis runs one program at a time, and in one process the program's run (the runner, the
checks, an in-process implementation) and Hypothesis' draws share one interpreter lock: a
generation run uses one CPU core. `run_generation_workers` starts `workers` processes, each with
its own adapter (`resolve_adapter`, the name and options of the command line) and its own
`ConformanceSession`, and splits the budget. The processes are forked when that is safe (Linux,
and the caller runs no other thread: nothing half-held is inherited; a fork starts in
milliseconds where a spawned interpreter imports the harness again, ~1 s), else spawned:

- worker `i` runs `examples / workers` programs (the first ones take the remainder), from seed
  `seed + i` (the same `--seed` and `--workers` give the same programs). Without a seed the
  parent picks the base seed (the `ci` profile's fixed one for `ci`, a random one otherwise:
  forked workers would all inherit one random state) and keeps the example database the
  unseeded run would have used; `GenerationResult.seed` is that base;
- all workers share the example database (a directory or Redis: Hypothesis' databases are safe
  to share), so each replays first every failure any earlier run found;
- the first worker to find a failing program keeps going (it shrinks it, writes the file,
  replays it); the others stop before their next program (`GenerationOptions.stop`) and hand
  back what they ran;
- a SIGINT or SIGTERM of the parent stops every worker the same way (workers ignore both:
  Ctrl-C, or a CI job's cancellation, reaches the whole process group, and only the parent
  decides); a worker whose parent died stops too.

The result is one `GenerationResult`: programs and outcomes summed over the workers, the
failure (and its case) of the worker that found one first, `elapsed` the parent's wall time. A
worker that dies without a result makes the whole result an `error` naming it (what the other
workers ran is still counted).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from presence_conformance.harness.generation import (
    GenerationOptions,
    GenerationResult,
    hypothesis_settings,
    is_detection,
    profile,
    run_generation,
)
from presence_conformance.harness.generation.profiles import CI_SEED
from presence_conformance.harness.results import CaseResult, Outcome
from presence_conformance.harness.run.settings import RunSettings

__all__ = ["WorkerAdapter", "run_generation_workers", "seeded", "worker_examples", "worker_seed"]

POLL_SECONDS = 0.05  # how often the parent looks at its workers
JOIN_SECONDS = 30.0  # how long a stopped worker may take to hand back its result


@dataclass(frozen=True)
class WorkerAdapter:
    """What a worker needs to build its own adapter and session (all of it picklable)."""

    name: str  # the registry name (`--adapter`)
    options: Mapping[str, str] = field(default_factory=dict)
    settings: RunSettings = field(default_factory=RunSettings)


def worker_examples(total: int, workers: int, index: int) -> int:
    """Worker `index`'s share of `total` programs (the first ones take the remainder)."""
    return total // workers + (1 if index < total % workers else 0)


def worker_seed(seed: int | None, index: int) -> int | None:
    """Worker `index`'s seed: `seed + index` (None: each worker draws its own random seed)."""
    return None if seed is None else seed + index


def run_generation_workers(
    adapter: WorkerAdapter,
    options: GenerationOptions,
    workers: int,
    examples: int,
    stop: Callable[[], bool] | None = None,
) -> GenerationResult:
    """Run `examples` generated programs against `adapter` in `workers` processes (see the module
    docstring). `stop` is polled by the parent (e.g. a signal arrived): True stops every
    worker before its next program. `options.stop` and `on_program` callbacks are not carried
    to the workers (they run in other processes)."""
    if workers < 1:
        raise ValueError(f"workers: {workers}, must be at least 1")
    # typed as the start method's own context (BaseContext, what a str gives, has no Process)
    context: Any = multiprocessing.get_context(_start_method())
    stop_all = context.Event()
    found = context.Event()
    results: Any = context.Queue()
    shared = seeded(dataclasses.replace(options, stop=None), adapter.name)
    processes = []
    started = time.monotonic()
    for index in range(workers):
        share = worker_examples(examples, workers, index)
        if share == 0:
            continue
        process = context.Process(
            target=_worker,
            args=(index, adapter, shared, share, stop_all, found, results, os.getpid()),
            name=f"presence-generation-{index}",
            daemon=True,
        )
        process.start()
        processes.append((index, process))
    got: dict[int, GenerationResult | str] = {}
    while len(got) < len(processes):
        if found.is_set() or (stop is not None and stop()):
            stop_all.set()
        try:
            index, outcome = results.get(timeout=POLL_SECONDS)
            got[index] = outcome
            continue
        except queue.Empty:
            pass
        for index, process in processes:
            if index not in got and not process.is_alive():
                try:  # its result may be in the queue still
                    index_, outcome = results.get(timeout=1.0)
                    got[index_] = outcome
                except queue.Empty:
                    got[index] = f"worker {index} died (exit code {process.exitcode})"
                    stop_all.set()
    for _, process in processes:
        process.join(JOIN_SECONDS)
        if process.is_alive():
            process.kill()
    return _combine(got, shared, started)


def seeded(options: GenerationOptions, namespace: str) -> GenerationOptions:
    """`options` with a base seed (see the module docstring), the database choice unchanged."""
    if options.seed is not None:
        return options
    chosen = profile(options.profile, options.examples)
    unseeded, _ = hypothesis_settings(
        chosen, namespace=namespace, database=options.database, use_database=options.use_database
    )
    base = CI_SEED if chosen.derandomize else int.from_bytes(os.urandom(4), "big")
    return dataclasses.replace(options, seed=base, use_database=unseeded.database is not None)


def _start_method() -> str:
    """`fork` on Linux from a process with one thread (see the module docstring), else `spawn`."""
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "spawn"


def _worker(
    index: int,
    adapter: WorkerAdapter,
    options: GenerationOptions,
    examples: int,
    stop_all: Any,
    found: Any,
    results: Any,
    parent: int,
) -> None:
    """One worker process: its own adapter and session, its share of the programs."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # the parent decides (module docstring)
        signal.signal(sig, signal.SIG_IGN)
    try:
        from presence_conformance.harness.adapters.registry import resolve_adapter
        from presence_conformance.harness.session import ConformanceSession

        session = ConformanceSession(
            resolve_adapter(adapter.name, adapter.options),
            adapter_name=adapter.name,
            options=dict(adapter.options),
            settings=adapter.settings,
        )
        mine: list[bool] = []  # this worker found a failure: it goes on to shrink it

        def on_program(number: int, document: dict[str, Any], case: CaseResult) -> None:
            if not mine and is_detection(case, options.strict):
                mine.append(True)
                found.set()

        def stopped() -> bool:
            return not mine and (stop_all.is_set() or os.getppid() != parent)

        own = dataclasses.replace(
            options, examples=examples, seed=worker_seed(options.seed, index), stop=stopped
        )
        try:
            result: GenerationResult | str = run_generation(session, own, on_program=on_program)
        finally:
            session.stop()
    except BaseException as exc:  # reported by the parent, never lost
        result = f"worker {index} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    results.put((index, result))


def _combine(
    got: Mapping[int, GenerationResult | str], options: GenerationOptions, started: float
) -> GenerationResult:
    done = [r for _, r in sorted(got.items()) if isinstance(r, GenerationResult)]
    errors = [r for _, r in sorted(got.items()) if isinstance(r, str)]
    failing = [r for r in done if r.failure is not None]
    # the failure found first (each worker's clock starts with it: they start together)
    chosen = min(failing, key=lambda r: r.time_to_first_failure or 0.0) if failing else None
    base = chosen or (done[0] if done else None)
    if base is None:
        case = CaseResult(
            case_id=f"generated/{options.profile}",
            adapter="",
            outcome=Outcome.ERROR,
            kind="generated",
            error="; ".join(errors) or "no worker ran",
        )
        result = GenerationResult(case=case, profile=options.profile, seed=options.seed)
    else:
        result = dataclasses.replace(base, outcomes=Counter(), seed=options.seed)
    for r in done:
        result.outcomes.update(r.outcomes)
    result.programs = sum(r.programs for r in done)
    result.cut_short = sum(r.cut_short for r in done)
    result.reused = sum(r.reused for r in done)
    stopped = [r.stopped for r in done if r.stopped and r is not chosen]
    result.stopped = None if chosen is not None else next(iter(stopped), None)
    if errors and chosen is None and base is not None:
        result.case.outcome = Outcome.ERROR
        result.case.error = "; ".join(errors)
    elif errors and chosen is not None:  # the failure stands; say what else went wrong
        result.case.error = "; ".join([result.case.error or "", *errors]).lstrip("; ")
    result.elapsed = result.case.duration = time.monotonic() - started
    return result

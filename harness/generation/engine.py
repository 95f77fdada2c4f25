"""Running generated programs: search with Hypothesis, shrink, save the failure, confirm replay.

`run_generation(session, options)` draws programs (`presence_conformance.harness.generation.strategies.programs`),
loads each with `presence_conformance.harness.scenario.scenario_from_dict` and runs it with
`presence_conformance.harness.run.runner.run_scenario` on the session's adapter loop (`ConformanceSession.run`: one event
loop per adapter, in a background thread; Hypothesis itself runs synchronously in the caller).
The runner's checks are the invariants. A program whose case fails (a MUST violated, a timeout,
an adapter error; with `strict`, a SHOULD violated too) is shrunk by Hypothesis to a minimal one,
which is then

- written with `dump_scenario` as an ordinary scenario file in the failures folder, tagged with
  the violated requirement IDs (its `meta` says how it was found);
- replayed from that file once, to confirm that it fails the same way (`replay_confirmed`); a
  failure that passes on replay is flaky (`GeneratedFailure.flaky`), and the saved file says so
  (`meta.flaky`, a FLAKY line in its description);
- reported as one `CaseResult` of kind `generated` (case id `generated/<profile>`), with the
  minimal program's violations and history and the command that replays it:
  `presence-conformance replay failures/<name>.yaml --adapter NAME`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import hashlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from hypothesis import event, given, reject, seed, target
from hypothesis.errors import Flaky
from presence_conformance.harness.adapter import Adapter
from presence_conformance.harness.generation.profiles import (
    DEFAULT_PROFILE,
    hypothesis_settings,
    profile,
)
from presence_conformance.harness.generation.strategies import (
    GENERATED_REQUIREMENTS,
    GenerationConfig,
    programs,
)
from presence_conformance.harness.results import CaseResult, Outcome
from presence_conformance.harness.run.replay import replay_command
from presence_conformance.harness.run.settings import RunSettings
from presence_conformance.harness.run.stops import HarnessError
from presence_conformance.harness.scenario import Scenario
from presence_conformance.harness.version import harness_version

__all__ = [
    "DEFAULT_FAILURES_DIR",
    "GeneratedFailure",
    "GenerationOptions",
    "GenerationResult",
    "GenerationSession",
    "GenerationStopped",
    "is_detection",
    "run_generation",
    "save_failure",
]

DEFAULT_FAILURES_DIR = Path("failures")
DEFAULT_SHRINK_SECONDS = 30.0
"""How long shrinking may take by default (Hypothesis alone allows 300 s)."""

T = TypeVar("T")


class GenerationSession(Protocol):
    """What generation needs of a session: an adapter on its own event loop
    (`presence_conformance.harness.session.ConformanceSession` is one)."""

    @property
    def adapter(self) -> Adapter: ...

    @property
    def adapter_name(self) -> str: ...

    @property
    def options(self) -> Mapping[str, str]: ...

    @property
    def settings(self) -> RunSettings: ...

    @property
    def start_error(self) -> str | None: ...

    @property
    def cancelled(self) -> str | None:
        """Why the session was cancelled (`ConformanceSession.cancel`), or None."""
        ...

    def start(self) -> None: ...

    def case_timeout(self, scenario: Scenario) -> float: ...

    def run(self, awaitable: Awaitable[T], timeout: float | None = None) -> T: ...


@dataclass
class GenerationOptions:
    """What to generate and what to do with a failure.

    - `profile`: `ci`, `dev` or `thorough` (`presence_conformance.harness.generation.profiles`); `examples` overrides
      its number of programs, `max_steps`/`min_steps` its program length;
    - `seed`: reproduce a run (the same seed, the same programs);
    - `failures_dir`: where minimal failing programs are written (None: not written);
    - `database`: the example database directory; `use_database` forces it on or off;
    - `strict`: a SHOULD violation (outcome non-strict) counts as a failure too;
    - `shrink`: shrink a failure (False: stop at the first failing program, e.g. to measure
      how fast a bug is found);
    - `confirm_replay`: replay the written file once and compare;
    - `statistics`: collect Hypothesis' statistics (`GenerationResult.statistics`);
    - `config`: the shape of programs (default: from the profile and the adapter's features);
    - `server_steps`: programs draw `server:` steps when the adapter declares server-control
      (the default; False: never);
    - `shrink_seconds`: how long shrinking may take (None: Hypothesis' own limit, 300 s); past
      it no further candidate runs and the smallest failure found so far is kept;
    - `program_budget`: seconds one candidate program may run while shrinking (None: a tenth
      of `shrink_seconds`, at least 4 times the first failing program's duration). A candidate
      over it is cut short and counts as inconclusive, never as a failure (see
      docs/generation.md, "Shrinking that stays fast"); `float("inf")`: unbounded;
    - `target`: Hypothesis' targeted search, maximising the members and events of a program
      (measured not to pay at the `dev` budget: off by default; docs/generation.md);
    - `reuse`: while shrinking, reuse the result of a document that ran already instead of
      running it again (False: every candidate runs, as before: for comparisons);
    - `stop`: asked before each program; True ends the run there, as a cancelled session does
      (`GenerationResult.stopped`; e.g. another worker found a failure). While shrinking, the
      smallest failure found so far is kept.
    """

    profile: str = DEFAULT_PROFILE
    examples: int | None = None
    seed: int | None = None
    failures_dir: Path | str | None = DEFAULT_FAILURES_DIR
    database: Path | str | None = None
    use_database: bool | None = None
    strict: bool = False
    shrink: bool = True
    confirm_replay: bool = True
    statistics: bool = False
    max_steps: int | None = None
    min_steps: int | None = None
    config: GenerationConfig | None = None
    server_steps: bool = True  # draw `server:` steps (GenerationConfig.server_steps)
    shrink_seconds: float | None = DEFAULT_SHRINK_SECONDS
    program_budget: float | None = None
    reuse: bool = True
    target: bool = False
    stop: Callable[[], bool] | None = None


@dataclass
class GeneratedFailure:
    """The minimal failing program found, and what became of it."""

    document: dict[str, Any]
    case: CaseResult
    steps: int  # top-level steps of the minimal program
    first_steps: int  # top-level steps of the first failing program found
    requirements: list[str]
    path: Path | None = None
    replay: str | None = None
    replay_confirmed: bool | None = None
    replay_case: CaseResult | None = None
    flaky: bool = False


@dataclass
class GenerationResult:
    """What a generation run did. `case` is the `CaseResult` (kind `generated`) for reports."""

    case: CaseResult
    profile: str
    programs: int = 0
    elapsed: float = 0.0
    time_to_first_failure: float | None = None
    shrink_seconds: float | None = None  # from the first failure to the minimal one, saved
    cut_short: int = 0  # shrink candidates over the program budget (inconclusive)
    reused: int = 0  # shrink candidates whose document had run already (its result reused)
    programs_to_first_failure: int | None = None
    failure: GeneratedFailure | None = None
    statistics: str | None = None
    outcomes: Counter[str] = field(default_factory=Counter)
    seed: int | None = None
    stopped: str | None = None  # why the run ended before its budget (`GenerationStopped`)

    @property
    def failed(self) -> bool:
        return self.failure is not None


class GenerationStopped(KeyboardInterrupt):
    """Raised inside the Hypothesis test to end a run at once: the session was cancelled (a
    signal) or `GenerationOptions.stop` said so. A KeyboardInterrupt, because Hypothesis lets
    one through untouched: it is not a failing example, so it is neither shrunk nor saved in the
    example database (any other exception would be)."""


class ProgramFailed(Exception):
    """Raised inside the Hypothesis test for a failing program (so that Hypothesis shrinks it)."""

    def __init__(self, case: CaseResult) -> None:
        super().__init__(
            f"{case.outcome.value}: " + ", ".join(sorted({v.requirement for v in case.violations}))
            if case.violations
            else f"{case.outcome.value}: {case.error}"
        )
        self.case = case


def is_detection(case: CaseResult, strict: bool) -> bool:
    """Does this case count as a failure (fail, timeout, error; non-strict with `strict`)?"""
    return case.outcome.is_failure or (strict and case.outcome is Outcome.NON_STRICT)


def _steps(document: dict[str, Any]) -> int:
    return len(document.get("steps", ()))


def _config_for(session: GenerationSession, options: GenerationOptions) -> GenerationConfig:
    if options.config is not None:
        return options.config
    chosen = profile(options.profile, options.examples)
    features = frozenset(getattr(session.adapter, "features", ()))
    max_steps = options.max_steps or chosen.max_steps
    min_steps = min(
        options.min_steps if options.min_steps is not None else chosen.min_steps, max_steps
    )
    grace = session.settings.leave_grace
    if grace is None:
        grace = getattr(session.adapter, "leave_grace", None)
    return GenerationConfig(
        min_steps=min_steps,
        max_steps=max_steps,
        features=features,
        leave_grace=float(grace) if isinstance(grace, (int, float)) else None,
        server_steps=options.server_steps,
    )


def _run_program(
    session: GenerationSession, scenario: Scenario, budget: float | None = None
) -> CaseResult | None:
    """One program on the session's adapter loop; a hang becomes a timeout result. With a
    `budget` (shrinking), a program still running after `budget` seconds is cancelled (its
    cleanup awaited) and None returned: inconclusive, neither a pass nor a failure."""
    from presence_conformance.harness.run.runner import run_scenario

    limit = session.case_timeout(scenario)
    # a passing program's history is of no use and only weighs on memory (failures keep theirs)
    settings = dataclasses.replace(session.settings, keep_history=False)

    async def bounded() -> CaseResult | None:
        try:
            return await asyncio.wait_for(run_scenario(scenario, session.adapter, settings), budget)
        except TimeoutError:
            return None

    try:
        if budget is not None and budget < limit:
            return session.run(bounded(), limit)
        return session.run(run_scenario(scenario, session.adapter, settings), limit)
    except TimeoutError:
        return CaseResult(
            case_id=scenario.case_id,
            adapter=session.adapter_name,
            outcome=Outcome.TIMEOUT,
            kind="generated",
            error=f"the program did not finish within {limit:.0f}s",
        )


def run_generation(
    session: GenerationSession,
    options: GenerationOptions | None = None,
    on_program: Callable[[int, dict[str, Any], CaseResult], None] | None = None,
) -> GenerationResult:
    """Generate and run programs against the session's adapter (see the module docstring).

    `session` is a `presence_conformance.harness.session.ConformanceSession` (started here if
    needed). `on_program` is called after each program with its number, its scenario document
    and its result. Never raises for a failing program; raises `HarnessError` when the harness itself breaks (a generated program the
    loader refuses, the adapter's loop blocked).
    """
    from presence_conformance.harness.scenario import scenario_from_dict

    options = options or GenerationOptions()
    chosen = profile(options.profile, options.examples)
    config = _config_for(session, options)
    test_settings, run_seed = hypothesis_settings(
        chosen,
        namespace=session.adapter_name,
        database=options.database,
        use_database=options.use_database,
        seed=options.seed,
        shrink=options.shrink,
    )
    result = GenerationResult(
        case=CaseResult(
            case_id=f"generated/{chosen.name}",
            adapter=session.adapter_name,
            outcome=Outcome.PASS,
            kind="generated",
            requirements=list(GENERATED_REQUIREMENTS),
        ),
        profile=chosen.name,
        seed=run_seed,
    )
    failures: list[tuple[dict[str, Any], CaseResult]] = []
    broken: list[str] = []
    # while shrinking: the result of each document run so far (many candidates compile to the
    # same document), when shrinking began, and the first failure's duration
    seen: dict[str, CaseResult | None] = {}
    shrink: dict[str, float] = {}
    started = time.monotonic()
    session.start()
    if session.start_error:
        return _broken(result, f"adapter failed to start: {session.start_error}", started)

    def evaluate(document: dict[str, Any]) -> CaseResult | None:
        """The program's result: run (bounded while shrinking) or, while shrinking, reused
        from an earlier run of the same document; None: inconclusive (over the budget)."""
        budget = None
        key = _document_key(document) if failures else ""  # only needed while shrinking
        if failures:  # shrinking: each candidate bounded, the whole bounded, repeats reused
            if options.reuse and key in seen:
                result.reused += 1
                return seen[key]
            if (
                options.shrink_seconds is not None
                and time.monotonic() - shrink["began"] > options.shrink_seconds
            ):
                return None  # out of shrinking time: keep the smallest failure found so far
            budget = options.program_budget or shrink["budget"]
        scenario = scenario_from_dict(document, case_id=f"generated/{chosen.name}", compiled=True)
        begun = time.monotonic()
        try:
            case = _run_program(session, scenario, budget)
        except RuntimeError as exc:  # the adapter's loop is blocked or stopped
            broken.append(str(exc))
            raise
        if failures:
            seen[key] = case
        if case is None:  # over the shrink budget: inconclusive, never a failure
            result.cut_short += 1
            event("outcome: cut short (program budget)")
            return None
        result.programs += 1
        result.outcomes[case.outcome.value] += 1
        event(f"outcome: {case.outcome.value}")
        event(f"steps: {_bucket(_steps(document))}")
        if on_program is not None:
            on_program(result.programs, document, case)
        if options.target:
            target(float(_richness(document)), label="members and events")
        if is_detection(case, options.strict) and result.time_to_first_failure is None:
            now = time.monotonic()
            result.time_to_first_failure = now - started
            result.programs_to_first_failure = result.programs
            shrink["began"] = now
            limit = options.shrink_seconds or 300.0
            shrink["budget"] = max(4 * (now - begun), min(limit / 10, 10.0), 1.0)
            seen[_document_key(document)] = case
        return case

    def program(document: dict[str, Any]) -> None:
        if session.cancelled is not None:
            raise GenerationStopped(session.cancelled)
        if options.stop is not None and options.stop():
            raise GenerationStopped("stopped")
        if broken:  # nothing more can run on this adapter: fail fast, without running
            case = failures[-1][1] if failures else None
            if case is None:
                raise RuntimeError(broken[0])
        else:
            try:
                case = evaluate(document)
            except Exception:
                if session.cancelled is not None:  # the program was cancelled, not failed
                    raise GenerationStopped(session.cancelled) from None
                raise
            if case is None:
                reject()
        assert case is not None
        if is_detection(case, options.strict):
            failures.append((document, case))
            # one place raises, so that Hypothesis sees one bug (it tells bugs apart by where
            # the exception comes from) whether the result was run or reused
            raise ProgramFailed(case)

    test = given(programs(config))(program)
    # the same programs for a given profile and shape, whichever function object runs them
    test.hypothesis.inner_test._hypothesis_internal_add_digest = (  # type: ignore[attr-defined]
        f"presence-conformance/{chosen.name}/{config.min_steps}-{config.max_steps}".encode()
    )
    if run_seed is not None:  # before the settings: `seed` alone would switch the database off
        test = seed(run_seed)(test)
    test = test_settings(test)
    flaky = False
    stats: list[dict[str, Any]] = []
    try:
        with (
            _statistics_collector(stats if options.statistics else None),
            _no_local_constants(),
            _shrink_limit(options.shrink_seconds),
            _spaced_collections(),
        ):
            test()
    except ProgramFailed:
        pass
    except GenerationStopped as stop:
        result.stopped = str(stop) or "stopped"
    except Flaky:
        flaky = True  # the minimal program did not fail again: keep the last failure seen
    except Exception as exc:
        if broken:
            return _broken(result, broken[0], started)
        raise HarnessError(
            f"generation against {session.adapter_name!r} broke: {type(exc).__name__}: {exc}"
        ) from exc
    if "began" in shrink:
        result.shrink_seconds = time.monotonic() - shrink["began"]
    if stats:
        result.statistics = _describe(stats[-1])
    if broken:
        return _broken(result, broken[0], started)
    if failures:
        document, case = failures[-1]  # the last failure is the minimal one Hypothesis replays
        failure = GeneratedFailure(
            document, case, _steps(document), _steps(failures[0][0]), _violated(case), flaky=flaky
        )
        result.failure = failure
        if options.failures_dir is not None:
            # a cancelled session runs nothing more: the file is written, not replayed
            saving = (
                options if session.cancelled is None else replace(options, confirm_replay=False)
            )
            save_failure(session, failure, saving, chosen.name, run_seed, result)
        _fill_case(result, failure, chosen.name)
    result.elapsed = result.case.duration = time.monotonic() - started
    return result


@contextlib.contextmanager
def _no_local_constants() -> Iterator[None]:
    """Switch off, for the run, Hypothesis' habit of drawing now and then a constant found in the
    source of the modules the process has imported (not site-packages, not tests): with it, one
    seed draws other programs depending on what the process imported before (the bench after
    other mutants, pytest beside other tests, an editable install against a wheel). Without it a
    seed is a seed. A Hypothesis without this machinery is left alone."""
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:  # pragma: no cover - another Hypothesis
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    if original is None or cache is None or not hasattr(cache, "cache"):  # pragma: no cover
        yield
        return
    empty = Constants()
    providers._get_local_constants = lambda: empty
    cache.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.cache.clear()


GC_THRESHOLDS = (5000, 20, 20)
"""The cyclic collector's thresholds during a generation run (CPython's default: 700, 10, 10)."""


@contextlib.contextmanager
def _spaced_collections() -> Iterator[None]:
    """Space out the cyclic garbage collector's passes for the run, restored afterwards.

    A run allocates at a high rate, in both threads: Hypothesis' draws, each program's records
    and events, most of them freed by reference counting. At the default thresholds the young
    generation is collected every 700 net allocations and the whole heap every 100 young
    passes, ~1 ms of CPU a program in all; `GC_THRESHOLDS` measured 75 -> 82 programs/s against
    the reference (bench/bench_generation.py). A threshold the process set higher is kept."""
    before = gc.get_threshold()
    gc.set_threshold(*(max(old, new) for old, new in zip(before, GC_THRESHOLDS, strict=False)))
    try:
        yield
    finally:
        gc.set_threshold(*before)


@contextlib.contextmanager
def _shrink_limit(seconds: float | None) -> Iterator[None]:
    """Hypothesis' own shrink time limit (300 s) set to `seconds` for the run: it then ends
    shrinking cleanly, with the smallest failure so far, right after the candidate that crosses
    it. (Past the limit `run_generation` also stops running candidates, which covers a
    Hypothesis without this constant, at the cost of Hypothesis drawing candidates it rejects.)"""
    try:
        from hypothesis.internal.conjecture import engine as conjecture
    except ImportError:  # pragma: no cover - another Hypothesis
        yield
        return
    original = getattr(conjecture, "MAX_SHRINKING_SECONDS", None)
    if seconds is None or not isinstance(original, (int, float)):
        yield
        return
    conjecture.MAX_SHRINKING_SECONDS = seconds  # type: ignore[assignment]
    try:
        yield
    finally:
        conjecture.MAX_SHRINKING_SECONDS = original  # type: ignore[assignment]


def _richness(document: dict[str, Any]) -> int:
    """Distinct members a program enters plus the events it publishes (for `target`)."""
    members: set[tuple[str, str, str]] = set()
    events = 0

    def walk(steps: list[dict[str, Any]]) -> None:
        nonlocal events
        for step in steps:
            ((kind, body),) = step.items()
            if kind == "concurrently":
                walk(body)
                continue
            if kind == "interrupt":
                walk(body.get("during", []))
            if kind in (
                "enter",
                "update",
                "leave",
                "enter_client",
                "update_client",
                "leave_client",
            ):
                events += 1
                members.add((body["client"], body["channel"], str(body.get("client_id"))))

    walk(document.get("steps", []))
    return len(members) + events


def _document_key(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, default=repr)


def _bucket(steps: int) -> str:
    return "1-5" if steps <= 5 else "6-10" if steps <= 10 else "11-20" if steps <= 20 else "21+"


def _violated(case: CaseResult) -> list[str]:
    return sorted({v.requirement for v in case.violations})


def _broken(result: GenerationResult, message: str, started: float) -> GenerationResult:
    result.case.outcome = Outcome.ERROR
    result.case.error = message
    result.elapsed = result.case.duration = time.monotonic() - started
    return result


def _fill_case(result: GenerationResult, failure: GeneratedFailure, profile_name: str) -> None:
    case = result.case
    minimal = failure.case
    case.outcome = minimal.outcome
    case.requirements = failure.requirements or list(GENERATED_REQUIREMENTS)
    case.violations = list(minimal.violations)
    case.infos = list(minimal.infos)
    case.history = list(minimal.history)
    case.scenario_file = str(failure.path) if failure.path else None
    case.replay = failure.replay
    summary = (
        f"generated program #{result.programs_to_first_failure} of profile "
        f"{profile_name} failed; shrunk from {failure.first_steps} to {failure.steps} "
        "step(s)"
    )
    if failure.replay_confirmed is False:
        summary += "; the saved file did NOT fail the same way when replayed (flaky?)"
    if failure.flaky and failure.replay_case is not None and failure.replay_confirmed is False:
        summary += "; FLAKY: it passed when replayed from the saved file"
    elif failure.flaky:
        summary += "; Hypothesis reported the failure as flaky"
    if minimal.error:
        summary += f"; {minimal.error}"
    case.error = summary


def save_failure(
    session: GenerationSession,
    failure: GeneratedFailure,
    options: GenerationOptions,
    profile_name: str,
    run_seed: int | None,
    result: GenerationResult | None = None,
) -> Path:
    """Write the minimal program as a scenario file in `options.failures_dir`, replay it once
    from the file (when `options.confirm_replay`), and fill in `failure.path`, `replay`,
    `replay_confirmed`."""
    from presence_conformance.harness.scenario import dump_scenario, load_scenario, scenario_to_yaml

    document = dict(failure.document)
    steps_text = scenario_to_yaml({k: document[k] for k in ("clients", "channels", "steps")})
    digest = hashlib.sha256((session.adapter_name + steps_text).encode()).hexdigest()[:8]
    case = failure.case
    requirements = failure.requirements or list(GENERATED_REQUIREMENTS)
    first = next(iter(case.violations), None)
    what = (
        f"{first.requirement}: {first.message}"
        if first is not None
        else f"{case.outcome.value}: {case.error or ''}".strip()
    )
    document["name"] = f"generated-{digest}"
    document["description"] = (
        f"Found by presence-conformance generate (profile "
        f"{profile_name}) against adapter {session.adapter_name}.\n"
        f"{what}\n"
    )
    document["requirements"] = requirements
    meta: dict[str, Any] = {
        "generator": "presence-conformance generate",
        "harness_version": harness_version(),
        "adapter": session.adapter_name,
        "profile": profile_name,
        "outcome": case.outcome.value,
        "shrunk_from_steps": failure.first_steps,
    }
    if session.options:
        meta["adapter_options"] = dict(session.options)
    if run_seed is not None:
        meta["seed"] = run_seed
    if result is not None and result.programs_to_first_failure is not None:
        meta["found_after_programs"] = result.programs_to_first_failure
    document["meta"] = meta
    label = _safe(
        f"{session.adapter_name}-{requirements[0] if failure.requirements else case.outcome.value}"
    )
    path = dump_scenario(
        document, Path(options.failures_dir or DEFAULT_FAILURES_DIR) / f"{label}-{digest}.yaml"
    )
    failure.document = document
    failure.path = path
    failure.replay = replay_command(path, session.adapter_name, session.options)
    if options.confirm_replay:
        scenario = load_scenario(path)
        ran = _run_program(session, scenario)
        assert ran is not None  # without a budget a program always has a result
        again = replace(ran, kind="generated")
        failure.replay_case = again
        failure.replay_confirmed = (
            is_detection(again, options.strict)
            and _violated(again) == failure.requirements
            and again.outcome is case.outcome
        )
        if not is_detection(again, options.strict):
            # It passed when replayed: a timing-dependent failure. Say so in the file itself.
            failure.flaky = True
            meta["flaky"] = True
            meta["replayed_outcome"] = again.outcome.value
            document["description"] += (
                "FLAKY: this program failed once, then passed when replayed from this file; "
                "`presence-conformance replay --repeat N` shows how often it fails.\n"
            )
            path = dump_scenario(document, path)
    return path


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


class _statistics_collector:
    """Collect Hypothesis' statistics of the run into `sink` (nothing when `sink` is None)."""

    def __init__(self, sink: list[dict[str, Any]] | None) -> None:
        self.sink = sink
        self.context: Any = None

    def __enter__(self) -> None:
        if self.sink is None:
            return
        try:
            from hypothesis.statistics import collector
        except ImportError:  # pragma: no cover - a Hypothesis without the collector
            return
        # the collector is typed for Hypothesis' own use (a None default); it takes any callable
        self.context = cast(Any, collector).with_value(self.sink.append)
        self.context.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self.context is not None:
            self.context.__exit__(*exc)


def _describe(stats: dict[str, Any]) -> str:
    try:
        from hypothesis.statistics import describe_statistics
    except ImportError:  # pragma: no cover
        return repr(stats)
    stats = dict(stats)
    stats.setdefault("nodeid", "presence-conformance generate")
    return describe_statistics(cast(Any, stats))  # a dict of Hypothesis' StatisticsDict shape

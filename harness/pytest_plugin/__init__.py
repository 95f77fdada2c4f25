"""The pytest plugin: `pytest --adapter=NAME` runs the conformance suite as test items.

pytest loads this module for everyone who has presence-conformance installed (entry point
`pytest11`), so it does nothing at all until `--adapter` is given: it adds its command-line
options (with those of the generated item, `presence_conformance.harness.pytest_plugin.generated`), defines its
fixtures (which skip when asked for without `--adapter`) and stops there.

With `--adapter NAME`:

- every scenario file becomes a test item `scenarios/<case_id>`, marked with its requirement IDs,
  its area and `conformance` (`-m history.limit-default-100`, `-m history`, `-k limit-default`,
  `-m "not conformance"` all select as expected); one more item, `generated/<profile>`, runs
  Hypothesis-generated programs (`--no-generation` leaves it out);
- the adapter is started once per process, on one asyncio loop in a background thread
  (`presence_conformance.harness.session.ConformanceSession`, the same core the CLI uses); every case is bounded by a
  timeout, so a hung adapter fails items instead of hanging pytest;
- an item fails with the case's outcome, its violations, a history excerpt and the replay
  command; `unsupported` is skipped with the reason; `non-strict` passes with a warning unless
  `--conformance-strict`;
- `--conformance-report DIR` writes the reports at the end, also after Ctrl-C (marked partial);
  under pytest-xdist the workers send their results to the controller, which writes ONE report;
- fixtures for users' own tests: `presence_adapter` (the started adapter), `presence_run` (run a
  coroutine on the adapter's loop) and `conformance_run` (the results so far).

Users register their own adapters from a conftest.py with `presence_conformance.harness.adapters.registry.register_adapter`, or
by implementing the hook `pytest_presence_conformance_adapters(config)`. Such a name exists only
inside pytest, so the replay command printed for its failures is
`pytest --adapter=NAME --replay FILE` (`--replay` runs that one scenario file instead of the
suite); `presence-conformance replay FILE --conftest conftest.py --adapter NAME --repeat 5`
gives the FIXED / FAILED / FLAKY verdict outside pytest.

(pytest itself owns `--strict`, so the strictness flag of this plugin is `--conformance-strict`.)
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from presence_conformance.harness.pytest_plugin.hints import replay_hint

if TYPE_CHECKING:
    from presence_conformance.harness.adapter import Adapter
    from presence_conformance.harness.results import CaseResult, RunResult
    from presence_conformance.harness.session import ConformanceSession

WORKER_OUTPUT_KEY = "presence_conformance"
SUITE_NODEID = "scenarios"
CONFORMANCE_MARKER = "conformance"


class NonStrictWarning(UserWarning):
    """A case violated only SHOULD requirements: it passes, unless `--conformance-strict`."""


class ConformanceFailure(Exception):
    """Raised by a scenario item whose case did not pass; carries the `CaseResult`."""

    def __init__(self, case: CaseResult) -> None:
        super().__init__(f"{case.case_id}: {case.outcome.value}")
        self.case = case


class _Hooks:
    """Hook specifications this plugin adds (implement them in a conftest.py)."""

    @pytest.hookspec(firstresult=False)
    def pytest_presence_conformance_adapters(self, config: pytest.Config) -> dict[str, Any]:
        """Return `{name: Adapter subclass or factory}` to make adapters available by name."""
        raise NotImplementedError


# -- options and configuration --------------------------------------------------------------------


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(_Hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("presence-conformance", "presence conformance suite")
    group.addoption(
        "--adapter",
        metavar="NAME",
        default=None,
        help="run the presence conformance suite against this adapter (a name from "
        "`presence-conformance list adapters`, module:Class or mutant:NAME)",
    )
    group.addoption(
        "--adapter-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="an option for the adapter (repeatable)",
    )
    group.addoption(
        "--scenarios",
        metavar="DIR",
        default=None,
        help="folder of scenario files (default: the scenarios shipped with the package)",
    )
    group.addoption(
        "--op-timeout",
        metavar="S",
        type=float,
        default=None,
        help="seconds an adapter operation may take before the case times out",
    )
    group.addoption(
        "--wait-timeout",
        metavar="S",
        type=float,
        default=None,
        help="seconds the runner waits for events and for reads to converge (default 1; "
        "never more than --op-timeout)",
    )
    group.addoption(
        "--conformance-report",
        metavar="DIR",
        default=None,
        help="write the conformance reports (JSON, JUnit, Markdown, HTML) into DIR "
        "at the end of the session",
    )
    group.addoption(
        "--conformance-strict",
        action="store_true",
        default=False,
        help="fail cases that violate only SHOULD requirements (non-strict)",
    )
    group.addoption(
        "--replay",
        metavar="FILE",
        default=None,
        help="run only this scenario file (e.g. a saved failure) instead of the suite: the "
        "replay command for adapters registered in a conftest.py",
    )
    from presence_conformance.harness.pytest_plugin.generated import add_generation_options

    add_generation_options(group)


class _State:
    """Everything the plugin keeps for one pytest session (in `config.stash`, never global)."""

    def __init__(
        self, config: pytest.Config, session: ConformanceSession, scenarios: list[Any]
    ) -> None:
        self.config = config
        self.session = session
        self.scenarios = scenarios
        self.strict: bool = bool(config.getoption("conformance_strict"))
        self.report_dir: str | None = config.getoption("conformance_report")
        self.selected: list[str] = []  # case_ids of the scenario items selected to run
        self.selected_elsewhere: int | None = None  # the selection the xdist workers reported
        self.worker_runs: list[RunResult] = []  # on the xdist controller: each worker's part
        self.written: list[Path] = []
        self.report_error: str | None = None
        self.replay: str | None = config.getoption("replay", None)


STATE_KEY = pytest.StashKey[_State]()


def _state(config: pytest.Config) -> _State | None:
    return config.stash.get(STATE_KEY, None)


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_xdist_controller(config: pytest.Config) -> bool:
    return not _is_xdist_worker(config) and config.pluginmanager.getplugin("dsession") is not None


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("adapter", None)
    if not name:
        return
    from presence_conformance.harness.adapter import UsageError
    from presence_conformance.harness.adapters.registry import (
        parse_options,
        register_adapter,
        resolve_adapter,
    )
    from presence_conformance.harness.scenario import ScenarioError
    from presence_conformance.harness.session import ConformanceSession, load_suite

    try:
        for registered in config.hook.pytest_presence_conformance_adapters(config=config):
            for adapter_name, factory in (registered or {}).items():
                register_adapter(adapter_name, factory)
        options = parse_options(config.getoption("adapter_option"))
        adapter = resolve_adapter(name, options)
        replay = config.getoption("replay", None)
        if replay:
            from presence_conformance.harness.scenario import load_scenario

            if not Path(replay).is_file():
                raise UsageError(f"--replay: no such scenario file {replay}")
            scenarios = [load_scenario(Path(replay))]
        else:
            scenarios = load_suite(config.getoption("scenarios"))
        settings = _settings(config)
    except UsageError as exc:
        raise pytest.UsageError(f"presence-conformance: {exc}") from None
    except ScenarioError as exc:
        raise pytest.UsageError(
            f"presence-conformance: malformed scenario file(s):\n{exc}"
        ) from None
    session = ConformanceSession(adapter, adapter_name=name, options=options, settings=settings)
    config.stash[STATE_KEY] = _State(config, session, scenarios)
    _register_markers(config, scenarios)


def _settings(config: pytest.Config) -> Any:
    from presence_conformance.harness.adapter import UsageError
    from presence_conformance.harness.run.runner import RunSettings

    values: dict[str, Any] = {}
    for name in ("op_timeout", "wait_timeout"):
        value = config.getoption(name)
        if value is None:
            continue
        if value <= 0:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} {value}: must be a positive number of seconds")
        values[name] = value
    return RunSettings(**values)


def _register_markers(config: pytest.Config, scenarios: list[Any]) -> None:
    """Declare every requirement ID and area as a marker, so `-m` selects without warnings."""
    texts: dict[str, str] = {}
    try:
        from presence_conformance.spec import load_requirements

        catalogue = load_requirements()
        for area, title in catalogue.areas.items():
            texts[area] = f"presence conformance area: {title}"
        for req in catalogue.requirements:
            texts[req.id] = f"[{req.level}] {req.text}"
    except Exception:  # the catalogue is documentation here: scenarios still carry their IDs
        pass
    from presence_conformance.harness.session import area_of

    for scenario in scenarios:
        texts.setdefault(area_of(scenario.case_id), "presence conformance area")
        for rid in scenario.requirements:
            texts.setdefault(rid, "presence conformance requirement")
    config.addinivalue_line("markers", f"{CONFORMANCE_MARKER}: a presence conformance scenario")
    for marker, text in texts.items():
        config.addinivalue_line("markers", f"{marker}: {text}")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = _state(config)
    if state is not None:
        state.session.stop()


# -- collection -----------------------------------------------------------------------------------


class ScenarioSuite(pytest.Collector):
    """The collector that holds one item per scenario file (node id `scenarios`)."""

    def collect(self) -> list[ScenarioItem]:
        state = _state(self.config)
        assert state is not None
        return [
            ScenarioItem.from_parent(
                self, name=s.case_id, nodeid=f"{SUITE_NODEID}/{s.case_id}", scenario=s
            )
            for s in state.scenarios
        ]


class GeneratedSuite(pytest.Collector):
    """The collector of the generated item(s) (`presence_conformance.harness.pytest_plugin.generated`)."""

    provide: Callable[[], list[pytest.Item]] = staticmethod(list)

    def collect(self) -> list[pytest.Item]:
        return list(self.provide())


class ScenarioItem(pytest.Item):
    """One scenario run against the session's adapter."""

    def __init__(self, *, scenario: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from presence_conformance.harness.session import area_of

        self.scenario = scenario
        self.case: CaseResult | None = None
        self.add_marker(CONFORMANCE_MARKER)
        self.add_marker(area_of(scenario.case_id))
        for rid in dict.fromkeys(scenario.requirements):
            self.add_marker(rid)
        self.user_properties.append(("requirements", " ".join(scenario.requirements)))

    def runtest(self) -> None:
        from presence_conformance.harness.results import Outcome

        state = _state(self.config)
        assert state is not None
        case = self.case = state.session.run_case(self.scenario)
        hint = replay_hint(state.session, case.scenario_file)
        if hint is not None:
            case.replay = hint
        if case.outcome is Outcome.PASS:
            return
        if case.outcome is Outcome.UNSUPPORTED:
            reason = f"unsupported: {case.error or 'the adapter lacks a required feature'}"
            try:  # report the skip at the scenario file, not at this line
                raise pytest.skip.Exception(reason, _use_item_location=True)
            except TypeError:  # pragma: no cover - a pytest without the private flag
                pytest.skip(reason)
        if case.known_failing and (case.outcome.is_failure or case.outcome is Outcome.NON_STRICT):
            pytest.xfail(f"known failing: {case.outcome.value}")
        if case.outcome is Outcome.NON_STRICT and not state.strict:
            from presence_conformance.harness.session import describe_case

            warnings.warn(NonStrictWarning(describe_case(case, history=False)), stacklevel=1)
            return
        raise ConformanceFailure(case)

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | Any:
        if isinstance(excinfo.value, ConformanceFailure):
            from presence_conformance.harness.session import describe_case

            return describe_case(excinfo.value.case)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int, str]:
        source = getattr(self.scenario, "source", None)
        return (Path(source) if source else self.path), 0, f"scenario {self.scenario.case_id}"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # tryfirst: the scenario items must be in `items` before -m/-k/--deselect filter them.
    state = _state(config)
    if state is None:
        return
    suite = ScenarioSuite.from_parent(session, name=SUITE_NODEID, nodeid=SUITE_NODEID)
    items.extend(session.genitems(suite))
    from presence_conformance.harness.pytest_plugin.generated import NODEID_PREFIX, generated_items

    if state.replay:  # exactly the one scenario: the user's own tests are deselected
        others = [item for item in items if not isinstance(item, ScenarioItem)]
        if others:
            config.hook.pytest_deselected(items=others)
            items[:] = [item for item in items if isinstance(item, ScenarioItem)]
        return
    generated = GeneratedSuite.from_parent(session, name=NODEID_PREFIX, nodeid=NODEID_PREFIX)
    generated.provide = lambda: generated_items(session, state.session, state.strict)
    items.extend(session.genitems(generated))  # collected like any node: counted, hooks fired


def pytest_collection_finish(session: pytest.Session) -> None:
    state = _state(session.config)
    if state is not None:
        state.selected = [
            item.scenario.case_id for item in session.items if isinstance(item, ScenarioItem)
        ]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Mark the report folder unfinished until this session writes its report (docs/ci.md)."""
    config = session.config
    state = _state(config)
    if state is None or not state.report_dir or _is_xdist_worker(config):
        return
    if config.option.collectonly:
        return
    from presence_conformance.harness.output import write_unfinished

    try:
        write_unfinished(state.session.run_result, Path(state.report_dir))
    except Exception:  # the final write will fail the same way and say so in the summary
        pass


# -- the end of the session: workers hand over, the controller (or the only process) writes -------


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = _state(config)
    if state is None:
        return
    state.session.stop()
    if config.option.collectonly:
        return  # nothing ran: no report, no verdict
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        state.session.mark_partial("interrupted")
    if _is_xdist_worker(config):
        config.workeroutput[WORKER_OUTPUT_KEY] = json.dumps(  # type: ignore[attr-defined]
            {
                "run": state.session.finish().to_json(),
                "selected": len(state.selected),
            },
            default=str,
        )
        return
    controller = _is_xdist_controller(config)
    if controller:
        from presence_conformance.harness.output import merge_worker_runs

        parts = [*state.worker_runs, state.session.finish()]
        run = merge_worker_runs(parts)
        state.session.run_result = run
        expected = state.selected_elsewhere
    else:
        expected = len(state.selected)
    ran = sum(1 for c in state.session.run_result.cases if c.kind == "scenario")
    if expected is not None and ran < expected and not state.session.run_result.partial:
        state.session.mark_partial(f"{expected - ran} of {expected} selected cases did not run")
    run = state.session.finish()
    if state.report_dir:
        from presence_conformance.harness.output import write_run

        try:
            state.written = write_run(run, Path(state.report_dir), strict=state.strict)
        except Exception as exc:  # the test outcomes stand; say loudly that the report is missing
            state.report_error = f"{type(exc).__name__}: {exc}"


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist, on the controller: keep the results a worker sent in its workeroutput."""
    state = _state(node.config)
    if state is None:
        return
    raw = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY)
    if raw is None:
        if error:
            worker = getattr(getattr(node, "gateway", None), "id", "?")
            state.session.mark_partial(f"worker {worker} went down without results: {error}")
        return
    from presence_conformance.harness.results import RunResult

    data = json.loads(raw)
    state.worker_runs.append(RunResult.from_json(data["run"]))
    state.selected_elsewhere = max(state.selected_elsewhere or 0, int(data.get("selected", 0)))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = _state(config)
    if state is None or _is_xdist_worker(config) or config.option.collectonly:
        return
    run: RunResult = state.session.run_result
    counts = {k: v for k, v in run.counts().items() if v}
    tr = terminalreporter
    tr.section(f"presence conformance: {state.session.adapter_name}")
    verdict = _headline(run, state.strict)
    summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no cases ran"
    tr.write_line(
        f"{len(run.cases)} case(s): {summary} -> {verdict}"
        + (f" (partial: {run.partial_reason})" if run.partial else "")
    )
    for path in state.written:
        tr.write_line(f"report: {path}")
    if state.report_error:
        tr.write_line(f"report NOT written: {state.report_error}", red=True)


def _headline(run: RunResult, strict: bool) -> str:
    """The verdict as the reports word it (CONFORMING EXCEPT KNOWN DEVIATIONS when failing
    cases were excused by a known-failing list)."""
    if not run.conforming(strict=strict):
        return "NOT conforming"
    try:
        from presence_conformance.harness.reports.common import verdict
    except ModuleNotFoundError:
        return "conforming"
    v = verdict(run, strict=strict)
    return (
        f"conforming except known deviations ({v.deviation_count})"
        if v.known_cases
        else "conforming"
    )


# -- fixtures for users' own tests ------------------------------------------------------------------


def _require_state(request: pytest.FixtureRequest) -> _State:
    state = _state(request.config)
    if state is None:
        pytest.skip("needs the presence conformance plugin: run pytest with --adapter NAME")
    return state


@pytest.fixture(scope="session")
def presence_adapter(request: pytest.FixtureRequest) -> Adapter:
    """The adapter given by `--adapter`, started (the one the scenario items use)."""
    state = _require_state(request)
    state.session.start()
    if state.session.start_error:
        pytest.fail(
            f"adapter {state.session.adapter_name!r} did not start: {state.session.start_error}",
            pytrace=False,
        )
    return state.session.adapter


@pytest.fixture(scope="session")
def presence_run(request: pytest.FixtureRequest, presence_adapter: Adapter) -> Callable[..., Any]:
    """`presence_run(coro, timeout=None)`: run a coroutine on the adapter's event loop.

    Adapter objects belong to that loop: await their methods only through this function.
    A coroutine function (no arguments) is accepted too. Raises TimeoutError after `timeout`.
    """
    state = _require_state(request)
    return state.session.run


@pytest.fixture(scope="session")
def conformance_run(request: pytest.FixtureRequest) -> RunResult:
    """The `RunResult` of this process so far (a live object: cases are appended as they run)."""
    return _require_state(request).session.run_result

"""Running scenarios against an adapter: `run_scenario` for one case, `run_scenarios` for a run.

The driver drives and records (`presence_conformance.harness.run.driver`), the checks judge
(`presence_conformance.harness.checks`). A case never raises: whatever happens it returns a `CaseResult` with the history, and the adapter's
connections are closed at the end (bounded) even when the case failed.

Outcome of a case, worst first: `error` (the adapter raised something other than
`PresenceError`, or a call broke the contract), `timeout` (an operation did not complete within
`op_timeout`), `fail` (a MUST requirement violated), `non-strict` (only SHOULDs violated),
`unsupported` (the case needs a feature the adapter does not declare; nothing is run), `pass`.
INFO notes never change the outcome.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable, Iterable

from presence_conformance.harness.adapter import Adapter
from presence_conformance.harness.checks import run_checks
from presence_conformance.harness.checks.server_frames import collect_server_frames
from presence_conformance.harness.checks.wire import collect_wire_frames
from presence_conformance.harness.results import CaseResult, Outcome, RunResult, Violation
from presence_conformance.harness.run.driver import CaseDriver
from presence_conformance.harness.run.settings import RunSettings
from presence_conformance.harness.run.stops import Abort, Stop
from presence_conformance.harness.scenario import Scenario

__all__ = ["RunSettings", "judge", "run_scenario", "run_scenarios"]


def judge(violations: list[Violation], infos: list[Violation]) -> Outcome:
    """The outcome of a case that ran to the end: fail on a MUST, non-strict on a SHOULD."""
    levels = {v.level for v in violations}
    if "MUST" in levels:
        return Outcome.FAIL
    if "SHOULD" in levels:
        return Outcome.NON_STRICT
    return Outcome.PASS


async def run_scenario(
    scenario: Scenario, adapter: Adapter, settings: RunSettings | None = None
) -> CaseResult:
    """Run one scenario against a started adapter and judge it. Never raises (except
    cancellation)."""
    settings = settings or RunSettings()
    started = time.monotonic()
    result = CaseResult(
        case_id=scenario.case_id,
        adapter=adapter.name,
        outcome=Outcome.PASS,
        requirements=list(scenario.requirements),
        scenario_file=str(scenario.source) if scenario.source else None,
    )
    missing = sorted(f.value for f in scenario.needed_features() if not adapter.supports(f))
    if missing:
        result.outcome = Outcome.UNSUPPORTED
        result.error = f"needs feature(s) the adapter does not declare: {', '.join(missing)}"
        result.duration = time.monotonic() - started
        return result
    driver = None
    try:
        driver = CaseDriver(scenario, adapter, settings)
        try:
            await driver.run()
        except Stop as stop:
            driver.record.stopped = str(stop)
        finally:
            await _close(driver)
        collect_wire_frames(driver.record, adapter)
        collect_server_frames(driver.record, adapter)
        violations, infos = run_checks(driver.record)
        result.violations, result.infos = violations, infos
        result.outcome = judge(violations, infos)
        if driver.record.stopped:
            result.error = f"stopped early: {driver.record.stopped}"
    except Abort as abort:
        result.outcome, result.error = abort.outcome, abort.message
    except (asyncio.CancelledError, SystemExit, GeneratorExit) as exc:
        task = asyncio.current_task()
        if isinstance(exc, asyncio.CancelledError) and (task is None or task.cancelling()):
            raise  # a timeout or Ctrl-C cancelled the case; otherwise the adapter raised it
        result.outcome = Outcome.ERROR
        result.error = f"the adapter raised {exc!r}, which ends this case only (docs/adapters.md)"
    except Exception as exc:  # a bug in the harness: report it, never raise out of the case
        result.outcome = Outcome.ERROR
        result.error = (
            "internal error in the runner: " + "".join(traceback.format_exception(exc)[-4:]).strip()
        )
    if driver is not None and (settings.keep_history or result.outcome.is_failure):
        result.history = driver.history.entries
    if driver is not None:
        driver.release()
    result.duration = time.monotonic() - started
    return result


async def _close(driver: CaseDriver) -> None:
    try:
        async with asyncio.timeout(driver.settings.close_timeout + 1.0):
            await driver.close_all()
    except (TimeoutError, Exception):  # closing is best effort: the case has been recorded
        pass


async def run_scenarios(
    scenarios: Iterable[Scenario],
    adapter: Adapter,
    settings: RunSettings | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> RunResult:
    """Run scenarios one after the other against a started adapter; `on_result` is called after
    each case."""
    run = RunResult(
        adapter=adapter.name,
        started=time.time(),
        adapter_options=dict(getattr(adapter, "option_values", {}) or {}),
    )
    for scenario in scenarios:
        case = await run_scenario(scenario, adapter, settings)
        run.cases.append(case)
        if on_result is not None:
            on_result(case)
    run.finished = time.time()
    return run

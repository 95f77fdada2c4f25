"""The one core shared by the CLI and the pytest plugin: an adapter on its own event loop.

`ConformanceSession` resolves nothing and decides nothing about exit codes or pytest outcomes;
it owns what both front ends need to do the same way:

- start the adapter once, on ONE asyncio loop running in a daemon background thread, so the
  synchronous caller (argparse main, pytest items, Hypothesis rules) bridges into it with
  `run_coroutine_threadsafe`;
- run each scenario through `presence_conformance.harness.run.runner.run_scenario`, bounded by a wall-clock limit so a
  hung adapter can never hang the caller (the runner bounds each operation; this is the net
  under it), and detect an adapter that blocks its event loop;
- fill in what a result needs to be replayed (scenario file, replay command);
- collect the `CaseResult`s into a `RunResult` that can be written at any moment, also after an
  interrupt (`partial`);
- cancel a run from a signal handler (`ConformanceSession.cancel`): the call in flight on the
  adapter's loop is cancelled there, the caller gets `RunCancelled`, and no exception is ever
  raised into whatever the caller's thread was doing (a `KeyboardInterrupt` raised by a signal
  handler can land in a `finally`, a finalizer or a cleanup and be lost);
- keep adapter code from ending the run: a `BaseException` it raises on the loop (SystemExit,
  KeyboardInterrupt, GeneratorExit, a CancelledError nobody asked for) becomes `AdapterEscape`,
  the case's `error`, and the loop thread outlives the ones its own tasks let out;
- keep what is recorded small (case errors and violation messages cut with a marker).

Text shared by both front ends (a failure's description, the replay command) lives here too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fnmatch
import inspect
import json
import re
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from presence_conformance.harness.adapter import Adapter
from presence_conformance.harness.record.bounds import bounded_text
from presence_conformance.harness.results import CaseResult, Outcome, RunResult
from presence_conformance.harness.run.replay import replay_command
from presence_conformance.harness.run.stops import BASE_EXCEPTION_NOTE, HarnessError
from presence_conformance.harness.version import harness_version
from presence_conformance.scenarios import scenarios_root

__all__ = [
    "AdapterEscape",
    "AdapterLoop",
    "ConformanceSession",
    "HarnessError",
    "RunCancelled",
    "area_of",
    "default_scenarios_root",
    "describe_case",
    "harness_version",
    "load_suite",
    "printable",
    "replay_command",
    "select_scenarios",
]

T = TypeVar("T")

RUNNER_INTERNAL_ERROR = (
    "internal error in the runner"  # how presence_conformance.harness.run.runner marks its own bugs
)
START_TIMEOUT = 60.0  # seconds adapter.start() may take
STOP_TIMEOUT = 15.0  # seconds adapter.stop() may take
PING_TIMEOUT = 2.0  # seconds a healthy loop needs to run a no-op
CANCEL_GRACE = 3.0  # seconds a cancelled call may take to unwind before its caller moves on
MAX_ERROR_CHARS = 8_000  # of a case's error text (tracebacks fit; an adapter's megabyte does not)
MAX_MESSAGE_CHARS = 2_000  # of a violation's message


class AdapterEscape(Exception):
    """Adapter code raised a `BaseException` the harness did not cause.

    `SystemExit`, `KeyboardInterrupt` (raised on the adapter's loop thread, so not a Ctrl-C of
    the harness), `GeneratorExit`, or a `CancelledError` while nobody cancelled the call: an
    adapter must not end the run with them. The loop bridge turns them into this exception, so
    they end the call that raised them (the case is an `error`, `start()` a start error) and
    the session goes on. `original` is the exception raised.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(_escape_message(original))
        self.original = original


class RunCancelled(Exception):
    """The run was cancelled (`ConformanceSession.cancel`, e.g. on SIGINT or SIGTERM): the call
    that raises it was cancelled on the adapter's loop, or never started."""


def _escape_message(exc: BaseException) -> str:
    """How a case's error names a `BaseException` raised by adapter code."""
    return f"the adapter raised {type(exc).__name__}({_exc_args(exc)}), {BASE_EXCEPTION_NOTE}"


def _exc_args(exc: BaseException) -> str:
    return ", ".join(_short(repr(a), 200) for a in exc.args)


def default_scenarios_root() -> Path:
    """The scenario files shipped with the package (`presence_conformance.scenarios`)."""
    return scenarios_root()


def load_suite(root: Path | str | None = None) -> list[Any]:
    """All scenarios under `root` (default: the packaged ones). Raises `ScenarioError`."""
    from presence_conformance.harness.scenario import load_scenarios

    root = Path(root) if root is not None else default_scenarios_root()
    return sorted(load_scenarios(root), key=lambda s: s.case_id)


def select_scenarios(scenarios: Sequence[Any], patterns: Iterable[str] | None) -> list[Any]:
    """The scenarios whose case_id or one of whose requirement IDs matches a pattern.

    Patterns are fnmatch globs (`history/*`, `leave.*`, `history/limit-default-100`); several
    patterns select the union. No patterns: everything.
    """
    patterns = [p for p in (patterns or ()) if p]
    if not patterns:
        return list(scenarios)
    return [
        s
        for s in scenarios
        if any(
            fnmatch.fnmatchcase(s.case_id, p)
            or any(fnmatch.fnmatchcase(r, p) for r in s.requirements)
            for p in patterns
        )
    ]


def area_of(case_id: str) -> str:
    """The area of a case: the folder of its scenario file (`history/limit-default-100`)."""
    return case_id.split("/", 1)[0] if "/" in case_id else "other"


# -- the loop thread -----------------------------------------------------------------------------


class AdapterLoop:
    """An asyncio event loop in a daemon thread, with a bounded, interruptible bridge into it."""

    def __init__(self, name: str = "presence-adapter-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.blocked: str | None = None  # why the loop is considered unusable
        # BaseExceptions that adapter tasks or callbacks let out of the loop (it keeps running)
        self.escaped: list[BaseException] = []
        # set by cancel(): cancellable calls in flight are cancelled, later ones do not start
        self.cancel_requested = False
        self._calls: set[_Call] = set()  # calls in flight (touched on the loop thread only)
        self._loop.set_exception_handler(self._exception_handler)
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            while True:
                try:
                    self._loop.run_forever()
                except (SystemExit, KeyboardInterrupt) as exc:
                    # asyncio re-raises these out of run_forever when a task or a callback
                    # raises them; on this thread they can only come from adapter code (signals
                    # go to the main thread). Keep the loop alive; the session reports them.
                    self.escaped.append(exc)
                    continue
                break  # stopped by close()
        finally:
            self._drain()

    @staticmethod
    def _exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), SystemExit | KeyboardInterrupt):
            return  # in `escaped` already, and the case's error says so: no "never retrieved" log
        loop.default_exception_handler(context)

    def _drain(self) -> None:
        try:
            tasks = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:  # tasks that ignore cancellation get a bounded grace, then are abandoned
                self._loop.run_until_complete(asyncio.wait(tasks, timeout=PING_TIMEOUT))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        except Exception:  # shutting down: nothing useful left to report to
            pass
        finally:
            self._loop.close()

    def run(self, awaitable: Awaitable[T], timeout: float | None, *, cancellable: bool = True) -> T:
        """Run `awaitable` on the loop and wait at most `timeout` seconds for its result.

        On timeout or KeyboardInterrupt the task is cancelled and the exception propagates
        (`TimeoutError`). If the loop does not even run a no-op afterwards, `blocked` is set:
        the adapter blocked its event loop and nothing more can run on it. A `cancellable` call
        raises `RunCancelled` once `cancel()` was called: at once if it had not started, else
        when its task has unwound from the cancellation (at most `CANCEL_GRACE` seconds later;
        a task that ignores it is abandoned on the loop).
        """
        refusal = self.blocked or (
            None if self._thread.is_alive() else "the adapter event loop has stopped"
        )
        if refusal:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never awaited, on purpose: no "never awaited" warning
            raise RuntimeError(refusal)
        call = _Call(cancellable)
        future = asyncio.run_coroutine_threadsafe(self._call(awaitable, call), self._loop)
        future.add_done_callback(lambda _: call.wake.set())
        try:
            finished = call.wake.wait(timeout)
            if call.cancelled:
                with contextlib.suppress(BaseException):
                    future.result(CANCEL_GRACE)
                raise RunCancelled("cancelled")
            if not finished:
                future.cancel()
                self._check_alive()
                raise TimeoutError(f"no result after {timeout:.1f}s")
            return future.result(0)
        except BaseException:
            if not future.done():
                future.cancel()
            raise

    async def _call(self, awaitable: Awaitable[T], call: _Call) -> T:
        """`awaitable` on the loop, as `call` (which `cancel()` can cancel)."""
        call.task = asyncio.current_task()
        self._calls.add(call)
        try:
            if call.cancellable and self.cancel_requested:
                call.cancelled = True
                if inspect.iscoroutine(awaitable):
                    awaitable.close()
                raise RunCancelled("cancelled before it started")
            return await _as_coroutine(awaitable)
        finally:
            self._calls.discard(call)

    def cancel(self) -> None:
        """Cancel the cancellable calls in flight, and refuse the ones made from now on.

        Safe in a signal handler, on any thread: it sets a flag and wakes the loop (the
        cancelling itself happens on the loop thread); it takes no lock and raises nothing.
        """
        self.cancel_requested = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to cancel
            self._loop.call_soon_threadsafe(self._cancel_calls)

    def _cancel_calls(self) -> None:
        for call in list(self._calls):
            if call.cancellable and call.task is not None and not call.task.done():
                call.cancelled = True
                call.task.cancel()
                call.wake.set()

    def _check_alive(self) -> None:
        probe = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self._loop)
        try:
            probe.result(PING_TIMEOUT)
        except concurrent.futures.TimeoutError:
            probe.cancel()
            self.blocked = (
                "the adapter blocked its event loop (a synchronous call inside an "
                "async method?); no further case can run"
            )

    def close(self, timeout: float = PING_TIMEOUT * 2) -> None:
        """Stop the loop, cancel what is left and join the thread (abandoned if it is stuck)."""
        if self._thread.is_alive():
            try:
                self._loop.call_soon_threadsafe(self._loop.stop)
            except RuntimeError:  # already closed
                pass
            self._thread.join(timeout)


class _Call:
    """One call into the loop: its task, whether `cancel()` cancelled it, and the event its
    caller waits on (set when the call ends or is cancelled)."""

    def __init__(self, cancellable: bool) -> None:
        self.cancellable = cancellable
        self.cancelled = False
        self.task: asyncio.Task[Any] | None = None
        self.wake = threading.Event()


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    """Await `awaitable` on the loop; a BaseException the harness did not cause becomes
    `AdapterEscape` (an `Exception`), so it neither stops the loop thread nor reaches the caller
    as if the harness itself were exiting or interrupted."""
    mine = asyncio.current_task()
    try:
        return await awaitable
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise  # the bridge cancelled it (timeout, Ctrl-C): a real cancellation
        raise AdapterEscape(exc) from exc
    except GeneratorExit as exc:
        if _running_task() is not mine:
            raise  # this coroutine is being closed (an abandoned call collected), not adapter code
        raise AdapterEscape(exc) from exc
    except (SystemExit, KeyboardInterrupt) as exc:
        raise AdapterEscape(exc) from exc


def _running_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no loop running on this thread
        return None


# -- the session ---------------------------------------------------------------------------------


class ConformanceSession:
    """One adapter, started once, running scenarios and collecting their results.

    `adapter_name` is the name the user gave (`reference`, `pkg.mod:Class`, `mutant:x`): it is
    what replay commands and reports carry, because it is what resolves the adapter again.
    """

    def __init__(
        self,
        adapter: Adapter,
        adapter_name: str | None = None,
        options: Mapping[str, str] | None = None,
        settings: Any = None,
    ) -> None:
        self.adapter = adapter
        self.adapter_name = adapter_name or adapter.name
        self.options = dict(options or {})
        self.settings = settings if settings is not None else _default_settings()
        self.run_result = RunResult(
            adapter=self.adapter_name,
            started=time.time(),
            harness_version=harness_version(),
            adapter_options=dict(self.options),
        )
        self.start_error: str | None = None
        self.harness_error: HarnessError | None = None
        self.internal_errors: list[str] = []  # cases the runner itself failed on (its own bugs)
        self.cancelled: str | None = None  # why the run was cancelled (`cancel`)
        self._loop: AdapterLoop | None = None
        self._started = False
        self._lock = threading.Lock()

    # lifecycle

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        """Start the loop thread and `await adapter.start()` (once; later calls do nothing).

        A failing or hanging start does not raise: `start_error` says why, and every case run
        afterwards is an `error` result naming it, so reports show what happened.
        """
        with self._lock:
            if self._started or self.start_error:
                return
            self._loop = AdapterLoop()
            if self.cancelled is not None:  # cancelled while there was no loop to tell
                self._loop.cancel()
            try:
                self._loop.run(self.adapter.start(), START_TIMEOUT)
            except RunCancelled:
                raise
            except TimeoutError:
                self.start_error = f"adapter.start() did not finish within {START_TIMEOUT:.0f}s"
            except AdapterEscape as exc:
                self.start_error = f"adapter.start(): {exc}"
            except Exception as exc:
                self.start_error = (
                    f"adapter.start() raised {type(exc).__name__}: {exc}\n"
                    + "".join(traceback.format_exception(exc)[-6:])
                )
            else:
                self._started = True

    def run(
        self, awaitable: Awaitable[T] | Callable[[], Awaitable[T]], timeout: float | None = None
    ) -> T:
        """Run a coroutine (or a coroutine function) on the adapter's loop and return its result.

        Used by the pytest fixture `presence_run` for users' own async checks.
        """
        self.start()
        if self.start_error:
            raise RuntimeError(f"the adapter did not start: {self.start_error}")
        assert self._loop is not None
        if callable(awaitable) and not isinstance(awaitable, Coroutine):
            awaitable = awaitable()
        return self._loop.run(awaitable, timeout if timeout is not None else self.case_timeout())

    def cancel(self, reason: str = "interrupted") -> None:
        """Stop the run: the case (or adapter start) in flight is cancelled on the adapter's
        loop and `run_case`/`run_all` raise or stop with `RunCancelled`; `stop()` still runs.

        Meant for a signal handler (the CLI's SIGINT/SIGTERM): it takes no lock and raises
        nothing into the thread it interrupts; `run_all` marks the run partial with `reason`.
        """
        if self.cancelled is None:
            self.cancelled = reason
        loop = self._loop
        if loop is not None:
            loop.cancel()

    def stop(self) -> None:
        """`await adapter.stop()` (bounded) and stop the loop thread. Safe to call twice."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            # also after a failed start: a half-started adapter may hold processes or sockets
            if not loop.blocked:
                loop.run(self.adapter.stop(), STOP_TIMEOUT, cancellable=False)
        except BaseException:  # a failing stop must not hide the run's results
            pass
        finally:
            self._started = False
            loop.close()

    # running cases

    def case_timeout(self, scenario: Any = None) -> float:
        """Wall-clock bound on one case: generous, only there to catch what the runner could not."""
        op_timeout = float(getattr(self.settings, "op_timeout", 5.0) or 5.0)
        iter_steps = getattr(scenario, "iter_steps", None)
        steps = len(iter_steps()) if callable(iter_steps) else 0
        per_step = 2 * op_timeout + float(getattr(self.adapter, "leave_grace", 0.0) or 0.0)
        return 30.0 + per_step * max(steps, 5)

    def run_case(self, scenario: Any) -> CaseResult:
        """Run one scenario and record its result; adapter trouble becomes an `error`/`timeout`.

        Raises `HarnessError` (after recording an `error` result) when the runner itself broke,
        and lets KeyboardInterrupt and `RunCancelled` through (the running case is cancelled and
        not recorded).
        """
        self.start()
        started = time.monotonic()
        if self.start_error:
            return self._record(
                self._synthetic(
                    scenario, Outcome.ERROR, f"adapter failed to start: {self.start_error}"
                )
            )
        assert self._loop is not None
        if self._loop.blocked:
            return self._record(self._synthetic(scenario, Outcome.ERROR, self._loop.blocked))
        from presence_conformance.harness.run.runner import run_scenario

        limit = self.case_timeout(scenario)
        escaped = len(self._loop.escaped)
        try:
            result = self._loop.run(run_scenario(scenario, self.adapter, self.settings), limit)
        except AdapterEscape as exc:
            result = self._synthetic(scenario, Outcome.ERROR, str(exc))
        except TimeoutError:
            message = f"the case did not finish within {limit:.0f}s"
            if self._loop.blocked:
                message += f"; {self._loop.blocked}"
            result = self._synthetic(scenario, Outcome.TIMEOUT, message)
        except (KeyboardInterrupt, SystemExit, RunCancelled):
            raise
        except BaseException as exc:
            text = "".join(traceback.format_exception(exc))
            case = self._synthetic(scenario, Outcome.ERROR, f"harness error: {exc!r}\n{text}")
            case.duration = time.monotonic() - started
            self._record(case)
            raise HarnessError(
                f"the runner failed on {scenario.case_id}: {exc!r}\n{text}", case
            ) from exc
        stray = self._loop.escaped[escaped:]
        if stray and result.outcome is not Outcome.ERROR:
            result.outcome = Outcome.ERROR
            result.error = (
                f"{_escape_message(stray[0])}; it came from a task or callback of the adapter"
                + (f" (and {len(stray) - 1} more)" if len(stray) > 1 else "")
                + (f"\n{result.error}" if result.error else "")
            )
        if not result.duration:
            result.duration = time.monotonic() - started
        if result.outcome is Outcome.ERROR and (result.error or "").startswith(
            RUNNER_INTERNAL_ERROR
        ):
            self.internal_errors.append(result.case_id)
        return self._record(self.complete(result, scenario))

    def run_all(
        self,
        scenarios: Sequence[Any],
        on_result: Callable[[int, int, CaseResult], None] | None = None,
        stop: Callable[[CaseResult], str | None] | None = None,
    ) -> RunResult:
        """Run `scenarios` in order; returns the run (partial after Ctrl-C or a harness error,
        or when `stop(case)` returns a reason to stop after that case, e.g. `--maxfail`).

        A cancellation (`cancel`) or a KeyboardInterrupt is absorbed here and reported as
        `partial_reason` (the cancel's reason, or "interrupted") so the caller can write the
        report; a `HarnessError` stops the run the same way and is kept in `harness_error`.
        """
        self.harness_error = None
        total = len(scenarios)
        try:
            for index, scenario in enumerate(scenarios, 1):
                if self.cancelled is not None:
                    raise RunCancelled(self.cancelled)
                case = self.run_case(scenario)
                if on_result is not None:
                    on_result(index, total, case)
                reason = stop(case) if stop is not None else None
                if reason is not None and index < total:
                    self.mark_partial(reason)
                    break
        except (KeyboardInterrupt, RunCancelled):
            self.mark_partial(self.cancelled or "interrupted")
        except HarnessError as exc:
            self.harness_error = exc
            self.mark_partial(f"harness error: {str(exc).splitlines()[0]}")
        return self.finish()

    def mark_partial(self, reason: str) -> None:
        self.run_result.partial = True
        self.run_result.partial_reason = (
            f"{self.run_result.partial_reason}; {reason}"
            if self.run_result.partial_reason
            else reason
        )

    def finish(self) -> RunResult:
        """The run so far, with `finished` stamped (call again later to restamp)."""
        self.run_result.finished = time.time()
        return self.run_result

    def add_results(self, cases: Iterable[CaseResult]) -> None:
        """Merge results produced elsewhere (pytest-xdist workers)."""
        for case in cases:
            self._record(case)

    # helpers

    def _record(self, case: CaseResult) -> CaseResult:
        # what an implementation returned can reach these texts (an adapter's 1 MB exception
        # message, a 100 KB clientId quoted by a check): keep the report small
        if case.error and len(case.error) > MAX_ERROR_CHARS:
            case.error = bounded_text(case.error, MAX_ERROR_CHARS)
        for violation in (*case.violations, *case.infos):
            if len(violation.message) > MAX_MESSAGE_CHARS:
                violation.message = bounded_text(violation.message, MAX_MESSAGE_CHARS)
        with self._lock:
            self.run_result.cases.append(case)
        return case

    def _synthetic(self, scenario: Any, outcome: Outcome, error: str) -> CaseResult:
        source = getattr(scenario, "source", None)
        return self.complete(
            CaseResult(
                case_id=scenario.case_id,
                adapter=self.adapter_name,
                outcome=outcome,
                requirements=list(scenario.requirements),
                error=error,
                scenario_file=str(source) if source else None,
            )
        )

    def complete(self, case: CaseResult, scenario: Any = None) -> CaseResult:
        """Fill in the scenario file and the replay command where the runner left them out."""
        if (
            case.scenario_file is None
            and scenario is not None
            and getattr(scenario, "source", None)
        ):
            case.scenario_file = str(scenario.source)
        if case.replay is None:
            case.replay = replay_command(case.scenario_file, self.adapter_name, self.options)
        return case


def _default_settings() -> Any:
    from presence_conformance.harness.run.runner import RunSettings

    return RunSettings()


# -- text shared by the CLI and the pytest plugin -------------------------------------------------

# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides/isolates
# that reorder what a terminal shows: an implementation's text must not drive the terminal.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with control characters written as escapes (`\\x1b`, `\\u202e`); tab and newline
    kept. Everything the front ends print that may carry an implementation's text passes here."""
    return _CONTROL.sub(_escape_control, text)


def _escape_control(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _short(value: Any, width: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def format_history(
    entries: Sequence[dict], around: int | None = None, before: int = 8, after: int = 4
) -> list[str]:
    """A few history entries (around `around`, else the last ones) as aligned text lines."""
    if not entries:
        return []
    if around is None:
        chosen = list(entries[-(before + after) :])
    else:
        chosen = [e for e in entries if around - before <= e.get("index", 0) <= around + after]
    lines = []
    for e in chosen:
        mark = ">" if around is not None and e.get("index") == around else " "
        step = e.get("step")
        lines.append(
            f"{mark}#{e.get('index', '?'):<4} {e.get('time', 0):8.4f}s "
            f"{e.get('process', '')!s:<10} {e.get('type', '')!s:<7} "
            f"{e.get('f', '')!s:<12} {_short(e.get('value'), 100)}"
            + (f"  (step {step})" if step is not None else "")
        )
    return lines


def describe_case(case: CaseResult, *, history: bool = True, max_violations: int = 10) -> str:
    """A readable account of a case that did not pass: outcome, violations, history, replay."""
    lines = [
        f"{case.case_id}: {case.outcome.value}"
        + (f" ({case.duration:.2f}s)" if case.duration else "")
    ]
    if case.scenario_file:
        lines.append(f"  scenario: {case.scenario_file}")
    if case.error:
        first, *rest = case.error.rstrip().splitlines() or [""]
        lines.append(f"  error: {first}")
        lines.extend(f"    {line}" for line in rest[-15:])
    for v in case.violations[:max_violations]:
        where = []
        if v.step is not None:
            where.append(f"step {v.step}")
        if v.history_index is not None:
            where.append(f"history #{v.history_index}")
        lines.append(
            f"  [{v.level}] {v.requirement}: {v.message}"
            + (f" ({', '.join(where)})" if where else "")
        )
        lines.append(f"      expected: {_short(v.expected)}")
        lines.append(f"      observed: {_short(v.observed)}")
        if v.check:
            lines.append(f"      check:    {v.check}")
    if len(case.violations) > max_violations:
        lines.append(f"  … and {len(case.violations) - max_violations} more violation(s)")
    if history and case.history:
        around = next(
            (v.history_index for v in case.violations if v.history_index is not None), None
        )
        lines.append(
            "  history" + (f" around #{around}:" if around is not None else " (last entries):")
        )
        lines.extend("    " + line for line in format_history(case.history, around))
    if case.replay:
        lines.append(f"  replay: {case.replay}")
    return printable("\n".join(lines))

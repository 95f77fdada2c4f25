"""An adapter cannot fake a green run: every BaseException it raises ends one case as `error`.

SystemExit, KeyboardInterrupt (raised on the adapter's loop thread), GeneratorExit and a
CancelledError nobody asked for, from `start()`, `connect()`, an operation, `quiesce()`,
`stop()` or a stray task of the adapter: the run goes on, writes its report and exits with an
honest code. A process-level exit (`os._exit(0)`) is caught by the parent process of the
console command (`harness/cli/supervise.py`): exit 3 and a report marked unfinished.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import presence_conformance.harness.adapters.registry
import presence_conformance.harness.output
import pytest
from presence_conformance.harness.adapters.reference import (
    ReferenceAdapter,
    ReferenceConnection,
    ReferencePresence,
)
from presence_conformance.harness.cli import main
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.harness.scenario import scenario_from_dict
from presence_conformance.harness.session import ConformanceSession

# imported here, not first inside a test: pytest rewrites these modules on import (ast.parse), and
# CPython 3.11's AST conversion state is per interpreter, so a parse in the main thread racing a
# traceback being formatted on an adapter's loop thread can fail with "AST constructor recursion
# depth mismatch"
_PREIMPORTED = (presence_conformance.harness.adapters.registry, presence_conformance.harness.output)

pytest_plugins = ["pytester"]

ESCAPES: dict[str, Callable[[], BaseException]] = {
    "SystemExit(0)": lambda: SystemExit(0),
    "SystemExit(3)": lambda: SystemExit(3),
    "KeyboardInterrupt": KeyboardInterrupt,
    "GeneratorExit": GeneratorExit,
    "CancelledError": asyncio.CancelledError,
}

SCENARIO = {
    "description": "An entered member is in the presence set.",
    "requirements": ["enter.adds-member"],
    "clients": {"alice": {"client_id": "alice"}, "bob": {"client_id": "bob"}},
    "channels": ["room"],
    "steps": [
        {"enter": {"client": "alice", "channel": "room", "data": "a"}},
        {"get": {"client": "bob", "channel": "room", "expect": [{"client": "alice", "data": "a"}]}},
    ],
}


def _scenarios(n: int = 3) -> list[Any]:
    return [scenario_from_dict(SCENARIO, case_id=f"enter/case-{i}") for i in range(n)]


def _adapter(where: str, make: Callable[[], BaseException]) -> ReferenceAdapter:
    """A reference adapter that raises `make()` in `where`."""

    class Presence(ReferencePresence):
        async def enter(self, data: Any = None) -> None:
            if where == "enter":
                raise make()
            await super().enter(data)

    class Connection(ReferenceConnection):
        presence_class = Presence

    class Raising(ReferenceAdapter):
        connection_class = Connection

        async def start(self) -> None:
            await super().start()
            if where == "start":
                raise make()

        async def connect(self, client_id: Any, capability: Any = None) -> Any:
            if where == "connect":
                raise make()
            return await super().connect(client_id, capability)

        async def quiesce(self) -> bool:
            if where == "quiesce":
                raise make()
            return await super().quiesce()

        async def stop(self) -> None:
            await super().stop()
            if where == "stop":
                raise make()

    return Raising()


def _run(adapter: ReferenceAdapter, n: int = 3) -> tuple[ConformanceSession, list[Any]]:
    session = ConformanceSession(adapter, settings=RunSettings(op_timeout=1.0))
    try:
        run = session.run_all(_scenarios(n))
    finally:
        session.stop()
    return session, run.cases


@pytest.mark.parametrize("escape", list(ESCAPES))
@pytest.mark.parametrize("where", ["start", "connect", "enter", "quiesce"])
def test_a_base_exception_from_the_adapter_is_the_cases_error(where: str, escape: str) -> None:
    session, cases = _run(_adapter(where, ESCAPES[escape]))
    assert not session.run_result.partial and session.harness_error is None
    assert len(cases) == 3, "the session goes on with the next case"
    name = escape.split("(")[0]
    for case in cases:
        assert case.outcome is Outcome.ERROR, (where, escape, case.outcome, case.error)
        assert name in (case.error or ""), case.error
        assert "ends this case only" in (case.error or "")
    if where == "start":
        assert "adapter failed to start" in (cases[0].error or "")
    if where in ("enter", "quiesce") and escape != "KeyboardInterrupt":
        assert cases[0].history, "the runner keeps what it recorded before the escape"


@pytest.mark.parametrize("escape", list(ESCAPES))
def test_a_base_exception_from_stop_does_not_hide_the_verdict(escape: str) -> None:
    session, cases = _run(_adapter("stop", ESCAPES[escape]), n=2)
    assert [c.outcome for c in cases] == [Outcome.PASS, Outcome.PASS]
    assert not session.run_result.partial


def test_a_stray_task_of_the_adapter_raising_system_exit_is_an_error() -> None:
    """asyncio lets SystemExit out of run_forever when a task raises it: the loop survives and
    the case during which it happened is an error."""

    class Stray(ReferenceAdapter):
        raised = False

        async def connect(self, client_id: Any, capability: Any = None) -> Any:
            if not Stray.raised:
                Stray.raised = True

                async def boom() -> None:
                    raise SystemExit(0)

                asyncio.get_running_loop().create_task(boom())
                await asyncio.sleep(0.05)
            return await super().connect(client_id, capability)

    _session, cases = _run(Stray())
    assert [c.outcome for c in cases] == [Outcome.ERROR, Outcome.PASS, Outcome.PASS]
    assert "SystemExit" in (cases[0].error or "") and "task or callback" in (cases[0].error or "")


def test_a_real_cancellation_still_cancels() -> None:
    """The session's own time limit cancels the case: that is a timeout, not an adapter error."""

    class Hangs(ReferenceAdapter):
        async def connect(self, client_id: Any, capability: Any = None) -> Any:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                await asyncio.sleep(10)  # ignores the runner's operation timeout once
                raise

    session = ConformanceSession(Hangs(), settings=RunSettings(op_timeout=0.2))
    session.case_timeout = lambda scenario=None: 1.0  # type: ignore[method-assign]
    try:
        case = session.run_case(_scenarios(1)[0])
    finally:
        session.stop()
    assert case.outcome is Outcome.TIMEOUT, case.error


# -- through the command line ------------------------------------------------------------------------

MODULE = """
import asyncio, os

from presence_conformance.harness.adapters.reference import ReferenceAdapter


class ExitsOnStart(ReferenceAdapter):
    async def start(self):
        raise SystemExit(0)


class ExitsOnConnect(ReferenceAdapter):
    async def connect(self, client_id, capability=None):
        raise SystemExit(0)


class ExitsInConstructor(ReferenceAdapter):
    def __init__(self, options=None):
        raise SystemExit(0)


class ProcessExit(ReferenceAdapter):
    async def connect(self, client_id, capability=None):
        os._exit(0)
"""


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "escaping_adapters.py"
    path.write_text(MODULE)
    root = tmp_path / "scenarios" / "enter"
    root.mkdir(parents=True)
    (root / "adds-member.yaml").write_text(json.dumps(SCENARIO))
    (root / "adds-member-again.yaml").write_text(json.dumps(SCENARIO))
    return path


def _cli(module: Path, cls: str, out: Path) -> list[str]:
    return [
        "run",
        "--adapter",
        f"{module}:{cls}",
        "--scenarios",
        str(module.parent / "scenarios"),
        "--report-dir",
        str(out),
    ]


@pytest.mark.parametrize("cls", ["ExitsOnStart", "ExitsOnConnect"])
def test_cli_system_exit_0_in_the_adapter_is_not_conforming(
    module: Path, tmp_path: Path, cls: str
) -> None:
    out = tmp_path / "out"
    assert main(_cli(module, cls, out)) == 1
    results = json.loads((out / "results.json").read_text())
    assert not results["partial"]
    assert [c["outcome"] for c in results["cases"]] == ["error", "error"]
    assert all("SystemExit" in c["error"] for c in results["cases"])


def test_cli_system_exit_outside_a_case_is_a_harness_failure(
    module: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_cli(module, "ExitsInConstructor", tmp_path / "out")) == 3
    assert "SystemExit(0) was raised outside a case" in capsys.readouterr().err


def _command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_CONFORMANCE_")}
    return subprocess.run(
        [sys.executable, "-m", "presence_conformance.harness.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_process_exit_0_in_the_adapter_exits_3_with_an_unfinished_report(
    module: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"stale": "a green report of an earlier run"}')
    proc = _command(*_cli(module, "ProcessExit", out), cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "did not finish" in proc.stderr and "exited with code 0" in proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["partial"] and results["partial_reason"].startswith("unfinished")
    assert results["cases"] == []


def test_supervised_command_keeps_its_verdicts(module: Path, tmp_path: Path) -> None:
    """Under the parent process the exit codes are the harness's: 0, 1, 2."""
    scenarios = str(module.parent / "scenarios")
    conforming = _command(
        "run", "--adapter", "reference", "--scenarios", scenarios, "--report-dir", "a", cwd=tmp_path
    )
    assert conforming.returncode == 0, conforming.stdout + conforming.stderr
    assert json.loads((tmp_path / "a" / "results.json").read_text())["partial"] is False
    failing = _command(*_cli(module, "ExitsOnConnect", tmp_path / "b"), cwd=tmp_path)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    usage = _command("run", "--adapter", "no-such-adapter", cwd=tmp_path)
    assert usage.returncode == 2, usage.stderr
    replay = _command(
        "replay", str(module.parent / "scenarios" / "enter" / "adds-member.yaml"),
        "--adapter", f"{module}:ProcessExit", cwd=tmp_path,
    )  # fmt: skip
    assert replay.returncode == 3 and "did not finish" in replay.stderr


# -- through the pytest plugin -------------------------------------------------------------------


@pytest.mark.parametrize("cls", ["ExitsOnStart", "ExitsOnConnect"])
def test_pytest_route_system_exit_0_fails_the_items(pytester: pytest.Pytester, cls: str) -> None:
    pytester.makepyfile(escaping_adapters=MODULE)
    folder = pytester.path / "my_scenarios" / "enter"
    folder.mkdir(parents=True)
    (folder / "adds-member.yaml").write_text(json.dumps(SCENARIO))
    (pytester.path / "pytest.ini").write_text("[pytest]\naddopts = --no-generation\n")
    result = pytester.runpytest_subprocess(
        f"--adapter=escaping_adapters:{cls}",
        "--scenarios",
        "my_scenarios",
        "--conformance-report",
        "out",
    )
    assert result.ret == 1, result.stdout.str()
    results = json.loads((pytester.path / "out" / "results.json").read_text())
    assert [c["outcome"] for c in results["cases"]] == ["error"]
    assert "SystemExit" in results["cases"][0]["error"]


def test_pytest_route_process_exit_leaves_an_unfinished_report(pytester: pytest.Pytester) -> None:
    """pytest's exit code is the adapter's here (no parent process): the report says it."""
    pytester.makepyfile(escaping_adapters=MODULE)
    folder = pytester.path / "my_scenarios" / "enter"
    folder.mkdir(parents=True)
    (folder / "adds-member.yaml").write_text(json.dumps(SCENARIO))
    (pytester.path / "pytest.ini").write_text("[pytest]\naddopts = --no-generation\n")
    out = pytester.path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"stale": "a green report of an earlier run"}')
    result = pytester.runpytest_subprocess(
        "--adapter=escaping_adapters:ProcessExit", "--scenarios", "my_scenarios",
        "--conformance-report", "out",
    )  # fmt: skip
    assert result.ret == 0  # what os._exit(0) chose
    results = json.loads((out / "results.json").read_text())
    assert results["partial"] and results["partial_reason"].startswith("unfinished")

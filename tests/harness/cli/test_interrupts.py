"""A cancelled run (SIGINT, SIGTERM) stops promptly and writes its partial report, wherever the
signal lands: before the first case (the adapter starting), between cases, inside a case (also
one whose adapter ignores the cancellation), while the report is written; a second signal ends
the process at once. Through the console command (the supervising parent forwards the signal)
and through `ConformanceSession.cancel` directly.

Each subprocess test waits for a marker the child prints at the point under test, so the
signal lands there whatever the machine's load; an operation timeout of 60 s makes a cancel
that is not acted on fail the test (`communicate` times out) instead of finishing the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.harness.scenario import scenario_from_dict
from presence_conformance.harness.session import CANCEL_GRACE, ConformanceSession
from sample_project import SCENARIOS
from support import write_files

ADAPTERS = '''
"""Adapters that tell the test where the run is (a line on stdout), then wait there."""

import asyncio, os, time

import presence_conformance.harness.output as output
from presence_conformance.harness.adapters.reference import ReferenceAdapter


def say(text):
    print(text, flush=True)


_write_reports = output.write_reports


def _slow_write_reports(run, *args, **kwargs):
    if run.cases:  # the run's own report, not the placeholder written at its start
        say("WRITING-REPORT")
        time.sleep(1.5)
    return _write_reports(run, *args, **kwargs)


if os.environ.get("PAUSE_IN_REPORT"):
    output.write_reports = _slow_write_reports


class Plain(ReferenceAdapter):
    pass


class SlowStart(ReferenceAdapter):
    async def start(self):
        say("STARTING")
        await asyncio.sleep(60)
        await super().start()


class BlocksInSecondCase(ReferenceAdapter):
    """The first case passes (two connects); the second blocks in its first connect."""

    connects = 0

    async def connect(self, client_id, capability=None):
        self.connects += 1
        if self.connects == 3:
            say("IN-CASE")
            await self.wait()
        return await super().connect(client_id, capability)

    async def wait(self):
        await asyncio.Event().wait()


class IgnoresCancellation(BlocksInSecondCase):
    async def wait(self):
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_files(tmp_path / "scenarios", SCENARIOS)
    (tmp_path / "interrupt_adapters.py").write_text(ADAPTERS)
    return tmp_path


class Run:
    """`presence-conformance run` as a user starts it (console command: a supervising parent)."""

    def __init__(self, project: Path, adapter: str, *options: str, **env: str) -> None:
        self.out = project / "out"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "presence_conformance.harness.cli",
                "run",
                "--adapter",
                adapter,
                "--scenarios",
                str(project / "scenarios"),
                "--report-dir",
                str(self.out),
                "--op-timeout",
                "60",
                *options,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=project,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join([str(project), os.environ.get("PYTHONPATH", "")]),
                **env,
            },
        )
        self.seen: list[str] = []

    def wait_for(self, prefix: str) -> None:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            assert line, "".join(self.seen)
            self.seen.append(line)
            if line.startswith(prefix):
                return

    def signal(self, sig: int) -> float:
        self.proc.send_signal(sig)
        return time.monotonic()

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        try:
            rest, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rest, _ = self.proc.communicate()
            pytest.fail("the run did not stop on the signal:\n" + "".join(self.seen) + rest)
        return self.proc.returncode, "".join(self.seen) + rest

    def results(self) -> dict:
        return json.loads((self.out / "results.json").read_text())


def _assert_partial(run: Run, code: int, output: str, cases: list[str]) -> None:
    assert code == 3, output  # partial, no failure found: HARNESS_FAILURE
    assert "PARTIAL RUN: interrupted" in output
    assert output.rstrip().endswith("INCOMPLETE (interrupted)"), output
    results = run.results()
    assert results["partial"] and results["partial_reason"] == "interrupted", results
    assert [c["case_id"] for c in results["cases"]] == cases
    assert all(c["outcome"] == "pass" for c in results["cases"]), results["cases"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_between_cases_writes_a_partial_report(project: Path, sig: int) -> None:
    """The signal right after the first case's line (the flake this design removed: a
    KeyboardInterrupt raised by the handler was lost and the run went on to exit 0)."""
    run = Run(project, "reference", "--adapter-option", "op_delay=0.4")
    run.wait_for("[1/3]")
    run.signal(sig)
    code, output = run.finish()
    ran = [c["case_id"] for c in run.results()["cases"]]
    assert ran in (["enter/adds-member"], ["enter/adds-member", "get/filter-client-id"]), output
    _assert_partial(run, code, output, ran)


def test_interrupt_while_the_adapter_starts(project: Path) -> None:
    run = Run(project, "interrupt_adapters:SlowStart")
    run.wait_for("STARTING")
    sent = run.signal(signal.SIGTERM)
    code, output = run.finish()
    assert time.monotonic() - sent < 20, "not prompt"
    _assert_partial(run, code, output, [])


@pytest.mark.parametrize(
    ("adapter", "sig"),
    [("BlocksInSecondCase", signal.SIGINT), ("IgnoresCancellation", signal.SIGTERM)],
)
def test_interrupt_inside_a_case(project: Path, adapter: str, sig: int) -> None:
    """The case in flight is cancelled on the adapter's loop and left out of the report; an
    adapter that swallows the cancellation is abandoned after a grace. (Both signals reach one
    handler; each is also sent between cases.)"""
    run = Run(project, f"interrupt_adapters:{adapter}")
    run.wait_for("IN-CASE")
    sent = run.signal(sig)
    code, output = run.finish()
    assert time.monotonic() - sent < 20, "not prompt"
    _assert_partial(run, code, output, ["enter/adds-member"])


def test_interrupt_while_the_report_is_written_keeps_the_complete_report(project: Path) -> None:
    """Every case ran: the report being written is the whole run's, and it is finished."""
    run = Run(project, "interrupt_adapters:Plain", PAUSE_IN_REPORT="1")
    run.wait_for("WRITING-REPORT")
    run.signal(signal.SIGTERM)
    code, output = run.finish()
    assert code == 0, output
    assert output.rstrip().endswith("CONFORMING"), output
    results = run.results()
    assert not results["partial"] and len(results["cases"]) == 3
    for name in ("junit.xml", "summary.md", "report.html"):
        assert (run.out / name).stat().st_size > 0, name


def test_a_second_signal_exits_at_once(project: Path) -> None:
    """The first signal asks the case to stop; the adapter ignores it; the second one ends the
    process without waiting: exit 3, and the report stays the one marked unfinished."""
    run = Run(project, "interrupt_adapters:IgnoresCancellation")
    run.wait_for("IN-CASE")
    run.signal(signal.SIGTERM)
    run.wait_for("presence-conformance: interrupted:")
    sent = run.signal(signal.SIGTERM)
    code, output = run.finish()
    assert time.monotonic() - sent < CANCEL_GRACE, output
    assert code == 3, output
    assert "interrupted again" in output
    results = run.results()
    assert results["partial"] and results["partial_reason"].startswith("unfinished"), results


# -- ConformanceSession.cancel, in process ---------------------------------------------------------

SCENARIO = scenario_from_dict(
    {
        "description": "An entered member is in the presence set.",
        "requirements": ["enter.adds-member"],
        "clients": {"alice": {"client_id": "alice"}},
        "channels": ["room"],
        "steps": [{"enter": {"client": "alice", "channel": "room", "data": "a"}}],
    },
    case_id="enter/one",
)


class Waits(ReferenceAdapter):
    """connect() waits (ignoring cancellation when `stubborn`); `inside` is set meanwhile."""

    def __init__(self, stubborn: bool = False) -> None:
        super().__init__()
        self.stubborn = stubborn
        self.inside = threading.Event()
        self.stopped = False

    async def connect(self, client_id: Any, capability: Any = None) -> Any:
        self.inside.set()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if not self.stubborn:
                    raise

    async def stop(self) -> None:
        self.stopped = True
        await super().stop()


@pytest.mark.parametrize("stubborn", [False, True])
def test_cancel_stops_the_case_in_flight(stubborn: bool) -> None:
    adapter = Waits(stubborn)
    session = ConformanceSession(adapter, settings=RunSettings(op_timeout=60))
    threading.Thread(
        target=lambda: adapter.inside.wait(30) and session.cancel("interrupted"), daemon=True
    ).start()
    began = time.monotonic()
    try:
        run = session.run_all([SCENARIO, SCENARIO])
    finally:
        session.stop()
    assert time.monotonic() - began < 10 + (CANCEL_GRACE if stubborn else 0)
    assert run.partial and run.partial_reason == "interrupted"
    assert run.cases == []  # the cancelled case is not a result
    assert adapter.stopped  # stop() is not cancelled


def test_cancel_before_the_run_starts_nothing() -> None:
    adapter = Waits()
    session = ConformanceSession(adapter)
    session.cancel("interrupted")
    try:
        run = session.run_all([SCENARIO])
    finally:
        session.stop()
    assert run.partial and run.cases == [] and not session.started


def test_a_case_finished_before_the_cancel_counts() -> None:
    session = ConformanceSession(ReferenceAdapter())
    results = []

    def cancel_after_first(index: int, total: int, case: Any) -> None:
        results.append(case)
        session.cancel("interrupted")

    try:
        run = session.run_all([SCENARIO, SCENARIO], on_result=cancel_after_first)
    finally:
        session.stop()
    assert [c.outcome for c in run.cases] == [Outcome.PASS] and run.partial

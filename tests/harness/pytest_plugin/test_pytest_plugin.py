"""The pytest plugin, exercised in fresh projects (pytester) that only have the package installed.

Most runs use `runpytest_subprocess`: a real `pytest` process, as users run it, with the plugin
loaded through its `pytest11` entry point.
"""

from __future__ import annotations

import json
import re

import pytest
from presence_conformance.harness.adapter import Feature
from sample_project import BROKEN, SCENARIOS  # the CLI tests' scenario set and broken adapters
from support import ROOT, packaged_suite, write_files

pytest_plugins = ["pytester"]

MINIMAL_SOURCE = (ROOT / "examples" / "minimal_adapter.py").read_text()
# the arguments of a run of the sample project's scenarios on the reference, on a broken adapter
# (default timeouts: its wrong get() ends the wait at once, the adapter quiesces; a short
# --op-timeout only made its passing cases time out on a busy machine)
ON_REFERENCE = ("--adapter=reference", "--scenarios", "my_scenarios")
ON_BROKEN = ("--adapter=broken_adapters:BrokenAdapter", "--scenarios", "my_scenarios")


@pytest.fixture(autouse=True)
def only_scenario_items(pytester: pytest.Pytester, pytestconfig: pytest.Config) -> None:
    """Leave the generated item (presence_conformance.harness.generation, when installed) out of these runs: they
    are about the scenario items; the generated item has its own tests."""
    if pytestconfig.getoption("no_generation", None) is not None:
        (pytester.path / "pytest.ini").write_text("[pytest]\naddopts = --no-generation\n")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user project: a scenarios folder, the minimal adapter and broken adapters as modules."""
    write_files(pytester.path / "my_scenarios", SCENARIOS)
    pytester.makepyfile(my_adapter=MINIMAL_SOURCE, broken_adapters=BROKEN)
    return pytester


def _outcomes(result: pytest.RunResult) -> dict[str, str]:
    """`-rA` short summary lines -> {node id: PASSED/FAILED/XFAIL/ERROR}."""
    out = {}
    for line in result.outlines:
        m = re.match(r"^(PASSED|FAILED|XFAIL|ERROR) (\S+)", line)
        if m:
            out[m.group(2)] = m.group(1)
    return out


# -- (a) the packaged suite ----------------------------------------------------------------------


def test_reference_runs_every_packaged_scenario(pytester: pytest.Pytester) -> None:
    suite = packaged_suite()
    assert suite, "no scenario files are packaged"
    result = pytester.runpytest_subprocess("--adapter=reference", "-v")
    assert result.ret == 0
    items = [line.split()[0] for line in result.outlines if line.startswith("scenarios/")]
    # (>=: scenario files may be added while this runs, the suite is being written alongside)
    assert len(items) >= len(suite)
    assert {f"scenarios/{s.case_id}" for s in suite} <= set(items)
    # server: steps need a wire the in-process reference does not have: unsupported, skipped
    wired = {
        f"scenarios/{s.case_id}" for s in suite if Feature.SERVER_CONTROL in s.needed_features()
    }
    assert wired
    assert all(
        line.split()[1] == ("SKIPPED" if line.split()[0] in wired else "PASSED")
        for line in result.outlines
        if line.startswith("scenarios/")
    )
    passed = len(items) - len(wired)
    result.assert_outcomes(passed=passed, skipped=len(wired))
    result.stdout.fnmatch_lines([f"{len(items)} case(s): {passed} pass, * -> conforming"])


# -- (b) selection by requirement ID, area and keyword --------------------------------------------


def test_select_by_requirement_marker(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess(
        *ON_REFERENCE,
        "-m",
        "enter.data",
        "-v",
        "-W",
        "error::pytest.PytestUnknownMarkWarning",
    )
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines(["scenarios/enter/adds-member PASSED*"])
    result = project.runpytest_subprocess(
        *ON_REFERENCE,
        "-m",
        "history or get.filter-client-id",
        "-q",
    )
    result.assert_outcomes(passed=2, deselected=1)
    result = project.runpytest_subprocess(*ON_REFERENCE, "-k", "filter-client", "-q")
    result.assert_outcomes(passed=1, deselected=2)


def test_markers_are_registered(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess(*ON_REFERENCE, "--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.conformance: *",
            "@pytest.mark.history: presence conformance area: *",
            "@pytest.mark.get.filter-client-id: [[]MUST[]] *",
        ]
    )
    result = project.runpytest_subprocess(*ON_REFERENCE, "--strict-markers", "-q")
    result.assert_outcomes(passed=3)


# -- (c) user adapters: conftest registration, module:Class, a broken one ---------------------------


def test_user_adapter_registered_in_conftest(project: pytest.Pytester) -> None:
    project.makeconftest("""
        from presence_conformance.harness.adapters.registry import register_adapter

        register_adapter("mine", "my_adapter:MinimalAdapter")
    """)
    result = project.runpytest_subprocess("--adapter=mine", "--scenarios", "my_scenarios", "-rA")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED [[]1[]] my_scenarios/history/one-event.yaml:1: "
            "unsupported: needs feature(s) the adapter does not declare: "
            "history"
        ]
    )


def test_user_adapter_from_the_hook(project: pytest.Pytester) -> None:
    project.makeconftest("""
        import my_adapter

        def pytest_presence_conformance_adapters(config):
            return {"hooked": my_adapter.MinimalAdapter}
    """)
    result = project.runpytest_subprocess("--adapter=hooked", "--scenarios", "my_scenarios", "-q")
    result.assert_outcomes(passed=2, skipped=1)


def test_broken_adapter_fails_the_right_items(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess(
        *ON_BROKEN,
        "-rA",
    )
    assert _outcomes(result) == {
        "scenarios/enter/adds-member": "PASSED",
        "scenarios/get/filter-client-id": "FAILED",
        "scenarios/history/one-event": "PASSED",
    }
    result.stdout.fnmatch_lines(
        [
            "*_ scenario get/filter-client-id _*",
            "get/filter-client-id: fail *",
            "  [[]MUST[]] get.filter-client-id: *",
            "      expected: *",
            "      observed: *",
            "  history around #*",
            "  replay: presence-conformance replay *filter-client-id.yaml "
            "--adapter broken_adapters:BrokenAdapter",
        ]
    )
    result.stdout.fnmatch_lines(["3 case(s): 2 pass, 1 fail -> NOT conforming"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_hung_adapter_fails_items_instead_of_hanging(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess(
        "--adapter=broken_adapters:HangsOnConnect",
        "--scenarios",
        "my_scenarios",
        "--op-timeout",
        "0.2",
        "-k",
        "get or enter",
        timeout=60,
    )
    result.assert_outcomes(failed=2, deselected=1)
    result.stdout.fnmatch_lines(["get/filter-client-id: timeout *", "  error: *"])


def test_unknown_adapter_is_a_usage_error(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--adapter=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: presence-conformance: unknown adapter 'nope'; available adapters: *reference*"]
    )


def test_malformed_scenario_is_a_usage_error(project: pytest.Pytester) -> None:
    (project.path / "my_scenarios" / "get" / "bad.yaml").write_text("steps: 3\n")
    result = project.runpytest_subprocess(*ON_REFERENCE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: presence-conformance: malformed scenario file(s):", "*bad.yaml*"]
    )


def test_non_strict_passes_with_a_warning_unless_strict(project: pytest.Pytester) -> None:
    project.makeconftest("""
        from presence_conformance.harness.results import Outcome, Violation
        import presence_conformance.harness.run.runner

        real = presence_conformance.harness.run.runner.run_scenario

        async def should_only(scenario, adapter, settings=None):
            case = await real(scenario, adapter, settings)
            if scenario.case_id == "enter/adds-member":
                case.outcome = Outcome.NON_STRICT
                case.violations.append(Violation("enter.data", "SHOULD", "demo", "a SHOULD slip",
                                                 expected=1, observed=2))
            return case

        presence_conformance.harness.run.runner.run_scenario = should_only
    """)
    result = project.runpytest_subprocess(*ON_REFERENCE, "-q")
    result.assert_outcomes(passed=3, warnings=1)
    result.stdout.fnmatch_lines(["*NonStrictWarning: enter/adds-member: non-strict*"])
    result = project.runpytest_subprocess(*ON_REFERENCE, "-q", "--conformance-strict")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["  [[]SHOULD[]] enter.data: a SHOULD slip*"])


# -- (d) fixtures in users' own tests -------------------------------------------------------------


def test_presence_adapter_fixture(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_mine="""
        def test_enter_then_get(presence_adapter, presence_run):
            async def scenario():
                conn = await presence_adapter.connect("alice")
                presence = conn.channel("fixture-room").presence
                await presence.enter({"mood": "happy"})
                members = await presence.get()
                await conn.close()
                return members

            members = presence_run(scenario())
            assert [(m.client_id, m.data) for m in members] == [("alice", {"mood": "happy"})]

        def test_results_so_far(conformance_run, presence_adapter):
            assert conformance_run.adapter == "reference"
            assert presence_adapter.name == "reference"
    """
    )
    result = project.runpytest_subprocess(*ON_REFERENCE, "-m", "not conformance", "-v")
    result.assert_outcomes(passed=2, deselected=3)
    result.stdout.fnmatch_lines(["test_mine.py::test_enter_then_get PASSED*"])


def test_fixtures_skip_without_adapter(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_mine="""
        def test_needs_adapter(presence_adapter):
            raise AssertionError("must not run")
    """
    )
    result = project.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*needs the presence conformance plugin: run pytest with --adapter NAME*"]
    )


# -- (e) pytest-xdist: one merged report ----------------------------------------------------------


def test_xdist_writes_one_merged_report(project: pytest.Pytester) -> None:
    """Under xdist the workers' results become one report: every case once, with its own
    outcome (a pass and a failure from different workers), not partial, every file, one
    summary line. (One run proves what a conforming and a failing xdist run proved apart.)"""
    result = project.runpytest_subprocess(
        "-n",
        "2",
        *ON_BROKEN,
        "--conformance-report",
        "out",
    )
    result.assert_outcomes(passed=2, failed=1)
    results = json.loads((project.path / "out" / "results.json").read_text())
    assert sorted(c["case_id"] for c in results["cases"]) == sorted(
        name.removesuffix(".yaml") for name in SCENARIOS
    )
    outcomes = {c["case_id"]: c["outcome"] for c in results["cases"]}
    assert outcomes == {
        "enter/adds-member": "pass",
        "get/filter-client-id": "fail",
        "history/one-event": "pass",
    }
    assert results["adapter"] == "broken_adapters:BrokenAdapter" and not results["partial"]
    assert {p.name for p in (project.path / "out").iterdir()} >= {
        "results.json",
        "junit.xml",
        "summary.md",
        "report.html",
    }
    result.stdout.fnmatch_lines(
        ["3 case(s): 2 pass, 1 fail -> NOT conforming", "report: out*results.json"]
    )


# -- interrupts ------------------------------------------------------------------------------------


def test_interrupted_session_writes_a_partial_report(project: pytest.Pytester) -> None:
    project.makeconftest("""
        def pytest_runtest_teardown(item):
            if item.name == "get/filter-client-id":
                raise KeyboardInterrupt
    """)
    result = project.runpytest_subprocess(*ON_REFERENCE, "--conformance-report", "out")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    results = json.loads((project.path / "out" / "results.json").read_text())
    assert results["partial"] and results["partial_reason"] == "interrupted"
    assert [c["case_id"] for c in results["cases"]] == ["enter/adds-member", "get/filter-client-id"]


def test_stopping_early_marks_the_report_partial(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess(
        *ON_BROKEN,
        "-x",
        "--conformance-report",
        "out",
    )
    result.assert_outcomes(passed=1, failed=1)
    results = json.loads((project.path / "out" / "results.json").read_text())
    assert results["partial"] and results["partial_reason"] == "1 of 3 selected cases did not run"


# -- without --adapter the plugin does nothing ------------------------------------------------------


def test_without_adapter_nothing_changes(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_plain="""
        def test_one():
            pass
    """
    )
    (project.path / "pytest.ini").unlink(missing_ok=True)  # plain pytest, no plugin options
    with_plugin = project.runpytest_subprocess("--collect-only", "-q")
    without_plugin = project.runpytest_subprocess(
        "--collect-only", "-q", "-p", "no:presence_conformance"
    )
    assert with_plugin.ret == without_plugin.ret == 0
    listed = [line for line in with_plugin.outlines if "::" in line or "scenarios/" in line]
    assert listed == ["test_plain.py::test_one"]
    assert listed == [line for line in without_plugin.outlines if "::" in line]
    markers = project.runpytest_subprocess("--markers").stdout.str()
    assert "get.filter-client-id" not in markers and "conformance:" not in markers
    ran = project.runpytest_subprocess("-q").parseoutcomes()
    ran_without = project.runpytest_subprocess(
        "-q", "-p", "no:presence_conformance"
    ).parseoutcomes()
    assert ran == ran_without and ran["passed"] == 1  # same outcomes, same warnings
    assert not (project.path / "reports").exists()


def test_collect_only_lists_items_and_writes_nothing(
    project: pytest.Pytester, pytestconfig: pytest.Config
) -> None:
    result = project.runpytest_subprocess(
        *ON_REFERENCE,
        "--collect-only",
        "-q",
        "--conformance-report",
        "out",
    )
    result.stdout.fnmatch_lines(
        [
            "scenarios/enter/adds-member",
            "scenarios/get/filter-client-id",
            "scenarios/history/one-event",
            "3 tests collected*",
        ]
    )
    assert not (project.path / "out").exists()
    if pytestconfig.getoption("no_generation", None) is not None:
        # the generated item is collected like the scenarios: listed and counted
        (project.path / "pytest.ini").unlink()
        result = project.runpytest_subprocess(*ON_REFERENCE, "--collect-only", "-q")
        result.stdout.fnmatch_lines(
            ["scenarios/history/one-event", "generated/*", "4 tests collected*"]
        )

"""Verdicts a team can trust (issue 14): honest headlines for runs with known failures in every
format, requirement status derived from all its cases, `replay --repeat` (FIXED / FAILED /
FLAKY), a generated failure that does not reproduce saved as flaky, and the replay command of
an adapter registered in a conftest.py."""

from __future__ import annotations

import re
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from presence_conformance.harness.adapters import registry
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.cli import EXIT_FLAKY, main
from presence_conformance.harness.generation.engine import (
    GeneratedFailure,
    GenerationOptions,
    save_failure,
)
from presence_conformance.harness.reports import FLAKY, KnownFailing, exit_code, write_reports
from presence_conformance.harness.reports.common import (
    NOT_COVERED,
    load_catalogue,
    requirement_statuses,
    verdict,
)
from presence_conformance.harness.reports.matrix import (
    merge,
    render_matrix_html,
    render_matrix_md,
)
from presence_conformance.harness.results import CaseResult, Outcome, RunResult, Violation
from presence_conformance.harness.session import ConformanceSession
from support import ROOT, packaged_suite

pytest_plugins = ["pytester"]

FILTER_SCENARIO = """\
description: get(clientId) returns only that client's members.
requirements: [get.filter-client-id]
clients:
  alice: {client_id: alice}
  bob: {client_id: bob}
channels: [room]
steps:
  - enter: {client: alice, channel: room, data: a}
  - enter: {client: bob, channel: room, data: b}
  - get: {client: bob, channel: room, client_id: alice, expect: [{client: alice, data: a}]}
"""

# Test adapters, in two files: adapters.py imports its sibling module by name, which only works
# because a file-path adapter's folder goes on sys.path.
PARTS = '''
"""Pieces of the test adapters (imported by adapters.py as a sibling module)."""

from presence_conformance.harness.adapters.reference import ReferenceConnection, ReferencePresence


class MaybeIgnoresClientId(ReferencePresence):
    """get() ignores the clientId filter while the adapter says it is broken."""

    async def get(self, client_id=None, connection_id=None, wait_for_sync=True):
        if self.adapter.broken_now():
            client_id = None
        return await super().get(client_id, connection_id, wait_for_sync)


class Connection(ReferenceConnection):
    presence_class = MaybeIgnoresClientId
'''

ADAPTERS = '''
"""Test adapters: broken on every run, or on every other run (a timing-dependent bug)."""

from presence_conformance.harness.adapters.reference import ReferenceAdapter

from verdict_parts import Connection


class AlwaysBroken(ReferenceAdapter):
    """get() never filters by clientId."""

    connection_class = Connection

    def broken_now(self):
        return True


class Alternating(ReferenceAdapter):
    """get() ignores the clientId filter in every other case (counted by alice's connects)."""

    connection_class = Connection
    cases = 0

    async def connect(self, client_id, capability=None):
        if client_id == "alice":
            type(self).cases += 1
        return await super().connect(client_id, capability)

    def broken_now(self):
        return type(self).cases % 2 == 1
'''


@pytest.fixture
def adapters(tmp_path: Path) -> Path:
    """The folder holding adapters.py and its sibling verdict_parts.py."""
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "verdict_parts.py").write_text(PARTS)
    (folder / "adapters.py").write_text(ADAPTERS)
    return folder


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "scenarios" / "get" / "filter-client-id.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(FILTER_SCENARIO)
    return path


# -- honest headlines -----------------------------------------------------------------------------


def _run(*cases: CaseResult) -> RunResult:
    return RunResult("mine", list(cases), started=1_790_000_000.0, finished=1_790_000_001.0)


def _failing(case_id: str, requirement: str) -> CaseResult:
    return CaseResult(
        case_id,
        "mine",
        Outcome.FAIL,
        [requirement],
        violations=[Violation(requirement, "MUST", "check", "broken")],
    )


def known_run() -> RunResult:
    """Two passing cases and two failing ones, both on the known-failing list."""
    run = _run(
        CaseResult("enter/adds-member", "mine", Outcome.PASS, ["enter.adds-member"]),
        _failing("history/limit", "history.limit-default-100"),
        _failing("leave/when-not-present", "leave.when-not-present"),
        CaseResult("get/returns-members", "mine", Outcome.PASS, ["get.returns-members"]),
    )
    assert KnownFailing.parse("history/limit\nleave.when-not-present\n").apply(run) == []
    return run


HEADLINE = "CONFORMING EXCEPT KNOWN DEVIATIONS (2 requirements)"


def test_verdict_of_a_run_with_known_failures() -> None:
    run = known_run()
    v = verdict(run)
    assert v.conforming and v.exit_code == exit_code(run) == 0
    assert v.state == "known-deviations" and v.headline == HEADLINE and v.icon != "✅"
    assert v.known_cases == ["history/limit", "leave/when-not-present"]
    assert v.known_requirements == ["history.limit-default-100", "leave.when-not-present"]
    one = _run(_failing("a/b", "x.y"))
    KnownFailing.parse("a/b\n").apply(one)
    assert verdict(one).headline == "CONFORMING EXCEPT KNOWN DEVIATIONS (1 requirement)"
    clean = _run(CaseResult("a/b", "mine", Outcome.PASS, ["x.y"]))
    assert verdict(clean).headline == "CONFORMING" and verdict(clean).icon == "✅"


def test_every_report_format_says_known_deviations(tmp_path: Path) -> None:
    files = {p.name: p for p in write_reports(known_run(), tmp_path)}
    md = files["summary.md"].read_text()
    assert md.startswith(f"## 🔕 {HEADLINE} — <code>mine</code>")
    assert "✅ CONFORMING" not in md
    assert "**Known deviations**: 2 failing cases" in md
    assert "<code>history.limit-default-100</code>" in md
    page = files["report.html"].read_text()
    assert re.search(rf'class="verdict known" id="verdict">◐ {re.escape(HEADLINE)}</span>', page)
    assert "✔ CONFORMING" not in page
    suites = list(ET.parse(files["junit.xml"]).getroot().iter("testsuite"))
    assert suites
    for suite in suites:
        props = {p.get("name"): p.get("value") for p in suite.iter("property")}
        assert props["verdict"] == HEADLINE
        assert props["verdict.state"] == "known-deviations"
        assert props["verdict.exit_code"] == "0"
        assert props["known_failing.cases"] == "2"
        assert props["known_failing.requirements"] == (
            "history.limit-default-100 leave.when-not-present"
        )


def test_junit_properties_of_clean_and_failing_runs(tmp_path: Path) -> None:
    clean = _run(CaseResult("a/b", "mine", Outcome.PASS, ["x.y"]))
    path = next(p for p in write_reports(clean, tmp_path / "c", ["junit"]))
    props = {p.get("name"): p.get("value") for p in ET.parse(path).getroot().iter("property")}
    assert props["verdict"] == "CONFORMING" and props["known_failing.cases"] == "0"
    bad = _run(_failing("a/b", "x.y"))
    path = next(p for p in write_reports(bad, tmp_path / "b", ["junit"]))
    props = {p.get("name"): p.get("value") for p in ET.parse(path).getroot().iter("property")}
    assert props["verdict"] == "NOT CONFORMING" and props["verdict.exit_code"] == "1"


def test_matrix_shows_deviations_as_deviations() -> None:
    clean = RunResult(
        "reference",
        [CaseResult("history/limit", "reference", Outcome.PASS, ["history.limit-default-100"])],
    )
    m = merge([clean, known_run()])
    md = render_matrix_md(m)
    rows = {
        line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| <code>")
    }
    assert "✅ CONFORMING |" in rows["<code>reference</code>"]
    assert f"🔕 {HEADLINE} |" in rows["<code>mine</code>"]
    assert rows["<code>mine</code>"].rstrip().endswith("| 2 |")  # the known-failing column
    page = render_matrix_html(m)
    assert f'data-verdict="known-deviations">{HEADLINE.lower()}</span>' in page
    # the column heads of both tables and the summary line
    assert page.count('data-verdict="conforming"') == 3
    assert page.count('data-verdict="known-deviations"') == 3


def test_cli_run_with_known_failures_says_so(
    adapters: Path, scenario_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    known = tmp_path / "known.txt"
    known.write_text("get.filter-client-id   # the bug under test\n")
    code = main(
        [
            "run",
            "--adapter",
            f"{adapters / 'adapters.py'}:AlwaysBroken",
            "--scenarios",
            str(scenario_file.parent.parent),
            "--known-failing",
            str(known),
            "--report-dir",
            str(tmp_path / "out"),
            "--op-timeout",
            "0.3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.rstrip().splitlines()[-1] == ("CONFORMING EXCEPT KNOWN DEVIATIONS (1 requirement)")
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert summary.startswith("## 🔕 CONFORMING EXCEPT KNOWN DEVIATIONS (1 requirement)")


# -- requirement status from all its cases --------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([Outcome.UNSUPPORTED, Outcome.PASS, Outcome.PASS, Outcome.PASS], "pass"),
        ([Outcome.PASS, Outcome.UNSUPPORTED], "pass"),
        ([Outcome.UNSUPPORTED, Outcome.UNSUPPORTED], "unsupported"),
        ([Outcome.PASS, Outcome.FAIL, Outcome.UNSUPPORTED], "fail"),
        ([Outcome.UNSUPPORTED, Outcome.NON_STRICT], "non-strict"),
        ([Outcome.PASS, Outcome.TIMEOUT], "timeout"),
        ([Outcome.FAIL, Outcome.ERROR], "error"),
    ],
)
def test_requirement_status_is_derived_from_all_its_cases(
    outcomes: list[Outcome], expected: str
) -> None:
    cases = []
    for n, o in enumerate(outcomes):
        level = "SHOULD" if o is Outcome.NON_STRICT else "MUST"
        violations = (
            [Violation("r.x", level, "c", "m")] if o in (Outcome.FAIL, Outcome.NON_STRICT) else []
        )
        cases.append(CaseResult(f"r/{n}", "mine", o, ["r.x"], violations=violations))
    statuses = requirement_statuses(_run(*cases), load_catalogue(None, [_run(*cases)]))
    assert statuses["r.x"].outcome == expected
    assert statuses["enter.adds-member"].outcome == NOT_COVERED


# -- replay --repeat ------------------------------------------------------------------------------


def test_replay_every_run_fails_is_failed(
    adapters: Path, scenario_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "replay",
            str(scenario_file),
            "--adapter",
            f"{adapters / 'adapters.py'}:AlwaysBroken",
            "--repeat",
            "10",
            "--op-timeout",
            "0.2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    runs = re.findall(r"^run +(\d+)/10: (\S+)", out, re.M)
    assert runs == [(str(n), "fail") for n in range(1, 11)]
    assert "\nFAILED: get/filter-client-id (10 of 10 runs failed)\n" in out
    assert "get.filter-client-id" in out


def test_replay_of_a_timing_dependent_failure_is_flaky(
    adapters: Path, scenario_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "replay",
            str(scenario_file),
            "--adapter",
            f"{adapters / 'adapters.py'}:Alternating",
            "--repeat",
            "4",
            "--op-timeout",
            "0.2",
        ]
    )
    out = capsys.readouterr().out
    assert code == EXIT_FLAKY == FLAKY == 4
    assert re.findall(r"^run +\d+/4: (\S+)", out, re.M) == ["fail", "pass", "fail", "pass"]
    assert "\nFLAKY: get/filter-client-id failed 2 of 4 runs" in out


def test_replay_repeat_must_be_positive(scenario_file: Path) -> None:
    assert main(["replay", str(scenario_file), "--adapter", "reference", "--repeat", "0"]) == 2


# -- generation: a failure that does not reproduce is saved as flaky ------------------------------


def test_a_generated_failure_that_passes_on_replay_is_saved_as_flaky(tmp_path: Path) -> None:
    document = {
        "clients": {"alice": {"client_id": "alice"}},
        "channels": ["room"],
        "steps": [
            {"enter": {"client": "alice", "channel": "room", "data": "a"}},
            {
                "get": {
                    "client": "alice",
                    "channel": "room",
                    "expect": [{"client": "alice", "data": "a"}],
                }
            },
        ],
    }
    # the failure as the search saw it once; the reference passes the program when replayed
    seen = CaseResult(
        "generated/x",
        "reference",
        Outcome.FAIL,
        ["get.returns-members"],
        violations=[Violation("get.returns-members", "MUST", "c", "missing")],
    )
    failure = GeneratedFailure(document, seen, 2, 5, ["get.returns-members"])
    session = ConformanceSession(ReferenceAdapter(), adapter_name="reference")
    try:
        path = save_failure(session, failure, GenerationOptions(failures_dir=tmp_path), "ci", 7)
    finally:
        session.stop()
    assert failure.flaky and failure.replay_confirmed is False
    saved = yaml.safe_load(path.read_text())
    assert saved["meta"]["flaky"] is True and saved["meta"]["replayed_outcome"] == "pass"
    assert "FLAKY" in saved["description"]


# -- rough edges: replay hints for conftest adapters, --conftest -----------------------------------


def test_file_path_adapter_imports_its_siblings(adapters: Path) -> None:
    factory = registry.adapter_factory(f"{adapters / 'adapters.py'}:AlwaysBroken")
    assert factory.__name__ == "AlwaysBroken"
    assert str(adapters) in __import__("sys").path


CONFTEST = """
from presence_conformance.harness.adapters.registry import register_adapter
from presence_conformance.harness.adapters.reference import ReferenceAdapter

import sys
sys.path.insert(0, {folder!r})
from adapters import AlwaysBroken

register_adapter("mine", AlwaysBroken)
"""


def test_replay_accepts_a_conftest_that_registers_the_adapter(
    adapters: Path, scenario_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conftest = tmp_path / "conftest.py"
    conftest.write_text(CONFTEST.format(folder=str(adapters)))
    try:
        code = main(
            [
                "replay",
                str(scenario_file),
                "--conftest",
                str(conftest),
                "--adapter",
                "mine",
                "--repeat",
                "2",
                "--op-timeout",
                "0.2",
            ]
        )
    finally:
        registry.unregister_adapter("mine")
    assert code == 1
    assert "FAILED: get/filter-client-id (2 of 2 runs failed)" in capsys.readouterr().out


def test_replay_finds_a_name_registered_in_the_local_conftest(
    adapters: Path,
    scenario_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    here = tmp_path / "project"
    here.mkdir()
    (here / "conftest.py").write_text(CONFTEST.format(folder=str(adapters)))
    monkeypatch.chdir(here)
    try:
        code = main(
            [
                "replay",
                str(scenario_file),
                "--adapter",
                "mine",
                "--repeat",
                "1",
                "--op-timeout",
                "0.2",
            ]
        )
    finally:
        registry.unregister_adapter("mine")
    captured = capsys.readouterr()
    assert code == 1 and "FAILED: get/filter-client-id (1 of 1 runs failed)" in captured.out
    assert "taken from" in captured.err and "conftest.py" in captured.err


def test_replay_conftest_hook_form(tmp_path: Path, scenario_file: Path) -> None:
    conftest = tmp_path / "hooked" / "conftest.py"
    conftest.parent.mkdir()
    conftest.write_text(
        textwrap.dedent("""
        from presence_conformance.harness.adapters.reference import ReferenceAdapter

        def pytest_presence_conformance_adapters(config):
            return {"hooked-ref": ReferenceAdapter}
    """)
    )
    try:
        assert registry.load_conftest(conftest.parent) == ["hooked-ref"]
        assert main(["replay", str(scenario_file), "--adapter", "hooked-ref", "--repeat", "1"]) == 0
    finally:
        registry.unregister_adapter("hooked-ref")


def test_pytest_replay_hint_for_a_conftest_adapter_is_a_command_that_works(
    pytester: pytest.Pytester, adapters: Path, scenario_file: Path
) -> None:
    pytester.makeconftest(CONFTEST.format(folder=str(adapters)))
    pytester.makepyfile(test_own="def test_mine():\n    assert True\n")
    scenarios = scenario_file.parent.parent
    result = pytester.runpytest(
        "--adapter=mine",
        "--scenarios",
        str(scenarios),
        "--no-generation",
        "--op-timeout",
        "0.2",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=1, failed=1)
    hint = f"replay: pytest --adapter=mine --replay {scenario_file}"
    result.stdout.fnmatch_lines([f"*{hint}*"])
    # the hint, run as printed (plus the timeout), replays exactly that scenario
    again = pytester.runpytest(
        "--adapter=mine",
        "--replay",
        str(scenario_file),
        "--op-timeout",
        "0.2",
        "-p",
        "no:cacheprovider",
    )
    again.assert_outcomes(failed=1, deselected=1)
    again.stdout.fnmatch_lines([f"*{hint}*"])


# -- a listener subscribed twice may get each event twice ------------------------------------------

TWICE = """
from presence_conformance.harness.adapters.reference import (
    ReferenceAdapter,
    ReferenceConnection,
    ReferencePresence,
)


class TwicePresence(ReferencePresence):
    async def subscribe(self, listener, actions=None):
        # a new callable per registration: the service calls the listener once per registration,
        # as the emitters of ably-js and ably-python do
        await self.service_presence.subscribe(lambda m, _l=listener: _l(m), actions)


class Connection(ReferenceConnection):
    presence_class = TwicePresence


class Twice(ReferenceAdapter):
    connection_class = Connection
"""

TWICE_SCENARIOS = [
    "subscribe/same-listener-subscribed-twice",
    "generated-regressions/repeated-enters-not-copies",
    "generated-regressions/listener-twice-repeated-enter",
]


@pytest.mark.parametrize("adapter", ["twice", "reference", "mutant:ids-not-unique"])
def test_a_listener_subscribed_twice_may_get_each_event_once_or_twice(
    adapter: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if adapter == "twice":
        (tmp_path / "twice.py").write_text(TWICE)
        adapter = f"{tmp_path / 'twice.py'}:Twice"
    root = ROOT / "scenarios"
    codes = {}
    for case_id in TWICE_SCENARIOS:
        codes[case_id] = main(
            ["replay", str(root / f"{case_id}.yaml"), "--adapter", adapter, "--repeat", "2"]
        )
    out = capsys.readouterr().out
    if adapter.startswith("mutant:"):  # one id for every event: still caught (history)
        assert codes[TWICE_SCENARIOS[0]] == codes[TWICE_SCENARIOS[1]] == 1, out
        assert "message.id" in out
    else:  # once (reference) or twice (the SDKs' emitters): both allowed
        assert set(codes.values()) == {0}, out


# -- consistent feature gating of refusals of bad arguments ----------------------------------------

BAD_ARGUMENT_CODES = {40003, 40000, 40013}  # invalid parameter / bad request / unsupported data


def test_every_case_expecting_a_bad_argument_refused_needs_argument_validation() -> None:
    from presence_conformance.harness.adapter import Feature
    from presence_conformance.harness.session import load_suite

    gated, ungated = [], []
    for scenario in packaged_suite():
        refusals = [
            step
            for step in scenario.iter_steps()
            if set(getattr(step, "expect_error", None) or ()) & BAD_ARGUMENT_CODES
        ]
        needs = Feature.ARGUMENT_VALIDATION in scenario.needed_features()
        if refusals and not needs:
            ungated.append(scenario.case_id)
        if needs and not refusals:
            gated.append(scenario.case_id)
    assert ungated == [], "expect a bad argument refused without argument-validation"
    assert gated == [], "need argument-validation without expecting a refusal"

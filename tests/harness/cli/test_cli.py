"""`presence-conformance`: run, replay, list, report/serve delegation, usage errors, exit codes,
adapter crashes and hangs (interrupts: test_interrupts.py)."""

from __future__ import annotations

import json
import re
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from presence_conformance.harness import session as session_module
from presence_conformance.harness.cli import main
from presence_conformance.harness.results import Outcome
from sample_project import BROKEN, SCENARIOS
from support import ROOT, packaged_suite, write_files

MINIMAL = f"{ROOT / 'examples' / 'minimal_adapter.py'}:MinimalAdapter"


def run_argv(adapter: str, scenarios: Path, out: Path, *more: str) -> list[str]:
    """The arguments of `presence-conformance run` on `adapter` over `scenarios`, reports in `out`."""
    return [
        "run",
        "--adapter",
        adapter,
        "--scenarios",
        str(scenarios),
        "--report-dir",
        str(out),
        *more,
    ]


@pytest.fixture
def scenarios(tmp_path: Path) -> Path:
    return write_files(tmp_path / "scenarios", SCENARIOS)


@pytest.fixture
def broken(module_on_path: Callable[[str, str], str]) -> str:
    """The name of a module with broken adapters, importable for this test."""
    return module_on_path("cli_broken_adapters", BROKEN)


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


# -- run --------------------------------------------------------------------------------------------


def test_run_conforming(
    scenarios: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(run_argv("reference", scenarios, out))
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert re.search(r"^\[1/3\] pass\s+enter/adds-member  \(\d+\.\d\ds\)$", stdout, re.M)
    assert re.search(r"^\[3/3\] pass\s+history/one-event", stdout, re.M)
    assert re.search(r"^pass\s+3$", stdout, re.M)  # counts per outcome
    assert re.search(r"^AREA\s+pass\s+non-strict\s+fail", stdout, re.M)  # per area
    assert re.search(r"^history\s+1\s+0\s+0", stdout, re.M)
    assert stdout.rstrip().endswith("CONFORMING")
    results = _results(out)
    assert results["adapter"] == "reference" and not results["partial"]
    assert [c["case_id"] for c in results["cases"]] == [
        "enter/adds-member",
        "get/filter-client-id",
        "history/one-event",
    ]
    assert {p.name for p in out.iterdir()} >= {"results.json"}


def test_run_not_conforming_lists_failures(
    scenarios: Path, tmp_path: Path, broken: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    adapter = f"{broken}:BrokenAdapter"
    code = main(run_argv(adapter, scenarios, out, "--op-timeout", "0.3"))
    stdout = capsys.readouterr().out
    assert code == 1
    assert re.search(r"^\[2/3\] fail\s+get/filter-client-id", stdout, re.M)
    failures = stdout[stdout.index("Failures (1)") :]
    assert "[MUST] get.filter-client-id" in failures
    assert "expected:" in failures and "observed:" in failures
    assert (
        f"replay: presence-conformance replay {scenarios / 'get' / 'filter-client-id.yaml'} "
        f"--adapter {adapter}"
    ) in failures
    assert stdout.rstrip().endswith("NOT CONFORMING")
    outcomes = {c["case_id"]: c["outcome"] for c in _results(out)["cases"]}
    assert outcomes == {
        "enter/adds-member": "pass",
        "get/filter-client-id": "fail",
        "history/one-event": "pass",
    }


def test_known_failing_list(
    scenarios: Path, tmp_path: Path, broken: str, capsys: pytest.CaptureFixture[str]
) -> None:
    known = tmp_path / "known.txt"
    known.write_text("get/filter-client-id   # the bug under test\n")
    args = run_argv(f"{broken}:BrokenAdapter", scenarios, tmp_path / "out", "--op-timeout", "0.3")
    assert main([*args, "--known-failing", str(known)]) == 0
    known.write_text("get/filter-client-id\nenter/*   # fixed long ago\n")
    assert main([*args, "--known-failing", str(known)]) == 1  # a stale entry fails the run
    assert "stale known-failing entry 'enter/*'" in capsys.readouterr().out


def test_select_by_case_id_or_requirement(
    scenarios: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["run", "--adapter", "reference", "--scenarios", str(scenarios)]
    assert main([*base, "--report-dir", str(tmp_path / "a"), "--select", "get/*"]) == 0
    assert [c["case_id"] for c in _results(tmp_path / "a")["cases"]] == ["get/filter-client-id"]
    assert (
        main(
            [
                *base,
                "--report-dir",
                str(tmp_path / "b"),
                "--select",
                "enter.data",
                "--select",
                "history/*",
            ]
        )
        == 0
    )
    assert [c["case_id"] for c in _results(tmp_path / "b")["cases"]] == [
        "enter/adds-member",
        "history/one-event",
    ]
    capsys.readouterr()
    assert main([*base, "--report-dir", str(tmp_path / "c"), "--select", "nothing*"]) == 2
    assert "no scenario matches" in capsys.readouterr().err


def test_unsupported_does_not_fail(
    scenarios: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(run_argv(MINIMAL, scenarios, out)) == 0
    outcomes = {c["case_id"]: c["outcome"] for c in _results(out)["cases"]}
    assert outcomes["history/one-event"] == "unsupported"
    assert re.search(r"^\[3/3\] unsupported\s+history/one-event", capsys.readouterr().out, re.M)


# -- usage errors: exit 2 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--adapter", "nope"], r"unknown adapter 'nope'; available adapters: .*reference"),
        (
            ["run", "--adapter", "reference", "--adapter-option", "grace=1"],
            r"unknown option\(s\) grace; accepted: leave_grace, op_delay",
        ),
        (
            ["run", "--adapter", "reference", "--adapter-option", "grace"],
            r"'grace': expected KEY=VALUE",
        ),
        (
            ["run", "--adapter", "reference", "--op-timeout", "0"],
            r"--op-timeout 0.0: must be a positive number",
        ),
        (
            ["run", "--adapter", "no_such_module_xyz:Adapter"],
            r"no module named 'no_such_module_xyz'",
        ),
        (["run"], r"the following arguments are required: --adapter"),
        (["list", "everything"], r"invalid choice: 'everything'"),
        (
            ["replay", "missing.yaml", "--adapter", "reference"],
            r"no such scenario file missing.yaml",
        ),
        ([], r"usage: presence-conformance"),
    ],
)
def test_usage_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    assert re.search(message, capsys.readouterr().err)


def test_malformed_scenario_is_a_usage_error(
    scenarios: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = scenarios / "get" / "bad.yaml"
    bad.write_text("requirements: [get.filter-client-id]\nclients: {}\nsteps:\n  - jump: {}\n")
    code = main(run_argv("reference", scenarios, tmp_path / "out"))
    err = capsys.readouterr().err
    assert code == 2
    assert "malformed scenario" in err and f"{bad}:4" in err
    assert not (tmp_path / "out").exists()  # nothing ran: no report
    assert main(["replay", str(bad), "--adapter", "reference"]) == 2


# -- adapter trouble: reports are written, the run is not conforming ------------------------------


def test_adapter_that_cannot_start(
    scenarios: Path, tmp_path: Path, broken: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(run_argv(f"{broken}:CannotStart", scenarios, out))
    assert code == 1
    cases = _results(out)["cases"]
    assert len(cases) == 3 and {c["outcome"] for c in cases} == {"error"}
    assert (
        "adapter failed to start: adapter.start() raised ConnectionRefusedError"
        in cases[0]["error"]
    )
    assert "no server on 127.0.0.1:1" in capsys.readouterr().out


def test_adapter_that_crashes(scenarios: Path, tmp_path: Path, broken: str) -> None:
    out = tmp_path / "out"
    assert main(run_argv(f"{broken}:CrashesOnConnect", scenarios, out)) == 1
    cases = _results(out)["cases"]
    assert {c["outcome"] for c in cases} == {"error"}
    assert "adapter bug" in cases[0]["error"]


def test_hung_adapter_times_out(scenarios: Path, tmp_path: Path, broken: str) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    assert (
        main(
            run_argv(
                f"{broken}:HangsOnConnect",
                scenarios,
                out,
                "--op-timeout",
                "0.2",
                "--select",
                "get/*",
            )
        )
        == 1
    )
    assert time.monotonic() - started < 15
    assert [c["outcome"] for c in _results(out)["cases"]] == ["timeout"]


def test_adapter_blocking_its_loop_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A synchronous sleep inside an async method blocks the loop: the bridge gives up, and the
    loop is marked unusable instead of hanging every later call."""
    monkeypatch.setattr(session_module, "PING_TIMEOUT", 0.2)
    loop = session_module.AdapterLoop()

    async def blocks() -> None:
        time.sleep(1.5)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        loop.run(blocks(), timeout=0.2)
    assert time.monotonic() - started < 1.2
    assert loop.blocked and "blocked its event loop" in loop.blocked
    with pytest.raises(RuntimeError, match="blocked its event loop"):
        loop.run(blocks(), timeout=0.2)
    loop.close()


def test_harness_failure_exits_3_with_a_partial_report(
    scenarios: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import presence_conformance.harness.run.runner

    real = presence_conformance.harness.run.runner.run_scenario

    async def flaky_runner(scenario, adapter, settings=None):  # type: ignore[no-untyped-def]
        if scenario.case_id.startswith("get/"):
            raise AssertionError("bug in the runner")
        return await real(scenario, adapter, settings)

    monkeypatch.setattr(presence_conformance.harness.run.runner, "run_scenario", flaky_runner)
    out = tmp_path / "out"
    code = main(run_argv("reference", scenarios, out))
    assert code == 3
    assert "the harness itself failed" in capsys.readouterr().err
    results = _results(out)
    assert results["partial"] and "harness error" in results["partial_reason"]
    assert [(c["case_id"], c["outcome"]) for c in results["cases"]] == [
        ("enter/adds-member", "pass"),
        ("get/filter-client-id", "error"),
    ]


def test_internal_runner_error_exits_3_after_the_whole_run(
    scenarios: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import presence_conformance.harness.run.runner

    def broken_checks(record):  # type: ignore[no-untyped-def]
        raise KeyError("bug in a check")

    monkeypatch.setattr(presence_conformance.harness.run.runner, "run_checks", broken_checks)
    out = tmp_path / "out"
    assert main(run_argv("reference", scenarios, out)) == 3
    captured = capsys.readouterr()
    assert "internal error in the runner, not the adapter's fault" in captured.err
    assert captured.out.rstrip().endswith("HARNESS FAILURE")
    results = _results(out)
    assert not results["partial"] and len(results["cases"]) == 3
    assert (
        main(["replay", str(scenarios / "get" / "filter-client-id.yaml"), "--adapter", "reference"])
        == 3
    )


# -- replay ---------------------------------------------------------------------------------------


def test_replay_fixed_and_failed(
    scenarios: Path, broken: str, capsys: pytest.CaptureFixture[str]
) -> None:
    file = str(scenarios / "get" / "filter-client-id.yaml")
    assert main(["replay", file, "--adapter", "reference"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^run 5/5: pass ", out, re.M)
    assert out.splitlines()[-1] == "FIXED: get/filter-client-id passes now (5 of 5 runs passed)"
    assert (
        main(["replay", file, "--adapter", f"{broken}:BrokenAdapter", "--op-timeout", "0.3"]) == 1
    )
    stdout = capsys.readouterr().out
    assert "\nFAILED: get/filter-client-id (5 of 5 runs failed)\n" in stdout
    assert "[MUST] get.filter-client-id" in stdout and "history around #" in stdout


def test_replay_unsupported(scenarios: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["replay", str(scenarios / "history" / "one-event.yaml"), "--adapter", MINIMAL]) == 1
    )
    assert "\nUNSUPPORTED: history/one-event" in capsys.readouterr().out


# -- list, version, delegation ---------------------------------------------------------------------


def test_list(scenarios: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "adapters"]) == 0
    assert re.search(r"^reference\s+The embedded reference", capsys.readouterr().out, re.M)
    assert main(["list", "scenarios", "--scenarios", str(scenarios)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^enter/adds-member\s+enter.adds-member, enter.data$", out, re.M)
    assert main(["list", "requirements"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^REQUIREMENT\s+LEVEL\s+TEXT$", out, re.M)
    assert re.search(r"^get.filter-client-id\s+MUST\s+\S", out, re.M)


def test_list_checks(capsys: pytest.CaptureFixture[str]) -> None:
    """One block per registered check: name (family), the sentence it enforces, and exactly the
    requirement IDs it is registered for, with their catalogue levels."""
    from presence_conformance.harness.checks import REGISTRY

    from presence_conformance import spec

    assert main(["list", "checks"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    blocks = out.strip().split("\n\n")
    levels = {r.id: r.level for r in spec.load_requirements().requirements}
    assert [b.splitlines()[0] for b in blocks] == [
        f"{i.name} ({i.family})" for i in REGISTRY.values()
    ]
    for block, info in zip(blocks, REGISTRY.values(), strict=True):
        body = block.splitlines()[1:]
        start = next(n for n, line in enumerate(body) if line.startswith("  may report: "))
        assert " ".join(" ".join(body[:start]).split()) == " ".join(info.doc.split())
        reports = " ".join(body[start:]).removeprefix("  may report: ")
        if info.explicit:
            assert "tagged with" in reports
            continue
        listed = re.findall(r"([a-z0-9.-]+) \((MUST|SHOULD|INFO)\)", reports)
        assert listed == [(r, levels[r]) for r in info.requirements]
    assert "refusals (errors)" in out and "error.has-code (SHOULD)" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert re.fullmatch(r"presence-conformance \S+\n", capsys.readouterr().out)


def test_serve_delegates(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("presence_conformance.reference_impl.server")
    fake.serve_main = lambda argv: seen.append(argv) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "presence_conformance.reference_impl.server", fake)
    assert main(["serve", "--port", "0", "--help"]) == 7
    assert seen == [["--port", "0", "--help"]]


def test_generate_delegates(monkeypatch: pytest.MonkeyPatch) -> None:
    import presence_conformance.harness.cli.generate

    seen: list[list[str]] = []
    monkeypatch.setattr(
        presence_conformance.harness.cli.generate,
        "generate_main",
        lambda argv: seen.append(argv) or 5,
    )
    assert main(["generate", "--adapter", "reference", "--examples", "3"]) == 5
    assert seen == [["--adapter", "reference", "--examples", "3"]]


def test_report_delegates(scenarios: Path, tmp_path: Path) -> None:
    assert main(run_argv("reference", scenarios, tmp_path / "a")) == 0
    assert (
        main(
            ["report", "--from", str(tmp_path / "a" / "results.json"), "--out", str(tmp_path / "b")]
        )
        == 0
    )
    assert (tmp_path / "b" / "results.json").is_file()


def test_outcome_labels_match_results_model() -> None:
    from presence_conformance.harness.cli import OUTCOME_ORDER

    assert set(OUTCOME_ORDER) == set(Outcome)


# -- the documented minimal adapter --------------------------------------------------------------


def test_minimal_example_passes_the_packaged_suite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", "--adapter", MINIMAL, "--report-dir", str(out)]) == 0
    cases = {c["case_id"]: c["outcome"] for c in _results(out)["cases"]}
    assert cases and set(cases.values()) <= {"pass", "unsupported"}
    # it is a real implementation: every case that needs no optional feature runs and passes

    core = [s.case_id for s in packaged_suite() if not s.needed_features()]
    assert core and all(cases[case_id] == "pass" for case_id in core)


def test_docs_show_the_example_verbatim() -> None:
    docs = (ROOT / "docs" / "adapters.md").read_text()
    code = (ROOT / "examples" / "minimal_adapter.py").read_text()
    assert f"```python\n{code}```" in docs
